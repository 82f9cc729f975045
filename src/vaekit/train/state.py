"""What a training run is besides its tensors: the run's counters and an epoch's position."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class TrainState:
    """Everything besides tensors that a resumed run needs (saved as trainer.json)."""

    step: int = 0
    epoch: int = 0
    best_val_elbo: float = -math.inf
    best_epoch: int = -1
    epochs_without_improvement: int = 0
    skipped_steps: int = 0
    rollbacks: int = 0
    lr_scale: float = 1.0
    history: list[str] = field(default_factory=list)
    batch_in_epoch: int = 0  # > 0 in a mid-epoch checkpoint: the batches of ``epoch`` already done
    bad_streak: int = 0  # non-finite steps in a row at the end of epoch ``epoch``: the streak goes on
    best_checkpoint: str | None = None  # the best checkpoint's name; the copy in ``last``'s state is the truth
    selected_on: str = "val_elbo"  # what picks ``best``: "val_elbo", a Selection's name (e.g. "val_ndcg@100"),
    # or "last" without a validation split
    best_val_score: float = -math.inf  # the best value of a Selection (selected_on not val_elbo / last)
    world_size: int = 1  # the processes that trained it (vaekit.train.dist); a resume at another count notes it
    threads_auto: bool = False  # trained on the free cores (train.threads = -1): the thread count follows the
    # load while it trains (vaekit.threads.ThreadGovernor), after a resume too


#: The trainer tensors of a mid-epoch position (``epoch.seconds`` is absent from older checkpoints).
POSITION_KEYS = ("epoch.sums", "epoch.run", "epoch.worst_run", "epoch.seen")


@dataclass
class EpochPosition:
    """Where an epoch stands.

    ``batch``: the next batch of the epoch's order; ``sums``: the summed loss, reconstruction and KL (nats)
    over the epoch's good steps so far, and the number of skipped (non-finite) steps; ``run`` /
    ``worst_run``: the current and the longest streak of skipped steps; ``seen``: the samples served so
    far; ``seconds``: time spent on this epoch before this process continued it (0 unless resumed
    mid-epoch). ``pending``: the records of the steps since the host last read them, still on the device
    (a step never waits for the host; :func:`vaekit.train.faults.settle` folds them into the numbers above).
    In a distributed run (:mod:`vaekit.train.dist`) the three sums are this process's share
    (``group.reduce_sums`` adds them up; the skipped count and the streaks are the same everywhere) and
    ``seen`` counts the rows of the global batches."""

    batch: int
    sums: list[float]
    run: int
    worst_run: int
    seen: int
    seconds: float
    pending: list[tuple[Tensor, Tensor, Tensor, Tensor, int]] = field(default_factory=list)

    @classmethod
    def start(cls, bad_streak: int) -> EpochPosition:
        """Batch 0 with zero sums; the streak the last epoch ended with goes on (a streak of skipped steps
        does not stop at an epoch boundary)."""
        return cls(0, [0.0, 0.0, 0.0, 0.0], bad_streak, bad_streak, 0, 0.0)

    @classmethod
    def from_tensors(cls, batch: int, tensors: dict[str, Tensor]) -> EpochPosition:
        """A position saved by :meth:`to_tensors` (``batch`` is the trainer state's ``batch_in_epoch``)."""
        seconds = float(tensors["epoch.seconds"]) if "epoch.seconds" in tensors else 0.0  # older: unknown
        sums = [float(v) for v in tensors["epoch.sums"].double().tolist()]
        return cls(batch, sums, int(tensors["epoch.run"]), int(tensors["epoch.worst_run"]),
                   int(tensors["epoch.seen"]), seconds)

    def sums_tensor(self, device: torch.device | str = "cpu") -> Tensor:
        """``sums`` as a float64 (4,) tensor on ``device`` (what ``group.reduce_sums`` and checkpoints take)."""
        return torch.tensor(self.sums, dtype=torch.float64, device=device)

    def to_tensors(self, seconds: float, sums: Tensor | None = None) -> dict[str, Tensor]:
        """The ``epoch.*`` trainer tensors, ``seconds`` being the epoch's time so far; ``sums`` replaces
        this process's (a distributed run saves the sums over all its processes). The position must be
        settled (no pending step records)."""
        if self.pending:
            raise RuntimeError("EpochPosition.to_tensors with unsettled steps; call vaekit.train.faults.settle first")
        sums = self.sums_tensor() if sums is None else sums
        return {"epoch.sums": sums.detach().cpu(), "epoch.run": torch.tensor(float(self.run)),
                "epoch.worst_run": torch.tensor(float(self.worst_run)), "epoch.seen": torch.tensor(self.seen),
                "epoch.seconds": torch.tensor(seconds, dtype=torch.float64)}
