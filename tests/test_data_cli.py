"""End-to-end: `python -m vaekit train` on real MNIST / user files in a subprocess (cwd = tmp_path)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("VAEKIT_DATA", None)
    return subprocess.run([sys.executable, "-m", "vaekit", "train", "--no-progress", "--no-artifacts", "--no-report",
                           "--model.hidden", "32", *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)


def _saved_data_info(run_dir: Path) -> dict:
    """The bundle.info the trainer saved with the run's checkpoint."""
    metas = sorted(run_dir.glob("checkpoints/step-*/meta.json"))
    assert metas, f"no checkpoint meta.json under {run_dir}"
    return json.loads(metas[-1].read_text())["data"]


@pytest.mark.skipif(not (SHARED / "mnist").is_dir(), reason=f"shared benchmark data not found at {SHARED}")
def test_train_one_epoch_on_mnist_limit(tmp_path: Path) -> None:
    p = run(tmp_path, "--name", "m", "--data.name", "mnist", "--data.dir", str(SHARED), "--data.limit", "500",
            "--data.download", "false", "--train.epochs", "1", "--model.latent_dim", "2")
    assert p.returncode == 0, p.stderr[-2000:]
    data = _saved_data_info(tmp_path / "runs" / "m")
    assert data["name"] == "mnist" and data["binarize"] == "dynamic"
    assert (data["n_train"], data["n_val"], data["n_test"]) == (500, 500, 500)
    assert all(f["sha256_matches_published"] for f in data["files"].values())


def test_missing_named_files_exit_2_with_one_line(tmp_path: Path) -> None:
    p = run(tmp_path, "--name", "x", "--data.name", "mnist", "--data.dir", str(tmp_path / "none"),
            "--data.download", "false", "--train.epochs", "1")
    assert p.returncode == 2
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and "train-images-idx3-ubyte.gz" in err[0] and "--data.download true" in err[0]


def test_train_on_user_npz_with_standardize(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.normal(3, 2, (300, 6)).astype(np.float32), y=np.arange(300) % 3)
    p = run(tmp_path, "--name", "u", "--data.path", str(tmp_path / "d.npz"), "--data.scale", "standardize",
            "--model.likelihood", "gaussian", "--train.epochs", "1", "--model.latent_dim", "2")
    assert p.returncode == 0, p.stderr[-2000:]
    data = _saved_data_info(tmp_path / "runs" / "u")
    assert data["scale"] == "standardize" and data["binarize"] == "none"
    assert data["path"] == str(tmp_path / "d.npz") and data["y_key"] == "y"
