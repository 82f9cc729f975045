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
from collections.abc import Callable, Sequence
from typing import Any

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

    @classmethod
    def from_config(cls, latent_dim: int, config: Any, event_shape: Sequence[int]) -> Prior:
        """The prior of a model config (``model.prior_components`` etc.) over R^latent_dim; a prior that
        needs nothing beyond its dimension keeps this default, ``cls(latent_dim)``."""
        return cls(latent_dim)

    def bind(self, encode: Callable[[Tensor], Distribution]) -> None:
        """Give the prior the model's encoder, ``encode(u) -> q(z|u)`` for inputs u (K, *event) in the
        encoder's input units (batch (K,)). A VampPrior needs it; other priors ignore it."""


def build_prior(config: Any, latent_dim: int, event_shape: Sequence[int]) -> Prior:
    """The ``config.prior`` prior (a ModelConfig) over R^latent_dim for data of ``event_shape``."""
    return PRIORS.get(config.prior).from_config(latent_dim, config, event_shape)


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
        return D.closed_kl_standard_normal(q_z)

    def analytic_kl_per_dim(self, q_z: Distribution) -> Tensor | None:
        return D.kl_per_dim(q_z) if D.is_gaussian(q_z) else None


def _mixture(logits: Tensor, components: Distribution) -> Distribution:
    """sum_j softmax(logits)_j components_j: batch (), event (d,) for ``components`` of batch (K,)."""
    return D.mixture(logits, components)


@PRIORS.register("mog")
class MixtureOfGaussians(Prior):
    """p(z) = sum_j pi_j N(mu_j, diag sigma_j^2), j = 1..K, with learnable weights pi = softmax(logits) (K,),
    means (K, d) and log-scales (K, d) (``latent_prior.logits``, ``.means``, ``.log_scales``). No closed-form
    KL: the ELBO uses the Monte-Carlo KL. Initialised with equal weights, unit scales and means drawn from
    N(0, I) (all zero for K = 1, where the prior starts as N(0, I))."""

    def __init__(self, latent_dim: int, components: int = 10) -> None:
        super().__init__(latent_dim)
        self.components = components
        self.logits = nn.Parameter(torch.zeros(components))
        means = torch.randn(components, latent_dim) if components > 1 else torch.zeros(1, latent_dim)
        self.means = nn.Parameter(means)
        self.log_scales = nn.Parameter(torch.zeros(components, latent_dim))

    @classmethod
    def from_config(cls, latent_dim: int, config: Any, event_shape: Sequence[int]) -> Prior:
        return cls(latent_dim, config.prior_components)

    def forward(self) -> Distribution:
        return _mixture(self.logits, D.diag_normal(self.means, self.log_scales.exp()))


#: The paper's pseudo-input initialisation (Tomczak & Welling 2018, MNIST): N(0.05, 0.01^2) per element.
VAMP_INIT_MEAN, VAMP_INIT_SD = 0.05, 0.01


@PRIORS.register("vamp")
class VampPrior(Prior):
    """The VampPrior (Tomczak & Welling 2018): p(z) = (1/K) sum_k q(z | u_k), the model's own posterior at K
    learnable pseudo-inputs u (K, *event_shape) (``latent_prior.pseudo_inputs``, in the encoder's input units:
    after any standardisation), initialised N(0.05, 0.01^2) as in the paper. :meth:`forward` encodes the K
    pseudo-inputs (one encoder pass), so build it once per batch and pass it on, as every estimator of
    :mod:`vaekit.bounds` and :mod:`vaekit.evaluate` does. The model binds its encoder (:meth:`bind`); the
    gradient of log p(z) reaches both the pseudo-inputs and the encoder."""

    def __init__(self, latent_dim: int, components: int = 10, event_shape: Sequence[int] = (1,)) -> None:
        super().__init__(latent_dim)
        self.components = components
        self.pseudo_inputs = nn.Parameter(VAMP_INIT_MEAN + VAMP_INIT_SD * torch.randn(components, *event_shape))
        self._encode: Callable[[Tensor], Distribution] | None = None

    @classmethod
    def from_config(cls, latent_dim: int, config: Any, event_shape: Sequence[int]) -> Prior:
        return cls(latent_dim, config.prior_components, tuple(event_shape))

    def bind(self, encode: Callable[[Tensor], Distribution]) -> None:
        self._encode = encode

    def forward(self) -> Distribution:
        if self._encode is None:
            raise RuntimeError("this VampPrior has no encoder: build it through a model (VAE / build_model), "
                               "which binds its encoder")
        q_u = self._encode(self.pseudo_inputs)  # batch (K,), event (d,): one encoder pass per call
        return _mixture(torch.zeros(self.components, device=q_u.mean.device, dtype=q_u.mean.dtype), q_u)
