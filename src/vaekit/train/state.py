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


#: The trainer tensors of a mid-epoch position (``epoch.seconds`` is absent from older checkpoints).
POSITION_KEYS = ("epoch.sums", "epoch.run", "epoch.worst_run", "epoch.seen")


@dataclass
class EpochPosition:
    """Where an epoch stands. The tensors stay on the device, so a step never waits for the host.

    ``batch``: the next batch of the epoch's order; ``sums``: float64 (4,) = the summed loss, reconstruction
    and KL (nats) over the epoch's good steps so far, and the number of skipped (non-finite) steps;
    ``run`` / ``worst_run``: the current and the longest streak of skipped steps (0-d float tensors);
    ``seen``: the samples served so far; ``seconds``: time spent on this epoch before this process
    continued it (0 unless resumed mid-epoch). In a distributed run (:mod:`vaekit.train.dist`) the three
    sums are this process's share (``group.reduce_sums`` adds them up; the skipped count and the streaks
    are the same everywhere) and ``seen`` counts the rows of the global batches."""

    batch: int
    sums: Tensor
    run: Tensor
    worst_run: Tensor
    seen: int
    seconds: float

    @classmethod
    def start(cls, bad_streak: int, device: torch.device) -> EpochPosition:
        """Batch 0 with zero sums; the streak the last epoch ended with goes on (a streak of skipped steps
        does not stop at an epoch boundary)."""
        streak = torch.tensor(float(bad_streak), device=device)
        return cls(0, torch.zeros(4, dtype=torch.float64, device=device), streak, streak.clone(), 0, 0.0)

    @classmethod
    def from_tensors(cls, batch: int, tensors: dict[str, Tensor], device: torch.device) -> EpochPosition:
        """A position saved by :meth:`to_tensors` (``batch`` is the trainer state's ``batch_in_epoch``)."""
        seconds = float(tensors["epoch.seconds"]) if "epoch.seconds" in tensors else 0.0  # older: unknown
        return cls(batch, tensors["epoch.sums"].to(device), tensors["epoch.run"].to(device),
                   tensors["epoch.worst_run"].to(device), int(tensors["epoch.seen"]), seconds)

    def to_tensors(self, seconds: float, sums: Tensor | None = None) -> dict[str, Tensor]:
        """The ``epoch.*`` trainer tensors, ``seconds`` being the epoch's time so far; ``sums`` replaces
        this process's (a distributed run saves the sums over all its processes)."""
        sums = self.sums if sums is None else sums
        return {"epoch.sums": sums.detach().cpu(), "epoch.run": self.run.detach().cpu(),
                "epoch.worst_run": self.worst_run.detach().cpu(), "epoch.seen": torch.tensor(self.seen),
                "epoch.seconds": torch.tensor(seconds, dtype=torch.float64)}
