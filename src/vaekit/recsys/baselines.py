"""Baseline recommenders evaluated in the same harness as the Mult-VAE: popularity and EASE.

A :class:`Recommender` is fitted on the training users' (n_train, I) interaction matrix and then scores the
fold-in rows of held-out users: ``scores(fold_in)`` -> dense (b, I) float32, higher = better, for
:func:`vaekit.recsys.metrics.rank_metrics` (which removes the fold-in items from the ranking).

* :class:`Popularity`: every user gets the same scores, the number of training users who interacted with
  each item (ties ranked by item index, as every ranking here).
* :class:`EASE` (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data"): an item-item weight
  matrix B in closed form. With X the (n_train, I) training matrix and G = X^T X + l2 * Id, P = G^-1,
  B_ij = -P_ij / P_jj for i != j and B_jj = 0, the minimiser of ||X - X B||^2 + l2 ||B||^2 subject to
  diag(B) = 0. Solved in float64 (Cholesky), stored float32; memory about 3 x I^2 x 8 bytes while fitting
  (I = 20,000 items: about 10 GB), I^2 x 4 bytes after. Scores = fold_in @ B.
* :func:`select_ease` fits EASE for each l2 of a grid and keeps the one with the best mean validation
  NDCG@100 (the Gram matrix X^T X is computed once).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Self, final

import numpy as np
import scipy.linalg
from scipy import sparse

from vaekit.errors import VaekitError
from vaekit.recsys.metrics import as_csr, rank_metrics

#: l2 weights tried by :func:`select_ease` (Steck reports 500 on ML-20M, 1,000 on Netflix, 200 on MSD).
DEFAULT_EASE_GRID: tuple[float, ...] = (1.0, 10.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0)


def _as_csr(matrix: Any, what: str) -> sparse.csr_matrix:
    """A 2-D matrix (sparse or dense) as a canonical float32 CSR copy without explicit zeros."""
    out = as_csr(matrix, what, np.float32)
    out.eliminate_zeros()
    if out.nnz and not np.isfinite(out.data).all():
        raise VaekitError(f"{what} holds non-finite values; give 1.0 per interaction")
    return out


class Recommender(ABC):
    """Fitted on training users, scores held-out users from their fold-in items."""

    n_items: int

    @abstractmethod
    def fit(self, train: sparse.spmatrix | sparse.sparray) -> Self:
        """Fit on the (n_train, I) training matrix; returns self."""

    @abstractmethod
    def scores(self, fold_in: sparse.spmatrix | sparse.sparray) -> np.ndarray:
        """(b, I) sparse fold-in rows -> (b, I) float32 scores, higher = recommended first."""

    def _check_fold_in(self, fold_in: Any) -> sparse.csr_matrix:
        if not hasattr(self, "n_items"):
            raise VaekitError(f"{type(self).__name__} is not fitted; call fit(train) before scores(fold_in)")
        fold = _as_csr(fold_in, "fold_in")
        if fold.shape[1] != self.n_items:
            raise VaekitError(f"fold_in has {fold.shape[1]} items (columns) but the model was fitted on "
                              f"{self.n_items}; use the same item vocabulary as the training matrix")
        return fold


@final
class Popularity(Recommender):
    """Scores every user with the training item counts: ``item_counts[j]`` = number of training users with a
    positive entry for item j, (I,) int64."""

    item_counts: np.ndarray

    def fit(self, train: sparse.spmatrix | sparse.sparray) -> Self:
        x = _as_csr(train, "train")
        positive = x.indices[x.data > 0]
        self.item_counts = np.bincount(positive, minlength=x.shape[1]).astype(np.int64)
        self.n_items = int(x.shape[1])
        return self

    def scores(self, fold_in: sparse.spmatrix | sparse.sparray) -> np.ndarray:
        fold = self._check_fold_in(fold_in)
        return np.tile(self.item_counts.astype(np.float32), (fold.shape[0], 1))


def gram(train: sparse.spmatrix | sparse.sparray) -> np.ndarray:
    """X^T X of the (n, I) training matrix, a dense (I, I) float64 array."""
    x = _as_csr(train, "train").astype(np.float64)
    return np.asarray((x.T @ x).toarray(), dtype=np.float64)


def _check_l2(l2: Any) -> float:
    if isinstance(l2, bool) or not isinstance(l2, int | float | np.integer | np.floating) \
            or not math.isfinite(float(l2)) or float(l2) <= 0:
        raise VaekitError(f"EASE l2 must be a positive finite number, got {l2!r}; use e.g. 500")
    return float(l2)


@final
class EASE(Recommender):
    """EASE with L2 weight ``l2`` > 0; after :meth:`fit`, ``weights`` is B, (I, I) float32 with zero diagonal."""

    weights: np.ndarray

    def __init__(self, l2: float) -> None:
        self.l2 = _check_l2(l2)

    def fit(self, train: sparse.spmatrix | sparse.sparray) -> Self:
        return self.fit_gram(gram(train))

    def fit_gram(self, gram_matrix: np.ndarray) -> Self:
        """Fit from X^T X, (I, I) float64 (not modified): P = (X^T X + l2 Id)^-1, B = -P / diag(P), diag 0."""
        g = np.array(gram_matrix, dtype=np.float64, copy=True)
        if g.ndim != 2 or g.shape[0] != g.shape[1]:
            raise VaekitError(f"the Gram matrix must be square (items x items), got shape {g.shape}; "
                              "pass train.T @ train")
        g[np.diag_indices_from(g)] += self.l2
        try:
            factor = scipy.linalg.cho_factor(g, overwrite_a=True, check_finite=True)
            p = scipy.linalg.cho_solve(factor, np.eye(g.shape[0]), overwrite_b=True, check_finite=False)
        except (np.linalg.LinAlgError, ValueError) as err:
            raise VaekitError(f"EASE could not invert X^T X + l2 I with l2={self.l2:g} ({err}); "
                              "use a larger l2 or check the training matrix for non-finite values") from None
        del g, factor
        p /= -np.diag(p)[None, :]           # B_ij = -P_ij / P_jj
        np.fill_diagonal(p, 0.0)
        self.weights = p.astype(np.float32)
        self.n_items = int(self.weights.shape[0])
        return self

    def scores(self, fold_in: sparse.spmatrix | sparse.sparray) -> np.ndarray:
        fold = self._check_fold_in(fold_in)
        return np.asarray(fold @ self.weights, dtype=np.float32)


def select_ease(train: sparse.spmatrix | sparse.sparray, val_in: sparse.spmatrix | sparse.sparray,
                val_out: sparse.spmatrix | sparse.sparray, grid: Sequence[float] = DEFAULT_EASE_GRID,
                batch_size: int = 500) -> tuple[EASE, dict[float, float]]:
    """EASE with the l2 of ``grid`` that maximises mean validation NDCG@100 (ties: the first in ``grid``).

    train: (n_train, I); val_in, val_out: (n_val, I) fold-in / held-out rows of the validation users.
    Returns the fitted model and {l2: mean validation NDCG@100} for every l2 tried.
    """
    values = [_check_l2(v) for v in grid]
    if not values:
        raise VaekitError("the EASE l2 grid is empty; give at least one l2, e.g. (100, 500)")
    g = gram(train)
    if val_in.shape[1] != g.shape[0]:
        raise VaekitError(f"val_in has {val_in.shape[1]} items (columns) but train has {g.shape[0]}; use the "
                          "same item vocabulary for both")
    best: EASE | None = None
    best_ndcg = -math.inf
    table: dict[float, float] = {}
    for l2 in values:
        model = EASE(l2).fit_gram(g)
        ndcg = float(rank_metrics(model.scores, val_in, val_out, {"ndcg@100": 100}, batch_size)["ndcg@100"].mean())
        table[l2] = ndcg
        if ndcg > best_ndcg:
            best, best_ndcg = model, ndcg
    assert best is not None
    return best, table
