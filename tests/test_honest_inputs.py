"""Issue #8, part D: inputs in the wrong units, honest Python API errors, one latent-summary path.

Real runs (the bundled digits, real MNIST and Frey Face files from /work/shared/data), real subprocesses
for the CLI; every test asserts a number, a shape, an equality or an error."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_vaekit

import vaekit
from vaekit import api, probes
from vaekit.config import Config, EvalConfig, ModelConfig, TrainConfig, apply_overrides, config_from_dict
from vaekit.data import DataConfig
from vaekit.errors import VaekitError
from vaekit.evaluate import evaluate_run, log_likelihood
from vaekit.model import VAE
from vaekit.train import create_run_dir, fit, resume

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
DATA_DIR = SHARED if SHARED.is_dir() else Path("/work/shared/data")
TINY = {"model.hidden": "16", "model.latent_dim": "2", "train.epochs": "1", "train.batch_size": "64",
        "train.device": "cpu"}


def _fit(root: Path, name: str, **over: str) -> Path:
    return fit(apply_overrides(Config(), {**TINY, **over, "name": name}), runs_root=root)[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Digits runs: a Bernoulli VAE (data.scale unit: 0..16 mapped to [0, 1], dynamic binarisation) and a
    fixed-sigma Gaussian VAE on the same [0, 1] data."""
    root = tmp_path_factory.mktemp("inputs")
    return {"bernoulli": _fit(root, "bern"), "gaussian": _fit(root, "gauss", **{"model.likelihood": "gaussian"})}


def _test_x(run: Path) -> torch.Tensor:
    _, _, _, data = api.load_run(run)
    return data.test.all()[:20]


def _raw_digits() -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().images.astype(np.float32)  # (1797, 8, 8) grey levels 0..16


# ------------------------------------------------------------------------------------ item 7
def test_elbo_of_inputs_in_the_wrong_units_is_an_error(runs):
    model = vaekit.load(runs["bernoulli"])
    x = _test_x(runs["bernoulli"])
    assert torch.isfinite(model.elbo(x)).all() and model.elbo(x).shape == (20,)
    with pytest.raises(VaekitError, match=r"Bernoulli model was trained on 0/1 data in \[0, 1\].*data.scale unit"):
        model.elbo(x * 255)
    with pytest.raises(VaekitError, match=r"values in \[0, 255\]"):
        model.reconstruct(x * 255)


def test_log_likelihood_of_inputs_in_the_wrong_units_is_an_error(runs):
    model = vaekit.load(runs["bernoulli"])
    x = _test_x(runs["bernoulli"])
    assert torch.isfinite(vaekit.log_likelihood(model, x, k=5)).all()
    with pytest.raises(VaekitError, match="Bernoulli"):
        vaekit.log_likelihood(model, x * 255, k=5)


@pytest.mark.parametrize("entry", ["encode", "elbo", "reconstruct", "log_likelihood", "posterior_means"])
def test_non_finite_inputs_name_the_count_and_the_first_index(runs, entry):
    model = vaekit.load(runs["gaussian"])
    x = _test_x(runs["gaussian"]).clone()
    x[3, 2, 5] = float("nan")
    x[7, 0, 0] = float("inf")
    call = {"encode": model.encode, "elbo": model.elbo, "reconstruct": model.reconstruct,
            "log_likelihood": lambda v: log_likelihood(model, v, k=3),
            "posterior_means": lambda v: probes.posterior_means(model, v)}[entry]
    with pytest.raises(VaekitError, match=r"2 NaN/inf values, the first at index \(3, 2, 5\)") as err:
        call(x)
    assert "\n" not in str(err.value)


