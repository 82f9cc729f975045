"""Every bad input in docs/bad-inputs.md, through the real CLI in a subprocess.

Each row builds its bad input in ``tmp_path`` and runs ``python -m vaekit ...``; the CLI must exit with
status 2, print one line ``vaekit: error: ...`` that contains the row's key words (the problem and the
fix), print no traceback (unless ``--debug``), and leave every file in ``tmp_path`` as it was.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_vaekit
from PIL import Image
from safetensors.torch import load_file, save_file

from vaekit import train
from vaekit.config import Config, apply_overrides

MNIST = Path("/work/shared/data/mnist")
MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
               "t10k-labels-idx1-ubyte.gz")
TINY = ["--model.hidden", "16", "--model.latent_dim", "2", "--train.epochs", "1", "--train.device", "cpu",
        "--no-artifacts", "--no-progress"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch digits run (one checkpoint, step-000000023, which is both last and best)."""
    root = tmp_path_factory.mktemp("runs")
    config = apply_overrides(Config(), {"name": "good", "model.hidden": "16", "model.latent_dim": "2",
                                        "train.epochs": "1", "train.batch_size": "64", "train.device": "cpu"})
    run_dir, _ = train.fit(config, runs_root=root)
    return run_dir


def _run_copy(tmp: Path, trained_run: Path) -> Path:
    run = tmp / "run"
    shutil.copytree(trained_run, run)
    return run


def _ckpt(run: Path) -> Path:
    return run / "checkpoints" / (run / "checkpoints" / "last").read_text().strip()


