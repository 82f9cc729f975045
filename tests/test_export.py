"""ONNX export (``vaekit export RUN --format onnx --out DIR``): tiny runs trained through the real CLI (an MLP
Bernoulli VAE on the digits; a convolutional, label-conditional one with a full-covariance posterior (the
Cholesky head's index_put) and a per-output Gaussian; a covariate-conditional table model; a multinomial
recommender autoencoder with l2 input norm and dropout) are exported through the CLI, and the graphs run with
onnxruntime are compared with the model's own ``encode`` / ``decode`` in PyTorch (torch.distributions'
parameters) on real and random inputs at batch sizes 1 and 37: the largest absolute difference must be
below 1e-4 (float32). Then the folder's contract: the preprocessing record, refusals and atomic writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from cli_helpers import run_vaekit
from torch.distributions import Distribution, MultivariateNormal

from vaekit import distributions as D
from vaekit.errors import VaekitError
from vaekit.export import FILES, export_run
from vaekit.inputs import trusted
from vaekit.runload import load_run, user_condition

ort = pytest.importorskip("onnxruntime", reason="the export extra (onnx, onnxscript, onnxruntime) is not installed")
pytest.importorskip("onnxscript", reason="the export extra (onnx, onnxscript, onnxruntime) is not installed")

TOL = 1e-4  # max |onnxruntime - PyTorch| over every output, float32
SMALL = ("--train.epochs", "1", "--model.latent_dim", "3", "--no-progress", "--no-report", "--no-artifacts")
RUNS: dict[str, tuple[str, ...]] = {
    "mlp": ("--model.hidden", "16"),
    "conv-label": ("--model.encoder", "conv", "--model.decoder", "conv", "--model.channels", "4,8",
                   "--model.posterior", "full", "--model.likelihood", "gaussian-learned", "--model.variance",
                   "per-output", "--model.condition", "label"),
    "covariates": ("--model.hidden", "16", "--model.condition", "covariates", "--data.condition_columns", "age,dose"),
    "recommender": ("--model.hidden", "16", "--model.kind", "ae", "--model.input_norm", "l2",
                    "--model.input_dropout", "0.5", "--data.format", "interactions", "--data.heldout_users", "10",
                    "--train.batch_size", "50"),
}


def _covariate_csv(path: Path, n: int = 300) -> Path:
    """A table x (3 features) depending on two covariates (age ~ 40 +- 10, dose ~ 1 +- 0.5) and a latent."""
    rng = np.random.default_rng(0)
    c = np.stack([rng.normal(40, 10, n), rng.normal(1.0, 0.5, n)], 1)
    x = rng.normal(size=(n, 1)) @ rng.normal(size=(1, 3)) + ((c - [40, 1]) / [10, 0.5]) @ rng.normal(size=(2, 3))
    rows = [f"{x[i, 0]},{c[i, 0]},{x[i, 1]},{c[i, 1]},{x[i, 2]}" for i in range(n)]
    path.write_text("a,age,b,dose,c\n" + "\n".join(rows) + "\n")
    return path


def _interactions_csv(path: Path, users: int = 120, items: int = 30) -> Path:
    """Implicit interactions with string item ids: each user 6..12 distinct items, popular ones likelier."""
    rng = np.random.default_rng(1)
    p = np.linspace(2, 1, items)
    p /= p.sum()
    lines = [f"u{u},item-{i:02d}" for u in range(users)
             for i in rng.choice(items, size=int(rng.integers(6, 13)), replace=False, p=p)]
    path.write_text("user,item\n" + "\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every tiny run of :data:`RUNS`, trained through the CLI, and its export (DIR = RUN-onnx)."""
    root = tmp_path_factory.mktemp("export")
    data = {"covariates": ("--data.path", str(_covariate_csv(root / "t.csv"))),
            "recommender": ("--data.path", str(_interactions_csv(root / "log.csv")))}
    out = {}
    for name, flags in RUNS.items():
        run_vaekit("train", "--name", name, "--runs", str(root), *SMALL, *flags, *data.get(name, ()), cwd=root,
                   check=True)
        if name == "mlp":  # through the CLI; the others through the library call behind it (no second start-up)
            proc = run_vaekit("export", str(root / name), "--format", "onnx", "--out", str(root / f"{name}-onnx"),
                              cwd=root, check=True)
            assert proc.stdout == f"wrote {', '.join(str(root / 'mlp-onnx' / f) for f in FILES)}\n"
            assert proc.stderr == ""
        else:
            export_run(root / name, root / f"{name}-onnx")
        out[name] = root / name
    return out


