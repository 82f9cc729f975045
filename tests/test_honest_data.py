"""Issue #8, the data layer and the units: the right data, prepared as in training, in the right units.

Items: 1 (paths + fingerprints), 2 (named-dataset checksums), 3 (eval overrides, compare), 4 (units of
``unit`` scaling, v1 upgrade), 5 (bits/dim), 6 (defaults per data kind), 18 (mirror fallback), and the
data "smaller" items (flags that do not apply, channels-last arrays, colour among grey images).
Real files, real datasets, real subprocesses for the CLI; no mocks of vaekit's own code.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_vaekit
from http_helpers import FileHandler, serve
from PIL import Image
from scipy import stats

from vaekit import checkpoint as ckpt
from vaekit.config import Config, DataConfig, ModelConfig, TrainConfig
from vaekit.data import load_data
from vaekit.data import named as named_mod
from vaekit.errors import VaekitError
from vaekit.evaluate import evaluate_run, log_likelihood
from vaekit.model import VAE
from vaekit.train import fit

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FAST = {"k": 50, "naive_k": 20}
TINY = ["--model.hidden", "16", "--model.latent_dim", "2", "--train.epochs", "1", "--no-progress", "--no-report",
        "--no-artifacts"]


def _cfg(name: str, data: DataConfig, epochs: int = 1, hidden: tuple[int, ...] = (16,), latent: int = 2,
         lr: float = 1e-3, batch_size: int = 64, **model: object) -> Config:
    return Config(name=name, data=data, model=ModelConfig(latent_dim=latent, hidden=hidden, **model),  # type: ignore[arg-type]
                  train=TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, device="cpu"))


def _one_line(err: pytest.ExceptionInfo[VaekitError]) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


# ------------------------------------------------------------------------ item 1: paths and fingerprints

def test_eval_from_another_folder_uses_the_runs_own_file_and_refuses_changed_or_missing_data(tmp_path: Path):
    train_dir, other_dir = tmp_path / "x", tmp_path / "y"
    train_dir.mkdir()
    other_dir.mkdir()
    rng = np.random.default_rng(0)
    np.save(train_dir / "d.npy", rng.normal(3.0, 2.0, (200, 5)).astype(np.float32))
    np.save(other_dir / "d.npy", rng.normal(-50.0, 9.0, (200, 5)).astype(np.float32))  # same name, other data
    run_vaekit("train", "--name", "r", "--data.path", "d.npy", *TINY, cwd=train_dir, check=True)
    run = train_dir / "runs" / "r"
    saved = (run / "config.toml").read_text()
    assert f'path = "{train_dir / "d.npy"}"' in saved  # resolved, absolute
    here = run_vaekit("eval", str(run), "--k", "20", "--naive-k", "5", "--json", cwd=train_dir, check=True)
    there = run_vaekit("eval", str(run), "--k", "20", "--naive-k", "5", "--json", cwd=other_dir, check=True)
    a, b = json.loads(here.stdout), json.loads(there.stdout)
    assert b["data"] == str(train_dir / "d.npy") and b["log_likelihood_nats"] == a["log_likelihood_nats"]
    assert b["data_fingerprint"]["kind"] == "sha256"
    good = (run / "eval.json").read_bytes()
    # the original file changes: refused, one line naming it, eval.json untouched
    np.save(train_dir / "d.npy", rng.normal(3.0, 2.0, (200, 5)).astype(np.float32))
    p = run_vaekit("eval", str(run), "--k", "20", cwd=other_dir)
    assert p.returncode == 2 and p.stderr.count("\n") == 1
    assert f"{train_dir / 'd.npy'}" in p.stderr and "differs from the data the run was trained on" in p.stderr
    assert (run / "eval.json").read_bytes() == good
    (train_dir / "d.npy").unlink()
    p = run_vaekit("eval", str(run), "--k", "20", cwd=other_dir)
    assert p.returncode == 2 and "no longer exist" in p.stderr and str(train_dir / "d.npy") in p.stderr
    assert (run / "eval.json").read_bytes() == good
    # another file of the same kind, asked for explicitly, is evaluated with the run's preprocessing
    p = run_vaekit("eval", str(run), "--k", "20", "--naive-k", "5", "--json", "--data.path",
                   str(other_dir / "d.npy"), cwd=other_dir, check=True)
    assert json.loads(p.stdout)["data"] == str(other_dir / "d.npy")


def test_folder_fingerprint_sees_a_changed_image(tmp_path: Path):
    from vaekit.data.fingerprint import check_fingerprint, fingerprint

    f = tmp_path / "imgs"
    f.mkdir()
    for i in range(3):
        Image.fromarray(np.full((6, 6), 40 * i, np.uint8)).save(f / f"{i}.png")
    before = fingerprint(f)
    assert before["kind"] == "folder-sha256"
    check_fingerprint(f, before)
    Image.fromarray(np.full((6, 6), 200, np.uint8)).save(f / "1.png")
    with pytest.raises(VaekitError, match="content of .*imgs differs") as e:
        check_fingerprint(f, before)
    _one_line(e)


# ------------------------------------------------------------------------ item 2: named datasets verified

@pytest.mark.skipif(not (SHARED / "fashion-mnist").is_dir(), reason="shared data not found")
def test_fashion_mnist_files_in_an_mnist_folder_are_refused_unless_verify_false(tmp_path: Path):
    wrong = tmp_path / "mnist"
    wrong.mkdir()
    for p in (SHARED / "fashion-mnist").iterdir():
        shutil.copy(p, wrong / p.name)
    with pytest.raises(VaekitError, match=r"does not match the published checksum.*data.verify false") as e:
        load_data(DataConfig(name="mnist", dir=str(tmp_path), download=False, limit=50), "bernoulli")
    assert str(wrong) in _one_line(e)
    b = load_data(DataConfig(name="mnist", dir=str(tmp_path), download=False, limit=50, verify=False), "bernoulli")
    assert b.info["verify"] is False and len(b.info["mismatched"]) == 4
    assert any("do not match the published checksums" in w for w in b.info["warnings"])
    p = run_vaekit("train", "--name", "m", "--data.name", "mnist", "--data.dir", str(tmp_path),
                   "--data.download", "false", "--data.limit", "50", *TINY, cwd=tmp_path)
    assert p.returncode == 2 and "does not match the published checksum" in p.stderr
    assert not (tmp_path / "runs" / "m").exists()


# ------------------------------------------------------------------------ item 3: eval overrides, compare

@pytest.fixture(scope="module")
def digit_runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("honest")
    out = {"bern": fit(_cfg("bern", DataConfig(name="digits")), root)[0],
           "gauss": fit(_cfg("gauss", DataConfig(name="digits"), likelihood="gaussian-learned"), root)[0]}
    return out


@pytest.mark.parametrize(("key", "value"), [("data.scale", "none"), ("data.binarize", "threshold"),
                                            ("data.threshold", "0.3"), ("data.dequantize", "uniform")])
def test_eval_refuses_overrides_that_change_the_preprocessing(digit_runs, key: str, value: str):
    run = digit_runs["bern"]
    before = sorted(p.name for p in run.iterdir())
    with pytest.raises(VaekitError, match=rf"{key} cannot be changed for a trained run: it was trained with "
                                          rf"{key} = ") as e:
        evaluate_run(run, **FAST, overrides={key: value})
    _one_line(e)
    assert sorted(p.name for p in run.iterdir()) == before  # nothing written
    # another draw of the same binarisation is allowed and changes the numbers
    a = evaluate_run(run, **FAST, write=False)
    b = evaluate_run(run, **FAST, write=False, overrides={"data.binarize_seed": "5"})
    assert a["elbo_nats"] != b["elbo_nats"]


def test_other_data_in_other_units_are_evaluated_with_a_warning(digit_runs, tmp_path: Path):
    x = np.random.default_rng(6).integers(0, 256, (60, 8, 8)).astype(np.float32)  # 0..255, run saw 0..16
    np.save(tmp_path / "big.npy", x)
    r = evaluate_run(digit_runs["gauss"], **FAST, write=False, overrides={"data.path": str(tmp_path / "big.npy")})
    assert any("far outside the range [0, 17] the model was trained on" in w for w in r["warnings"])


def test_cli_eval_scale_override_is_refused(digit_runs):
    p = run_vaekit("eval", str(digit_runs["gauss"]), "--k", "10", "--data.scale", "none")
    assert p.returncode == 2 and "data.scale cannot be changed" in p.stderr and "'unit'" in p.stderr


def test_compare_refuses_runs_with_different_likelihood_or_preprocessing(digit_runs, tmp_path: Path):
    from vaekit.report import write_comparison

    with pytest.raises(VaekitError, match=r"differ in model.likelihood \('bernoulli' vs 'gaussian-learned'\)"):
        write_comparison([digit_runs["bern"], digit_runs["gauss"]], out=tmp_path / "c.html", k=5)
    assert not (tmp_path / "c.html").exists()


# ------------------------------------------------------------------------ item 4: units of `unit` scaling

def test_unit_and_standardize_give_log_p_in_the_same_units(tmp_path: Path):
    """Same digits, same Gaussian model: the scaling is the model's business, log p(x) is in the file's units.
    Before: -66 nats under unit and -167 under standardize (D log 16 = 177 nats of that was units)."""
    ll = {}
    for scale in ("unit", "standardize"):
        cfg = _cfg(scale, DataConfig(name="digits", scale=scale), epochs=40, hidden=(64,), latent=8, lr=5e-3,
                   batch_size=128, likelihood="gaussian-learned")
        run, _ = fit(cfg, tmp_path)
        ll[scale] = evaluate_run(run, k=100, naive_k=5, write=False)["log_likelihood_nats"]
    assert abs(ll["unit"] - ll["standardize"]) < 20.0, ll  # here about 6 nats; before the fix 214
    assert 64 * math.log(16) > 170  # the gap that units alone used to make


def _v1_checkpoint(root: Path, scale: str, likelihood: str, affine: list[float],
                   sigma: float = 0.1) -> tuple[Path, VAE]:
    """A checkpoint as format 1 wrote it: no model loc/scale for `unit`, affine in meta, no prep record."""
    torch.manual_seed(0)
    cfg = _cfg("v1", DataConfig(name="digits", scale=scale, binarize="none"), likelihood=likelihood, sigma=sigma)
    old = VAE(cfg.model, (8, 8))
    path = ckpt.save_checkpoint(root / "step-000000001", old, cfg,
                                {"event_shape": [8, 8], "standardised": False,
                                 "data": {"scale": scale, "affine": affine, "binarize": "none", "binary": False}})
    meta = json.loads((path / ckpt.META_FILE).read_text())
    meta["format_version"] = 1
    for key in ("dequantize", "verify"):
        meta["config"]["data"].pop(key, None)
    (path / ckpt.META_FILE).write_text(json.dumps(meta))
    return path, old


def test_v1_unit_gaussian_checkpoint_is_read_with_its_jacobian(tmp_path: Path, float64):
    a, b = 1 / 16, 0.0
    path, old = _v1_checkpoint(tmp_path, "unit", "gaussian-learned", [a, b])
    model, config, meta = ckpt.load_model(path)
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 17, (7, 8, 8))).double()
    eps = torch.randn(30, 7, 2, generator=torch.Generator().manual_seed(1))
    new_ll = log_likelihood(model.double(), x, k=30, eps=eps)
    old_ll = log_likelihood(old.double(), a * x + b, k=30, eps=eps)  # what format 1 reported (served units)
    torch.testing.assert_close(new_ll, old_ll + 64 * math.log(a))  # + log |d(served)/dx| per pixel
    torch.testing.assert_close(model.encode(x).mean, old.encode(a * x + b).mean)  # the encoder sees the same
    assert meta["upgraded_from"] == 1 and config.data.dequantize == "none"


def test_v1_standardize_fixed_sigma_stays_in_file_units(tmp_path: Path):
    path, _ = _v1_checkpoint(tmp_path, "standardize", "gaussian", [1.0, 0.0], sigma=0.25)
    state = ckpt.load_tensors(path / ckpt.MODEL_FILE)
    state["data_scale"] = torch.full((8, 8), 3.0)
    from safetensors.torch import save_file
    save_file(state, path / ckpt.MODEL_FILE)
    meta = json.loads((path / ckpt.META_FILE).read_text())
    (path / ckpt.META_FILE).write_text(json.dumps({**meta, "standardised": True}))
    model, _, _ = ckpt.load_model(path)
    assert torch.allclose(model.decode(torch.zeros(1, 2)).stddev, torch.full((1, 8, 8), 0.25))


def test_fixed_sigma_is_in_scaled_units_for_new_runs():
    loc, scale = torch.zeros(4), torch.full((4,), 16.0)
    model = VAE(ModelConfig(latent_dim=2, hidden=(8,), likelihood="gaussian", sigma=0.1), (4,), loc, scale)
    assert torch.allclose(model.decode(torch.zeros(1, 2)).stddev, torch.full((1, 4), 1.6))


def test_gaussian_image_grids_show_file_units(digit_runs, tmp_path: Path):
    from vaekit import api

    out = api.sample(digit_runs["gauss"], 16, tmp_path / "s.png")
    img = np.asarray(Image.open(out).convert("L"), dtype=np.float64)
    # digits are 0..16: mapped with the run's range, a grid is neither all white nor all black
    assert 20 < img.mean() < 235


# ------------------------------------------------------------------------ item 5: bits/dim

def test_bits_per_dim_has_a_stated_convention_or_is_null(digit_runs, tmp_path: Path):
    g = evaluate_run(digit_runs["gauss"], **FAST, write=False)  # digits 0..16, Gaussian: dequantised
    assert g["bits_per_dim"] > 0 and "uniform dequantisation" in g["bits_per_dim_convention"]
    assert g["bits_per_dim"] == pytest.approx(-g["log_likelihood_nats"] / (64 * math.log(2)))
    b = evaluate_run(digit_runs["bern"], **FAST, write=False)
    assert b["bits_per_dim"] > 0 and b["bits_per_dim_convention"].startswith("discrete")
    np.save(tmp_path / "real.npy", np.random.default_rng(1).normal(0, 0.01, (150, 3)).astype(np.float32))
    run, _ = fit(_cfg("real", DataConfig(path=str(tmp_path / "real.npy"))), tmp_path / "runs")
    r = evaluate_run(run, **FAST, write=False)
    assert r["log_likelihood_nats"] > 0  # a density of tiny values: positive log p, so -log p / D log 2 < 0
    assert r["bits_per_dim"] is None and "continuous" in r["bits_per_dim_note"]


def test_uniform_dequantisation_noise_fresh_for_training_fixed_for_evaluation():
    b = load_data(DataConfig(name="digits"), "gaussian")
    assert b.info["dequantize"] == "uniform"
    idx = torch.arange(20)
    t1, t2 = b.train.batch(idx), b.train.batch(idx)
    assert not torch.equal(t1, t2) and torch.equal(t1.floor(), t2.floor())  # fresh U(0, 1) in width-1 bins
    assert torch.equal(b.test.all(), b.test.all())
    frac = b.test.all() - b.test.all().floor()
    assert 0.4 < float(frac.mean()) < 0.6


# ------------------------------------------------------------------------ item 6: defaults per data kind

def _iris_csv(path: Path) -> Path:
    from sklearn.datasets import load_iris

    iris = load_iris()
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sepal_length", "sepal_width", "petal_length", "petal_width", "species"])
        for row, label in zip(iris.data, iris.target, strict=True):
            w.writerow([*row, iris.target_names[label]])
    return path


def test_real_valued_table_defaults_to_a_learned_gaussian_with_sane_log_p(tmp_path: Path):
    csv_path = _iris_csv(tmp_path / "iris.csv")
    p = run_vaekit("train", "--name", "iris", "--data.path", str(csv_path), "--data.label_column", "species",
                   "--model.hidden", "32", "--model.latent_dim", "2", "--train.epochs", "30", "--train.batch_size",
                   "8", "--train.lr", "3e-3", "--no-progress", "--no-report", "--no-artifacts", cwd=tmp_path,
                   check=True)
    assert "vaekit: note: model.likelihood auto -> gaussian-learned" in p.stdout
    run = tmp_path / "runs" / "iris"
    saved = (run / "config.toml").read_text()
    assert 'likelihood = "gaussian-learned"' in saved and 'scale = "standardize"' in saved
    meta = ckpt.read_meta(ckpt.resolve_checkpoint(run))
    assert "real-valued data" in meta["data"]["prep"]["reasons"]["likelihood"]
    assert meta["data"]["input_binary"] is False
    result = evaluate_run(run, k=500, naive_k=10, write=False)
    # reference: a full-covariance Gaussian fitted to the same training rows, scored on the same test rows
    from vaekit.api import load_run

    _, _, _, data = load_run(run)
    train, test = data.train.all().double().numpy(), data.test.all().double().numpy()
    ref = stats.multivariate_normal(train.mean(0), np.cov(train.T, bias=True)).logpdf(test).mean()
    assert abs(result["log_likelihood_nats"] - ref) < 10.0, (result["log_likelihood_nats"], ref)


def test_explicit_bernoulli_on_real_values_binarises_but_warns(tmp_path: Path):
    csv_path = _iris_csv(tmp_path / "iris.csv")
    b = load_data(DataConfig(path=str(csv_path), label_column="species"), "bernoulli")
    assert b.info["binarize"] == "dynamic"
    assert any("say --data.binarize dynamic to make it explicit" in w for w in b.info["warnings"])
    quiet = load_data(DataConfig(path=str(csv_path), label_column="species", binarize="dynamic"), "bernoulli")
    assert quiet.info["warnings"] == []


def test_defaults_for_binary_and_image_data(tmp_path: Path):
    d = load_data(DataConfig(name="digits"))
    assert d.info["likelihood"] == "bernoulli" and d.info["binarize"] == "dynamic"  # the digits demo unchanged
    np.save(tmp_path / "b.npy", (np.random.default_rng(2).random((60, 9)) > 0.5).astype(np.float32))
    b = load_data(DataConfig(path=str(tmp_path / "b.npy")))
    assert b.info["likelihood"] == "bernoulli" and b.info["binarize"] == "none" and b.info["input_range"] == [0, 1]


def test_meta_records_input_range_and_binary_for_input_checks(digit_runs):
    g = ckpt.read_meta(ckpt.resolve_checkpoint(digit_runs["gauss"]))["data"]
    assert g["input_range"] == [0.0, 17.0] and g["input_binary"] is False  # dequantised 0..16 -> [0, 17)
    b = ckpt.read_meta(ckpt.resolve_checkpoint(digit_runs["bern"]))["data"]
    assert b["input_range"] == [0.0, 1.0] and b["input_binary"] is True


# ------------------------------------------------------------------------ item 18: mirrors

@pytest.fixture
def mirrors() -> Iterator[list[tuple[str, type[FileHandler]]]]:
    with serve() as a, serve() as b, serve() as c:
        yield [a, b, c]


@pytest.mark.skipif(not (SHARED / "frey-face" / "frey_rawface.mat").is_file(), reason="shared data not found")
def test_http_error_and_content_mismatch_fall_through_to_the_next_mirror(mirrors, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch):
    import scipy.io

    (u404, h404), (ubad, hbad), (ugood, hgood) = mirrors
    h404.status = 404
    wrong = tmp_path / "wrong.mat"
    scipy.io.savemat(wrong, {"ff": np.full((560, 1965), 7, np.uint8)})
    hbad.files["frey_rawface.mat"] = wrong.read_bytes()
    hgood.files["frey_rawface.mat"] = (SHARED / "frey-face" / "frey_rawface.mat").read_bytes()
    monkeypatch.delenv("VAEKIT_MIRROR", raising=False)
    monkeypatch.delenv("VAEKIT_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(named_mod, "MIRRORS", {"frey-faces": [u404, ubad, ugood]})
    b = load_data(DataConfig(name="frey-faces", dir=str(tmp_path / "data")), "gaussian")
    assert b.event_shape == (28, 20) and len(b.train) == 1573
    assert sorted(p.name for p in (tmp_path / "data" / "frey-face").iterdir()) == ["frey_rawface.mat"]
    monkeypatch.setattr(named_mod, "MIRRORS", {"frey-faces": [u404, ubad]})
    with pytest.raises(VaekitError, match=r"from any mirror \(.*HTTP 404.*content checksum mismatch") as e:
        load_data(DataConfig(name="frey-faces", dir=str(tmp_path / "other")), "gaussian")
    assert "offline" not in _one_line(e)


# ------------------------------------------------------------------------ smaller items

def test_flags_that_do_not_apply_are_refused(tmp_path: Path):
    np.save(tmp_path / "x.npy", np.random.default_rng(3).random((40, 4)).astype(np.float32))
    (tmp_path / "t.csv").write_text("a,b\n1,2\n3,4\n5,6\n")
    cases = [(DataConfig(path=str(tmp_path / "x.npy"), label_column="y"), "gaussian", "data.label_column 'y' applies"),
             (DataConfig(path=str(tmp_path / "x.npy"), image_size=(8, 8)), "gaussian", "data.image_size applies"),
             (DataConfig(path=str(tmp_path / "t.csv"), grayscale=True), "gaussian", "data.grayscale applies"),
             (DataConfig(name="digits", label_column="y"), "bernoulli", "data.label_column applies to user files"),
             (DataConfig(path=str(tmp_path / "x.npy"), binarize="dynamic"), "gaussian-learned",
              "data.binarize dynamic applies to a Bernoulli likelihood")]
    for cfg, lik, pattern in cases:
        with pytest.raises(VaekitError, match=pattern) as e:
            load_data(cfg, lik)
        _one_line(e)
    with pytest.raises(VaekitError, match="needs integer-valued data") as e:
        load_data(DataConfig(path=str(tmp_path / "x.npy"), dequantize="uniform"), "gaussian")
    _one_line(e)


def test_channels_last_image_arrays_are_read_channels_first(tmp_path: Path):
    x = np.random.default_rng(4).integers(0, 256, (30, 16, 12, 3), dtype=np.uint8)
    np.save(tmp_path / "rgb.npy", x)
    b = load_data(DataConfig(path=str(tmp_path / "rgb.npy"), val_fraction=0.0, test_fraction=0.0), "gaussian")
    assert b.event_shape == (3, 16, 12)
    assert any("channels-last" in n for n in b.info["notes"])
    assert torch.equal(torch.sort(b.train.x.flatten())[0],
                       torch.sort(torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32)).flatten())[0])
    np.save(tmp_path / "grey.npy", x[..., :1])
    assert load_data(DataConfig(path=str(tmp_path / "grey.npy")), "gaussian").event_shape == (16, 12)


def test_a_few_colour_images_among_grey_ones_are_named(tmp_path: Path):
    rng = np.random.default_rng(5)
    f = tmp_path / "f"
    f.mkdir()
    for i in range(12):
        g = rng.integers(0, 256, (8, 8), dtype=np.uint8)
        Image.fromarray(np.stack([g, g, g], -1) if i % 2 else g).save(f / f"{i:02d}.png")  # RGB files, R = G = B
    grey = load_data(DataConfig(path=str(f)), "gaussian")
    assert grey.event_shape == (8, 8) and not any("colour" in n for n in grey.info["notes"])
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(f / "zz.png")
    mixed = load_data(DataConfig(path=str(f)), "gaussian")
    assert mixed.event_shape == (3, 8, 8)
    note = next(n for n in mixed.info["notes"] if "colour" in n)
    assert "1 of 13 images are in colour (zz.png)" in note and "data.grayscale true" in note


def test_a_format_1_gaussian_run_is_not_resumed_with_other_units(tmp_path: Path):
    from vaekit.train import resume

    run, _ = fit(_cfg("g", DataConfig(name="digits"), likelihood="gaussian-learned"), tmp_path)
    last = ckpt.read_pointer(run / "checkpoints", "last")
    meta = json.loads((last / ckpt.META_FILE).read_text())
    meta["format_version"] = 1
    del meta["data"]["prep"]
    (last / ckpt.META_FILE).write_text(json.dumps(meta))
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    with pytest.raises(VaekitError, match="format-1 Gaussian run") as e:
        resume(run)
    _one_line(e)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before
