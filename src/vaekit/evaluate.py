"""Test-time likelihood by importance sampling, and the numbers researchers report.

log p(x) ~ logsumexp_j(log p(x, z_j) - log q(z_j|x)) - log k with z_j ~ q(z|x), computed by
``objectives.log_weights`` (the training code path), all points of a batch at once and the k samples
in chunks, under ``torch.inference_mode()``, so memory stays bounded by batch x chunk.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vaekit.objectives import log_weights


@torch.inference_mode()
def log_likelihood(model, x: Tensor, k: int = 5000, chunk: int = 500, batch_size: int = 500,
                   generator_seed: int | None = None) -> Tensor:
    """Per-example importance-sampled estimate of log p(x) in nats, shape (n,).

    ``x``: (n, *event_shape) in data units. ``k`` importance samples per point, processed ``chunk``
    at a time for ``batch_size`` points at once. The estimate is a stochastic lower bound whose bias
    vanishes as k grows (it equals the ELBO in expectation at k = 1).
    """
    if k < 1 or chunk < 1 or batch_size < 1:
        raise ValueError(f"k, chunk and batch_size must be >= 1; got {k}, {chunk}, {batch_size}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    if generator_seed is not None:
        torch.manual_seed(generator_seed)
    out = []
    for start in range(0, x.shape[0], batch_size):
        xb = x[start:start + batch_size].to(device)
        q_z = model.encode(xb)
        acc = torch.full((xb.shape[0],), -math.inf, device=device)
        for done in range(0, k, chunk):
            lw = log_weights(model, xb, min(chunk, k - done), q_z)  # (chunk, b)
            acc = torch.logaddexp(acc, torch.logsumexp(lw, 0))
        out.append((acc - math.log(k)).cpu())
    model.train(was_training)
    return torch.cat(out)


def bits_per_dim(log_likelihood_nats: float, dims: int) -> float:
    """-log p(x) / (D log 2): nats per example -> bits per data dimension."""
    return -log_likelihood_nats / (dims * math.log(2.0))
