"""Reach model weights through the public shape: a network is an ``nn.Module`` whose ``nn.Linear``
layers are found by type, whatever its internal layout. And a reference model with an exact likelihood:
probabilistic PCA (:func:`ppca`)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import MultivariateNormal

from vaekit.config import ModelConfig
from vaekit.model import VAE


def linear_layers(net: nn.Module) -> list[nn.Linear]:
    """The ``nn.Linear`` layers of ``net`` in order (a ``hidden=()`` MLP has exactly one)."""
    return [m for m in net.modules() if isinstance(m, nn.Linear)]


def only_linear(net: nn.Module) -> nn.Linear:
    """The single linear layer of a linear (``hidden=()``) network."""
    layers = linear_layers(net)
    assert len(layers) == 1, f"expected a linear network, found {len(layers)} linear layers"
    return layers[0]


def ppca(posterior: str = "full", *, data_dim: int = 5, latent_dim: int = 2, sigma: float = 0.6, seed: int = 0,
         perturb: float = 0.0, prior: str = "standard-normal", prior_loc: Tensor | None = None,
         prior_scale: Tensor | None = None) -> tuple[VAE, MultivariateNormal]:
    """(model, marginal): a linear-Gaussian VAE (probabilistic PCA, ``hidden=()``) whose decoder is
    x = W z + b + sigma * noise and whose encoder is the exact posterior (optionally ``perturb``-ed), for
    the prior N(prior_loc, diag prior_scale^2) (default N(0, I)). ``marginal`` is the exact p(x) =
    N(W m + b, W S W^T + sigma^2 I) in the default dtype.

    The model is built with ``model.prior = prior``; a prior other than N(0, I) must be set to
    N(prior_loc, diag prior_scale^2) by the caller (its parameters are its own). A ``diag`` posterior is the
    exact posterior's marginals (so not exact unless the posterior covariance is diagonal)."""
    g = torch.Generator().manual_seed(seed)
    d = latent_dim
    m = torch.zeros(d) if prior_loc is None else prior_loc.detach().clone().to(torch.get_default_dtype())
    s = torch.ones(d) if prior_scale is None else prior_scale.detach().clone().to(torch.get_default_dtype())
    model = VAE(ModelConfig(likelihood="gaussian", hidden=(), latent_dim=d, sigma=sigma, posterior=posterior,
                            prior=prior), (data_dim,))
    W, b = torch.randn(data_dim, d, generator=g), 0.5 * torch.randn(data_dim, generator=g)
    precision = W.T @ W / sigma**2 + torch.diag(1.0 / s**2)  # posterior precision
    cov = torch.linalg.inv(precision)
    A = cov @ W.T / sigma**2  # posterior mean = A (x - b) + cov S^-1 m
    L = torch.linalg.cholesky(cov)
    enc, dec = only_linear(model.encoder), only_linear(model.decoder)
    with torch.no_grad():
        dec.weight.copy_(W)
        dec.bias.copy_(b)
        enc.weight.zero_()
        enc.weight[:d] = A
        enc.bias[:d] = -A @ b + cov @ (m / s**2)
        if posterior == "full":
            rows, cols = torch.tril_indices(d, d)
            raw = L[rows, cols].clone()
            raw[rows == cols] = torch.log(L[rows, cols][rows == cols])
            enc.bias[d:] = raw
        else:
            enc.bias[d:] = torch.log(torch.diagonal(cov))  # log sigma^2 of the marginals
        if perturb:
            enc.weight.add_(perturb * torch.randn(enc.weight.shape, generator=g))
            enc.bias.add_(perturb * torch.randn(enc.bias.shape, generator=g))
    marginal = MultivariateNormal(W @ m + b, covariance_matrix=W @ torch.diag(s**2) @ W.T
                                  + sigma**2 * torch.eye(data_dim))
    return model.eval(), marginal
