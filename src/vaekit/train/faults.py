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


def count_step(position: EpochPosition, loss: Tensor, recon: Tensor, kl: Tensor, skipped: Tensor,
               rows: int, batch_size: int) -> None:
    """Queue one step on ``position``: its mean ``loss`` (0-d) over this process's ``rows`` examples, their
    ``recon`` and ``kl`` (n,) per example (nats) and its ``skipped`` flag (0-d float, 1.0 for a skipped step),
    all detached and left on the device: no op, no host read (this runs every step). ``batch_size``: the rows
    of the whole (global) batch, counted in ``seen``. :func:`settle` folds the step in."""
    position.pending.append((loss.detach(), recon.detach(), kl.detach(), skipped, rows))
    position.seen += batch_size


def _per_step_sums(terms: list[Tensor]) -> Tensor:
    """The sums of per-example tensors (n_i,), one per step, as one tensor (steps,): two ops when the steps
    had equal batches (all but an epoch's last, short one), one sum per step otherwise."""
    if all(t.shape == terms[0].shape for t in terms):
        return torch.stack(terms).reshape(len(terms), -1).sum(-1)
    return torch.stack([t.sum() for t in terms])


def settle(position: EpochPosition) -> None:
    """Fold the queued steps into ``position`` with one host read: a good step adds its loss (times this
    process's rows), reconstruction and KL to the sums and ends the streak; a skipped step adds nothing but
    one skipped step and makes the streak one longer. The sums are float64, added in step order."""
    pending = position.pending
    if not pending:
        return
    with torch.no_grad():  # a handful of ops for all the queued steps, then the one read
        columns = [torch.stack([p[0] for p in pending]), _per_step_sums([p[1] for p in pending]),
                   _per_step_sums([p[2] for p in pending]), torch.stack([p[3] for p in pending])]
        records = torch.stack([c.float() for c in columns], 1).tolist()
    sums, run, worst = position.sums, position.run, position.worst_run
    for (loss, recon, kl, skipped), (*_, m) in zip(records, pending, strict=True):
        if skipped:
            sums[3] += 1.0
            run += 1
            worst = max(worst, run)
        else:
            sums[0] += loss * m
            sums[1] += recon
            sums[2] += kl
            run = 0
    position.run, position.worst_run, position.pending = run, worst, []


def diverged(position: EpochPosition, max_bad_steps: int) -> bool:
    """Whether the epoch saw a streak of ``max_bad_steps`` skipped steps: the one rollback guard (it
    settles the position: one read of the device)."""
    settle(position)
    return position.worst_run >= max_bad_steps


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
