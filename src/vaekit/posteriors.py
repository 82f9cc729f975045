"""Posterior heads: the encoder network's output (n, P) -> q(z|x), chosen by ``model.posterior``
(``model.kind = 'ae'`` selects the point mass).

* ``diag``: N(mu, diag sigma^2), P = 2d (mu, then log sigma^2);
* ``full``: N(mu, L L^T) with L lower-triangular, P = d + d(d+1)/2 (mu, then the row-major lower
  triangle, its diagonal log-parameterised so it is positive);
* ``point``: the autoencoder's deterministic code z = f(x), P = d (no density: no ELBO, no log p(x)).

Every head returns a ``torch.distributions`` object with batch shape (n,) and event shape (d,).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from vaekit import distributions as D
from vaekit.registry import Registry


class PosteriorHead(nn.Module, ABC):
    """Maps (n, n_params) to q(z|x) with batch (n,) and event (d,). Constructor: ``(latent_dim)``.
    ``has_density``: False for a point mass (no log q, so no ELBO)."""

    has_density: bool = True

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    @property
    @abstractmethod
    def n_params(self) -> int: ...

    @abstractmethod
    def forward(self, params: Tensor) -> Distribution: ...


POSTERIORS: Registry[type[PosteriorHead]] = Registry("posterior", "model.posterior")


@POSTERIORS.register("diag")
class DiagonalNormal(PosteriorHead):
    """N(mu, diag sigma^2) from (mu, log sigma^2)."""

    @property
    def n_params(self) -> int:
        return 2 * self.latent_dim

    def forward(self, params: Tensor) -> Distribution:
        loc, log_var = params.chunk(2, dim=-1)  # one split: its gradient is one cat, not two zero-filled slices
        return D.DiagNormal(loc, torch.exp(0.5 * log_var), log_var)  # loc and scale share one shape


@POSTERIORS.register("full")
class FullNormal(PosteriorHead):
    """N(mu, L L^T) from mu and the lower triangle of L (diagonal entries log-parameterised)."""

    _tril_idx: Tensor

    def __init__(self, latent_dim: int) -> None:
        super().__init__(latent_dim)
        self.register_buffer("_tril_idx", torch.tril_indices(latent_dim, latent_dim), persistent=False)

    @property
    def n_params(self) -> int:
        d = self.latent_dim
        return d + d * (d + 1) // 2

    def forward(self, params: Tensor) -> Distribution:
        d = self.latent_dim
        rows, cols = self._tril_idx
        tril = torch.zeros(params.shape[0], d, d, device=params.device, dtype=params.dtype)
        tril[:, rows, cols] = params[:, d:]
        diag = torch.exp(torch.diagonal(tril, dim1=-2, dim2=-1))  # positive diagonal
        return D.full_normal(params[:, :d], torch.tril(tril, -1) + torch.diag_embed(diag))


@POSTERIORS.register("point")
class PointMass(PosteriorHead):
    """The autoencoder's code z = f(x): a point mass, no density."""

    has_density = False

    @property
    def n_params(self) -> int:
        return self.latent_dim

    def forward(self, params: Tensor) -> Distribution:
        return D.PointMass(params)
