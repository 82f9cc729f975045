"""Likelihoods p(x|z), chosen by ``model.likelihood`` (and ``model.variance`` for a learned Gaussian).

A :class:`Likelihood` says how many parameters per data element the decoder network predicts
(``n_params``) and turns them into a distribution over x in the data's own units: the decoder output
``params`` has shape (*batch, n_params, *event_shape) in the model's scaled units, and ``loc`` / ``scale``
(event shape) are the model's data transform (x = loc + scale * x_scaled), so every log-probability is
in nats of the data as stored in the file (a Gaussian's density gains the Jacobian -log scale).

* ``bernoulli``: logits (n_params 1); 0/1 data, discrete, no transform.
* ``gaussian``: mean, fixed sigma ``model.sigma`` in scaled units (n_params 1).
* ``gaussian-learned``: mean, and a learned sigma: one free parameter per data dimension
  (``variance = per-dim``, ``log_sigma`` of event shape, n_params 1) or predicted per output
  (``variance = per-output``, n_params 2: mean then log sigma).
* ``multinomial``: logits over the data elements (n_params 1), e.g. the items of a recommender (Mult-VAE);
  counts, no transform. A normalised multinomial with each example's own total count
  (:class:`vaekit.distributions.Multinomial`); its ``mean`` is the item probabilities softmax(logits).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from vaekit import distributions as D
from vaekit.registry import Registry

if TYPE_CHECKING:
    from vaekit.config import ModelConfig


class Likelihood(nn.Module, ABC):
    """p(x|z) from decoder outputs. Constructor: ``(config: ModelConfig, event_shape, sigma_units)``."""

    #: Whether the data must be 0/1 (the input checks and bits/dim read it).
    discrete: bool = False

    def __init__(self, config: ModelConfig, event_shape: Sequence[int], sigma_units: str = "scaled") -> None:
        super().__init__()
        self.event_shape = tuple(int(s) for s in event_shape)
        #: the event's axes, and the parameter axis in front of them in ``params`` (*batch, n_params, *event)
        self._event_ndims = len(self.event_shape)
        self._param_axis = -self._event_ndims - 1

    @property
    @abstractmethod
    def n_params(self) -> int:
        """Parameters per data element the decoder predicts."""

    @abstractmethod
    def forward(self, params: Tensor, loc: Tensor, scale: Tensor) -> Distribution:
        """params (*batch, n_params, *event_shape) -> p(x|z) with batch shape ``batch`` and event shape
        ``event_shape``, in data units (``loc``, ``scale``: the model's data transform)."""


LIKELIHOODS: Registry[type[Likelihood]] = Registry("likelihood", "model.likelihood")


@LIKELIHOODS.register("bernoulli")
class Bernoulli(Likelihood):
    """Independent Bernoulli pixels with the decoder's logits."""

    discrete = True

    @property
    def n_params(self) -> int:
        return 1

    def forward(self, params: Tensor, loc: Tensor, scale: Tensor) -> Distribution:
        return D.BernoulliLogits(params.squeeze(self._param_axis), self._event_ndims)


@LIKELIHOODS.register("gaussian")
class GaussianFixed(Likelihood):
    """N(mean, sigma^2) with sigma = ``model.sigma`` in the model's scaled units (``sigma_units='scaled'``:
    sigma * scale in data units) or, for format-1 standardised runs, in file units (``'file'``)."""

    def __init__(self, config: ModelConfig, event_shape: Sequence[int], sigma_units: str = "scaled") -> None:
        super().__init__(config, event_shape, sigma_units)
        self.sigma, self.sigma_units = config.sigma, sigma_units

    @property
    def n_params(self) -> int:
        return 1

    def forward(self, params: Tensor, loc: Tensor, scale: Tensor) -> Distribution:
        sigma = torch.full_like(scale, self.sigma)
        if self.sigma_units == "scaled":
            sigma = sigma * scale
        return D.gaussian(params.squeeze(self._param_axis) * scale + loc, sigma, self._event_ndims)


@LIKELIHOODS.register("gaussian-learned")
class GaussianLearned(Likelihood):
    """N(mean, sigma^2) with a learned sigma: per data dimension (a free ``log_sigma`` of event shape,
    ``variance = per-dim``) or per output (the decoder's second parameter, ``variance = per-output``)."""

    def __init__(self, config: ModelConfig, event_shape: Sequence[int], sigma_units: str = "scaled") -> None:
        super().__init__(config, event_shape, sigma_units)
        self.per_output = config.variance == "per-output"
        if not self.per_output:
            self.log_sigma = nn.Parameter(torch.zeros(math.prod(self.event_shape)))

    @property
    def n_params(self) -> int:
        return 2 if self.per_output else 1

    def forward(self, params: Tensor, loc: Tensor, scale: Tensor) -> Distribution:
        if self.per_output:
            mean, log_sigma = params.unbind(self._param_axis)
            sigma = torch.exp(log_sigma) * scale
        else:
            mean = params.squeeze(self._param_axis)
            sigma = torch.exp(self.log_sigma).reshape(self.event_shape) * scale
        return D.gaussian(mean * scale + loc, sigma, self._event_ndims)


@LIKELIHOODS.register("multinomial")
class Multinomial(Likelihood):
    """A multinomial over the data elements (the I items of an interaction row) with the decoder's logits:
    log p(x|z) = lgamma(N + 1) - sum_i lgamma(x_i + 1) + sum_i x_i log softmax(logits)_i, N = sum_i x_i
    (Liang et al. 2018's Mult-VAE with the multinomial coefficient, so log p(x) is a real log-probability;
    the paper's objective drops the coefficient, a constant of the data). Counts are scored as stored
    (no data transform); ``mean`` is the item probabilities softmax(logits)."""

    discrete = True

    @property
    def n_params(self) -> int:
        return 1

    def forward(self, params: Tensor, loc: Tensor, scale: Tensor) -> Distribution:
        return D.multinomial(params.squeeze(self._param_axis), self._event_ndims)


from vaekit.tabular import likelihood as _mixed  # noqa: E402,F401  registers "mixed" (mixed-type tables)
