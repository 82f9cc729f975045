"""Exact resume: a real training subprocess is SIGKILLed at several points (mid-epoch, in the middle of a
checkpoint write, between an epoch's metrics line and its checkpoint, at random times) and resumed with
``vaekit train --resume``; the finished run must equal an uninterrupted one bit for bit.

Runs use digits, a tiny model and one CPU thread, so both runs are deterministic and take seconds.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vaekit import checkpoint as ckpt

STEPS_PER_EPOCH = 23  # digits: 1437 training examples / batch 64
EPOCHS = 3
TRAIN = ["--train.epochs", str(EPOCHS), "--model.hidden", "32", "--model.latent_dim", "2",
         "--train.batch_size", "64", "--train.device", "cpu", "--train.keep_last", "2",
         "--no-artifacts", "--no-progress"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
PAUSE = "0.3"


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "vaekit", "train", *args]


def _start(args: list[str], pause: str | None = None) -> subprocess.Popen:
    env = dict(ENV)
    if pause:
        env[ckpt.PAUSE_ENV] = pause
    return subprocess.Popen(_cmd(*args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 120.0) -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` holds; fail if it finishes or times out first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"training ended (rc {proc.returncode}) before the kill point: {proc.stderr.read()!r}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("kill point never reached")
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def _temporaries(ckpts: Path) -> list[Path]:
    return sorted(ckpts.glob(".*.tmp*")) if ckpts.is_dir() else []


def _tmp_of_step(ckpts: Path, pred: Callable[[int], bool]) -> Callable[[], bool]:
    """True while a checkpoint whose step satisfies ``pred`` is being written (its temp dir exists)."""
    def ready() -> bool:
        for p in _temporaries(ckpts):
            if p.name.startswith(".step-") and pred(int(p.name[6:15])) and (p / ckpt.MODEL_FILE).exists():
                return True
        return False
    return ready


def _last_step(ckpts: Path) -> int:
    try:
        return int((ckpts / "last").read_text().strip()[5:])
    except (OSError, ValueError):
        return -1


def _assert_checkpoints_whole(run: Path) -> None:
    """Every checkpoint that ``last``/``best`` name loads completely (weights, meta, trainer state)."""
    ckpts = run / "checkpoints"
    named = [ckpt.read_pointer(ckpts, p) for p in ("last", "best")]
    assert named[0] is not None, "a killed run must keep a loadable 'last' checkpoint"
    for target in filter(None, named):
        model, _config, meta = ckpt.load_model(target)
        assert meta["format_version"] == ckpt.FORMAT_VERSION
        assert all(torch.isfinite(t).all() for t in model.state_dict().values())
        assert "rng.torch" in ckpt.load_tensors(target / ckpt.TRAINER_TENSORS)
        assert "step" in ckpt.read_json(target / ckpt.TRAINER_JSON)


def _resume(run: Path) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd("--resume", str(run), "--no-artifacts", "--no-progress"), env=ENV,
                          capture_output=True, text=True, timeout=300)


def _final(run: Path) -> dict[str, torch.Tensor]:
    last = ckpt.read_pointer(run / "checkpoints", "last")
    assert last is not None and last.name == f"step-{EPOCHS * STEPS_PER_EPOCH:09d}"
    return load_file(last / ckpt.MODEL_FILE)


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _assert_same_as_reference(run: Path, ref: Path) -> None:
    got, want = _final(run), _final(ref)
    assert sorted(got) == sorted(want)
    for name in want:
        assert torch.equal(got[name], want[name]), f"tensor {name} differs from the uninterrupted run"
    rows, ref_rows = _metrics(run), _metrics(ref)
    assert [r["epoch"] for r in rows] == list(range(1, EPOCHS + 1))  # no duplicated or missing epochs
    for r, w in zip(rows, ref_rows, strict=True):
        for key in ("step", "train_loss", "train_recon", "train_kl", "val_elbo", "skipped_steps"):
            assert r[key] == w[key], (r["epoch"], key)
    assert _temporaries(run / "checkpoints") == []


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run (epoch-end checkpoints only: checkpointing never changes the trajectory)."""
    root = tmp_path_factory.mktemp("ref")
    done = subprocess.run(_cmd("--runs", str(root), "--name", "ref", *TRAIN), env=ENV, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return root / "ref"


def test_killed_mid_epoch_and_mid_checkpoint_resumes_bit_identically(tmp_path: Path, reference: Path) -> None:
    run, ckpts = tmp_path / "v", tmp_path / "v" / "checkpoints"
    args = ["--runs", str(tmp_path), "--name", "v", "--train.checkpoint_every", "4", *TRAIN]

    # 1. killed while writing the mid-epoch checkpoint of step 8 (after step 4's is in place)
    _kill_when(_start(args, PAUSE), _tmp_of_step(ckpts, lambda s: s == 8))
    assert _last_step(ckpts) == 4 and len(_temporaries(ckpts)) == 1  # the half-written one is left...
    _assert_checkpoints_whole(run)

    # 2. resumed, then killed inside the epoch-end checkpoint: the epoch's metrics line is already written
    _kill_when(_start(["--resume", str(run), "--no-progress"], PAUSE),
               _tmp_of_step(ckpts, lambda s: s == STEPS_PER_EPOCH))
    assert _temporaries(ckpts)[0].name.startswith(".step-000000023.tmp")  # ...and the resume removed it
    assert len(_temporaries(ckpts)) == 1 and _last_step(ckpts) == 20
    assert [r["epoch"] for r in _metrics(run)] == [1]
    _assert_checkpoints_whole(run)

    # 3. resumed (redoes the end of epoch 1), then killed mid-epoch 2 right after a checkpoint lands
    _kill_when(_start(["--resume", str(run), "--no-progress"], PAUSE), lambda: _last_step(ckpts) == 31)
    _assert_checkpoints_whole(run)
    assert [r["epoch"] for r in _metrics(run)] == [1]

    # 4. resumed to the end
    done = _resume(run)
    assert done.returncode == 0, done.stderr
    assert "trained 3 epochs (69 steps" in done.stdout
    _assert_same_as_reference(run, reference)


def test_killed_at_random_times_while_checkpointing_every_step(tmp_path: Path, reference: Path) -> None:
    run, ckpts = tmp_path / "r", tmp_path / "r" / "checkpoints"
    rng = random.Random(7)
    proc = _start(["--runs", str(tmp_path), "--name", "r", "--train.checkpoint_every", "1", *TRAIN])
    kills = 0
    for _ in range(3):
        first = _last_step(ckpts)
        while _last_step(ckpts) <= first and proc.poll() is None:  # progress: at least one new checkpoint
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.2))  # then a random moment, most likely inside a checkpoint write
        if proc.poll() is not None:
            break
        _kill_when(proc, lambda: True)
        kills += 1
        _assert_checkpoints_whole(run)
        proc = _start(["--resume", str(run), "--no-progress"])
    assert kills >= 2
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    proc.stderr.close()
    _assert_same_as_reference(run, reference)


def test_resume_of_a_finished_run_changes_nothing(tmp_path: Path, reference: Path) -> None:
    import shutil

    run = tmp_path / "ref"
    shutil.copytree(reference, run)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    done = _resume(run)
    assert done.returncode == 0, done.stderr
    assert "trained 3 epochs (69 steps" in done.stdout
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
