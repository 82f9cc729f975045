"""Every CLI sub-command in a real subprocess on tiny settings."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_vaekit
from PIL import Image

TINY = ["--train.epochs", "2", "--model.hidden", "32", "--model.latent_dim", "2", "--data.limit", "400",
        "--eval.k", "50", "--no-progress"]


def vaekit(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run_vaekit(*args, cwd=cwd, check=check)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("cli")
    proc = vaekit("train", "--name", "tiny", *TINY, cwd=cwd)
    assert "wrote runs/tiny/checkpoints" in proc.stdout
    return cwd / "runs" / "tiny"


def test_train_leaves_checkpoint_metrics_config_and_grids(run):
    assert (run / "checkpoints" / "best").is_file() and (run / "checkpoints" / "last").is_file()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert "latent_dim = 2" in (run / "config.toml").read_text()
    assert 'binarize = "dynamic"' in (run / "config.toml").read_text()  # 'auto' is recorded resolved
    for name in ("samples.png", "reconstructions.png"):
        with Image.open(run / name) as image:
            assert image.format == "PNG" and image.size[0] > 64


def test_eval_json_has_the_stable_keys(run):
    proc = vaekit("eval", str(run), "--json", "--k", "50", cwd=run.parent.parent)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("elbo_nats", "log_likelihood_nats", "k", "recon_nats", "kl_nats", "bits_per_dim", "n_examples"):
        assert key in result, key
    assert result["k"] == 50 and result["n_examples"] > 0
    assert result["log_likelihood_nats"] >= result["elbo_nats"] - 1.0  # IS estimate is (near) above the ELBO
    # float32 terms: at 43 nats one float32 step is 3.8e-6, so the sum and its parts agree to a few steps
    assert result["elbo_nats"] == pytest.approx(result["recon_nats"] - result["kl_nats"], abs=1e-5)
    assert json.loads((run / "eval.json").read_text())["k"] == 50


@pytest.mark.parametrize("suffix", [".png", ".npy"])
def test_sample_writes_grid_or_array(run, suffix):
    out = run.parent / f"samples{suffix}"
    proc = vaekit("sample", str(run), "-n", "9", "--out", str(out), cwd=run.parent)
    assert f"wrote {out}" in proc.stdout
    if suffix == ".npy":
        arr = np.load(out)
        assert arr.shape == (9, 8, 8) and arr.min() >= 0 and arr.max() <= 1
    else:
        with Image.open(out) as image:
            assert image.format == "PNG" and image.size[0] >= 3 * 8


def test_reconstruct_and_encode(run, tmp_path):
    vaekit("reconstruct", str(run), "--out", str(tmp_path / "r.npy"), "-n", "5", cwd=tmp_path)
    pair = np.load(tmp_path / "r.npy")
    assert pair.shape == (2, 5, 8, 8)
    vaekit("reconstruct", str(run), "--out", str(tmp_path / "r.png"), cwd=tmp_path)
    with Image.open(tmp_path / "r.png") as image:
        assert image.format == "PNG"
    x = (np.random.default_rng(0).random((7, 64)) > 0.5).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    proc = vaekit("encode", str(run), "--input", str(tmp_path / "x.npy"), "--out", str(tmp_path / "z.npy"),
                  cwd=tmp_path)
    assert "wrote" in proc.stdout and np.load(tmp_path / "z.npy").shape == (7, 2)
    vaekit("encode", str(run), "--split", "train", "--out", str(tmp_path / "zt.npy"), cwd=tmp_path)
    assert np.load(tmp_path / "zt.npy").shape[1] == 2


def test_bad_config_key_is_one_line_and_exit_2(tmp_path):
    proc = vaekit("train", "--train.lrr", "1", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown config key 'train.lrr'" in lines[0] and "--train.lr" in lines[0]
    assert not (tmp_path / "runs").exists()


def test_existing_run_is_never_overwritten(run):
    before = (run / "config.toml").read_bytes()
    proc = vaekit("train", "--name", "tiny", *TINY, cwd=run.parent.parent, check=False)
    assert proc.returncode == 2 and "already exists" in proc.stderr
    assert (run / "config.toml").read_bytes() == before


def test_help_and_module_entry_point(tmp_path):
    proc = vaekit("--help", cwd=tmp_path)
    for command in ("train", "eval", "sample", "reconstruct", "encode"):
        assert command in proc.stdout
    assert "--train.lr" in vaekit("train", "--help", cwd=tmp_path).stdout


def test_the_command_freezes_its_imports_and_the_library_does_not(tmp_path):
    """The command line imports torch with the garbage collector off and freezes what the imports made (no later
    collection rescans them); the collector is on again afterwards. Importing the library changes neither."""
    import sys

    code = ("import gc, sys, vaekit.cli as c; rc = c.main(['sample', sys.argv[1], '--out', 'x.png']); "
            "print(rc, gc.isenabled(), gc.get_freeze_count())")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "no-such-run")], capture_output=True,
                         text=True, check=True).stdout.split()
    assert out[:2] == ["2", "True"]  # the missing run's one-line error, after the imports
    assert int(out[2]) > 100_000  # torch's module state, frozen
    code = "import gc, vaekit.api; print(gc.isenabled(), gc.get_freeze_count())"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.split() == ["True", "0"]
