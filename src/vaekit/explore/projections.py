"""2-D maps of latent codes and the way back from a map coordinate to a code.

A :class:`Projection` is fitted on the posterior means z (n, d) of the points it shows and gives their
map coordinates ``points`` (n, 2) and a code for any map coordinate (:meth:`Projection.code_at`):

* ``latent`` (d = 2): the map is the latent plane itself; the code of (u, v) is (u, v).
* ``pca`` (d > 2): the first two principal axes of the codes (numpy SVD of the centred codes). The code
  of (u, v) is the inverse projection plus the mean of the other directions: mean + (u, v) @ components,
  i.e. the codes' mean in the d - 2 directions the map does not show.
* ``tsne`` (d > 2, scikit-learn): a nonlinear map with no inverse; the code of (u, v) is the
  inverse-distance weighted mean of the codes of the :data:`TSNE_NEIGHBOURS` nearest map points.
* ``umap``: only when the ``umap-learn`` package is installed (it is not a vaekit dependency); code as
  for t-SNE.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from typing import final

import numpy as np

from vaekit.errors import VaekitError

#: Map points whose codes are averaged to decode a t-SNE / UMAP coordinate.
TSNE_NEIGHBOURS = 5
#: Decimals of the map coordinates sent to the page.
MAP_DECIMALS = 5


def available_methods(latent_dim: int) -> dict[str, str | None]:
    """{method: None if it can be used, else why not} for codes of ``latent_dim`` dimensions."""
    if latent_dim == 2:
        return {"latent": None}
    umap = None if importlib.util.find_spec("umap") is not None else "not installed (pip install umap-learn)"
    return {"pca": None, "tsne": None, "umap": umap}


class Projection(ABC):
    """A 2-D map of codes z (n, d): ``points`` (n, 2) float64 and :meth:`code_at`."""

    points: np.ndarray

    @abstractmethod
    def code_at(self, uv: np.ndarray) -> np.ndarray:
        """The code (d,) float64 that the map coordinate ``uv`` (2,) stands for."""


@final
class LatentPlane(Projection):
    """d = 2: the latent plane is the map."""

    def __init__(self, z: np.ndarray) -> None:
        self.points = np.asarray(z, dtype=np.float64)

    def code_at(self, uv: np.ndarray) -> np.ndarray:
        return np.asarray(uv, dtype=np.float64).copy()


@final
class PCAProjection(Projection):
    """The first two principal axes of z (n, d): ``components`` (2, d) orthonormal rows, ``mean`` (d,);
    points = (z - mean) @ components.T, code_at(uv) = mean + uv @ components."""

    def __init__(self, z: np.ndarray) -> None:
        z = np.asarray(z, dtype=np.float64)
        self.mean = z.mean(0)
        _, _, vt = np.linalg.svd(z - self.mean, full_matrices=False)
        components = vt[:2]
        # a deterministic sign: the largest entry of each axis is positive
        signs = np.sign(components[np.arange(2), np.abs(components).argmax(1)])
        self.components = components * np.where(signs == 0, 1.0, signs)[:, None]
        self.points = (z - self.mean) @ self.components.T

    def code_at(self, uv: np.ndarray) -> np.ndarray:
        return self.mean + np.asarray(uv, dtype=np.float64) @ self.components


@final
class NeighbourProjection(Projection):
    """A map with no inverse (t-SNE, UMAP): the code of a coordinate is the inverse-distance weighted mean
    of the codes of its ``k`` nearest map points (the code of a point itself when the coordinate is one)."""

    def __init__(self, z: np.ndarray, points: np.ndarray, k: int = TSNE_NEIGHBOURS) -> None:
        self.z = np.asarray(z, dtype=np.float64)
        # rounded as the page receives them (ExploredRun.map), so a click on a drawn point hits it exactly
        self.points = np.round(np.asarray(points, dtype=np.float64), MAP_DECIMALS)
        self.k = min(k, len(self.z))

    def code_at(self, uv: np.ndarray) -> np.ndarray:
        dist = np.linalg.norm(self.points - np.asarray(uv, dtype=np.float64), axis=1)
        near = np.argsort(dist, kind="stable")[:self.k]
        if dist[near[0]] == 0.0:
            return self.z[near[0]].copy()
        w = 1.0 / dist[near]
        return (w[:, None] * self.z[near]).sum(0) / w.sum()


def project(z: np.ndarray, method: str, seed: int = 0) -> Projection:
    """The ``method`` map of codes z (n, d) (see the module doc); an unusable method is a VaekitError."""
    methods = available_methods(z.shape[1])
    if method not in methods:
        raise VaekitError(f"map method '{method}' does not apply to {z.shape[1]}-d codes; use one of "
                          f"{', '.join(methods)}")
    if methods[method] is not None:
        raise VaekitError(f"map method '{method}' is unavailable: {methods[method]}")
    if method == "latent":
        return LatentPlane(z)
    if method == "pca":
        return PCAProjection(z)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, max(2.0, (len(z) - 1) / 3)))
        points = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                      max_iter=500).fit_transform(np.asarray(z, dtype=np.float64))
        return NeighbourProjection(z, points)
    import umap  # type: ignore[import-not-found]  # optional: only when umap-learn is installed

    return NeighbourProjection(z, umap.UMAP(n_components=2, random_state=seed).fit_transform(z))
