"""The one likelihood path, and the bounds built on it.

:func:`log_terms` is the only place where a model's densities meet: for latent draws z (k, n, d) of a
batch it returns log p(x|z), log p(z) and log q(z|x), each (k, n) in nats. The ELBO (training and
evaluation), the IWAE bound, the importance-sampled log p(x) and the naive estimator
(:mod:`vaekit.evaluate`) all call it, with the prior built once per batch by the caller.

The KL of the ELBO is the prior's closed form when it has one (:meth:`vaekit.priors.Prior.analytic_kl`),
else the Monte-Carlo estimate mean_v [log q(z_v|x) - log p(z_v)] from the ELBO's own draws;
``LossOutput.kl_estimator`` says which ('analytic', 'monte-carlo', or 'none' for a point-mass code).
A hierarchical model's q(z|x) and p(z) also give their densities per level (``log_prob_levels``); the
loss record then carries the KL per level (``kl_levels``, (n, L), summing to ``kl``).

Free bits (Kingma et al. 2016), ``free_bits`` = lambda nats per latent dimension: the KL term of the loss
becomes sum_g max(lambda * d_g, (1/m) sum_i KL_ig) over groups g of d_g latent dimensions, the KL averaged
over the minibatch first. The groups are the latent dimensions (d_g = 1) when the prior has a closed-form
per-dimension KL (``Prior.analytic_kl_per_dim``); otherwise (a Monte-Carlo KL) the latent levels of a
hierarchy, or the whole code of a one-level model (one group, d_g = d). ``bound`` and ``kl`` stay the
true beta-weighted ELBO and KL per example; only ``loss`` sees the floor.

Units and reductions. Every per-example term is a sum over the data's event axes (and the latent
axes) in nats, shape (n,). A minibatch of m examples from a dataset of N estimates the dataset
objective as L(X) ~ (N/m) * sum_{i in batch} L_i (seed 000, eq. 19); vaekit reports and optimises the
per-example average (1/m) * sum_i L_i = L(X)/N, so learning rates do not depend on N and no dataset
size hides inside the loss as a secret beta. ``loss`` is minimised: loss = -(1/m) sum_i objective_i.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution

from vaekit.batch import Batch, as_batch


@dataclass
class LogTerms:
    """Densities at k latent draws for n examples, each (k, n), nats ((n,) for one draw made without a sample
    axis). ``log_pz`` / ``log_qz`` are None when they were not asked for, or for a point-mass code (no density)."""

    log_px_z: Tensor
    log_pz: Tensor | None = None
    log_qz: Tensor | None = None
    #: log q - log p per level (k, n, L) for a hierarchical model (levels bottom first), else None
    kl_levels: Tensor | None = None

    @property
    def log_w(self) -> Tensor:
        """Importance log-weights log p(x|z) + log p(z) - log q(z|x), (k, n)."""
        if self.log_pz is None or self.log_qz is None:
            raise ValueError("an autoencoder has no posterior density, so no importance weights; train a VAE")
        return self.log_px_z + self.log_pz - self.log_qz


def log_terms(model: Any, batch: Batch, z: Tensor, q_z: Distribution, p_z: Distribution | None,
              densities: bool = True) -> LogTerms:
    """log p(x|z), log p(z) and log q(z|x) for draws ``z`` (k, n, d) of the examples of ``batch``:
    (k, n) each, nats (one draw without a sample axis, z (n, d): (n,) each). ``p_z``: the model's prior, built
    once per batch (``model.prior()``).
    ``densities=False`` skips log p(z) and log q(z|x) (the ELBO with a closed-form KL needs neither)."""
    log_px_z = model.log_px(model.decode(z, batch.c, y=batch.y), batch)
    if not densities or not model.posterior.has_density:
        return LogTerms(log_px_z)
    assert p_z is not None, "log_terms needs the prior p_z for log p(z)"
    if hasattr(q_z, "log_prob_levels") and hasattr(p_z, "log_prob_levels"):  # a hierarchy: per level
        lq, lp = q_z.log_prob_levels(z), p_z.log_prob_levels(z)  # (k, n, L)
        return LogTerms(log_px_z, lp.sum(-1), lq.sum(-1), lq - lp)
    return LogTerms(log_px_z, p_z.log_prob(z), q_z.log_prob(z))


@dataclass
class LossOutput:
    """One minibatch's loss record: the scalar to minimise plus per-example terms (shape (n,), nats).

    ``recon`` = E_q[log p(x|z)] (Monte-Carlo over the draws), ``kl`` = KL(q(z|x) || p(z)) (closed form, or
    a Monte-Carlo estimate from the same draws: ``kl_estimator``), ``bound`` = the per-example objective
    whose negated mean is ``loss`` (the beta-weighted ELBO, or the importance-weighted bound)."""

    loss: Tensor
    recon: Tensor
    kl: Tensor
    bound: Tensor
    kl_estimator: str = "analytic"
    #: the KL per level (n, L), nats, for a hierarchical model (Monte Carlo, same draws); None otherwise
    kl_levels: Tensor | None = None

    @property
    def elbo(self) -> Tensor:
        """The true (beta = 1) ELBO per example, nats, shape (n,)."""
        return self.recon - self.kl


def kl_term(model: Any, q_z: Distribution, terms: LogTerms, closed: Tensor | None = None) -> tuple[Tensor, str]:
    """KL(q(z|x) || p(z)) per example (n,) and how it was computed: the prior's closed form
    ('analytic'; pass it as ``closed`` when already computed), else mean over the draws of log q - log p
    ('monte-carlo'); 0 for a point mass ('none')."""
    drawn = terms.log_px_z.dim() > len(q_z.batch_shape)  # a sample axis in front (k draws), or one draw
    if not model.posterior.has_density:
        return torch.zeros_like(terms.log_px_z[0] if drawn else terms.log_px_z), "none"
    kl = model.latent_prior.analytic_kl(q_z) if closed is None else closed
    if kl is not None:
        return kl, "analytic"
    assert terms.log_qz is not None and terms.log_pz is not None
    diff = terms.log_qz - terms.log_pz
    return diff.mean(0) if drawn else diff, "monte-carlo"


def free_bits_kl(kl_groups: Tensor, group_dims: int, free_bits: float) -> Tensor:
    """The free-bits KL term sum_g max(lambda * d_g, (1/m) sum_i KL_ig): a scalar, nats per example.
    ``kl_groups``: (m, G) KL per example and group, each group ``group_dims`` latent dimensions wide;
    ``free_bits`` = lambda >= 0 nats per dimension (0 gives the plain mean KL)."""
    floor = torch.full_like(kl_groups[0], free_bits * group_dims)
    return torch.maximum(kl_groups.mean(0), floor).sum()


def elbo_terms(model: Any, x: Tensor | Batch, n_samples: int = 1, beta: float | Tensor = 1.0,
               free_bits: float = 0.0) -> LossOutput:
    """ELBO with V = ``n_samples`` reparameterised samples per point and KL weight ``beta``.

    recon_i = (1/V) sum_v log p(x_i | z_iv),  z_iv ~ q(z|x_i) reparameterised;
    bound_i = recon_i - beta * KL_i. For an autoencoder (point-mass code) KL = 0 and recon is
    log p(x | z = f(x)). ``free_bits`` > 0: loss = -(mean_i recon_i - beta * free_bits_kl(...)) (module
    docstring); ``bound`` is unchanged.
    """
    batch = as_batch(x)
    q_z = model.encode(batch)
    has_density = model.posterior.has_density
    single = n_samples == 1  # one draw: z (n, d) and every term (n,), no sample axis (no views in the step's graph)
    z = q_z.rsample(() if single else (n_samples,))  # (n, d) or (V, n, d)
    closed = model.latent_prior.analytic_kl(q_z) if has_density else None
    p_z = None if closed is not None or not has_density else model.prior()
    terms = log_terms(model, batch, z, q_z, p_z, densities=p_z is not None)  # log p(z), log q only for an MC KL
    recon = terms.log_px_z if single else terms.log_px_z.mean(0)  # (n,)
    kl, how = (closed, "analytic") if closed is not None else kl_term(model, q_z, terms)
    kl_levels = terms.kl_levels if terms.kl_levels is None or single else terms.kl_levels.mean(0)  # (n, L)
    weighted_kl = kl if isinstance(beta, float) and beta == 1.0 else beta * kl  # x * 1.0 is x
    bound = recon - weighted_kl
    loss = (weighted_kl - recon).mean()  # -bound.mean() bit for bit, without a negation node in the step's graph
    if free_bits > 0 and has_density:
        per_dim = model.latent_prior.analytic_kl_per_dim(q_z) if closed is not None else None
        if per_dim is not None:
            groups, dims = per_dim, 1
        elif kl_levels is not None:
            groups, dims = kl_levels, model.latent_dim // kl_levels.shape[-1]
        else:
            groups, dims = kl[:, None], model.latent_dim
        loss = -(recon.mean() - beta * free_bits_kl(groups, dims, free_bits))
    return LossOutput(loss=loss, recon=recon, kl=kl, bound=bound, kl_estimator=how, kl_levels=kl_levels)


def log_weights(model: Any, x: Tensor | Batch, k: int, q_z: Distribution | None = None, z: Tensor | None = None,
                p_z: Distribution | None = None) -> Tensor:
    """log w_j = log p(x, z_j) - log q(z_j | x) for k draws z_j ~ q(z|x): shape (k, n), nats.

    Pass ``q_z`` to reuse an encoding across chunks, ``z`` (k, n, d) to use pre-drawn samples (any
    proposal ``q_z`` with a density works, e.g. the prior expanded to batch (n,) gives the naive
    estimator's weights log p(x|z_j)), and ``p_z`` to build the prior once for many chunks.
    """
    batch = as_batch(x)
    q_z = model.encode(batch) if q_z is None else q_z
    if not model.posterior.has_density:
        raise ValueError("an autoencoder has no posterior density, so no likelihood; train a VAE")
    if z is None:
        z = q_z.rsample((k,))  # (k, n, d)
    elif z.shape[0] != k:
        raise ValueError(f"log_weights got {z.shape[0]} pre-drawn samples for k = {k}")
    return log_terms(model, batch, z, q_z, model.prior() if p_z is None else p_z).log_w


def iwae_bound(model: Any, x: Tensor | Batch, k: int) -> Tensor:
    """The k-sample importance-weighted bound log (1/k) sum_j w_j, per example, shape (n,), nats.
    k = 1 is the ELBO (in expectation); the bound does not decrease in expectation as k grows."""
    return torch.logsumexp(log_weights(model, x, k), 0) - math.log(k)


def iwae_terms(model: Any, x: Tensor | Batch, k: int) -> LossOutput:
    """Training record for the IWAE objective: ``bound`` is the k-sample bound; ``recon`` and ``kl``
    (for logging) come from the same k draws (the KL in closed form when the prior has one)."""
    batch = as_batch(x)
    q_z = model.encode(batch)
    terms = log_terms(model, batch, q_z.rsample((k,)), q_z, model.prior())  # (k, n) each
    bound = torch.logsumexp(terms.log_w, 0) - math.log(k)
    kl, how = kl_term(model, q_z, terms)
    return LossOutput(loss=-bound.mean(), recon=terms.log_px_z.mean(0), kl=kl, bound=bound, kl_estimator=how,
                      kl_levels=None if terms.kl_levels is None else terms.kl_levels.mean(0))
