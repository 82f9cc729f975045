"""The hooks the training loop calls (minGPT-style events): logging, progress bars, budgets, reports."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vaekit.train.loop import Trainer


class Callback:
    """Hooks the loop calls; override what you need. ``metrics`` are the epoch's logged numbers."""

    def on_train_start(self, trainer: Trainer) -> None: ...
    def on_log(self, trainer: Trainer, stats: dict[str, float]) -> None: ...
    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None: ...
    def on_train_end(self, trainer: Trainer) -> None: ...
