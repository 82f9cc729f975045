"""Issue #16, "your own splits": train on one file, evaluate on another, exactly.

1. explicit split files (data.val_path / data.test_path), each used whole, recorded with fingerprints;
2. ``vaekit eval RUN --data.path FILE --data.split all`` scores every row of FILE;
3. MLP models accept data whose examples hold as many values in another shape (28x28 vs 784), and say so;
4. the saved config names no default dataset beside a path;
5. ``train.checkpoint_every_epochs``: fewer checkpoints, ``best``/``last`` exact, exact resume.

Real files, real datasets, real subprocesses for the CLI (tests/cli_helpers.run_vaekit); no mocks.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_vaekit
from PIL import Image
from safetensors.torch import load_file

from vaekit import checkpoint as ckpt
from vaekit.config import load_config
from vaekit.errors import VaekitError, VaekitWarning

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TINY = ["--model.hidden", "16", "--model.latent_dim", "2", "--train.epochs", "1", "--no-progress", "--no-report",
        "--no-artifacts", "--train.device", "cpu", "--train.batch_size", "32"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _binary(rng: np.random.Generator, n: int, shape: tuple[int, ...] = (784,)) -> np.ndarray:
    return (rng.random((n, *shape)) < 0.3).astype(np.float32)


def _meta(run: Path, which: str = "last") -> dict:
    return ckpt.read_meta(ckpt.read_pointer(run / "checkpoints", which))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _train(tmp: Path, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_vaekit("train", "--runs", str(tmp / "runs"), "--name", name, *TINY, *args, cwd=tmp, env=ENV)


# ------------------------------------------------------------------------------- 1. split files

def test_split_files_are_used_whole_and_recorded_with_fingerprints(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for name, n in (("train.npy", 200), ("val.npy", 37), ("test.npy", 53)):
        np.save(tmp_path / name, _binary(rng, n))
    done = _train(tmp_path, "all3", "--data.path", "train.npy", "--data.val_path", "val.npy",
                  "--data.test_path", "test.npy")
    assert done.returncode == 0, done.stderr
    data = _meta(tmp_path / "runs" / "all3")["data"]
    assert (data["n_train"], data["n_val"], data["n_test"]) == (200, 37, 53)
    for role, name in (("train", "train.npy"), ("val", "val.npy"), ("test", "test.npy")):
        rec = data["split_files"][role]
        assert rec["path"] == str(tmp_path / name)
        assert rec["fingerprint"]["sha256"] == _sha(tmp_path / name)
    cfg = load_config(tmp_path / "runs" / "all3" / "config.toml").data
    assert (cfg.path, cfg.val_path, cfg.test_path) == tuple(str(tmp_path / n) for n in ("train.npy", "val.npy",
                                                                                          "test.npy"))

    # each of the run's own files is checked when it is read again
    x = np.load(tmp_path / "val.npy")
    x[0, 0] = 1 - x[0, 0]
    np.save(tmp_path / "val.npy", x)
    done = run_vaekit("eval", str(tmp_path / "runs" / "all3"), "--k", "10", cwd=tmp_path, env=ENV)
    assert done.returncode == 2
    assert f"the content of {tmp_path / 'val.npy'} differs from the data the run was trained on" in done.stderr

    # naming the run's own training file again keeps its own val/test files (no test rows carved from train)
    x[0, 0] = 1 - x[0, 0]
    np.save(tmp_path / "val.npy", x)
    done = run_vaekit("eval", str(tmp_path / "runs" / "all3"), "--data.path", "train.npy", "--k", "10",
                      "--naive-k", "10", "--out", str(tmp_path / "own.json"), cwd=tmp_path, env=ENV)
    assert done.returncode == 0, done.stderr
    own = json.loads((tmp_path / "own.json").read_text())
    assert (own["n_examples"], own["data"]) == (53, str(tmp_path / "test.npy"))

    # a test file but no val file: val carved from the training file by val_fraction; test_fraction drops nothing
    done = _train(tmp_path, "test-only", "--data.path", "train.npy", "--data.test_path", "test.npy",
                  "--data.val_fraction", "0.1", "--data.test_fraction", "0.3")
    assert done.returncode == 0, done.stderr
    data = _meta(tmp_path / "runs" / "test-only")["data"]
    assert (data["n_train"], data["n_val"], data["n_test"]) == (180, 20, 53)


def test_preprocessing_is_decided_from_the_training_file_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    train = rng.normal(size=(120, 5)).astype(np.float32)
    np.save(tmp_path / "train.npy", train)
    np.save(tmp_path / "val.npy", 50 + rng.normal(size=(30, 5)).astype(np.float32))
    np.save(tmp_path / "test.npy", -50 + rng.normal(size=(30, 5)).astype(np.float32))
    done = _train(tmp_path, "g", "--data.path", "train.npy", "--data.val_path", "val.npy",
                  "--data.test_path", "test.npy")
    assert done.returncode == 0, done.stderr
    prep = _meta(tmp_path / "runs" / "g")["data"]["prep"]
    assert prep["input_range"] == pytest.approx([float(train.min()), float(train.max())])


def test_csv_split_files_with_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    for name, n in (("train.csv", 60), ("val.csv", 11), ("test.csv", 13)):
        with open(tmp_path / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["a", "b", "c", "kind"])
            for i in range(n):
                w.writerow([*(f"{v:.4f}" for v in rng.normal(size=3)), ["cat", "dog"][i % 2]])
    done = _train(tmp_path, "csv", "--data.path", "train.csv", "--data.val_path", "val.csv",
                  "--data.test_path", "test.csv", "--data.label_column", "kind")
    assert done.returncode == 0, done.stderr
    data = _meta(tmp_path / "runs" / "csv")["data"]
    assert (data["n_train"], data["n_val"], data["n_test"]) == (60, 11, 13)
    assert data["columns"] == ["a", "b", "c"]


def test_image_folder_split_files_map_labels_to_the_training_classes(tmp_path: Path) -> None:
    from vaekit.config import Config, DataConfig
    from vaekit.data import load_data

    rng = np.random.default_rng(3)
    for split, classes, n in (("train", ("a", "b", "c"), 4), ("test", ("b", "c"), 3)):
        for c in classes:
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(tmp_path / split / c / f"{i}.png")
    data = load_data(DataConfig(path=str(tmp_path / "train"), test_path=str(tmp_path / "test"), val_fraction=0.25))
    assert (len(data.train), len(data.val), len(data.test)) == (9, 3, 6)
    assert sorted(data.test.y.tolist()) == [1, 1, 1, 2, 2, 2]  # b, c of the training folder's a, b, c
    done = _train(tmp_path, "img", "--data.path", "train", "--data.test_path", "test", "--data.val_fraction", "0.25",
                  "--train.batch_size", "4")
    assert done.returncode == 0, done.stderr
    meta = _meta(tmp_path / "runs" / "img")["data"]
    assert (meta["n_train"], meta["n_val"], meta["n_test"]) == (9, 3, 6)
    assert meta["split_files"]["test"]["fingerprint"]["kind"] == "folder-sha256"
    assert Config(data=DataConfig(path="x", test_path="y")).data.test_path == "y"
    (tmp_path / "test" / "d").mkdir()
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "test" / "d" / "0.png")
    with pytest.raises(VaekitError, match=r"\(test\) has classes d that the training file lacks"):
        load_data(DataConfig(path=str(tmp_path / "train"), test_path=str(tmp_path / "test")))


def test_split_files_of_another_shape_or_kind_are_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    np.save(tmp_path / "train.npy", _binary(rng, 50))
    np.save(tmp_path / "val10.npy", _binary(rng, 20, (10,)))
    np.savez(tmp_path / "test.npz", x=_binary(rng, 20))
    np.save(tmp_path / "val_float.npy", rng.random((20, 784)).astype(np.float32))
    np.save(tmp_path / "val64.npy", _binary(rng, 20).astype(np.float64))
    cases = [
        (["--data.val_path", "val10.npy"], ["data.val_path", "shape (10,)", "(784,)", "one shape"]),
        (["--data.test_path", "test.npz"], ["data.test_path", ".npz file", ".npy file", "one kind"]),
        (["--data.val_path", "val_float.npy"], ["training file is binary", "val/test files", "one kind"]),
        (["--data.split", "all"], ["data.split all", "vaekit eval", "--data.split random"]),
        (["--data.val_path", "val64.npy"], ["data.val_path", "float64", "float32", "one dtype"]),
        (["--data.val_path", "val64.npy", "--data.mmap", "true"],
         ["data.mmap reads one .npy file", "--data.mmap false"]),
        (["--data.split", "all", "--data.test_path", "test.npz"], ["split 'all' scores every row of data.path"]),
        (["--train.checkpoint_every_epochs", "0"], ["train.checkpoint_every_epochs", ">= 1"]),
    ]
    for extra, parts in cases:
        done = _train(tmp_path, "bad", "--data.path", "train.npy", *extra)
        assert done.returncode == 2, done.stderr
        line = done.stderr.strip().splitlines()[-1]
        assert line.startswith("vaekit: error: ")
        for part in parts:
            assert part in line, (part, line)
        assert not (tmp_path / "runs" / "bad").exists()
    done = run_vaekit("train", "--data.test_path", "test.npz", *TINY, cwd=tmp_path, env=ENV)
    assert done.returncode == 2 and "data.test_path" in done.stderr and "--data.path FILE" in done.stderr


# ------------------------------------------------------------------------ 2. eval on every row

def test_eval_split_all_scores_every_row_of_a_10000_row_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    np.save(tmp_path / "train.npy", _binary(rng, 300))
    np.save(tmp_path / "test.npy", _binary(rng, 10_000))
    np.save(tmp_path / "other.npy", _binary(rng, 77))
    assert _train(tmp_path, "r", "--data.path", "train.npy", "--data.limit", "200").returncode == 0
    run = tmp_path / "runs" / "r"
    done = run_vaekit("eval", str(run), "--data.path", "test.npy", "--data.split", "all", "--k", "10",
                      "--naive-k", "10", "--out", str(tmp_path / "all.json"), cwd=tmp_path, env=ENV)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "all.json").read_text())
    assert result["n_examples"] == 10_000
    assert result["data"] == str(tmp_path / "test.npy")
    assert result["data_fingerprint"]["sha256"] == _sha(tmp_path / "test.npy")
    assert (result["split"], result["data_split"]) == ("test", "all")
    assert np.isfinite(result["log_likelihood_nats"])

    # another test file for the run's own training file: its whole file is the test split
    done = run_vaekit("eval", str(run), "--data.test_path", "other.npy", "--k", "10", "--naive-k", "10",
                      "--out", str(tmp_path / "other.json"), cwd=tmp_path, env=ENV)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "other.json").read_text())
    assert (result["n_examples"], result["data"]) == (77, str(tmp_path / "other.npy"))
    assert result["data_fingerprint"]["sha256"] == _sha(tmp_path / "other.npy")


# --------------------------------------------------------------------------- 3. flat vs image shape

@pytest.mark.skipif(not (SHARED / "binarized-mnist").is_dir(), reason=f"shared data not found at {SHARED}")
def test_flat_model_scores_the_named_28x28_split_and_says_so(tmp_path: Path) -> None:
    from vaekit.data.named import read_binarized

    x = read_binarized(SHARED / "binarized-mnist" / "binarized_mnist_test.mat")
    np.save(tmp_path / "flat.npy", x.reshape(len(x), 784)[:400].astype(np.float32))
    assert _train(tmp_path, "flat", "--data.path", "flat.npy").returncode == 0
    run = tmp_path / "runs" / "flat"
    done = run_vaekit("eval", str(run), "--data.name", "binarized-mnist", "--data.dir", str(SHARED),
                      "--data.download", "false", "--data.limit", "100", "--k", "10", "--naive-k", "10",
                      "--out", str(tmp_path / "named.json"), cwd=tmp_path, env=ENV)
    assert done.returncode == 0, done.stderr
    assert "vaekit: note: data of shape (28, 28) flattened to the model's (784,)" in done.stderr
    result = json.loads((tmp_path / "named.json").read_text())
    assert (result["n_examples"], result["data"]) == (100, "binarized-mnist")
    assert any("(28, 28) flattened to the model's (784,)" in n for n in result["notes"])

    # another shape with another number of values stays an error
    np.save(tmp_path / "small.npy", np.zeros((5, 10, 10), dtype=np.float32))
    done = run_vaekit("eval", str(run), "--data.path", "small.npy", "--data.split", "all", "--k", "10",
                      cwd=tmp_path, env=ENV)
    assert done.returncode == 2
    assert "shape (10, 10) but the model expects (784,)" in done.stderr


def test_python_api_takes_28x28_rows_for_a_784_model(tmp_path: Path) -> None:
    import vaekit

    rng = np.random.default_rng(6)
    np.save(tmp_path / "train.npy", _binary(rng, 200))
    assert _train(tmp_path, "m", "--data.path", "train.npy").returncode == 0
    model = vaekit.load(tmp_path / "runs" / "m")
    assert model.accepts_flat and model.event_shape == (784,)
    x = torch.from_numpy(_binary(rng, 6, (28, 28)))
    torch.manual_seed(0)
    with pytest.warns(VaekitWarning, match=r"data of shape \(28, 28\) flattened to the model's \(784,\)"):
        got = model.elbo(x)
    torch.manual_seed(0)
    assert torch.equal(got, model.elbo(x.reshape(6, 784)))
    with pytest.warns(VaekitWarning, match="flattened"):
        assert model.reconstruct(x).shape == (6, 28, 28)
    with pytest.raises(VaekitError, match=r"shape \(27, 29\) but the model expects \(784,\)"):
        model.elbo(torch.zeros(2, 27, 29))


# ---------------------------------------------------------------------- 4. the saved config is exact

def test_saved_config_names_no_dataset_beside_a_path(tmp_path: Path) -> None:
    np.save(tmp_path / "train.npy", _binary(np.random.default_rng(7), 100))
    assert _train(tmp_path, "p", "--data.path", "train.npy").returncode == 0
    text = (tmp_path / "runs" / "p" / "config.toml").read_text()
    assert 'name = ""' in text.split("[data]", 1)[1].split("[model]", 1)[0]
    assert 'name = "digits"' not in text
    old = text.replace('[data]\nname = ""', '[data]\nname = "digits"')  # a config written before #16 still loads
    (tmp_path / "old.toml").write_text(old)
    assert load_config(tmp_path / "old.toml").data.path == str(tmp_path / "train.npy")


# ---------------------------------------------------------------- 5. checkpoint every N epochs

EPOCHS = ["--train.epochs", "12", "--model.hidden", "16", "--model.latent_dim", "2", "--train.batch_size", "64",
          "--train.device", "cpu", "--train.keep_last", "100", "--no-artifacts", "--no-progress", "--no-report",
          "--data.limit", "320"]


def _run(root: Path, name: str, *args: str) -> Path:
    done = subprocess.run([sys.executable, "-m", "vaekit", "train", "--runs", str(root), "--name", name, *EPOCHS,
                           *args], env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return root / name


def _epochs_of(run: Path) -> dict[int, str]:
    """epoch -> checkpoint folder name, for every epoch-end checkpoint of ``run``."""
    out = {}
    for p in sorted((run / "checkpoints").glob("step-*")):
        out[ckpt.read_meta(p)["epoch"]] = p.name
    return out


def _weights(run: Path, name: str) -> dict[str, torch.Tensor]:
    return load_file(run / "checkpoints" / name / ckpt.MODEL_FILE)


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_every_5_epochs_without_validation(tmp_path: Path) -> None:
    every = _run(tmp_path, "n1", "--data.val_fraction", "0")
    five = _run(tmp_path, "n5", "--data.val_fraction", "0", "--train.checkpoint_every_epochs", "5")
    assert sorted(_epochs_of(five)) == [5, 10, 12]
    assert sorted(_epochs_of(every)) == list(range(1, 13))
    for epoch in (5, 10, 12):
        assert _same(_weights(five, _epochs_of(five)[epoch]), _weights(every, _epochs_of(every)[epoch]))
    for which in ("last", "best"):  # no validation split: best = last = the final epoch
        assert ckpt.pointer_name(five / "checkpoints", which) == _epochs_of(five)[12]


def test_checkpoint_every_5_epochs_keeps_best_exact(tmp_path: Path) -> None:
    every = _run(tmp_path, "v1", "--train.lr", "0.2")  # a large step: some epochs do not improve
    five = _run(tmp_path, "v5", "--train.lr", "0.2", "--train.checkpoint_every_epochs", "5")
    lines = [json.loads(s) for s in (five / "metrics.jsonl").read_text().splitlines()]
    best, improving = -float("inf"), set()
    for r in lines:
        if r["val_elbo"] > best:
            best, improving = r["val_elbo"], improving | {r["epoch"]}
    assert len(improving - {5, 10, 12}) < 9  # the rule is tested only if some epochs do not improve
    assert sorted(_epochs_of(five)) == sorted(improving | {5, 10, 12})
    assert ckpt.pointer_name(five / "checkpoints", "best") == ckpt.pointer_name(every / "checkpoints", "best")
    assert ckpt.pointer_name(five / "checkpoints", "best") == _epochs_of(five)[max(improving)]
    for which in ("best", "last"):
        a, b = (ckpt.pointer_name(r / "checkpoints", which) for r in (five, every))
        assert _same(_weights(five, a), _weights(every, b))


def test_killed_between_checkpoints_resumes_exactly(tmp_path: Path) -> None:
    ref = _run(tmp_path, "ref", "--data.val_fraction", "0", "--train.checkpoint_every_epochs", "5")
    args = ["--data.val_fraction", "0", "--train.checkpoint_every_epochs", "5"]
    proc = subprocess.Popen([sys.executable, "-m", "vaekit", "train", "--runs", str(tmp_path), "--name", "k",
                             *EPOCHS, *args], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    metrics = tmp_path / "k" / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 7):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    run = tmp_path / "k"
    assert sorted(_epochs_of(run)) == [5]  # killed between the checkpoints of epochs 5 and 10
    assert len(metrics.read_text().splitlines()) >= 7
    done = run_vaekit("train", "--resume", str(run), "--no-progress", "--no-artifacts", "--no-report", env=ENV)
    assert done.returncode == 0, done.stderr
    assert sorted(_epochs_of(run)) == [5, 10, 12]
    for epoch in (10, 12):
        assert _same(_weights(run, _epochs_of(run)[epoch]), _weights(ref, _epochs_of(ref)[epoch]))
    assert (run / "metrics.jsonl").read_text().count("\n") == 12
