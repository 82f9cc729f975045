"""The trainer's parts: in-memory training, its own RNG streams, optimiser state by parameter name, and the
checkpoint's config as the one source of truth for a run.

In-process runs on digits with a tiny model; the on-disk run of the same config is the reference an
in-memory run must equal bit for bit (they share every line but where the bytes go).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from cli_helpers import run_vaekit
from fault_helpers import PoisonedSplit, PoisonParameter
from safetensors.torch import load_file, save_file
from tiny_runs import STEPS, tiny_config

from vaekit import checkpoint as ckpt
from vaekit import train
from vaekit.config import Config, load_config
from vaekit.data import DataBundle
from vaekit.errors import VaekitError
from vaekit.scoring import evaluate_split

TIMING = ("samples_per_s", "epoch_time_s")


def _config(**overrides: str) -> Config:
    return tiny_config(**overrides)


def _rows(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def _disk_rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


def _last(run: Path) -> Path:
    last = ckpt.read_pointer(run / "checkpoints", "last")
    assert last is not None
    return last


# ------------------------------------------------------------------------------------- in memory
def test_in_memory_training_writes_nothing_and_learns(tmp_path: Path, digits: DataBundle,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = _config()
    untrained = train.Trainer(config, None, digits)
    before = evaluate_split(untrained.model, digits.val, 64, seed=0)["elbo"]
    run_dir, trainer = train.fit(config, runs_root=None, data=digits)
    assert run_dir is None and trainer.run_dir is None and trainer.ckpt_dir is None
    assert list(tmp_path.rglob("*")) == []  # no run folder, no metrics, no checkpoint, no lock
    assert [r["epoch"] for r in trainer.metrics] == [1, 2]
    after = evaluate_split(trainer.model, digits.val, 64, seed=0)["elbo"]
    assert after > before + 2.0  # nats per example (measured: about -45.2 before, -41.8 after)
    assert trainer.metrics[1]["val_elbo"] > trainer.metrics[0]["val_elbo"]
    assert trainer.state.best_epoch == 1 and trainer.state.best_checkpoint == f"step-{2 * STEPS:09d}"


def test_in_memory_run_equals_the_run_on_disk(tmp_path: Path, digits: DataBundle) -> None:
    run_dir, disk = train.fit(_config(), runs_root=tmp_path, data=digits)
    _, memory = train.fit(_config(), runs_root=None, data=digits)
    assert _same_weights(memory.model.state_dict(), disk.model.state_dict())
    assert _rows(memory.metrics) == _rows(_disk_rows(run_dir)) == _rows(disk.metrics)
    assert memory.state == disk.state
    best_on_disk = load_file(ckpt.choose_checkpoint(run_dir).path / ckpt.MODEL_FILE)
    assert _same_weights(memory.best_state_dict(), best_on_disk)
    assert _same_weights(disk.best_state_dict(), best_on_disk)


class AscendAfterEpoch1(train.Callback):
    """lr x-1 after epoch 1: gradient ascent makes epoch 2 worse, so ``best`` stays at epoch 1."""

    def on_epoch_end(self, trainer: train.Trainer, metrics: dict) -> None:
        trainer.state.lr_scale = -1.0


def test_in_memory_best_weights_are_the_best_epochs_not_the_last(digits: DataBundle) -> None:
    trainer = train.Trainer(_config(), None, digits, [AscendAfterEpoch1()])
    trainer.fit()
    assert trainer.state.best_checkpoint == f"step-{STEPS:09d}"
    best = trainer.best_state_dict()
    assert not _same_weights(best, trainer.model.state_dict())  # model: the last weights
    trainer.model.load_state_dict(best)
    score = evaluate_split(trainer.model, digits.val, 64, train.VAL_SEED_OFFSET + trainer.config.train.seed)
    assert score["elbo"] == trainer.state.best_val_elbo == trainer.metrics[0]["val_elbo"]


def test_in_memory_rollback_restores_the_last_good_epoch(tmp_path: Path, digits: DataBundle,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config(**{"train.epochs": "3"})
    _, disk = train.fit(config, runs_root=tmp_path / "disk", data=digits, callbacks=[PoisonParameter()])
    monkeypatch.chdir(tmp_path / "disk")
    before = sorted(tmp_path.rglob("*"))
    _, memory = train.fit(config, runs_root=None, data=digits, callbacks=[PoisonParameter()])
    assert sorted(tmp_path.rglob("*")) == before
    assert memory.state.rollbacks == 1 and memory.state.skipped_steps == STEPS
    assert any(f"rolled back to step-{STEPS:09d}" in h for h in memory.state.history)
    lr = config.train.lr
    assert [r["lr"] for r in memory.metrics] == pytest.approx([lr, lr / 2, lr / 2])
    assert [r["epoch"] for r in memory.metrics] == [1, 2, 3]
    assert _same_weights(memory.model.state_dict(), disk.model.state_dict())  # the same rollback as on disk
    assert memory.state == disk.state


def test_in_memory_divergence_before_any_checkpoint_is_an_error(digits: DataBundle) -> None:
    poisoned = PoisonedSplit(**vars(digits.train), bad_from=0)
    trainer = train.Trainer(_config(), None, dataclasses.replace(digits, train=poisoned))
    with pytest.raises(VaekitError, match="nothing to roll back to") as err:
        trainer.fit()
    assert "\n" not in str(err.value)
    with pytest.raises(VaekitError, match="no checkpoint yet"):
        trainer.best_state_dict()


# ------------------------------------------------------------------------------------ global RNG
def test_the_callers_global_rng_is_never_touched(tmp_path: Path, digits: DataBundle) -> None:
    torch.manual_seed(12345)
    state = torch.get_rng_state()
    trainer = train.Trainer(_config(), None, digits)
    assert torch.equal(torch.get_rng_state(), state)
    trainer.fit()
    assert torch.equal(torch.get_rng_state(), state)
    batch = digits.train.batch_of(torch.arange(8), torch.Generator().manual_seed(0))
    trainer.step(batch)  # a step called on its own, outside an epoch
    assert torch.equal(torch.get_rng_state(), state)
    run_dir, _ = train.fit(_config(**{"train.epochs": "1"}), runs_root=tmp_path, data=digits)
    assert torch.equal(torch.get_rng_state(), state)
    toml = run_dir / "config.toml"
    toml.write_text(toml.read_text().replace("\nepochs = 1", "\nepochs = 2"))
    train.resume(run_dir)
    assert torch.equal(torch.get_rng_state(), state)


def test_results_do_not_depend_on_the_callers_global_rng(digits: DataBundle) -> None:
    weights = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        trainer = train.Trainer(_config(**{"train.epochs": "1"}), None, digits)
        torch.rand(1000)  # the caller draws between building and training
        trainer.fit()
        weights.append(trainer.model.state_dict())
    assert _same_weights(*weights)


# ------------------------------------------------------------------------- optimiser state by name
def _stopped_after_epoch_1(tmp_path: Path, digits: DataBundle) -> Path:
    class Stop(train.Callback):
        def on_epoch_end(self, trainer: train.Trainer, metrics: dict) -> None:
            trainer.request_stop("test")

    run_dir, _ = train.fit(_config(name="stopped"), runs_root=tmp_path, data=digits, callbacks=[Stop()])
    return run_dir


def test_optimizer_state_is_keyed_by_parameter_name(tmp_path: Path, digits: DataBundle) -> None:
    run_dir, trainer = train.fit(_config(**{"train.epochs": "1"}), runs_root=tmp_path, data=digits)
    tensors = load_file(_last(run_dir) / ckpt.TRAINER_TENSORS)
    opt = {k for k in tensors if k.startswith("opt")}
    names = [n for n, _ in trainer.model.named_parameters()]
    assert opt == {f"opt:{n}:{k}" for n in names for k in ("step", "exp_avg", "exp_avg_sq")}
    for n, p in trainer.model.named_parameters():
        assert torch.equal(tensors[f"opt:{n}:exp_avg"], trainer.optimizer.state[p]["exp_avg"])


def test_index_keyed_optimizer_state_of_older_checkpoints_resumes_exactly(tmp_path: Path,
                                                                          digits: DataBundle) -> None:
    reference, _ = train.fit(_config(name="ref"), runs_root=tmp_path, data=digits)
    run = _stopped_after_epoch_1(tmp_path, digits)
    path = _last(run) / ckpt.TRAINER_TENSORS
    tensors = load_file(path)
    model = ckpt.load_model(_last(run))[0]
    index = {n: i for i, (n, _) in enumerate(model.named_parameters())}
    old = {}
    for key, value in tensors.items():  # as vaekit wrote them before: opt.<index>.<key>
        if key.startswith("opt:"):
            name, _, field = key[4:].rpartition(":")
            key = f"opt.{index[name]}.{field}"
        old[key] = value
    assert ckpt.optimizer_state(model, old).keys() == ckpt.optimizer_state(model, tensors).keys()
    for i, slot in ckpt.optimizer_state(model, old).items():
        assert all(torch.equal(v, ckpt.optimizer_state(model, tensors)[i][k]) for k, v in slot.items())
    save_file(old, path)
    train.resume(run)
    assert _same_weights(load_file(_last(run) / ckpt.MODEL_FILE), load_file(_last(reference) / ckpt.MODEL_FILE))
    assert _rows(_disk_rows(run)) == _rows(_disk_rows(reference))


@pytest.mark.parametrize(("key", "match"), [
    ("opt:encoder.no_such_layer.weight:exp_avg", "opt:encoder.no_such_layer.weight:exp_avg names no parameter"),
    ("opt.999.exp_avg", "opt.999.exp_avg names no parameter"),
])
def test_an_optimizer_tensor_naming_no_parameter_is_an_invalid_trainer_state(tmp_path: Path, digits: DataBundle,
                                                                              key: str, match: str) -> None:
    run_dir, trainer = train.fit(_config(**{"train.epochs": "1"}), runs_root=tmp_path, data=digits)
    path = _last(run_dir) / ckpt.TRAINER_TENSORS
    save_file({**load_file(path), key: torch.zeros(3)}, path)
    fresh = train.Trainer(trainer.config, run_dir, digits)
    with pytest.raises(VaekitError, match=f"invalid trainer state.*{match}") as err:
        fresh.restore(_last(run_dir))
    assert "\n" not in str(err.value)


def test_an_optimizer_moment_of_the_wrong_shape_is_refused_by_name(tmp_path: Path, digits: DataBundle) -> None:
    run_dir, trainer = train.fit(_config(**{"train.epochs": "1"}), runs_root=tmp_path, data=digits)
    name, p = next(iter(trainer.model.named_parameters()))
    path = _last(run_dir) / ckpt.TRAINER_TENSORS
    save_file({**load_file(path), f"opt:{name}:exp_avg": torch.zeros(3)}, path)
    fresh = train.Trainer(trainer.config, run_dir, digits)
    with pytest.raises(VaekitError, match=re.escape(f"opt:{name}:exp_avg has shape (3,), expected {tuple(p.shape)}")):
        fresh.restore(_last(run_dir))


# ------------------------------------------------------------------------- the config's one source
def test_resume_and_load_take_the_config_saved_with_the_weights(tmp_path: Path, digits: DataBundle) -> None:
    run = _stopped_after_epoch_1(tmp_path, digits)
    toml = run / "config.toml"
    toml.unlink()  # written for people: a run with a checkpoint does not need it
    trainer = train.resume(run)
    assert trainer.state.epoch == 2 and trainer.config == ckpt.load_model(run)[1]
    assert trainer.resume_note is None


def test_an_edited_config_toml_is_refused_unless_it_only_says_how_long(tmp_path: Path, digits: DataBundle) -> None:
    run, _ = train.fit(_config(**{"train.epochs": "1"}), runs_root=tmp_path, data=digits)
    toml = run / "config.toml"
    original = toml.read_text()
    toml.write_text(original.replace("lr = 0.001", "lr = 0.01"))
    with pytest.raises(VaekitError, match=r"config.toml was edited after training \(train.lr 0.001 -> 0.01\).*"
                                          r"undo the edit of train.lr") as err:
        train.resume(run)
    assert "\n" not in str(err.value) and _last(run).name == f"step-{STEPS:09d}"
    assert ckpt.load_model(run)[1].train.lr == 0.001  # load reads the checkpoint's config too
    toml.write_text(original.replace("\nepochs = 1", "\nepochs = 2"))
    trainer = train.resume(run)
    assert trainer.resume_note is not None and "train.epochs 1 -> 2 (applied)" in trainer.resume_note
    assert any("train.epochs 1 -> 2 (applied)" in h for h in trainer.state.history)
    assert trainer.state.epoch == 2 and _last(run).name == f"step-{2 * STEPS:09d}"
    assert ckpt.read_meta(_last(run))["config"]["train"]["epochs"] == 2
    assert load_config(toml).train.epochs == 2


def test_cli_resume_of_an_edited_model_is_one_error_line(tmp_path: Path, digits: DataBundle) -> None:
    run, _ = train.fit(_config(**{"train.epochs": "1"}), runs_root=tmp_path, data=digits)
    toml = run / "config.toml"
    toml.write_text(toml.read_text().replace("hidden = [16]", "hidden = [32]"))
    done = run_vaekit("train", "--resume", str(run), "--no-progress", "--no-artifacts", "--no-report")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vaekit: error: ") and "model.hidden [16] -> [32]" in lines[0]
    shutil.rmtree(run / "checkpoints")  # killed before its first checkpoint: config.toml is all there is
    done = run_vaekit("train", "--resume", str(run), "--no-progress", "--no-artifacts", "--no-report")
    assert done.returncode == 0, done.stderr
    assert ckpt.load_model(run)[1].model.hidden == (32,)


@pytest.mark.parametrize("split_at", [25, 2, 4])  # one read for all, or reads at other points (a mid-epoch save)
def test_settle_adds_the_queued_steps_exactly_wherever_it_reads(split_at: int) -> None:
    """Queued per-example terms (full batches, a short last one, a skipped step) fold into the float64 sums
    exactly as each step's own sum added in step order, however the reads split the queue."""
    from vaekit.train import faults
    from vaekit.train.state import EpochPosition

    g = torch.Generator().manual_seed(0)
    sizes, skipped = [8, 8, 8, 8, 3], [0.0, 0.0, 1.0, 0.0, 0.0]
    steps = [(torch.randn((), generator=g), torch.randn(n, generator=g) * 100, torch.rand(n, generator=g) * 10,
              torch.tensor(s)) for n, s in zip(sizes, skipped, strict=True)]
    pos = EpochPosition.start(0)
    for i, ((loss, recon, kl, bad), n) in enumerate(zip(steps, sizes, strict=True)):
        faults.count_step(pos, loss, recon.requires_grad_(), kl, bad, n, n)
        if (i + 1) % split_at == 0:
            faults.settle(pos)
    faults.settle(pos)
    expected = [0.0, 0.0, 0.0, 0.0]
    for (loss, recon, kl, bad), n in zip(steps, sizes, strict=True):
        if bad:
            expected[3] += 1.0
        else:
            expected[0] += float(loss) * n
            expected[1] += float(recon.detach().sum())
            expected[2] += float(kl.sum())
    assert pos.sums == expected  # bit for bit
    assert (pos.run, pos.worst_run, pos.seen, pos.pending) == (0, 1, sum(sizes), [])
