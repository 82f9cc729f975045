"""Ranking metrics for recommenders, with the definitions of Liang et al. (2018) and their notebook.

Every user (row) has dense scores over the I items (columns), a sparse *fold-in* row (the items the
recommender is shown) and a sparse *held-out* row (the items it should rank highly). Fold-in items are removed
from the ranking (:func:`exclude_seen` sets their scores to -inf); an entry > 0 of the held-out matrix is a
relevant item (binary relevance). With the top-k list ``r_1..r_k`` of a user and ``H`` their held-out items:

* DCG@k = sum_{i<=k} 1[r_i in H] / log2(i + 1); IDCG@k = sum_{i<=min(k, |H|)} 1 / log2(i + 1);
  NDCG@k = DCG@k / IDCG@k (the notebook's ``NDCG_binary_at_k_batch``);
* Recall@k = |{r_1..r_k} ∩ H| / min(k, |H|) (the notebook's ``Recall_at_k_batch``: normalised by
  min(k, |H|), not |H|, so a user with fewer than k held-out items can reach 1).

Ties are broken deterministically: items are ranked by descending score, and among equal scores by ascending
item index (column), so the top-k list is a function of the scores alone and the top-20 is a prefix of the
top-100. The top k are found with ``np.argpartition`` and only those k are sorted (no full sort of the I
items); when k >= I the list holds all I items. Scores must not be NaN; +-inf are allowed (fold-in items are
-inf and come last). A user with no held-out item has no defined metric and is an error.

:func:`rank_metrics` scores users ``batch_size`` rows at a time, so its memory is ``batch_size x I``, never
``n_users x I``; it returns per-user values (in row order) that :func:`summarise` turns into mean and
standard error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
from scipy import sparse

from vaekit.errors import VaekitError

#: The paper's metrics: NDCG@100, Recall@20, Recall@50 (name -> k; the name's part before "@" is the kind).
DEFAULT_KS: Mapping[str, int] = MappingProxyType({"ndcg@100": 100, "recall@20": 20, "recall@50": 50})

METRIC_KINDS = ("ndcg", "recall")


def as_csr(matrix: Any, what: str, dtype: type = np.float64) -> sparse.csr_matrix:
    """A 2-D matrix (sparse or dense) as a canonical CSR copy of ``dtype`` (sorted indices, duplicates summed);
    the caller's is untouched. Anything else is a one-line error naming ``what``."""
    if not (sparse.issparse(matrix) or isinstance(matrix, np.ndarray)) or len(matrix.shape) != 2:
        raise VaekitError(f"{what} must be a 2-D scipy.sparse matrix (users x items), got {type(matrix).__name__}; "
                          "pass a CSR matrix")
    out = sparse.csr_matrix(matrix, dtype=dtype, copy=True)
    out.sum_duplicates()
    return out