def _posterior_reference(q_z: Distribution) -> dict[str, torch.Tensor]:
    """q(z|x)'s parameters read from torch.distributions (not from the export's own helpers)."""
    if isinstance(q_z, MultivariateNormal):
        return {"loc": q_z.mean, "scale_tril": q_z.scale_tril}
    if isinstance(q_z, D.PointMass):
        return {"code": q_z.mean}
    return {"loc": q_z.mean, "scale": q_z.stddev}


def _likelihood_reference(p_x: Distribution, likelihood: str) -> dict[str, torch.Tensor]:
    if likelihood.startswith("gaussian"):
        return {"mean": p_x.mean, "scale": p_x.stddev}
    logits = p_x.logits if likelihood == "multinomial" else p_x.base_dist.logits  # type: ignore[attr-defined]
    return {"logits": logits, "mean": p_x.mean}


def _diff(session: Any, feeds: dict[str, np.ndarray], reference: dict[str, torch.Tensor]) -> float:
    names = [o.name for o in session.get_outputs()]
    assert sorted(names) == sorted(reference), (names, list(reference))
    got = dict(zip(names, session.run(names, feeds), strict=True))
    worst = 0.0
    for name, ref in reference.items():
        assert got[name].shape == tuple(ref.shape) and got[name].dtype == np.float32, name
        worst = max(worst, float(np.abs(got[name].astype(np.float64) - ref.double().numpy()).max()))
    return worst


def _real_inputs(name: str, run: Path, n: int) -> tuple[Any, torch.Tensor, dict[str, np.ndarray], dict[str, Any]]:
    """(model, x, the graph's condition feeds, the model's condition kwargs) for n real examples: the test split
    of the run's data; the covariate run's raw covariates from its CSV (standardised for PyTorch as
    ``vaekit sample --condition`` does, by :func:`vaekit.runload.user_condition`)."""
    model, _, meta, data = load_run(run)
    split = data.test if len(data.test) >= n else data.train
    batch = split.batch_of(torch.arange(n))
    if name == "covariates":
        table = np.loadtxt(run.parent / "t.csv", delimiter=",", skiprows=1)[:n]
        raw, x = table[:, [1, 3]], torch.from_numpy(table[:, [0, 2, 4]].astype(np.float32))
        _, c = user_condition(model, meta, n, covariates=raw)
        return model, x, {"c": raw.astype(np.float32)}, {"c": c}
    if name == "conv-label":
        return model, batch.x, {"y": batch.y.numpy()}, {"y": batch.y}
    return model, batch.x, {}, {}