class Evil:
    """Unpickling this creates the marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _write_pickle_bomb(path: Path, marker: Path) -> None:
    torch.save({"weight": Evil(marker)}, path)


# ------------------------------------------------------------------------------------------ the cases
# A setup gets (tmp_path, trained_run) and returns the CLI arguments.
Setup = Callable[[Path, Path], list[str]]


@dataclass(frozen=True)
class Case:
    id: str
    setup: Setup
    words: tuple[str, ...]


def _npy(tmp: Path, x: np.ndarray, name: str = "x.npy") -> list[str]:
    np.save(tmp / name, x)
    return ["train", "--runs", str(tmp), "--data.path", str(tmp / name), *TINY]


def _text(tmp: Path, name: str, text: str) -> list[str]:
    (tmp / name).write_text(text)
    return ["train", "--runs", str(tmp), "--data.path", str(tmp / name), *TINY]


def _train(tmp: Path, *extra: str) -> list[str]:
    return ["train", "--runs", str(tmp), *TINY, *extra]


def _truncated_npy(tmp: Path, _run: Path) -> list[str]:
    args = _npy(tmp, np.random.default_rng(0).random((50, 6)))
    data = (tmp / "x.npy").read_bytes()
    (tmp / "x.npy").write_bytes(data[: len(data) // 2])
    return args


def _labels_wrong_length(tmp: Path, _run: Path) -> list[str]:
    np.savez(tmp / "d.npz", x=np.random.default_rng(0).random((40, 6)), y=np.arange(30))
    return ["train", "--runs", str(tmp), "--data.path", str(tmp / "d.npz"), *TINY]


def _images(tmp: Path, sizes: list[tuple[int, int]], garbage: bool = False) -> list[str]:
    folder = tmp / "imgs"
    folder.mkdir()
    for i, (w, h) in enumerate(sizes):
        Image.fromarray(np.full((h, w), 40 * i, dtype=np.uint8)).save(folder / f"{i}.png")
    if garbage:
        (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 10)
    return ["train", "--runs", str(tmp), "--data.path", str(folder), *TINY]


def _mnist(tmp: Path, corrupt: Callable[[Path], None]) -> list[str]:
    folder = tmp / "mnist"
    folder.mkdir()
    for name in MNIST_FILES:
        shutil.copy(MNIST / name, folder / name)
    corrupt(folder / "train-images-idx3-ubyte.gz")
    return ["train", "--runs", str(tmp), "--data.name", "mnist", "--data.dir", str(folder),
            "--data.download", "false", *TINY]


def _truncate_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _idx_bad_magic(path: Path) -> None:
    raw = bytearray(gzip.decompress(path.read_bytes())[:1000])
    raw[:4] = (2049).to_bytes(4, "big")  # the labels magic in the images file
    path.write_bytes(gzip.compress(bytes(raw)))


def _gz_corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[20:4000] = bytes(3980)  # zeros over the deflate stream, gzip magic intact
    path.write_bytes(bytes(data))


def _ckpt_truncated(tmp: Path, run: Path) -> list[str]:
    run = _run_copy(tmp, run)
    _truncate_half(_ckpt(run) / "model.safetensors")
    return ["sample", str(run), "-n", "4", "--out", str(tmp / "s.npy")]


def _ckpt_missing_weights(tmp: Path, run: Path) -> list[str]:
    run = _run_copy(tmp, run)
    (_ckpt(run) / "model.safetensors").unlink()
    return ["sample", str(run), "-n", "4", "--out", str(tmp / "s.npy")]


def _ckpt_tampered_shapes(tmp: Path, run: Path) -> list[str]:
    run = _run_copy(tmp, run)
    path = _ckpt(run) / "model.safetensors"
    state = load_file(path)
    name = next(k for k, v in state.items() if v.ndim == 2)
    state[name] = torch.zeros(state[name].shape[0] + 1, state[name].shape[1])
    save_file(state, path)
    return ["sample", str(run), "-n", "4", "--out", str(tmp / "s.npy")]


def _ckpt_newer_format(tmp: Path, run: Path) -> list[str]:
    run = _run_copy(tmp, run)
    meta_path = _ckpt(run) / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = 99
    meta_path.write_text(json.dumps(meta))
    return ["sample", str(run), "-n", "4", "--out", str(tmp / "s.npy")]


def _ckpt_corrupt_meta(tmp: Path, run: Path) -> list[str]:
    run = _run_copy(tmp, run)
    (_ckpt(run) / "meta.json").write_text('{"format_version": 1, "config": ')
    return ["sample", str(run), "-n", "4", "--out", str(tmp / "s.npy")]


def _ckpt_pickle(tmp: Path, run: Path) -> list[str]:
    run = _run_copy(tmp, run)
    _write_pickle_bomb(_ckpt(run) / "model.safetensors", tmp / "PWNED")
    return ["sample", str(run), "-n", "4", "--out", str(tmp / "s.npy")]


def _pickle_file(tmp: Path, _run: Path) -> list[str]:
    _write_pickle_bomb(tmp / "model.pt", tmp / "PWNED")
    return ["sample", str(tmp / "model.pt"), "-n", "4", "--out", str(tmp / "s.npy")]


def _resume_pickled_trainer(tmp: Path, run: Path) -> list[str]:
    run = _run_copy(tmp, run)
    _write_pickle_bomb(_ckpt(run) / "trainer.safetensors", tmp / "PWNED")
    return ["train", "--resume", str(run), "--no-progress", "--no-artifacts"]


def _corrupt_pointer(tmp: Path, run: Path) -> list[str]:
    run = _run_copy(tmp, run)
    (run / "checkpoints" / "last").write_text("../../../etc")
    (run / "checkpoints" / "best").write_text("../../../etc")
    return ["sample", str(run), "-n", "4", "--out", str(tmp / "s.npy")]


def _out_not_writable(tmp: Path, run: Path) -> list[str]:
    (tmp / "afile").write_text("I am a file")
    return ["sample", str(run), "-n", "4", "--out", str(tmp / "afile" / "s.png")]


def _existing_run(tmp: Path, _run: Path) -> list[str]:
    (tmp / "taken").mkdir()
    (tmp / "taken" / "metrics.jsonl").write_text('{"epoch": 1}\n')
    return _train(tmp, "--name", "taken")


def _config_file(tmp: Path, text: str) -> list[str]:
    (tmp / "c.toml").write_text(text)
    return _train(tmp, "--config", str(tmp / "c.toml"))


CASES = [
    # config files and options
    Case("config-file-missing", lambda t, r: _train(t, "--config", str(t / "nope.toml")),
         ("cannot read config file", "nope.toml", "check the path")),
    Case("config-file-invalid-toml", lambda t, r: _config_file(t, "[train\nlr = "), ("not valid TOML", "fix")),
    Case("config-file-unknown-key", lambda t, r: _config_file(t, "[train]\nlrr = 0.1\n"),
         ("unknown config key 'train.lrr'", "known keys")),
    Case("config-file-unknown-section", lambda t, r: _config_file(t, "[trian]\nlr = 0.1\n"),
         ("unknown config section 'trian'", "use one of")),
    Case("option-mistyped-key", lambda t, r: _train(t, "--train.epoch", "3"),
         ("unknown config key 'train.epoch'", "--train.epochs")),
    Case("option-wrong-type", lambda t, r: _train(t, "--train.batch_size", "big"),
         ("train.batch_size", "expected an integer")),
    Case("lr-zero", lambda t, r: _train(t, "--train.lr", "0"), ("train.lr", "must be > 0")),
    Case("lr-nan", lambda t, r: _train(t, "--train.lr", "nan"), ("train.lr", "must be > 0")),
    Case("latent-dim-zero", lambda t, r: _train(t, "--model.latent_dim", "0"), ("model.latent_dim", ">= 1")),
    Case("beta-negative", lambda t, r: _train(t, "--train.beta", "-1"), ("train.beta", ">= 0")),
    Case("eval-k-zero", lambda t, r: _train(t, "--eval.k", "0"), ("eval.k", ">= 1")),
    Case("checkpoint-every-negative", lambda t, r: _train(t, "--train.checkpoint_every", "-5"),
         ("train.checkpoint_every", ">= 0")),
    Case("batch-larger-than-data", lambda t, r: _train(t, "--train.batch_size", "100000"),
         ("train.batch_size 100000", "larger than", "--train.batch_size")),
    Case("run-dir-exists", _existing_run, ("already exists", "another --name", "--resume")),
    # data files
    Case("data-path-missing", lambda t, r: _train(t, "--data.path", str(t / "none.npy")),
         ("does not exist", "fix --data.path")),
    Case("npy-truncated", _truncated_npy, ("x.npy", "cannot read the .npy", "numpy.save")),
    Case("npy-nan", lambda t, r: _npy(t, np.array([[0.1, np.nan]] * 20)), ("NaN/inf",)),
    Case("npy-inf", lambda t, r: _npy(t, np.array([[0.1, np.inf]] * 20)), ("NaN/inf",)),
    Case("npy-empty", lambda t, r: _npy(t, np.zeros((0, 5))), ("empty", "at least one example")),
    Case("npz-labels-wrong-length", _labels_wrong_length, ("labels", "40")),
    Case("csv-ragged", lambda t, r: _text(t, "d.csv", "a,b,c\n1,2,3\n4,5\n"), ("row 3", "fields", "header")),
    Case("csv-non-numeric", lambda t, r: _text(t, "d.csv", "a,b\n1,2\n3,abc\n"), ("non-numeric", "abc")),
    Case("csv-empty", lambda t, r: _text(t, "d.csv", ""), ("CSV file is empty", "header row")),
    Case("csv-not-utf8", lambda t, r: _text_bytes(t), ("cannot read the CSV", "UTF-8")),
    Case("unsupported-file-type", lambda t, r: _text(t, "d.xyz", "1 2 3"), ("unsupported file type", ".xyz")),
    Case("images-mixed-sizes", lambda t, r: _images(t, [(8, 8), (8, 8), (10, 6)]),
         ("different sizes", "image_size")),
    Case("image-corrupted", lambda t, r: _images(t, [(8, 8)] * 3, garbage=True),
         ("broken.png", "cannot read the image", "remove or replace")),
    Case("mnist-gz-truncated", lambda t, r: _mnist(t, _truncate_half),
         ("train-images-idx3-ubyte.gz", "cannot read the IDX", "download it again")),
    Case("mnist-gz-corrupted", lambda t, r: _mnist(t, _gz_corrupt),
         ("train-images-idx3-ubyte.gz", "cannot read the IDX")),
    Case("mnist-idx-wrong-magic", lambda t, r: _mnist(t, _idx_bad_magic),
         ("magic number is 2049", "expected 2051", "replace it")),
    # checkpoints and runs
    Case("checkpoint-truncated", _ckpt_truncated, ("model.safetensors", "truncated or corrupted", "another")),
    Case("checkpoint-weights-missing", _ckpt_missing_weights, ("model.safetensors", "cannot read", "checkpoint")),
    Case("checkpoint-tampered-shapes", _ckpt_tampered_shapes, ("does not match its config", "untouched")),
    Case("checkpoint-newer-format", _ckpt_newer_format, ("format 99 is newer", "upgrade vaekit")),
    Case("checkpoint-meta-corrupted", _ckpt_corrupt_meta, ("meta.json", "corrupted", "another checkpoint")),
    Case("checkpoint-is-pickle", _ckpt_pickle, ("pickle", "can run code", "safetensors")),
    Case("weights-file-is-pickle", _pickle_file, ("model.pt", "pickle", "safetensors")),
    Case("resume-trainer-state-is-pickle", _resume_pickled_trainer, ("trainer.safetensors", "pickle")),
    Case("checkpoint-pointer-corrupted", _corrupt_pointer, ("checkpoints/best is corrupted", "step-")),
    Case("resume-not-a-run", lambda t, r: ["train", "--resume", str(t)], ("not a run directory", "runs/<name>")),
    Case("resume-with-options", lambda t, r: ["train", "--resume", str(r), "--train.lr", "0.1"],
         ("--resume", "drop --train.lr", "config.toml")),
    Case("run-missing", lambda t, r: ["sample", str(t / "nope"), "--out", str(t / "s.npy")],
         ("does not exist", "runs/<name>")),
    Case("output-not-writable", _out_not_writable, ("afile", "not a folder", "another --out")),
]


def _text_bytes(tmp: Path) -> list[str]:
    (tmp / "d.csv").write_bytes(b"a,b\n\xff\xfe,1\n")
    return ["train", "--runs", str(tmp), "--data.path", str(tmp / "d.csv"), *TINY]


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _cli(args: list[str]) -> subprocess.CompletedProcess:
    return run_vaekit(*args)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, trained_run: Path) -> None:
    args = case.setup(tmp_path, trained_run)
    before, run_before = _snapshot(tmp_path), _snapshot(trained_run)
    done = _cli(args)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vaekit: error: "), done.stderr
    for word in case.words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
    assert _snapshot(tmp_path) == before  # nothing written, nothing changed
    assert _snapshot(trained_run) == run_before
    assert not (tmp_path / "PWNED").exists()  # no pickle was ever unpickled


def test_cases_cover_the_documented_table() -> None:
    doc = (Path(__file__).parents[1] / "docs" / "bad-inputs.md").read_text()
    assert len(CASES) >= 25
    assert [c.id for c in CASES if f"`{c.id}`" not in doc] == []


@pytest.mark.parametrize("case", [c for c in CASES if c.id in ("lr-zero", "checkpoint-is-pickle", "npy-nan")],
                         ids=lambda c: c.id)
def test_debug_shows_the_traceback(case: Case, tmp_path: Path, trained_run: Path) -> None:
    args = case.setup(tmp_path, trained_run)
    done = _cli(["--debug", *args])
    assert done.returncode == 2
    assert "Traceback (most recent call last)" in done.stderr and "VaekitError" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("vaekit: error: ")
    assert not (tmp_path / "PWNED").exists()