def _check_scores(scores: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    """Scores as a float array of ``shape``; NaN is an error (it has no place in a ranking)."""
    if not isinstance(scores, np.ndarray) or scores.ndim != 2:
        raise VaekitError(f"scores must be a 2-D numpy array (users x items), got {type(scores).__name__}; "
                          "return dense numpy scores from the score function")
    if scores.shape != tuple(shape):
        raise VaekitError(f"scores have shape {scores.shape} but {what} has shape {tuple(shape)}; "
                          "give one row of scores per user and one column per item")
    if not np.issubdtype(scores.dtype, np.floating):
        raise VaekitError(f"scores must be floating point, got dtype {scores.dtype}; cast them to float32")
    bad = np.asarray(np.isnan(scores).any(axis=1))
    if bad.any():
        raise VaekitError(f"scores are NaN for {int(bad.sum())} of {scores.shape[0]} users (first row "
                          f"{int(np.flatnonzero(bad)[0])}); fix the model or score function so every score is a number")
    return scores


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise VaekitError(f"k must be a positive integer, got {k!r}; use e.g. k=100")
    return int(k)


def exclude_seen(scores: np.ndarray, fold_in: sparse.spmatrix | sparse.sparray) -> np.ndarray:
    """Set ``scores`` to -inf at every nonzero entry of ``fold_in``, in place, and return ``scores``.

    scores: (n, I) float array, written in place; fold_in: (n, I) sparse, nonzero = seen by the user.
    """
    fold = as_csr(fold_in, "fold_in")
    _check_scores(scores, fold.shape, "fold_in")
    fold.eliminate_zeros()
    rows = np.repeat(np.arange(fold.shape[0]), np.diff(fold.indptr))
    scores[rows, fold.indices] = -np.inf
    return scores


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """The k best items per row: (n, min(k, I)) int64 column indices, best first.

    Order: descending score, ties by ascending item index. ``np.argpartition`` finds k candidates; rows where
    ties at the k-th score reach outside them take the lowest-index tied items instead; then only the k are
    sorted. Memory O(n x I) for one pass over the scores (call it on a batch of rows).
    """
    k = _check_k(k)
    if not isinstance(scores, np.ndarray) or scores.ndim != 2:
        raise VaekitError("scores must be a 2-D numpy array (users x items); pass dense numpy scores")
    _check_scores(scores, scores.shape, "scores")
    n, n_items = scores.shape
    k = min(k, n_items)
    if n == 0 or k == 0:
        return np.zeros((n, k), dtype=np.int64)
    rows = np.arange(n)[:, None]
    cand = np.argpartition(scores, n_items - k, axis=1)[:, n_items - k:]      # the k largest, unordered
    vals = scores[rows, cand]
    kth = vals.min(axis=1)                                                   # the k-th largest score
    n_tied_in = (vals == kth[:, None]).sum(axis=1)
    n_tied_all = (scores == kth[:, None]).sum(axis=1)
    for r in np.flatnonzero(n_tied_all > n_tied_in):   # ties cross the cut: keep the lowest-index tied items
        above = cand[r][vals[r] > kth[r]]
        tied = np.flatnonzero(scores[r] == kth[r])[:k - len(above)]
        cand[r] = np.concatenate([above, tied])
        vals[r] = scores[r, cand[r]]
    order = np.lexsort((cand, -vals), axis=1)   # primary: descending score; secondary: ascending index
    return np.asarray(np.take_along_axis(cand, order, axis=1), dtype=np.int64)


def _heldout_counts(heldout: sparse.csr_matrix) -> np.ndarray:
    """Relevant (> 0) held-out items per row, (n,) int64; a row with none is an error."""
    rows = np.repeat(np.arange(heldout.shape[0]), np.diff(heldout.indptr))
    counts = np.bincount(rows[heldout.data > 0], minlength=heldout.shape[0]).astype(np.int64)
    empty = np.flatnonzero(counts == 0)
    if len(empty):
        first = ", ".join(str(int(i)) for i in empty[:5])
        raise VaekitError(f"{len(empty)} of {heldout.shape[0]} users have no held-out item (rows {first}"
                          f"{', ...' if len(empty) > 5 else ''}), so their ranking metrics are undefined; "
                          "evaluate only users with at least one held-out item")
    return counts


def _hits(ranked: np.ndarray, heldout: sparse.csr_matrix) -> np.ndarray:
    """(n, k) bool: is ranked[u, i] a relevant (> 0) held-out item of user u. Binary search in sorted keys."""
    n_items = heldout.shape[1]
    rows = np.repeat(np.arange(heldout.shape[0], dtype=np.int64), np.diff(heldout.indptr))
    keep = heldout.data > 0
    keys = rows[keep] * n_items + heldout.indices[keep].astype(np.int64)    # sorted: canonical CSR
    query = np.arange(ranked.shape[0], dtype=np.int64)[:, None] * n_items + ranked
    if len(keys) == 0:
        return np.zeros(ranked.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return np.asarray(keys[pos] == query)


def _discounts(k: int) -> np.ndarray:
    """1 / log2(i + 1) for ranks i = 1..k, float64."""
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def _ndcg(hits: np.ndarray, n_heldout: np.ndarray, k: int) -> np.ndarray:
    disc = _discounts(k)
    dcg = hits[:, :k] @ disc[:hits[:, :k].shape[1]]
    idcg = np.cumsum(disc)[np.minimum(k, n_heldout) - 1]
    return np.asarray(dcg / idcg)


def _recall(hits: np.ndarray, n_heldout: np.ndarray, k: int) -> np.ndarray:
    return np.asarray(hits[:, :k].sum(axis=1) / np.minimum(k, n_heldout))


_KIND_FN = {"ndcg": _ndcg, "recall": _recall}


def _metric(kind: str, scores: np.ndarray, heldout: Any, k: int) -> np.ndarray:
    k = _check_k(k)
    held = as_csr(heldout, "heldout")
    _check_scores(scores, held.shape, "heldout")
    counts = _heldout_counts(held)
    return _KIND_FN[kind](_hits(top_k(scores, k), held), counts, k)


def ndcg_at_k(scores: np.ndarray, heldout: sparse.spmatrix | sparse.sparray, k: int) -> np.ndarray:
    """NDCG@k per user, (n,) float64 in [0, 1].

    scores: (n, I) float, ranked as they are (apply :func:`exclude_seen` first to drop fold-in items);
    heldout: (n, I) sparse, > 0 = relevant. Definition and tie-breaking: see the module docstring.
    """
    return _metric("ndcg", scores, heldout, k)


def recall_at_k(scores: np.ndarray, heldout: sparse.spmatrix | sparse.sparray, k: int) -> np.ndarray:
    """Recall@k per user = hits in the top k / min(k, |held out|), (n,) float64 in [0, 1]. Shapes as
    :func:`ndcg_at_k`."""
    return _metric("recall", scores, heldout, k)


def _parse_ks(ks: Mapping[str, int]) -> list[tuple[str, str, int]]:
    """[(name, kind, k)] from {"ndcg@100": 100, ...}; the kind is the name before "@"."""
    if not isinstance(ks, Mapping) or not ks:
        raise VaekitError(f"ks must be a non-empty mapping of metric name to k, got {ks!r}; "
                          'use e.g. {"ndcg@100": 100, "recall@20": 20}')
    parsed = []
    for name, k in ks.items():
        kind = str(name).split("@")[0].lower()
        if kind not in METRIC_KINDS:
            raise VaekitError(f"unknown ranking metric {name!r}; name it {' or '.join(METRIC_KINDS)} followed "
                              "by @k, e.g. ndcg@100")
        parsed.append((str(name), kind, _check_k(k)))
    return parsed


def _check_disjoint(fold_in: sparse.csr_matrix, heldout: sparse.csr_matrix) -> None:
    both = fold_in.multiply(heldout)
    both.eliminate_zeros()
    if both.nnz:
        users = np.unique(both.nonzero()[0])
        raise VaekitError(f"{both.nnz} items are both fold-in and held out (for {len(users)} users, first row "
                          f"{int(users[0])}); a seen item is never recommended, so split each user's items "
                          "into disjoint fold-in and held-out parts")


def rank_metrics(score_fn: Callable[[sparse.csr_matrix], np.ndarray], fold_in: sparse.spmatrix | sparse.sparray,
                 heldout: sparse.spmatrix | sparse.sparray, ks: Mapping[str, int] = DEFAULT_KS,
                 batch_size: int = 500) -> dict[str, np.ndarray]:
    """Per-user ranking metrics of a recommender on held-out users: {name: (n,) float64}, rows in order.

    score_fn: fold-in rows (b, I) CSR float32 -> dense (b, I) float scores (higher = better); its output may be
    modified in place. fold_in, heldout: (n, I) sparse, disjoint; the fold-in items are excluded from the
    ranking here. ks: {name: k} with names "ndcg@K" / "recall@K" (default: the paper's NDCG@100, Recall@20,
    Recall@50). Users are scored ``batch_size`` at a time, so memory is O(batch_size x I); the top max(k)
    list is computed once per batch and the smaller k use its prefix.
    """
    metrics = _parse_ks(ks)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise VaekitError(f"batch_size must be a positive integer, got {batch_size!r}; use e.g. 500")
    fold = as_csr(fold_in, "fold_in")
    held = as_csr(heldout, "heldout")
    if fold.shape != held.shape:
        raise VaekitError(f"fold_in has shape {fold.shape} but heldout has shape {held.shape}; give both the "
                          "same users (rows) and items (columns)")
    fold.eliminate_zeros()
    counts = _heldout_counts(held)
    _check_disjoint(fold, held)
    n = fold.shape[0]
    k_max = max(k for _, _, k in metrics)
    out = {name: np.empty(n, dtype=np.float64) for name, _, _ in metrics}
    fold32 = fold.astype(np.float32)
    for start in range(0, n, int(batch_size)):
        stop = min(start + int(batch_size), n)
        scores = score_fn(fold32[start:stop])
        if isinstance(scores, np.ndarray) and not np.issubdtype(scores.dtype, np.floating):
            scores = scores.astype(np.float64)
        elif isinstance(scores, np.ndarray) and not scores.flags.writeable:
            scores = scores.copy()
        _check_scores(scores, (stop - start, fold.shape[1]), "the fold-in batch")
        exclude_seen(scores, fold[start:stop])
        hits = _hits(top_k(scores, k_max), held[start:stop])
        for name, kind, k in metrics:
            out[name][start:stop] = _KIND_FN[kind](hits, counts[start:stop], k)
    return out


def summarise(per_user: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """{name: {"mean", "se", "n"}} of per-user values: se = std(ddof=1) / sqrt(n) (the standard error of the
    mean over users; NaN when n = 1). NaN values or an empty array are an error."""
    out: dict[str, dict[str, float]] = {}
    for name, values in per_user.items():
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
        if arr.size == 0:
            raise VaekitError(f"no per-user values for {name!r}; evaluate at least one user")
        if np.isnan(arr).any():
            raise VaekitError(f"{int(np.isnan(arr).sum())} per-user values of {name!r} are NaN; "
                              "compute the metric for users with at least one held-out item")
        n = int(arr.size)
        se = float(arr.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
        out[name] = {"mean": float(arr.mean()), "se": se, "n": n}
    return out


def mean_se_text(stat: Mapping[str, float | None]) -> str:
    """One :func:`summarise` cell as text: '0.4123 ± 0.0051', or '0.4123 ± n/a' when the standard error is
    undefined (a single user: NaN here, null in eval.json)."""
    se = stat["se"]
    spread = "n/a" if se is None or math.isnan(se) else f"{se:.4f}"
    return f"{stat['mean']:.4f} ± {spread}"
