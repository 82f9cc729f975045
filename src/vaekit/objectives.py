"""Objectives: the ELBO, the importance-weighted bound, and the pure schedules of the training loop.

Units and reductions. Every per-example term is a sum over the data's event axes (and the latent
axes) in nats, shape (n,). A minibatch of m examples from a dataset of N estimates the dataset
objective as L(X) ~ (N/m) * sum_{i in batch} L_i (seed 000, eq. 19); vaekit reports and optimises the
per-example average (1/m) * sum_i L_i = L(X)/N, so learning rates do not depend on N and no dataset
size hides inside the loss as a secret beta. ``loss`` is minimised: loss = -(1/m) sum_i objective_i.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from vaekit.distributions import PointMass, kl_standard_normal


@dataclass
class LossOutput:
    """One minibatch's loss record: the scalar to minimise plus per-example terms (shape (n,), nats).

    ``recon`` = E_q[log p(x|z)] (Monte-Carlo over V samples), ``kl`` = KL(q(z|x) || p(z)) in closed
    form, ``bound`` = the per-example objective whose negated mean is ``loss`` (the beta-weighted ELBO,
    or the importance-weighted bound)."""

    loss: Tensor
    recon: Tensor
    kl: Tensor
    bound: Tensor

    @property
    def elbo(self) -> Tensor:
        """The true (beta = 1) ELBO per example, nats, shape (n,)."""
        return self.recon - self.kl


def elbo_terms(model, x: Tensor, n_samples: int = 1, beta: float | Tensor = 1.0) -> LossOutput:
    """ELBO with V = ``n_samples`` reparameterised samples per point and KL weight ``beta``.

    recon_i = (1/V) sum_v log p(x_i | z_iv),  z_iv = mu_i + sigma_i * eps_v  (eps ~ N(0, I));
    bound_i = recon_i - beta * KL_i. For an autoencoder (point-mass code) KL = 0 and recon is
    log p(x | z = f(x)).
    """
    q_z = model.encode(x)
    z = q_z.rsample((n_samples,))  # (V, n, d)
    recon = model.decode(z).log_prob(x).mean(0)  # (n,)
    kl = torch.zeros_like(recon) if isinstance(q_z, PointMass) else kl_standard_normal(q_z)
    bound = recon - beta * kl
    return LossOutput(loss=-bound.mean(), recon=recon, kl=kl, bound=bound)


def log_weight_terms(model, x: Tensor, z: Tensor, q_z) -> tuple[Tensor, Tensor]:
    """(log p(x|z_j), log w_j) for given latent draws z of shape (k, n, d): both (k, n), nats, with
    log w_j = log p(x|z_j) + log p(z_j) - log q(z_j|x). The one likelihood path of vaekit."""
    log_px_z = model.decode(z).log_prob(x)  # (k, n)
    return log_px_z, log_px_z + model.prior().log_prob(z) - q_z.log_prob(z)


def log_weights(model, x: Tensor, k: int, q_z=None, z: Tensor | None = None) -> Tensor:
    """log w_j = log p(x, z_j) - log q(z_j | x) for k draws z_j ~ q(z|x): shape (k, n), nats.

    The same encode / decode / prior code as training; pass ``q_z`` to reuse an encoding across chunks
    and ``z`` (k, n, d) to use pre-drawn samples (any proposal ``q_z`` with a density works, e.g. the
    prior expanded to batch (n,) gives the naive estimator's weights log p(x|z_j)).
    """
    q_z = model.encode(x) if q_z is None else q_z
    if isinstance(q_z, PointMass):
        raise ValueError("an autoencoder has no posterior density, so no likelihood; train a VAE")
    if z is None:
        z = q_z.rsample((k,))  # (k, n, d)
    elif z.shape[0] != k:
        raise ValueError(f"log_weights got {z.shape[0]} pre-drawn samples for k = {k}")
    return log_weight_terms(model, x, z, q_z)[1]


def iwae_bound(model, x: Tensor, k: int) -> Tensor:
    """The k-sample importance-weighted bound log (1/k) sum_j w_j, per example, shape (n,), nats.
    k = 1 is the ELBO (in expectation); the bound does not decrease in expectation as k grows."""
    return torch.logsumexp(log_weights(model, x, k), 0) - math.log(k)


def iwae_terms(model, x: Tensor, k: int) -> LossOutput:
    """Training record for the IWAE objective: ``bound`` is the k-sample bound; ``recon`` and ``kl``
    (for logging) come from the same k draws and the closed-form KL."""
    q_z = model.encode(x)
    log_px_z, lw = log_weight_terms(model, x, q_z.rsample((k,)), q_z)  # (k, n) each
    bound = torch.logsumexp(lw, 0) - math.log(k)
    return LossOutput(loss=-bound.mean(), recon=log_px_z.mean(0), kl=kl_standard_normal(q_z), bound=bound)


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
