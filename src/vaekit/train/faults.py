"""Numerical faults: non-finite steps are skipped on the device, counted in streaks, and a streak of
``train.max_bad_steps`` (or a non-finite validation ELBO) rolls the run back once to its last good
checkpoint with half the learning rate; a second time, or with nothing to roll back to, is an error. A
run that skipped nearly every step, or never scored a finite validation ELBO, learned nothing: an error.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vaekit.errors import VaekitError
from vaekit.train.state import EpochPosition, TrainState

# A run that skipped at least this fraction of its steps (non-finite loss or gradients) learned nothing.
SKIPPED_FRACTION_LIMIT = 0.9
FIX_DIVERGENCE = "lower --train.lr or set --train.grad_clip, and check the data for NaN/inf"


#: What a skipped step adds to an epoch's sums (loss, reconstruction, KL, skipped steps).
_SKIPPED = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)


def count_step(position: EpochPosition, bad: Tensor, batch_size: int, terms: Tensor) -> None:
    """Add one step to ``position`` on the device: its ``terms`` (float64 (4,): summed loss,
    reconstruction and KL, nats, then 0) when the step was good, else one skipped step and a longer
    streak. ``bad``: 0-d bool. A few small ops, no host read (this runs every step)."""
    skipped = _SKIPPED if _SKIPPED.device == terms.device else _SKIPPED.to(terms.device)
    position.sums += torch.where(bad, skipped, terms)
    position.run.add_(1).mul_(bad)  # the streak: one longer, or back to 0
    torch.maximum(position.worst_run, position.run, out=position.worst_run)
    position.seen += batch_size


def diverged(position: EpochPosition, max_bad_steps: int) -> bool:
    """Whether the epoch saw a streak of ``max_bad_steps`` skipped steps: the one rollback guard (it
    reads the device once)."""
    return int(position.worst_run.item()) >= max_bad_steps


def check_rollback(state: TrainState, reason: str, checkpoint: str | None) -> None:
    """Raise unless the run may roll back to ``checkpoint`` (its last good one, None without one)."""
    if state.rollbacks >= 1:
        raise VaekitError(f"training diverged again after a rollback: {reason}; {FIX_DIVERGENCE}")
    if checkpoint is None:
        raise VaekitError(f"training learned nothing: {reason} (step {state.step}, {state.skipped_steps} "
                          f"steps skipped) before the first checkpoint, with nothing to roll back to; "
                          f"{FIX_DIVERGENCE}")


def rolled_back(before: TrainState, restored: TrainState, checkpoint: str, reason: str) -> None:
    """Record in the ``restored`` state a rollback from ``before``: one rollback, half the learning rate,
    the skipped steps and the history of ``before`` kept."""
    lr_scale = before.lr_scale * 0.5
    restored.history = [*before.history, f"rolled back to {checkpoint} after {reason} at step {before.step}; "
                        f"lr x{lr_scale}"]
    restored.rollbacks, restored.lr_scale, restored.skipped_steps = before.rollbacks + 1, lr_scale, before.skipped_steps


def check_learned(state: TrainState, run: str) -> None:
    """A ``run`` that skipped nearly all its steps, or never reached a finite validation ELBO, learned
    nothing: it is an error, never a success."""
    if state.step and state.skipped_steps >= SKIPPED_FRACTION_LIMIT * state.step:
        raise VaekitError(f"{run} skipped {state.skipped_steps} of {state.step} steps (non-finite loss or "
                          f"gradients): the run learned nothing; {FIX_DIVERGENCE}")
    if state.selected_on == "val_elbo" and not math.isfinite(state.best_val_elbo):
        raise VaekitError(f"{run} never reached a finite validation ELBO: the run learned nothing; "
                          f"{FIX_DIVERGENCE}")
    if state.selected_on not in ("val_elbo", "last") and not math.isfinite(state.best_val_score):
        raise VaekitError(f"{run} never reached a finite {state.selected_on}: the run learned nothing; "
                          f"{FIX_DIVERGENCE}")