@pytest.mark.parametrize("name", list(RUNS))
@pytest.mark.parametrize("n", [1, 37])
def test_onnxruntime_equals_pytorch_on_real_and_random_inputs(runs: dict[str, Path], name: str, n: int) -> None:
    run = runs[name]
    out = run.parent / f"{name}-onnx"
    assert sorted(p.name for p in out.iterdir()) == ["decoder.onnx", "encoder.onnx", "preprocessing.json"]
    model, x, feeds, kwargs = _real_inputs(name, run, n)
    likelihood = model.config.likelihood
    enc = ort.InferenceSession(str(out / "encoder.onnx"), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(out / "decoder.onnx"), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(n)
    if likelihood in ("bernoulli", "multinomial"):
        x_random = torch.bernoulli(torch.full(x.shape, 0.3), generator=g)
    else:
        x_random = x + torch.randn(x.shape, generator=g) * x.std()  # beyond the data: no range check below
    diffs = []
    with torch.no_grad(), trusted(model):
        for xs in (x, x_random):
            q_z = model.encode(xs, **kwargs)
            diffs.append(_diff(enc, {"x": xs.numpy(), **feeds}, _posterior_reference(q_z)))
            for z in (q_z.mean, 2.0 * torch.randn(q_z.mean.shape, generator=g)):  # real codes, random codes
                p_x = model.decode(z, **kwargs)
                diffs.append(_diff(dec, {"z": z.numpy(), **feeds}, _likelihood_reference(p_x, likelihood)))
    print(f"export parity {name} n={n}: max |onnxruntime - torch| encoder {max(diffs[0], diffs[3]):.3g}, "
          f"decoder {max(diffs[1], diffs[2], diffs[4], diffs[5]):.3g}")
    assert max(diffs) < TOL
    check = json.loads((out / "preprocessing.json").read_text())["check"]
    assert check["encoder_max_abs_diff"] < TOL and check["decoder_max_abs_diff"] < TOL


def test_graphs_have_a_dynamic_batch_axis_and_named_inputs(runs: dict[str, Path]) -> None:
    for name, run in runs.items():
        out = run.parent / f"{name}-onnx"
        info = json.loads((out / "preprocessing.json").read_text())
        for graph in ("encoder", "decoder"):
            sess = ort.InferenceSession(str(out / f"{graph}.onnx"), providers=["CPUExecutionProvider"])
            for kind, args in (("inputs", sess.get_inputs()), ("outputs", sess.get_outputs())):
                recorded = info[graph][kind]
                assert [a.name for a in args] == [r["name"] for r in recorded]
                for arg, r in zip(args, recorded, strict=True):
                    assert isinstance(arg.shape[0], str), (name, graph, arg.name, arg.shape)  # symbolic: any batch
                    assert arg.shape[1:] == r["shape"][1:], (name, graph, arg.name, arg.shape)


def test_preprocessing_record_states_what_is_outside_the_graphs(runs: dict[str, Path]) -> None:
    info = {name: json.loads((run.parent / f"{name}-onnx" / "preprocessing.json").read_text())
            for name, run in runs.items()}
    digits = info["mlp"]
    assert (digits["format"], digits["version"]) == ("vaekit-onnx", 1)
    assert digits["model"] == {**digits["model"], "latent_dim": 3, "event_shape": [8, 8], "likelihood": "bernoulli",
                               "posterior": "diag", "kind": "vae"}
    assert digits["input"]["affine"] == [0.0625, 0.0] and digits["input"]["binarize"] == "dynamic"  # 0..16 -> [0, 1]
    assert digits["input"]["input_range"] == [0.0, 1.0] and digits["condition"] == {"kind": "none"}
    assert [o["name"] for o in digits["encoder"]["outputs"]] == ["loc", "scale"]
    assert [o["name"] for o in digits["decoder"]["outputs"]] == ["logits", "mean"]
    conv = info["conv-label"]
    assert [o["name"] for o in conv["encoder"]["outputs"]] == ["loc", "scale_tril"]
    assert [o["name"] for o in conv["decoder"]["outputs"]] == ["mean", "scale"]
    assert conv["condition"]["input"] == "y" and conv["condition"]["n_classes"] == 10
    assert conv["input"]["dequantize"] == "uniform" and conv["input"]["value_range"] == [0.0, 16.0]
    # covariates: raw values in, standardised inside the graph with the run's recorded statistics
    _, _, meta, _ = load_run(runs["covariates"])
    record = meta["data"]["prep"]["covariates"]
    cov = info["covariates"]["condition"]
    assert (cov["input"], cov["columns"], cov["loc"], cov["scale"]) == ("c", ["age", "dose"], record["loc"],
                                                                        record["scale"])
    assert "the covariates' standardisation" in info["covariates"]["inside_graph"]
    # the recommender: counts in, item vocabulary in column order, l2 norm inside, no dropout
    rec = info["recommender"]
    _, _, _, data = load_run(runs["recommender"])
    assert rec["items"]["ids"] == data.rec.items.tolist() and rec["items"]["n_items"] == 30
    assert rec["items"]["ids"][0].startswith("item-")
    assert [o["name"] for o in rec["encoder"]["outputs"]] == ["code"]
    assert [o["name"] for o in rec["decoder"]["outputs"]] == ["logits", "mean"]
    assert any("input_norm l2" in s for s in rec["inside_graph"])
    assert any("no input dropout" in s for s in rec["inside_graph"])


def test_label_graph_one_hots_the_integer_label(runs: dict[str, Path]) -> None:
    """The label graph takes int64 labels: each label's decoding equals PyTorch's for that label (and they
    differ, so the label really enters the graph); a label out of range is an all-zero condition."""
    run = runs["conv-label"]
    model = load_run(run)[0]
    dec = ort.InferenceSession(str(run.parent / "conv-label-onnx" / "decoder.onnx"), providers=["CPUExecutionProvider"])
    z = torch.zeros(12, model.latent_dim)
    y = torch.tensor([*range(10), 10, -1])
    (mean,) = dec.run(["mean"], {"z": z.numpy(), "y": y.numpy()})
    with torch.no_grad():
        ref = model.decode(z[:10], y=y[:10]).mean.numpy()
        zero = model.decode(z[10:], c=torch.zeros(2, 10)).mean.numpy()
    assert np.abs(mean[:10] - ref).max() < TOL and np.abs(mean[0] - mean[1]).max() > 1e-4
    assert np.abs(mean[10:] - zero).max() < TOL


# ------------------------------------------------------------------------------------- the folder
def _export(run: Path, out: Path, *more: str) -> Any:
    return run_vaekit("export", str(run), "--out", str(out), *more, cwd=run.parent)


def test_cli_errors_are_one_line_and_exit_2(runs: dict[str, Path], tmp_path: Path) -> None:
    run = runs["mlp"]
    proc = _export(run, tmp_path / "x", "--format", "tflite")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "vaekit: error: unknown export format 'tflite'; use one of: onnx\n"
    assert not (tmp_path / "x").exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    proc = _export(run, busy)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1
    assert proc.stderr.startswith(f"vaekit: error: --out {busy} exists and is not empty") and "--force" in proc.stderr
    # --force replaces a previous export only, never other files
    proc = _export(run, busy, "--force")
    assert proc.returncode == 2 and "holds files an export does not write (notes.txt)" in proc.stderr
    assert [p.name for p in busy.iterdir()] == ["notes.txt"] and (busy / "notes.txt").read_text() == "mine"
    with pytest.raises(VaekitError, match="unknown export format 'tflite'"):
        export_run(run, tmp_path / "x", format="tflite")
    proc = _export(tmp_path / "nope", tmp_path / "y")
    assert proc.returncode == 2 and proc.stderr.startswith("vaekit: error: ") and len(proc.stderr.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]  # nothing half-written anywhere


def test_force_replaces_a_previous_export_and_an_empty_folder_is_used(runs: dict[str, Path], tmp_path: Path) -> None:
    empty = tmp_path / "e"
    empty.mkdir()
    assert export_run(runs["mlp"], empty) == empty
    first = (empty / "encoder.onnx").read_bytes()
    proc = _export(runs["conv-label"], empty)
    assert proc.returncode == 2 and (empty / "encoder.onnx").read_bytes() == first
    export_run(runs["conv-label"], empty, force=True)
    info = json.loads((empty / "preprocessing.json").read_text())
    assert info["condition"]["kind"] == "label" and (empty / "encoder.onnx").read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e"]  # no temporary folders left


def test_a_failed_export_leaves_nothing(tmp_path: Path) -> None:
    """The staging folder: an error while writing removes it, and the destination never appears."""
    from vaekit.export.outdir import staged

    out = tmp_path / "out"
    with pytest.raises(VaekitError, match="disk"), staged(out, False, FILES) as tmp:
        (tmp / "encoder.onnx").write_bytes(b"half")
        raise VaekitError("disk full")
    assert list(tmp_path.iterdir()) == []
    with staged(out, False, FILES) as tmp:
        (tmp / "encoder.onnx").write_bytes(b"whole")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (out / "encoder.onnx").read_bytes() == b"whole"
