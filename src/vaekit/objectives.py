"""Training objectives: the objective as a module, and the pure schedules of the training loop.

The bounds themselves (ELBO, IWAE, the one likelihood path) live in :mod:`vaekit.bounds` and are
re-exported here. :class:`Objective` wraps a model so that the loss of a batch is the module's
``forward``: a wrapper such as ``DistributedDataParallel`` around it then sees (and all-reduces) every
gradient, which it would not if the trainer called ``model.encode`` on the inner module.
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor, nn

from vaekit.batch import Batch
from vaekit.bounds import LogTerms, LossOutput, elbo_terms, iwae_bound, iwae_terms, log_terms, log_weights
from vaekit.errors import VaekitError

__all__ = ["LogTerms", "LossOutput", "Objective", "cyclical_kl_weight", "elbo_terms", "iwae_bound", "iwae_terms",
           "kl_weight", "kl_weight_of", "log_terms", "log_weights", "lr_factor"]

OBJECTIVES = ("elbo", "iwae")


class Objective(nn.Module):
    """``forward(batch, kl_weight) -> LossOutput`` for ``model``: the ELBO with ``n_samples`` draws, KL
    weight ``kl_weight`` and ``free_bits`` nats per latent dimension (``kind='elbo'``; :mod:`vaekit.bounds`),
    or the ``n_samples``-sample IWAE bound log (1/k) sum_j w_j (``kind='iwae'``, k = ``n_samples``), which has
    no KL weight: ``kl_weight`` is not used. An autoencoder has no IWAE bound: a VaekitError."""

    def __init__(self, model: nn.Module, kind: str = "elbo", n_samples: int = 1, free_bits: float = 0.0) -> None:
        super().__init__()
        if kind not in OBJECTIVES:
            raise ValueError(f"unknown objective '{kind}'; use one of {', '.join(OBJECTIVES)}")
        if kind == "iwae" and not model.posterior.has_density:  # type: ignore[union-attr]
            raise VaekitError("an autoencoder (model.kind 'ae') has no posterior density, so no importance-weighted "
                              "bound; use --train.objective elbo or --model.kind vae")
        self.model, self.kind, self.n_samples, self.free_bits = model, kind, n_samples, free_bits

    @classmethod
    def of(cls, model: nn.Module, train: Any) -> Objective:
        """The objective a TrainConfig asks for (k = ``train.iwae_k`` or ``n_samples`` for IWAE)."""
        if train.objective == "iwae":
            return cls(model, "iwae", train.k)
        return cls(model, "elbo", train.n_samples, train.free_bits)

    def forward(self, batch: Batch, kl_weight: float | Tensor = 1.0) -> LossOutput:
        model = self.model
        if self.kind == "iwae":
            return iwae_terms(model, batch, self.n_samples)
        return elbo_terms(model, batch, n_samples=self.n_samples, beta=kl_weight, free_bits=self.free_bits)


def kl_weight(step: int, warmup_steps: int, beta: float) -> float:
    """Linear KL warm-up as a pure function of the optimiser step: beta * min(1, step / warmup_steps).

    ``warmup_steps = 0`` means no warm-up (the weight is beta from step 0)."""
    if step < 0 or warmup_steps < 0 or beta < 0:
        raise ValueError(f"kl_weight needs step, warmup_steps, beta >= 0; got {step}, {warmup_steps}, {beta}")
    if warmup_steps == 0:
        return float(beta)
    return float(beta) * min(1.0, step / warmup_steps)


def cyclical_kl_weight(step: int, total_steps: int, beta: float, cycles: int = 4, ratio: float = 0.5) -> float:
    """The cyclical KL schedule (Fu et al. 2019) as a pure function of the step: the run's ``total_steps``
    are cut into ``cycles`` cycles of T = total_steps / cycles steps; in each the weight rises linearly from 0
    to ``beta`` over the first ``ratio`` * T steps, then holds ``beta``:
    beta * min(1, ((step mod T) / T) / ratio). Steps past the run's end go on cycling."""
    if step < 0 or total_steps < 1 or beta < 0 or cycles < 1 or not 0 < ratio <= 1:
        raise ValueError(f"cyclical_kl_weight needs step >= 0, total_steps >= 1, beta >= 0, cycles >= 1 and ratio in "
                         f"(0, 1]; got {step}, {total_steps}, {beta}, {cycles}, {ratio}")
    period = total_steps / cycles
    tau = (step % period) / period
    return float(beta) * min(1.0, tau / ratio)


def kl_weight_of(train: Any, step: int, total_steps: int) -> float:
    """The KL weight at ``step`` for a TrainConfig: its ``kl_schedule`` (``linear``: :func:`kl_weight` with
    ``warmup_steps``; ``cyclical``: :func:`cyclical_kl_weight` over ``total_steps``); 1 for IWAE (unused)."""
    if train.objective == "iwae":
        return 1.0
    if train.kl_schedule == "cyclical":
        return cyclical_kl_weight(step, total_steps, train.beta, train.kl_cycles, train.kl_ratio)
    return kl_weight(step, train.warmup_steps, train.beta)


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
