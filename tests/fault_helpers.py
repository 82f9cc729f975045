"""Numerical faults on demand for the training tests: a split that serves NaN batches."""

from __future__ import annotations

import dataclasses

import torch

from vaekit import train
from vaekit.data import Split


@dataclasses.dataclass
class PoisonedSplit(Split):
    """A training split whose ``batch`` returns NaNs on chosen calls (counted from 0)."""

    bad_calls: frozenset[int] = frozenset()
    bad_from: int = 10**9
    calls: int = 0

    def batch(self, idx: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        xb = super().batch(idx, generator)
        call, self.calls = self.calls, self.calls + 1
        return torch.full_like(xb, float("nan")) if call in self.bad_calls or call >= self.bad_from else xb


class PoisonParameter(train.Callback):
    """Writes a NaN into a weight once, after epoch 1's checkpoint."""

    def __init__(self) -> None:
        self.done = False

    def on_epoch_end(self, trainer: train.Trainer, metrics: dict) -> None:
        if not self.done:
            self.done = True
            with torch.no_grad():
                next(trainer.model.parameters()).view(-1)[0] = float("nan")