def test_a_flat_input_to_an_image_model_names_the_expected_shape(runs):
    from vaekit.errors import VaekitWarning

    model = vaekit.load(runs["gaussian"])
    x = _test_x(runs["gaussian"])
    assert model.event_shape == (8, 8)
    # issue #16: an MLP model reads flat vectors, so (20, 64) rows are reshaped to (8, 8), with a warning
    torch.manual_seed(0)
    with pytest.warns(VaekitWarning, match=r"data of shape \(64,\) reshaped to the model's \(8, 8\)"):
        flat = model.elbo(x.reshape(20, 64))
    torch.manual_seed(0)
    assert torch.equal(flat, model.elbo(x))
    with pytest.raises(VaekitError, match=r"shape \(63,\) but the model expects \(8, 8\)"):
        model.elbo(x.reshape(20, 64)[:, :63])
    with pytest.raises(VaekitError, match=r"expects \(n, 8, 8\); add the batch axis"):
        model.reconstruct(x[0])
    with pytest.raises(VaekitError, match=r"takes float codes of shape \(\.\.\., 2\)"):
        model.decode(torch.zeros(5, 3))


def test_a_gaussian_model_warns_on_inputs_far_outside_its_training_range(runs):
    from vaekit.errors import VaekitWarning

    model = vaekit.load(runs["gaussian"])
    x = _test_x(runs["gaussian"])
    # a Gaussian model reads file units (digits 0..16, uniformly dequantised to [0, 17))
    assert model.input_spec is not None and (model.input_spec.lo, model.input_spec.hi) == (0.0, 17.0)
    assert torch.isfinite(model.elbo(x)).all()  # the run's own test data: no warning (warnings are errors here)
    with pytest.warns(VaekitWarning, match=r"far outside the range \[0, 17\]"):
        model.encode(x * 16)
    with pytest.warns(VaekitWarning, match="far outside"):
        log_likelihood(model, x * 16, k=3)


def test_the_training_range_comes_from_the_checkpoint_and_old_runs_still_load(runs, tmp_path):
    """meta["data"]["input_range"] (written by new runs) wins; a run without it falls back gracefully."""
    from vaekit.errors import VaekitWarning

    run = shutil.copytree(runs["gaussian"], tmp_path / "run")
    metas = list(run.glob("checkpoints/step-*/meta.json"))
    assert metas
    for m in metas:  # a run without a recorded range: no input_range, no input_binary
        meta = json.loads(m.read_text())
        meta["data"].pop("input_range", None)
        meta["data"].pop("input_binary", None)
        m.write_text(json.dumps(meta))
    model = vaekit.load(run)  # loads strictly: the check needs nothing in the state_dict
    assert (model.input_spec.lo, model.input_spec.hi) == (0.0, 17.0)  # the preprocessing record's range
    x16 = _test_x(run) * 16
    with pytest.warns(VaekitWarning):
        model.encode(x16)
    for m in metas:  # a run whose inputs spanned [0, 272]
        meta = json.loads(m.read_text())
        meta["data"]["input_range"] = [0.0, 272.0]
        m.write_text(json.dumps(meta))
    model = vaekit.load(run)
    assert (model.input_spec.lo, model.input_spec.hi) == (0.0, 272.0)
    assert model.encode(x16).mean.shape == (20, 2)  # in range: no warning
    assert set(model.state_dict()) == set(VAE(model.config, (8, 8)).state_dict())


def test_the_trainers_model_knows_its_training_range_too(tmp_path):
    from vaekit.errors import VaekitWarning

    config = apply_overrides(Config(), {**TINY, "name": "g", "model.likelihood": "gaussian"})
    _, trainer = fit(config, runs_root=tmp_path)
    model = trainer.model.eval()
    assert (model.input_spec.lo, model.input_spec.hi) == (0.0, 17.0)  # file units, dequantised
    x = trainer.data.test.all()[:10]
    assert torch.isfinite(model.elbo(x)).all()
    with pytest.warns(VaekitWarning, match="far outside"):
        model.elbo(x * 16)


def test_training_mode_skips_the_check_and_trusted_loops_check_once(runs):
    """The training loop (train mode) pays nothing; eval mode checks every public call."""
    model = vaekit.load(runs["gaussian"])
    x = _test_x(runs["gaussian"]).clone()
    x[0, 0, 0] = float("nan")
    model.train()
    assert torch.isnan(model.encode(x).mean).any()  # the training path: data validated when loaded
    model.eval()
    with pytest.raises(VaekitError, match="NaN"):
        model.encode(x)


