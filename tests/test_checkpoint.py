"""Checkpoints: safe formats only, atomic writes, pruning, tamper checks, and numerical-fault rollback.

In-process tests on digits with a tiny model (real files in tmp_path, a real Trainer, real NaNs).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
from pathlib import Path

import pytest
import torch
from fault_helpers import PoisonedSplit, PoisonParameter
from safetensors.torch import load_file, save_file
from tiny_runs import STEPS, tiny_config

from vaekit import checkpoint as ckpt
from vaekit import train
from vaekit.config import Config
from vaekit.data import DataBundle
from vaekit.errors import VaekitError


def _config(**overrides: str) -> Config:
    return tiny_config(**{"name": "", "train.epochs": "3", **overrides})


def _trainer(tmp_path: Path, data: DataBundle, callbacks: list[train.Callback] | None = None,
             **overrides: str) -> train.Trainer:
    config = _config(name="t", **overrides)
    run_dir = train.create_run_dir(config, tmp_path)
    return train.Trainer(config, run_dir, data, callbacks)


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


class Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


# ------------------------------------------------------------------------------- format and safety
def test_checkpoint_round_trip_rebuilds_the_model(tmp_path: Path, digits: DataBundle) -> None:
    trainer = _trainer(tmp_path, digits, **{"train.epochs": "1"})
    trainer.fit()
    last = ckpt.read_pointer(trainer.ckpt_dir, "last")
    assert last is not None and last.name == f"step-{STEPS:09d}"
    assert sorted(p.name for p in last.iterdir()) == sorted(
        [ckpt.MODEL_FILE, ckpt.META_FILE, ckpt.TRAINER_TENSORS, ckpt.TRAINER_JSON])
    model, config, meta = ckpt.load_model(trainer.run_dir)
    assert config == trainer.config and meta["format_version"] == ckpt.FORMAT_VERSION
    assert meta["event_shape"] == [8, 8] and meta["step"] == STEPS
    for (name, a), b in zip(trainer.model.state_dict().items(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    tensors = ckpt.load_tensors(last / ckpt.TRAINER_TENSORS)
    assert {"rng.torch", "rng.shuffle", "rng.binarize"} <= set(tensors)
    assert json.loads((last / ckpt.TRAINER_JSON).read_text())["batch_in_epoch"] == 0
    # the trainer state restores exactly
    other = train.Trainer(trainer.config, trainer.run_dir, digits)
    other.restore(last)
    assert other.state == trainer.state
    assert torch.equal(other.shuffle_rng.get_state(), trainer.shuffle_rng.get_state())


def test_a_pickle_is_refused_and_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    archive, raw = tmp_path / "evil.pt", tmp_path / "evil.pkl"
    torch.save({"w": Evil(marker)}, archive)
    raw.write_bytes(pickle.dumps({"w": Evil(marker)}, protocol=0))
    for path in (archive, raw):
        with pytest.raises(VaekitError, match="pickle|not a safetensors"):
            ckpt.load_tensors(path)
        with pytest.raises(VaekitError, match="pickle|not a safetensors"):
            ckpt.resolve_checkpoint(path)
    assert not marker.exists()
    with open(archive, "rb") as f:  # sanity: the archive really runs code when unpickled
        torch.load(f, weights_only=False)["w"].close()
    assert marker.exists()


def test_save_is_atomic_and_never_overwrites(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    path = ckpt.save_checkpoint(tmp_path / "step-000000001", model, Config(), {"event_shape": [3]})
    with pytest.raises(VaekitError, match="already exists"):
        ckpt.save_checkpoint(path, model, Config(), {"event_shape": [3]})
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    with pytest.raises(VaekitError, match="non-finite"):
        ckpt.save_checkpoint(tmp_path / "step-000000002", model, Config(), {"event_shape": [3]})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000000001"]  # no temp dir left behind
    (tmp_path / ".step-000000003.tmp-123").mkdir()
    (tmp_path / ".last.abc.tmp").write_text("step-000000003")
    assert len(ckpt.clean_temporaries(tmp_path)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000000001"]


def test_prune_keeps_last_n_and_best(tmp_path: Path, digits: DataBundle) -> None:
    trainer = _trainer(tmp_path, digits, **{"train.keep_last": "2"})
    trainer.save_checkpoint(best=True)  # step 0 is the best ...
    for step in (5, 10, 15):
        trainer.state.step = step
        trainer.save_checkpoint(best=False)  # ... and is kept while newer ones rotate
    names = sorted(p.name for p in trainer.ckpt_dir.iterdir())
    assert names == ["best", "last", "step-000000000", "step-000000010", "step-000000015"]
    assert ckpt.read_pointer(trainer.ckpt_dir, "best").name == "step-000000000"
    assert ckpt.read_pointer(trainer.ckpt_dir, "last").name == "step-000000015"


def test_newer_truncated_and_tampered_checkpoints_fail_clearly(tmp_path: Path) -> None:
    from vaekit.model import VAE

    config = _config()
    model = VAE(config.model, (8, 8))
    good = ckpt.save_checkpoint(tmp_path / "step-000000001", model, config, {"event_shape": [8, 8]})
    assert ckpt.load_model(good)[0] is not None

    meta = json.loads((good / ckpt.META_FILE).read_text())
    newer = tmp_path / "newer"
    newer.mkdir()
    (newer / ckpt.META_FILE).write_text(json.dumps({**meta, "format_version": ckpt.FORMAT_VERSION + 1}))
    with pytest.raises(VaekitError, match="newer than this vaekit.*upgrade"):
        ckpt.load_model(newer)

    data = (good / ckpt.MODEL_FILE).read_bytes()
    for cut in (4, 100, len(data) - 7):
        (good / ckpt.MODEL_FILE).write_bytes(data[:cut])
        with pytest.raises(VaekitError, match="truncated or corrupted"):
            ckpt.load_model(good)
    (good / ckpt.MODEL_FILE).write_bytes(data)

    state = load_file(good / ckpt.MODEL_FILE)
    name = next(k for k, v in state.items() if v.ndim == 2)
    state[name] = state[name][:, :-1].contiguous()
    save_file(state, good / ckpt.MODEL_FILE)
    with pytest.raises(VaekitError, match="does not match its config") as err:
        ckpt.load_model(good)
    assert "\n" not in str(err.value) and name in str(err.value)


def test_tampered_trainer_state_is_refused_before_anything_changes(tmp_path: Path, digits: DataBundle) -> None:
    trainer = _trainer(tmp_path, digits, **{"train.epochs": "1"})
    trainer.fit()
    last = ckpt.read_pointer(trainer.ckpt_dir, "last")
    state_json = json.loads((last / ckpt.TRAINER_JSON).read_text())
    (last / ckpt.TRAINER_JSON).write_text(json.dumps({**state_json, "evil": 1}))
    fresh = train.Trainer(trainer.config, trainer.run_dir, digits)
    weights = {k: v.clone() for k, v in fresh.model.state_dict().items()}
    with pytest.raises(VaekitError, match="invalid trainer state.*evil"):
        fresh.restore(last)
    assert all(torch.equal(weights[k], v) for k, v in fresh.model.state_dict().items())
    (last / ckpt.TRAINER_JSON).write_text(json.dumps(state_json))
    tensors = load_file(last / ckpt.TRAINER_TENSORS)
    tensors["opt.0.exp_avg"] = torch.zeros(3)
    save_file(tensors, last / ckpt.TRAINER_TENSORS)
    with pytest.raises(VaekitError, match="opt.0.exp_avg has shape"):
        fresh.restore(last)


# ------------------------------------------------------------------------------ numerical faults


class Snapshot(train.Callback):
    """Hashes the files of the checkpoint written at the end of epoch 1."""

    def __init__(self) -> None:
        self.files: dict[str, str] = {}
        self.path: Path | None = None

    def on_epoch_end(self, trainer: train.Trainer, metrics: dict) -> None:
        if metrics["epoch"] == 1 and not self.files:
            self.path = ckpt.read_pointer(trainer.ckpt_dir, "last")
            self.files = _hashes(self.path)


def test_nan_data_skips_steps_rolls_back_once_then_stops(tmp_path: Path, digits: DataBundle) -> None:
    poisoned = PoisonedSplit(**vars(digits.train), bad_calls=frozenset({5, 6}), bad_from=STEPS)
    data = dataclasses.replace(digits, train=poisoned)
    snap = Snapshot()
    trainer = _trainer(tmp_path, data, [snap])
    with pytest.raises(VaekitError, match="diverged again.*lower --train.lr"):
        trainer.fit()
    assert trainer.state.rollbacks == 1 and trainer.state.lr_scale == 0.5
    assert trainer.state.skipped_steps == 2 + STEPS + STEPS  # two in epoch 1, then epoch 2 twice
    assert any("rolled back to step-000000023" in h for h in trainer.state.history)
    rows = [json.loads(line) for line in (trainer.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["skipped_steps"]) for r in rows] == [(1, 2)]
    # the good checkpoint is untouched and nothing was written after it
    assert sorted(p.name for p in trainer.ckpt_dir.iterdir()) == ["best", "last", "step-000000023"]
    assert _hashes(snap.path) == snap.files


def test_nan_weights_roll_back_to_the_good_checkpoint_and_recover(tmp_path: Path, digits: DataBundle) -> None:
    snap = Snapshot()
    trainer = _trainer(tmp_path, digits, [snap, PoisonParameter()], **{"train.keep_last": "5"})
    trainer.fit()
    assert trainer.state.rollbacks == 1 and trainer.state.skipped_steps == STEPS
    rows = [json.loads(line) for line in (trainer.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    lr = trainer.config.train.lr
    assert [r["lr"] for r in rows] == pytest.approx([lr, lr / 2, lr / 2])
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert _hashes(snap.path) == snap.files
    assert sorted(p.name for p in trainer.ckpt_dir.glob("step-*")) == [
        f"step-{s:09d}" for s in (STEPS, 2 * STEPS, 3 * STEPS)]


def test_a_mid_epoch_checkpoint_is_never_taken_inside_a_bad_run(tmp_path: Path, digits: DataBundle) -> None:
    poisoned = PoisonedSplit(**vars(digits.train), bad_calls=frozenset({3, 4}))
    data = dataclasses.replace(digits, train=poisoned)
    trainer = _trainer(tmp_path, data, **{"train.epochs": "1", "train.checkpoint_every": "1",
                                          "train.keep_last": "100"})
    trainer.fit()
    steps = sorted(int(p.name[5:]) for p in trainer.ckpt_dir.glob("step-*"))
    assert steps == [s for s in range(1, STEPS + 1) if s not in (4, 5)]  # after calls 3, 4 (steps 4, 5)
    assert trainer.state.skipped_steps == 2


def test_safetensors_whose_header_length_starts_with_0x80_is_not_mistaken_for_a_pickle(tmp_path):
    """A header of 0x480 bytes begins with byte 0x80, like a pickle's protocol marker."""
    for n in range(1, 400):
        path = tmp_path / f"w{n}.safetensors"
        save_file({f"t{i}": torch.zeros(1) for i in range(n)}, path)
        if path.read_bytes()[0] == 0x80:
            break
        path.unlink()
    else:
        pytest.skip("no header length starting with 0x80 found")
    assert len(ckpt.load_tensors(path)) == n
