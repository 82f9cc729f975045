"""Where a trainer keeps its checkpoints and metrics: a run directory, or memory.

:class:`RunDirStore` writes ``RUN/checkpoints/step-<step>/`` (atomically, see :mod:`vaekit.checkpoint`),
the ``last`` / ``best`` pointers and ``RUN/metrics.jsonl``. :class:`MemoryStore` keeps the same content
(the ``last`` and ``best`` snapshots, the metric rows) in memory and writes nothing: library use, where a
rollback restores the in-memory snapshot of the last good checkpoint. The trainer does the same thing
with either; only where the bytes go differs.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, final

from torch import Tensor

from vaekit import checkpoint as ckpt
from vaekit.config import Config
from vaekit.errors import VaekitError
from vaekit.fileio import atomic_write_text, write_errors

# Test hook: seconds to sleep between writing the ``last`` and the ``best`` pointers, so a test can kill
# the process in between (the torn state that the trainer state's ``best_checkpoint`` repairs).
PAUSE_BEFORE_BEST_ENV = "VAEKIT_TEST_PAUSE_BEFORE_BEST"


@dataclass(frozen=True)
class Snapshot:
    """One training checkpoint's content: ``name`` (step-<step>), the model's ``weights`` (state dict), the
    trainer ``tensors`` (optimiser moments, RNG states, a mid-epoch position), the trainer ``state``
    (:class:`~vaekit.train.TrainState` as a JSON object), ``meta`` (meta.json's content) and ``source``,
    where it was read from (for messages)."""

    name: str
    weights: dict[str, Tensor]
    tensors: dict[str, Tensor]
    state: dict[str, Any]
    meta: dict[str, Any]
    source: str = ""


class CheckpointStore(ABC):
    """Checkpoints and metric rows of one run. ``label`` names the run in messages."""

    label: str

    @abstractmethod
    def save(self, snapshot: Snapshot, config: Config, best: bool) -> None:
        """Keep ``snapshot`` as the run's ``last`` checkpoint (and ``best`` when ``best``)."""

    @abstractmethod
    def last_name(self) -> str | None:
        """The name of the run's last checkpoint; None before the first."""

    @abstractmethod
    def read_last(self) -> Snapshot:
        """The run's last checkpoint (what a rollback restores)."""

    @abstractmethod
    def best_weights(self) -> dict[str, Tensor] | None:
        """The weights of the run's best checkpoint; None before the first."""

    @abstractmethod
    def append_metrics(self, row: dict[str, Any]) -> None:
        """Record one finished epoch's metrics."""

    @abstractmethod
    def truncate_metrics(self, epochs: int) -> list[dict[str, Any]]:
        """Keep the rows of epochs 1..``epochs`` (once each), drop the rest; returns the rows kept."""

    def write_fix(self) -> str | None:
        """The fix a failed write suggests (None: nothing is written)."""
        return None


def _clone(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in tensors.items()}


@final
class MemoryStore(CheckpointStore):
    """Checkpoints and metrics kept in memory: the ``last`` and ``best`` snapshots (copies, so training on
    never changes them) and every metric row. Nothing is written to disk."""

    def __init__(self) -> None:
        self.label = "the in-memory run"
        self.last: Snapshot | None = None
        self.best: Snapshot | None = None
        self.rows: list[dict[str, Any]] = []

    def save(self, snapshot: Snapshot, config: Config, best: bool) -> None:
        ckpt.refuse_non_finite(snapshot.weights)
        kept = Snapshot(snapshot.name, _clone(snapshot.weights), _clone(snapshot.tensors),
                        json.loads(json.dumps(snapshot.state)), json.loads(json.dumps(snapshot.meta)),
                        f"the in-memory checkpoint {snapshot.name}")
        self.last = kept
        if best:
            self.best = kept

    def last_name(self) -> str | None:
        return None if self.last is None else self.last.name

    def read_last(self) -> Snapshot:
        if self.last is None:
            raise VaekitError("the in-memory run has no checkpoint yet")
        s = self.last
        return Snapshot(s.name, _clone(s.weights), _clone(s.tensors), json.loads(json.dumps(s.state)), s.meta,
                        s.source)

    def best_weights(self) -> dict[str, Tensor] | None:
        return None if self.best is None else _clone(self.best.weights)

    def append_metrics(self, row: dict[str, Any]) -> None:
        self.rows.append(dict(row))

    def truncate_metrics(self, epochs: int) -> list[dict[str, Any]]:
        self.rows = [r for r in self.rows if isinstance(r.get("epoch"), int) and 1 <= r["epoch"] <= epochs]
        return [dict(r) for r in self.rows]


def read_snapshot(path: Path) -> Snapshot:
    """A training checkpoint directory as a :class:`Snapshot` (weights under this format's names). A
    trainer state older than ``best_checkpoint`` takes it from the ``best`` pointer beside ``path``."""
    meta = ckpt.read_meta(path)
    tensors = ckpt.load_tensors(path / ckpt.TRAINER_TENSORS)
    state = ckpt.read_json(path / ckpt.TRAINER_JSON)
    weights = ckpt.upgrade_state(meta, ckpt.load_tensors(path / ckpt.MODEL_FILE))
    if "best_checkpoint" not in state:  # a checkpoint older than the field: the pointer file's
        state = {**state, "best_checkpoint": ckpt.pointer_name(path.parent, "best")}
    return Snapshot(path.name, weights, tensors, state, meta, str(path))


@final
class RunDirStore(CheckpointStore):
    """A run directory: ``checkpoints/step-<step>/`` with ``last`` / ``best`` pointers (the newest
    ``keep_last`` kept, plus those the pointers name) and ``metrics.jsonl``.

    The ``last`` pointer is the commit point: the checkpoint's own trainer state already names the best
    checkpoint, so a kill before the ``best`` pointer is written leaves a ``best`` file that readers
    (``checkpoint.choose_checkpoint``, :meth:`prune`, ``resume``) overrule and resume repairs."""

    def __init__(self, run_dir: Path, keep_last: int) -> None:
        self.run_dir, self.keep_last = Path(run_dir), keep_last
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.label = str(self.run_dir)

    def save(self, snapshot: Snapshot, config: Config, best: bool) -> None:
        ckpt.save_checkpoint(self.ckpt_dir / snapshot.name, snapshot.weights, config, snapshot.meta,
                             trainer_tensors=snapshot.tensors, trainer_state=snapshot.state, fix=self.write_fix())
        atomic_write_text(self.ckpt_dir / "last", snapshot.name, self.write_fix())
        if best:
            if os.environ.get(PAUSE_BEFORE_BEST_ENV):
                time.sleep(float(os.environ[PAUSE_BEFORE_BEST_ENV]))
            atomic_write_text(self.ckpt_dir / "best", snapshot.name, self.write_fix())
        self.prune(snapshot.state.get("best_checkpoint"))

    def prune(self, best: str | None) -> None:
        """Keep the newest ``keep_last`` checkpoints plus those ``last`` and ``best`` name (the best one
        as the trainer state records it, ``best``, and the ``best`` file's too)."""
        keep = {n for n in (best, ckpt.pointer_name(self.ckpt_dir, "best"),
                            ckpt.pointer_name(self.ckpt_dir, "last")) if n is not None}
        steps = sorted(p for p in self.ckpt_dir.glob("step-*") if p.is_dir())
        keep |= {p.name for p in steps[-self.keep_last:]}
        for p in steps:
            if p.name not in keep:
                shutil.rmtree(p, ignore_errors=True)

    def last_name(self) -> str | None:
        last = ckpt.read_pointer(self.ckpt_dir, "last")
        return None if last is None else last.name

    def read_last(self) -> Snapshot:
        last = ckpt.read_pointer(self.ckpt_dir, "last")
        if last is None:
            raise VaekitError(f"{self.ckpt_dir} has no last checkpoint")
        return read_snapshot(last)

    def best_weights(self) -> dict[str, Tensor] | None:
        last = ckpt.read_pointer(self.ckpt_dir, "last")
        if last is None:
            return None
        best = ckpt.choose_checkpoint(self.run_dir).path
        return ckpt.upgrade_state(ckpt.read_meta(best), ckpt.load_tensors(best / ckpt.MODEL_FILE))

    def write_fix(self) -> str:
        """The fix for a failed write during training: free space, then resume from the last checkpoint
        (which is whole), or start again when none was written yet."""
        if ckpt.read_pointer(self.ckpt_dir, "last") is None:
            return (f"no checkpoint was written yet: free space (or make the folder writable), then train again "
                    f"(remove {self.run_dir} first or choose another name, --name)")
        return (f"the last checkpoint is intact: free space (or make the folder writable), then continue with "
                f"`vaekit train --resume {self.run_dir}` (vaekit.train.resume in Python)")

    def append_metrics(self, row: dict[str, Any]) -> None:
        """One JSON line per finished epoch, written with one call and fsynced. A torn line left by a full
        disk is dropped by the next resume's :meth:`truncate_metrics`."""
        with write_errors(self.metrics_path, self.write_fix()), open(self.metrics_path, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def truncate_metrics(self, epochs: int) -> list[dict[str, Any]]:
        """Keep the lines of epochs 1..``epochs`` (once each); drop later epochs and torn lines."""
        if not self.metrics_path.exists():
            return []
        kept: dict[int, str] = {}
        for line in self.metrics_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                epoch = json.loads(line).get("epoch")
            except (json.JSONDecodeError, AttributeError):
                continue  # a line torn by a kill
            if isinstance(epoch, int) and 1 <= epoch <= epochs:
                kept.setdefault(epoch, line)
        atomic_write_text(self.metrics_path, "".join(kept[e] + "\n" for e in sorted(kept)))
        return [json.loads(kept[e]) for e in sorted(kept)]


@final
class FollowerStore(CheckpointStore):
    """What the processes other than rank 0 of a distributed run (:mod:`vaekit.train.dist`) see of its run
    directory: they read its checkpoints (a rollback restores every process from ``last``) and write
    nothing; rank 0's :class:`RunDirStore` writes checkpoints and metrics. The run directory must be on
    a file system every process sees."""

    def __init__(self, writer: RunDirStore) -> None:
        self.writer, self.label = writer, writer.label

    def save(self, snapshot: Snapshot, config: Config, best: bool) -> None:
        """Nothing: rank 0 writes the checkpoint."""

    def last_name(self) -> str | None:
        return self.writer.last_name()

    def read_last(self) -> Snapshot:
        return self.writer.read_last()

    def best_weights(self) -> dict[str, Tensor] | None:
        return self.writer.best_weights()

    def append_metrics(self, row: dict[str, Any]) -> None:
        """Nothing: rank 0 writes the metrics."""

    def truncate_metrics(self, epochs: int) -> list[dict[str, Any]]:
        """Nothing is changed; no rows are kept here (rank 0 holds them)."""
        return []
