"""Issue #8, part B: a run that learned nothing never reports success, and what a run reports (best,
last, timings, the checkpoint evaluated) is what happened.

Real digits, a tiny model, real files, real subprocesses for the CLI, real NaNs and real SIGKILLs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from cli_helpers import run_vaekit
from fault_helpers import PoisonedSplit
from safetensors.torch import load_file, save_file
from tiny_runs import STEPS, tiny_config

from vaekit import checkpoint as ckpt
from vaekit import train
from vaekit.config import Config
from vaekit.data import DataBundle
from vaekit.errors import VaekitError

TINY = ["--model.hidden", "16", "--model.latent_dim", "2", "--train.batch_size", "64", "--train.device", "cpu"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _config(**overrides: str) -> Config:
    return tiny_config(**overrides)


def _trainer(tmp_path: Path, data: DataBundle, callbacks: list[train.Callback] | None = None,
             **overrides: str) -> train.Trainer:
    config = _config(**overrides)
    run_dir = train.create_run_dir(config, tmp_path)
    return train.Trainer(config, run_dir, data, callbacks)


def _pointer(run: Path, name: str) -> str:
    return (run / "checkpoints" / name).read_text().strip()


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]




# ------------------------------------------------------------------------------------ item 8
def test_lr_10_on_digits_is_an_error_not_a_success_and_leaves_no_run(tmp_path: Path) -> None:
    """The issue's reproduction: 12 steps per epoch, fewer than train.max_bad_steps (20)."""
    done = run_vaekit("train", "--runs", str(tmp_path), "--name", "x", "--train.lr", "10", "--train.epochs", "5",
                      "--no-progress", cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vaekit: error: "), done.stderr
    assert "learned nothing" in lines[0] and "train.lr" in lines[0] and "was removed" in lines[0]
    assert "-inf" not in done.stdout and "wrote" not in done.stdout
    assert not (tmp_path / "x").exists()  # item 10: nothing of value, the name is free again
    again = run_vaekit("train", "--runs", str(tmp_path), "--name", "x", "--train.epochs", "1", "--no-progress",
                       "--no-artifacts", "--no-report", *TINY, cwd=tmp_path)
    assert again.returncode == 0, again.stderr


def test_the_bad_step_streak_survives_epoch_boundaries(tmp_path: Path, digits: DataBundle) -> None:
    """Two bad steps at the end of epoch 1 and two at the start of epoch 2: four in a row >= 3."""
    poisoned = PoisonedSplit(**vars(digits.train), bad_calls=frozenset({STEPS - 2, STEPS - 1, STEPS, STEPS + 1}))
    trainer = _trainer(tmp_path, dataclasses.replace(digits, train=poisoned))
    trainer.fit()
    assert trainer.state.rollbacks == 1
    assert any("rolled back to step-000000023" in h for h in trainer.state.history)
    saved = json.loads((trainer.ckpt_dir / "step-000000023" / ckpt.TRAINER_JSON).read_text())
    assert saved["bad_streak"] == 2  # the open streak is saved with the checkpoint, so resume stays exact


def test_a_non_finite_validation_elbo_never_becomes_best_and_fails_the_run(tmp_path: Path,
                                                                           digits: DataBundle) -> None:
    val_batches = math.ceil(len(digits.val) / 64)
    poisoned = PoisonedSplit(**vars(digits.val), bad_from=val_batches)  # epoch 1 scores, epoch 2 on is NaN
    trainer = _trainer(tmp_path, dataclasses.replace(digits, val=poisoned), **{"train.epochs": "3"})
    with pytest.raises(VaekitError, match="validation ELBO is not finite") as err:
        trainer.fit()
    assert "learned nothing" not in str(err.value)  # epoch 1 did learn; its checkpoint stays the best
    assert _pointer(trainer.run_dir, "best") == _pointer(trainer.run_dir, "last") == "step-000000023"
    assert math.isfinite(trainer.state.best_val_elbo) and trainer.state.best_epoch == 0
    assert sorted(p.name for p in trainer.ckpt_dir.glob("step-*")) == ["step-000000023"]


def test_a_run_that_skipped_nearly_every_step_is_not_a_success(tmp_path: Path, digits: DataBundle) -> None:
    bad = frozenset(c for c in range(3 * STEPS) if c % 12)  # 1 good step in 12: never 3 epochs' worth in a row
    poisoned = PoisonedSplit(**vars(digits.train), bad_calls=bad)
    trainer = _trainer(tmp_path, dataclasses.replace(digits, train=poisoned),
                       **{"train.epochs": "3", "train.max_bad_steps": "1000"})
    with pytest.raises(VaekitError, match=r"skipped 6\d of 69 steps.*learned nothing.*train\.lr"):
        trainer.fit()


# ------------------------------------------------------------------------------------ item 9
def test_without_a_validation_split_best_is_last_and_says_so(tmp_path: Path) -> None:
    done = run_vaekit("train", "--runs", str(tmp_path), "--name", "nv", "--data.val_fraction", "0",
                      "--train.epochs", "3", "--no-progress", "--no-artifacts", "--no-report", *TINY, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run = tmp_path / "nv"
    assert "0.000" not in done.stdout and "best validation ELBO" not in done.stdout
    assert "no validation split" in done.stdout and "best = last" in done.stdout
    final = f"step-{3 * 26:09d}"  # 1617 training examples without a validation split: 26 steps of 64
    assert _pointer(run, "best") == _pointer(run, "last") == final
    assert [m["val_elbo"] for m in _metrics(run)] == [None, None, None]
    state = json.loads((run / "checkpoints" / final / ckpt.TRAINER_JSON).read_text())
    assert state["selected_on"] == "last" and state["best_checkpoint"] == final


def test_evaluating_an_empty_split_is_an_error_not_an_elbo_of_zero(digits: DataBundle) -> None:
    from vaekit.model import VAE

    empty = dataclasses.replace(digits.val, x=digits.val.x[:0], y=None)
    model = VAE(_config().model, digits.event_shape)
    with pytest.raises(VaekitError, match="no examples"):
        train.evaluate_split(model, empty, 64, seed=0)


def test_patience_without_a_validation_split_is_refused(tmp_path: Path) -> None:
    config = _config(**{"data.val_fraction": "0", "train.patience": "2"})
    with pytest.raises(VaekitError, match=r"train\.patience.*data\.val_fraction"):
        train.fit(config, runs_root=tmp_path)
    assert not (tmp_path / "t").exists()


# ----------------------------------------------------------------------------------- item 10
def test_a_run_killed_before_its_first_checkpoint_resumes_from_step_0(tmp_path: Path) -> None:
    args = ["--train.epochs", "2", "--no-artifacts", "--no-report", "--no-progress", *TINY]
    ref = run_vaekit("train", "--runs", str(tmp_path), "--name", "ref", *args, env=ENV)
    assert ref.returncode == 0, ref.stderr
    run = tmp_path / "k"
    proc = subprocess.Popen([sys.executable, "-m", "vaekit", "train", "--runs", str(tmp_path), "--name", "k", *args],
                            env={**ENV, ckpt.PAUSE_ENV: "30"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list((run / "checkpoints").glob(".step-*")):  # the first checkpoint is being written
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not list((run / "checkpoints").glob("step-*")) and (run / "config.toml").is_file()
    done = run_vaekit("train", "--resume", str(run), "--no-artifacts", "--no-report", "--no-progress", env=ENV)
    assert done.returncode == 0, done.stderr
    assert "no checkpoint: started again from step 0" in done.stdout
    got, want = (load_file(tmp_path / n / "checkpoints" / f"step-{2 * STEPS:09d}" / ckpt.MODEL_FILE)
                 for n in ("k", "ref"))
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_resume_refuses_a_last_pointer_to_a_missing_checkpoint(tmp_path: Path, digits: DataBundle) -> None:
    run, _ = train.fit(_config(**{"train.epochs": "1"}), runs_root=tmp_path, data=digits)
    shutil.rmtree(run / "checkpoints" / f"step-{STEPS:09d}")
    with pytest.raises(VaekitError, match="names step-000000023, which is missing.*new name"):
        train.resume(run)
    assert (run / "config.toml").is_file() and (run / "metrics.jsonl").is_file()  # nothing started over


# ----------------------------------------------------------------------------------- item 11
class FreezeAfterEpoch1(train.Callback):
    """lr x0 after epoch 1: later epochs cannot improve, so ``best`` stays at epoch 1's checkpoint."""

    def on_epoch_end(self, trainer: train.Trainer, metrics: dict) -> None:
        trainer.state.lr_scale = 0.0


@pytest.fixture(scope="module")
def best_older_than_last(tmp_path_factory: pytest.TempPathFactory, digits: DataBundle) -> Path:
    root = tmp_path_factory.mktemp("older")
    trainer = _trainer(root, digits, [FreezeAfterEpoch1()], **{"train.epochs": "2"})
    trainer.fit()
    assert _pointer(trainer.run_dir, "best") == "step-000000023"
    assert _pointer(trainer.run_dir, "last") == "step-000000046"
    return trainer.run_dir


def test_a_missing_best_checkpoint_is_warned_and_recorded_in_eval_json(tmp_path: Path,
                                                                       best_older_than_last: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(best_older_than_last, run)
    shutil.rmtree(run / "checkpoints" / "step-000000023")
    with pytest.warns(UserWarning, match="best checkpoint step-000000023 is missing.*using last step-000000046"):
        assert ckpt.resolve_checkpoint(run).name == "step-000000046"
    done = run_vaekit("eval", str(run), "--k", "2", "--naive-k", "2", "--repeats", "1")
    assert done.returncode == 0, done.stderr
    assert "vaekit: warning: best checkpoint step-000000023 is missing" in done.stderr
    result = json.loads((run / "eval.json").read_text())
    assert result["checkpoint"] == "step-000000046"
    assert result["checkpoint_role"] == "last (best step-000000023 is missing)"
    assert any("is missing" in w for w in result["warnings"])


def test_eval_json_names_the_role_of_the_checkpoint_used(best_older_than_last: Path) -> None:
    choice = ckpt.choose_checkpoint(best_older_than_last)
    assert (choice.path.name, choice.role, choice.warning) == ("step-000000023", "best", None)
    direct = ckpt.choose_checkpoint(best_older_than_last / "checkpoints" / "step-000000046")
    assert (direct.path.name, direct.role) == ("step-000000046", "given")


# ----------------------------------------------------------------------------------- item 12
def test_a_stale_best_pointer_is_overruled_by_the_committed_last_checkpoint(tmp_path: Path,
                                                                            digits: DataBundle) -> None:
    run, _ = train.fit(_config(**{"train.keep_last": "3"}), runs_root=tmp_path, data=digits)
    assert _pointer(run, "best") == _pointer(run, "last") == "step-000000046"  # epoch 2 improved
    (run / "checkpoints" / "best").write_text("step-000000023")  # torn: killed between `last` and `best`
    assert ckpt.resolve_checkpoint(run).name == "step-000000046"
    assert ckpt.choose_checkpoint(run).role == "best"
    train.resume(run)  # a finished run: trains nothing, but repairs the stale pointer
    assert _pointer(run, "best") == "step-000000046"


def test_killed_between_the_last_and_best_pointers(tmp_path: Path) -> None:
    run = tmp_path / "p"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vaekit", "train", "--runs", str(tmp_path), "--name", "p", "--train.epochs", "3",
         "--no-artifacts", "--no-report", "--no-progress", *TINY],
        env={**ENV, train.PAUSE_BEFORE_BEST_ENV: "5"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not ((run / "checkpoints" / "last").is_file() and _pointer(run, "last") == "step-000000046"):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _pointer(run, "best") == "step-000000023"  # the torn state on disk
    assert ckpt.resolve_checkpoint(run).name == "step-000000046"
    done = run_vaekit("train", "--resume", str(run), "--no-artifacts", "--no-report", "--no-progress", env=ENV)
    assert done.returncode == 0, done.stderr
    assert _pointer(run, "best") == _pointer(run, "last") == f"step-{3 * STEPS:09d}"


class Frozen(train.Callback):
    """lr x0 from the start: the resumed epochs cannot improve on the checkpoint's validation ELBO."""

    def on_train_start(self, trainer: train.Trainer) -> None:
        trainer.state.lr_scale = 0.0


def test_checkpoints_from_before_best_checkpoint_keep_working(tmp_path: Path, digits: DataBundle) -> None:
    run, _ = train.fit(_config(**{"train.epochs": "1"}), runs_root=tmp_path, data=digits)
    last = run / "checkpoints" / f"step-{STEPS:09d}"
    old = {k: v for k, v in json.loads((last / ckpt.TRAINER_JSON).read_text()).items()
           if k not in ("bad_streak", "best_checkpoint", "selected_on")}
    (last / ckpt.TRAINER_JSON).write_text(json.dumps(old))  # as written before issue #8
    (run / "config.toml").write_text((run / "config.toml").read_text().replace("epochs = 1", "epochs = 3"))
    trainer = train.resume(run, callbacks=[Frozen()])
    assert trainer.state.best_checkpoint == f"step-{STEPS:09d}"  # taken over from the `best` file
    assert ckpt.choose_checkpoint(run).path == last and ckpt.choose_checkpoint(run).role == "best"
    assert last.is_dir() and _pointer(run, "last") == f"step-{3 * STEPS:09d}"


# ----------------------------------------------------------------------------------- item 17
def _cuda_like(last: Path) -> None:
    """Make a CPU checkpoint look written on a GPU: a CUDA generator's state is 16 bytes (Philox seed and
    offset, two 64-bit integers), not the CPU Mersenne Twister's 5056, and CUDA runs save rng.cuda."""
    tensors = load_file(last / ckpt.TRAINER_TENSORS)
    tensors["rng.binarize"] = torch.arange(16, dtype=torch.uint8)
    tensors["rng.cuda"] = torch.arange(16, dtype=torch.uint8)
    save_file(tensors, last / ckpt.TRAINER_TENSORS)


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the CUDA checkpoint resumes there, without a note")
def test_a_gpu_checkpoint_resumes_on_cpu_with_a_note(tmp_path: Path) -> None:
    args = ["--train.epochs", "2", "--no-artifacts", "--no-report", "--no-progress", *TINY]
    first = run_vaekit("train", "--runs", str(tmp_path), "--name", "g", "--train.epochs", "1", *args[2:])
    assert first.returncode == 0, first.stderr
    run = tmp_path / "g"
    config = (run / "config.toml").read_text()
    (run / "config.toml").write_text(config.replace("epochs = 1", "epochs = 2").replace('"cpu"', '"cuda"'))
    _cuda_like(run / "checkpoints" / f"step-{STEPS:09d}")
    refused = run_vaekit("train", "--resume", str(run), "--no-progress", "--no-artifacts", "--no-report")
    assert refused.returncode == 2 and "--train.device cpu" in refused.stderr, refused.stderr
    assert _pointer(run, "last") == f"step-{STEPS:09d}"
    done = run_vaekit("train", "--resume", str(run), "--train.device", "cpu", "--no-progress", "--no-artifacts",
                      "--no-report")
    assert done.returncode == 0, done.stderr
    state = json.loads((run / "checkpoints" / f"step-{2 * STEPS:09d}" / ckpt.TRAINER_JSON).read_text())
    assert any("on cpu from a checkpoint written on cuda" in h and "not bit-identical" in h
               for h in state["history"]), state["history"]


def test_restore_checks_every_rng_state_before_changing_anything(tmp_path: Path, digits: DataBundle) -> None:
    trainer = _trainer(tmp_path, digits, **{"train.epochs": "1"})
    trainer.fit()
    last = trainer.ckpt_dir / f"step-{STEPS:09d}"
    tensors = load_file(last / ckpt.TRAINER_TENSORS)
    tensors["rng.torch"] = torch.zeros(16, dtype=torch.uint8)  # the global CPU stream cannot be re-seeded
    save_file(tensors, last / ckpt.TRAINER_TENSORS)
    fresh = train.Trainer(trainer.config, trainer.run_dir, digits)
    weights = {k: v.clone() for k, v in fresh.model.state_dict().items()}
    with pytest.raises(VaekitError, match="rng.torch"):
        fresh.restore(last)
    assert all(torch.equal(weights[k], v) for k, v in fresh.model.state_dict().items())
    assert fresh.state == train.TrainState()


# ----------------------------------------------------------------------------------- item 19
def test_a_mid_epoch_resume_keeps_the_epoch_clock(tmp_path: Path, digits: DataBundle) -> None:
    _, trainer = train.fit(_config(**{"train.epochs": "1", "train.checkpoint_every": "20", "train.keep_last": "5"}),
                           runs_root=tmp_path, data=digits)
    mid = trainer.ckpt_dir / "step-000000020"
    tensors = load_file(mid / ckpt.TRAINER_TENSORS)
    assert float(tensors["epoch.seconds"]) > 0
    tensors["epoch.seconds"] = torch.tensor(1000.0, dtype=torch.float64)  # stands for a slow first 20 batches
    save_file(tensors, mid / ckpt.TRAINER_TENSORS)
    (trainer.run_dir / "metrics.jsonl").unlink()
    for p in trainer.ckpt_dir.glob("step-*"):
        if p != mid:
            shutil.rmtree(p)
    (trainer.ckpt_dir / "last").write_text(mid.name)
    resumed = train.resume(trainer.run_dir)
    assert resumed.state.step == STEPS
    row = _metrics(trainer.run_dir)[-1]
    after = len(digits.train) - 20 * 64  # the samples this process trained
    assert row["epoch_time_s"] > 1000
    assert row["samples_per_s"] * (row["epoch_time_s"] - 1000) == pytest.approx(after, rel=1e-6)


# -------------------------------------------------------------------------------- eval notes.txt
def test_a_plain_file_is_named_as_not_a_run(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes about the run\n")
    done = run_vaekit("eval", str(notes))
    assert done.returncode == 2
    assert "not a run directory or checkpoint" in done.stderr and "runs/<name>" in done.stderr
    assert "truncated or corrupted" not in done.stderr
