"""The numbers behind the latent-space figures: 2-D projections, KL usage, traversal and interpolation
codes. Nothing is encoded here: posterior means, KL per dimension, active units and the linear probe come
from :func:`vaekit.probes.split_stats`, the function behind ``vaekit eval``, so the report shows the
numbers eval reports; the figures draw a subsample of its points (:func:`encoded_from`).

Shapes: x (n, *event_shape); codes z (n, d); KL in nats per example.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vaekit.probes import SplitStats

MAX_TSNE_POINTS = 600


@dataclass
class Encoded:
    """Posterior means ``z`` (n, d) of a subsample of a split, its labels ``y`` (n,) or None, the conditions
    ``cond`` (n, c_dim) the rows were encoded with (None for an unconditional model) and the mean KL per
    latent dimension ``kl`` (d,) in nats over the WHOLE split (None for a plain autoencoder, which has no KL)."""

    z: np.ndarray
    y: np.ndarray | None
    kl: np.ndarray | None
    cond: np.ndarray | None = None


def subsample_index(n: int, limit: int, seed: int = 0) -> torch.Tensor:
    """At most ``limit`` distinct row indices of 0..n-1, sorted, reproducible from ``seed``."""
    if n <= limit:
        return torch.arange(n)
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=g)[:limit].sort().values


def encoded_from(stats: SplitStats, limit: int = 2000, seed: int = 0) -> Encoded:
    """Up to ``limit`` points of ``stats`` (a split's statistics) to draw; ``kl`` stays the whole split's."""
    idx = subsample_index(stats.n_points, limit, seed)
    return Encoded(z=stats.means[idx].numpy(), y=None if stats.y is None or not len(stats.y) else stats.y[idx].numpy(),
                   kl=None if stats.kl_per_dim is None else stats.kl_per_dim.numpy(),
                   cond=None if stats.cond is None else stats.cond[idx].numpy())


def dimension_order(enc: Encoded) -> np.ndarray:
    """Latent dimensions, most used first: by mean KL per dimension (VAE) or by code variance (AE)."""
    score = enc.kl if enc.kl is not None else enc.z.var(0)
    return np.argsort(-score, kind="stable")


def pca_2d(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Project codes (n, d) onto their first two principal axes.

    Returns (points (n, 2), components (2, d) orthonormal, centre (d,), explained variance ratio (2,)).
    The prior N(0, I_d) projects to N(-components @ centre, I_2) in these coordinates.
    """
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=0).fit(z)
    return pca.transform(z), pca.components_, pca.mean_, pca.explained_variance_ratio_


#: Prior draws behind the density contours of a learned prior in the 2-D latent panel.
PRIOR_DRAWS = 20_000


def is_standard_prior(model: Any) -> bool:
    """True when the model's prior is N(0, I) (drawn as circles); False for a learned prior (mog, vamp, the
    two-level hierarchy), whose density is drawn from its own samples."""
    return model.config.prior == "standard-normal" and getattr(model, "level_dim", None) is None


def prior_name(model: Any) -> str:
    """How every page (report and explorer) names the model's prior p(z): 'N(0, I)', 'learned mog' (the
    config's name of a learned prior), or 'two-level p(z2) p(z1 | z2), p(z2) ...' for the hierarchy."""
    if is_standard_prior(model):
        return "N(0, I)"
    prior = model.config.prior
    if getattr(model, "level_dim", None) is not None:
        top = "N(0, I)" if prior == "standard-normal" else f"learned {prior}"
        return f"two-level p(z2) p(z1 | z2), p(z2) {top}"
    return f"learned {prior}"


def prior_points_2d(model: Any, z: np.ndarray, seed: int = 0, n: int = PRIOR_DRAWS) -> np.ndarray:
    """``n`` draws z ~ p(z) of the model's own (learned) prior in the coordinates of the latent panel of the
    codes ``z`` (n_codes, d): the codes themselves for d = 2, the first two for fewer than 3 codes, else the
    codes' PCA axes (:func:`pca_2d`, same fit). Shape (n, 2)."""
    with torch.no_grad():
        draws = model.latent_prior.sample(n, torch.Generator().manual_seed(seed)).double().cpu().numpy()
    d = draws.shape[1]
    if d == 2 or len(z) < 3:
        return draws[:, :2]
    _, comps, centre, _ = pca_2d(z)
    return (draws - centre) @ comps.T


def tsne_2d(z: np.ndarray, seed: int = 0) -> np.ndarray:
    """t-SNE embedding (n, 2) of at most ``MAX_TSNE_POINTS`` codes (callers subsample first)."""
    from sklearn.manifold import TSNE

    z = z[:MAX_TSNE_POINTS]
    perplexity = float(min(30.0, max(2.0, (len(z) - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                max_iter=300).fit_transform(z.astype(np.float64))


def traversal_codes(base: np.ndarray, dims: np.ndarray, values: np.ndarray) -> torch.Tensor:
    """Codes that vary one dimension at a time: (len(dims), len(values), d), ``base`` (d,) elsewhere.
    ``values`` is (len(values),) shared by all dims or (len(dims), len(values)) per dim."""
    values = np.broadcast_to(values, (len(dims), values.shape[-1]))
    z = np.repeat(np.repeat(base[None, None, :], len(dims), 0), values.shape[1], 1).copy()
    for row, j in enumerate(dims):
        z[row, :, j] = values[row]
    return torch.from_numpy(z.astype(np.float32))


def interpolation_codes(z_a: np.ndarray, z_b: np.ndarray, steps: int) -> torch.Tensor:
    """Straight lines between code pairs: z_a, z_b (p, d) -> (p, steps, d), endpoints included."""
    t = np.linspace(0.0, 1.0, steps)[None, :, None]
    return torch.from_numpy(((1 - t) * z_a[:, None, :] + t * z_b[:, None, :]).astype(np.float32))
