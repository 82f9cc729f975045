"""Priors p(z), chosen by ``model.prior``.

A :class:`Prior` is an ``nn.Module`` (so a learnable prior's parameters train and are saved with the
model) that builds its distribution once per batch with :meth:`Prior.forward`; the one likelihood path
(:func:`vaekit.bounds.log_terms`) takes that object, so a prior that is costly to build (a VampPrior
encodes its pseudo-inputs) is built once per batch, not once per importance-sampling chunk.
:meth:`Prior.analytic_kl` returns KL(q(z|x) || p(z)) in closed form when there is one, else None, and
the ELBO then uses a Monte-Carlo estimate from its own draws (the loss record says which).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from vaekit import distributions as D
from vaekit.registry import Registry


class Prior(nn.Module, ABC):
    """p(z) over R^d. Constructor: ``(latent_dim)``."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    @abstractmethod
    def forward(self) -> Distribution:
        """p(z): batch shape (), event shape (d,); ``log_prob(z)`` of z (..., d) is (...,) nats."""

    def analytic_kl(self, q_z: Distribution) -> Tensor | None:
        """KL(q || p) per example (n,) in nats in closed form, or None when there is none."""
        return None

    def analytic_kl_per_dim(self, q_z: Distribution) -> Tensor | None:
        """The KL split by latent dimension (n, d) in nats, or None when the prior offers no split."""
        return None

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws z ~ p(z): (n, d), with ``generator`` when given (reproducible samples)."""
        return D.draw(self(), (n,), generator)


PRIORS: Registry[type[Prior]] = Registry("prior", "model.prior")


@PRIORS.register("standard-normal")
class StandardNormal(Prior):
    """p(z) = N(0, I_d), with closed-form KLs to diagonal and full-covariance Gaussian posteriors."""

    _zero: Tensor

    def __init__(self, latent_dim: int) -> None:
        super().__init__(latent_dim)
        self.register_buffer("_zero", torch.zeros(()), persistent=False)  # follows the model's device/dtype

    def forward(self) -> Distribution:
        return D.standard_normal(self.latent_dim, device=self._zero.device, dtype=self._zero.dtype)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """N(0, I) draws made on the generator's device (the CPU by default), then moved to the model's."""
        device = generator.device if generator is not None else torch.device("cpu")
        z = torch.randn(n, self.latent_dim, generator=generator, dtype=self._zero.dtype, device=device)
        return z.to(self._zero.device)

    def analytic_kl(self, q_z: Distribution) -> Tensor | None:
        return D.kl_standard_normal(q_z) if D.is_gaussian(q_z) else None

    def analytic_kl_per_dim(self, q_z: Distribution) -> Tensor | None:
        return D.kl_per_dim(q_z) if D.is_gaussian(q_z) else None
