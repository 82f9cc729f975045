"""Training objectives: the objective as a module, and the pure schedules of the training loop.

The bounds themselves (ELBO, IWAE, the one likelihood path) live in :mod:`vaekit.bounds` and are
re-exported here. :class:`Objective` wraps a model so that the loss of a batch is the module's
``forward``: a wrapper such as ``DistributedDataParallel`` around it then sees (and all-reduces) every
gradient, which it would not if the trainer called ``model.encode`` on the inner module.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from vaekit.batch import Batch
from vaekit.bounds import LogTerms, LossOutput, elbo_terms, iwae_bound, iwae_terms, log_terms, log_weights

__all__ = ["LogTerms", "LossOutput", "Objective", "elbo_terms", "iwae_bound", "iwae_terms", "kl_weight",
           "log_terms", "log_weights", "lr_factor"]

OBJECTIVES = ("elbo", "iwae")


class Objective(nn.Module):
    """``forward(batch, kl_weight) -> LossOutput`` for ``model``: the ELBO with ``n_samples`` draws and
    KL weight ``kl_weight`` (``kind='elbo'``), or the ``n_samples``-sample IWAE bound (``kind='iwae'``;
    an autoencoder has no IWAE bound and trains on its reconstruction term)."""

    def __init__(self, model: nn.Module, kind: str = "elbo", n_samples: int = 1) -> None:
        super().__init__()
        if kind not in OBJECTIVES:
            raise ValueError(f"unknown objective '{kind}'; use one of {', '.join(OBJECTIVES)}")
        self.model, self.kind, self.n_samples = model, kind, n_samples

    def forward(self, batch: Batch, kl_weight: float | Tensor = 1.0) -> LossOutput:
        model = self.model
        if self.kind == "iwae" and model.posterior.has_density:  # type: ignore[union-attr]
            return iwae_terms(model, batch, self.n_samples)
        return elbo_terms(model, batch, n_samples=self.n_samples, beta=kl_weight)


def kl_weight(step: int, warmup_steps: int, beta: float) -> float:
    """Linear KL warm-up as a pure function of the optimiser step: beta * min(1, step / warmup_steps).

    ``warmup_steps = 0`` means no warm-up (the weight is beta from step 0)."""
    if step < 0 or warmup_steps < 0 or beta < 0:
        raise ValueError(f"kl_weight needs step, warmup_steps, beta >= 0; got {step}, {warmup_steps}, {beta}")
    if warmup_steps == 0:
        return float(beta)
    return float(beta) * min(1.0, step / warmup_steps)


def lr_factor(step: int, total_steps: int, schedule: str) -> float:
    """Multiplier of the base learning rate at ``step`` of ``total_steps``: ``constant`` (1),
    ``cosine`` (half cosine from 1 to 0), or ``step`` (x0.1 at 50% and again at 75%)."""
    frac = min(max(step / max(total_steps, 1), 0.0), 1.0)
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * frac))
    if schedule == "step":
        return 0.1 ** ((frac >= 0.5) + (frac >= 0.75))
    raise ValueError(f"unknown learning-rate schedule '{schedule}'")