def test_cli_encode_refuses_raw_digits_and_nan_for_a_bernoulli_model(runs, tmp_path):
    raw = tmp_path / "raw.npy"
    np.save(raw, _raw_digits()[:50])
    out = tmp_path / "z.npy"
    proc = run_vaekit("encode", str(runs["bernoulli"]), "--input", str(raw), "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("vaekit: error: ") and proc.stderr.count("\n") == 1
    assert "raw.npy has values in [0, 16]" in proc.stderr and "Bernoulli" in proc.stderr
    assert not out.exists()
    bad = _raw_digits()[:50] / 16
    bad[4, 1, 1] = np.nan
    np.save(raw, bad)
    proc = run_vaekit("encode", str(runs["bernoulli"]), "--input", str(raw), "--out", str(out))
    assert proc.returncode == 2 and "1 NaN/inf values, the first at index (4, 1, 1)" in proc.stderr
    assert not out.exists()
    np.save(raw, _raw_digits()[:50] / 16)
    proc = run_vaekit("encode", str(runs["bernoulli"]), "--input", str(raw), "--out", str(out))
    assert proc.returncode == 0 and proc.stderr == ""
    assert np.load(out).shape == (50, 2)


def test_cli_encode_warns_on_raw_digits_for_a_gaussian_model(runs, tmp_path):
    raw = tmp_path / "raw.npy"
    np.save(raw, _raw_digits()[:50] * 16)  # 0..256: the digits in other units than the run's 0..16
    out = tmp_path / "z.npy"
    proc = run_vaekit("encode", str(runs["gaussian"]), "--input", str(raw), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("vaekit: warning: ")
    assert "spans [0, 256], far outside the range [0, 17]" in lines[0]
    assert np.load(out).shape == (50, 2)

# ------------------------------------------------------------------------- autoencoder ELBO
def test_an_autoencoder_has_no_elbo():
    model = VAE(ModelConfig(kind="ae", hidden=(8,), latent_dim=2, likelihood="gaussian"), (5,)).eval()
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    with pytest.raises(VaekitError, match=r"autoencoder \(model.kind 'ae'\) has no ELBO.*reconstruction_log_lik"):
        model.elbo(x)
    ll = model.reconstruction_log_likelihood(x)
    with torch.no_grad():
        ref = model.decode(model.encoder(x)).log_prob(x)
    assert ll.shape == (4,)
    torch.testing.assert_close(ll, ref)

# ------------------------------------------------------------------------- config type checks
@pytest.mark.parametrize(("make", "key", "expected"), [
    (lambda: TrainConfig(epochs="10"), "train.epochs", "expected an integer, got '10'"),
    (lambda: TrainConfig(epochs=True), "train.epochs", "expected an integer"),
    (lambda: TrainConfig(lr="1e-3"), "train.lr", "expected a number"),
    (lambda: TrainConfig(device=0), "train.device", "expected a string"),
    (lambda: ModelConfig(latent_dim=2.5), "model.latent_dim", "expected an integer"),
    (lambda: ModelConfig(hidden=16), "model.hidden", "expected a list"),
    (lambda: ModelConfig(hidden=("16",)), "model.hidden", "expected an integer"),
    (lambda: EvalConfig(k="100"), "eval.k", "expected an integer"),
    (lambda: DataConfig(limit="5"), "data.limit", "expected an integer"),
    (lambda: DataConfig(mmap="yes"), "data.mmap", "expected true or false"),
    (lambda: DataConfig(image_size=[28, "28"]), "data.image_size", "expected an integer"),
    (lambda: Config(name=3), "name", "expected a string"),
    (lambda: Config(train={"lr": 1e-3}), "train", "expected a TrainConfig"),
])
def test_config_dataclasses_check_their_types_in_python(make, key, expected):
    with pytest.raises(VaekitError) as err:
        make()
    assert f"config key '{key}'" in str(err.value) and expected in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("bad", ["cuda:x", "cuda:", "gpu", "cuda:0:1"])
def test_a_device_name_torch_cannot_use_is_refused_by_the_config(bad):
    with pytest.raises(VaekitError, match="train.device") as err:
        TrainConfig(device=bad)
    assert "cuda:N" in str(err.value) and "\n" not in str(err.value)
    assert TrainConfig(device="cuda:1").device == "cuda:1"  # an index is a valid name; pick_device checks it


@pytest.mark.parametrize(("name", "says"), [("mps", "not one vaekit computes on"), ("xla", "not one vaekit")])
def test_pick_device_refuses_devices_vaekit_does_not_compute_on(name, says):
    from vaekit.devices import pick_device

    with pytest.raises(VaekitError, match=says):
        pick_device(name)
    assert pick_device("cpu") == torch.device("cpu")


def test_config_accepts_lists_and_widens_numbers_like_the_toml_parser():
    m = ModelConfig(hidden=[16, 8])
    assert m.hidden == (16, 8) and isinstance(m.hidden, tuple)
    assert m == ModelConfig(hidden=(16, 8))
    t = TrainConfig(lr=1, epochs=np.int64(3), beta=np.float32(0.5))
    assert t.lr == 1.0 and type(t.lr) is float and t.epochs == 3 and type(t.epochs) is int and t.beta == 0.5
    assert DataConfig(image_size=[28, 28]).image_size == (28, 28)
    c = config_from_dict({"model": {"hidden": [32]}, "train": {"lr": 1}})
    assert c.model.hidden == (32,) and c.train.lr == 1.0


def test_an_empty_hidden_list_is_refused_and_none_is_explicit(tmp_path):
    for text in ("", " , "):
        with pytest.raises(VaekitError, match=r"config key 'model.hidden': empty value.*--model.hidden none"):
            apply_overrides(Config(), {"model.hidden": text})
    assert apply_overrides(Config(), {"model.hidden": "none"}).model.hidden == ()
    proc = run_vaekit("train", "--model.hidden", "", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "model.hidden" in proc.stderr and "empty value" in proc.stderr
    assert not (tmp_path / "runs").exists()

# ---------------------------------------------------------------------- Python API messages
def test_python_api_messages_name_the_config_key_or_argument(runs, tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(VaekitError, match=r"config.name.*vaekit.resume"):
        create_run_dir(Config(name="taken"), tmp_path)
    with pytest.raises(VaekitError, match=r"vaekit.resume\('runs/<name>'\)"):
        resume(tmp_path / "taken")
    with pytest.raises(VaekitError, match="argument precision in Python"):
        evaluate_run(runs["bernoulli"], k=2, precision="fp16", write=False)
    with pytest.raises(VaekitError, match="argument naive_k in Python"):
        evaluate_run(runs["bernoulli"], k=2, naive_k=0, write=False)
    with pytest.raises(VaekitError, match=r"overrides\) can be changed"):
        evaluate_run(runs["bernoulli"], k=2, overrides={"model.latent_dim": "3"}, write=False)
    with pytest.raises(VaekitError, match=r"number of samples n \(-n\)"):
        api.sample(runs["bernoulli"], 0, tmp_path / "s.png")

# --------------------------------------------------------- report and eval: one latent summary
def test_the_reports_active_units_and_probe_equal_eval_json(tmp_path):
    """Real MNIST (3,000 rows per split): the report's figures come from the same function as eval's."""
    from vaekit.report.runinfo import load_run_info
    from vaekit.report.single import build_report

    run = _fit(tmp_path, "mnist", **{"data.name": "mnist", "data.dir": str(DATA_DIR), "data.download": "false",
                                     "data.limit": "3000", "model.latent_dim": "4"})
    result = evaluate_run(run, k=2, naive_k=2, write=False)
    html = build_report(load_run_info(run), seed=0)
    active = re.search(r"<td>active units \(Var_x E\[z_j\|x\] &gt; 0.01\)</td><td class=\"num\">([^<]+)</td>", html)
    probe = re.search(r"<td>linear probe accuracy on posterior means[^<]*</td><td class=\"num\">([^<]+)</td>", html)
    assert active is not None and probe is not None
    assert result["n_examples"] == 3000 and result["probe_accuracy"] is not None
    assert int(active.group(1)) == result["active_units"]
    assert float(probe.group(1)) == pytest.approx(result["probe_accuracy"], abs=5e-5)
    kl_note = re.search(r"; (\d+) of 4 units active", html)
    assert kl_note is not None and int(kl_note.group(1)) == result["active_units"]

# ------------------------------------------------------------------------ collapse warning
@pytest.mark.parametrize(("active", "d", "warns"), [(1, 8, True), (2, 8, False), (12, 50, True), (13, 50, False)])
def test_the_collapse_rule_counts_a_quarter(active, d, warns):
    assert (probes.collapse_warning(active, d) is not None) == warns


def test_frey_face_with_a_learned_variance_collapses_and_train_says_so(tmp_path):
    """Real Frey Face, d = 8, 100 epochs, learned-variance Gaussian. At the defaults (uniform dequantisation
    of the 8-bit pixels since issue #8) the code is used; without dequantisation the decoder's variances
    shrink onto the integer grey levels, one unit of eight is used, and `vaekit train` says so with a hint
    that fits the likelihood."""
    common = ("--data.name", "frey-faces", "--data.dir", str(DATA_DIR), "--data.download", "false",
              "--model.likelihood", "gaussian-learned", "--train.device", "cpu", "--no-progress", "--no-artifacts",
              "--no-report")
    proc = run_vaekit("train", "--name", "frey-default", *common, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "posterior collapse" not in proc.stderr
    model, _, _, data = api.load_run(tmp_path / "runs" / "frey-default")
    assert probes.split_stats(model, data, "val", probe=False).n_active >= 2
    proc = run_vaekit("train", "--name", "frey", "--data.dequantize", "none", *common, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    warning = [line for line in proc.stderr.splitlines() if line.startswith("vaekit: warning: posterior collapse")]
    assert len(warning) == 1, proc.stderr
    assert "1 of 8 latent units are active" in warning[0]
    assert "learned-variance" in warning[0] and "--model.likelihood gaussian" in warning[0]
    assert "--data.dequantize uniform" in warning[0]
    run = tmp_path / "runs" / "frey"
    model, config, _, data = api.load_run(run)
    summary = probes.split_stats(model, data, "val", probe=False)
    assert summary.n_active == 1 and summary.latent_dim == 8
    assert summary.warning(config.model.likelihood, data.info["prep"]) == api.collapse_warning(run, data)
    assert math.isfinite(float(summary.variances.max()))


def test_the_collapse_rule_counts_only_units_the_data_can_use_and_hints_what_the_run_lacks():
    """A table of 4 features cannot keep 8 units busy: 1 active unit of 8 is a quarter of min(8, 4). The
    learned-variance hint names dequantisation only for integer data of known range that were not
    dequantised, and standardisation only for a run that did not standardise."""
    assert probes.collapse_warning(1, 8, "gaussian-learned", data_dim=4) is None
    assert probes.collapse_warning(0, 8, "gaussian-learned", data_dim=4) is not None
    assert probes.collapse_warning(1, 8, "gaussian-learned", data_dim=784) is not None
    table = probes.collapse_warning(0, 8, "gaussian-learned", {"scale": "standardize", "dequantize": "none",
                                                                "value_range": None}, data_dim=4)
    assert "dequantis" not in table and "--data.scale standardize" not in table
    assert "--train.warmup_steps" in table and "--model.likelihood gaussian" in table
    pixels = probes.collapse_warning(1, 8, "gaussian-learned", {"scale": "unit", "dequantize": "none",
                                                                 "value_range": [0, 255]}, data_dim=560)
    assert "--data.dequantize uniform" in pixels and "--data.scale standardize" in pixels


# ------------------------------------------------------------------------------- the docs
def test_every_documented_row_names_a_test_here():
    doc = (Path(__file__).parents[1] / "docs" / "bad-inputs.md").read_text(encoding="utf-8")
    section = doc.split("## Inputs and the Python API (issue #8)", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    named = [re.findall(r"`(test_\w+)`", row) for row in rows]
    assert len(rows) >= 15 and all(len(n) == 1 for n in named)
    assert [n[0] for n in named if n[0] not in globals()] == []
