"""Ranking metrics and baselines of the recommender (vaekit.recsys.metrics, vaekit.recsys.baselines).

References: a brute-force ranking (Python's full ``sorted`` by (-score, item) and Python loops over users and
ranks), hand-computed tiny cases, scipy.stats.sem for the standard error, a direct numpy inverse of the EASE
closed form and, independently, one ridge regression per item column (the constrained EASE problem separates by
column), and dense numpy item counts for popularity.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
from scipy import sparse

from vaekit.errors import VaekitError
from vaekit.recsys.baselines import EASE, Popularity, select_ease
from vaekit.recsys.metrics import (
    DEFAULT_KS,
    exclude_seen,
    mean_se_text,
    ndcg_at_k,
    rank_metrics,
    recall_at_k,
    summarise,
    top_k,
)

# ---------------------------------------------------------------- brute-force reference


def ref_ranking(scores_row, seen) -> list[int]:
    """All items of one user, best first: seen items at -inf, then descending score, ties by item index."""
    keyed = [(-(-math.inf if j in seen else float(s)), j) for j, s in enumerate(scores_row)]
    return [j for _, j in sorted(keyed)]


def ref_metrics(scores, fold_in, heldout, k):
    """(ndcg, recall) lists with the paper's definitions, one Python loop per user and per rank."""
    ndcgs, recalls = [], []
    for u in range(scores.shape[0]):
        seen = {j for j in range(scores.shape[1]) if fold_in[u, j] != 0}
        held = {j for j in range(scores.shape[1]) if heldout[u, j] > 0}
        ranked = ref_ranking(scores[u], seen)[:k]
        dcg = 0.0
        hits = 0
        for r, j in enumerate(ranked, start=1):
            if j in held:
                dcg += 1.0 / math.log2(r + 1)
                hits += 1
        idcg = sum(1.0 / math.log2(r + 1) for r in range(1, min(k, len(held)) + 1))
        ndcgs.append(dcg / idcg)
        recalls.append(hits / min(k, len(held)))
    return np.array(ndcgs), np.array(recalls)


def random_case(rng, n_users, n_items, tied: bool):
    """Scores (continuous, or from 3 values so ties abound), disjoint fold-in / held-out 0-1 matrices; every
    user has 1..n_items//2 held-out items (often fewer than k)."""
    scores = rng.integers(0, 3, (n_users, n_items)).astype(np.float32) if tied else \
        rng.standard_normal((n_users, n_items)).astype(np.float32)
    fold_in = np.zeros((n_users, n_items), np.float32)
    heldout = np.zeros((n_users, n_items), np.float32)
    for u in range(n_users):
        perm = rng.permutation(n_items)
        n_out = rng.integers(1, n_items // 2 + 1)
        n_in = rng.integers(0, n_items // 3 + 1)
        heldout[u, perm[:n_out]] = 1.0
        fold_in[u, perm[n_out:n_out + n_in]] = 1.0
    return scores, fold_in, heldout


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_brute_force(seed, tied):
    rng = np.random.default_rng(seed)
    n_items = 30
    scores, fold_in, heldout = random_case(rng, 25, n_items, tied)
    for k in (1, 3, 10, 29, 30, 45):  # k >= I: the list is all I items
        ref_ndcg, ref_recall = ref_metrics(scores, fold_in, heldout, k)
        s = exclude_seen(scores.copy(), sparse.csr_matrix(fold_in))
        np.testing.assert_allclose(ndcg_at_k(s, sparse.csr_matrix(heldout), k), ref_ndcg, rtol=1e-12, atol=0)
        np.testing.assert_allclose(recall_at_k(s, sparse.csr_matrix(heldout), k), ref_recall, rtol=1e-12, atol=0)
        ranked = top_k(s, k)
        assert ranked.shape == (25, min(k, n_items)) and ranked.dtype == np.int64
        for u in range(25):
            seen = set(np.flatnonzero(fold_in[u]))
            assert ranked[u].tolist() == ref_ranking(scores[u], seen)[:k]


@pytest.mark.parametrize("batch_size", [1, 4, 7, 500])
def test_rank_metrics_batches_match_brute_force(batch_size):
    rng = np.random.default_rng(10 + batch_size)
    scores, fold_in, heldout = random_case(rng, 23, 40, tied=batch_size == 4)
    rows_seen = []

    def score_fn(batch):
        assert sparse.issparse(batch) and batch.shape[1] == 40
        rows_seen.append(batch.shape[0])
        start = sum(rows_seen[:-1])
        np.testing.assert_array_equal(batch.toarray(), fold_in[start:start + batch.shape[0]])
        return scores[start:start + batch.shape[0]].copy()

    ks = {"ndcg@100": 100, "ndcg@5": 5, "recall@3": 3, "recall@10": 10}
    got = rank_metrics(score_fn, sparse.csr_matrix(fold_in), sparse.csr_matrix(heldout), ks, batch_size)
    assert max(rows_seen) <= batch_size and sum(rows_seen) == 23
    assert set(got) == set(ks)
    for name, k in ks.items():
        ref_ndcg, ref_recall = ref_metrics(scores, fold_in, heldout, k)
        ref = ref_ndcg if name.startswith("ndcg") else ref_recall
        assert got[name].shape == (23,)
        np.testing.assert_allclose(got[name], ref, rtol=1e-12, atol=0)


def test_default_ks_are_the_papers():
    assert dict(DEFAULT_KS) == {"ndcg@100": 100, "recall@20": 20, "recall@50": 50}
    rng = np.random.default_rng(3)
    scores, fold_in, heldout = random_case(rng, 6, 120, tied=False)
    got = rank_metrics(lambda b: scores.copy(), sparse.csr_matrix(fold_in), sparse.csr_matrix(heldout))
    assert set(got) == {"ndcg@100", "recall@20", "recall@50"}
    np.testing.assert_allclose(got["recall@50"], ref_metrics(scores, fold_in, heldout, 50)[1], rtol=1e-12)


# ---------------------------------------------------------------- hand-computed cases


def test_hand_computed_ndcg_and_recall():
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]])
    held = sparse.csr_matrix(np.array([[0, 1, 0, 1, 0]]))
    # top 3 = items 0, 1, 2: one hit at rank 2 of two held-out items
    assert ndcg_at_k(scores, held, 3)[0] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)), rel=1e-12)
    assert recall_at_k(scores, held, 3)[0] == pytest.approx(1 / 2, rel=1e-12)
    # top 5: hits at ranks 2 and 4
    assert ndcg_at_k(scores, held, 5)[0] == pytest.approx(
        (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3)), rel=1e-12)
    # top 1: no hit
    assert ndcg_at_k(scores, held, 1)[0] == 0.0 and recall_at_k(scores, held, 1)[0] == 0.0


def test_recall_is_normalised_by_min_k_and_heldout():
    scores = np.array([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    held = sparse.csr_matrix(np.array([[1, 1, 0, 1, 1, 1]]))  # 5 held out, k = 2: both top-2 hit
    assert recall_at_k(scores, held, 2)[0] == 1.0   # 2 / min(2, 5), not 2 / 5
    assert ndcg_at_k(scores, held, 2)[0] == pytest.approx(1.0, rel=1e-12)
    assert recall_at_k(scores, held, 4)[0] == pytest.approx(3 / 4, rel=1e-12)


def test_ties_go_to_the_lower_item_index_and_fold_in_is_excluded():
    scores = np.zeros((1, 6), np.float32)            # all tied: ranking 0, 1, 2, ...
    held = sparse.csr_matrix(np.array([[0, 1, 0, 0, 0, 0]], np.float32))
    assert top_k(scores, 3).tolist() == [[0, 1, 2]]
    assert ndcg_at_k(scores, held, 2)[0] == pytest.approx(1 / math.log2(3), rel=1e-6)
    fold = sparse.csr_matrix(np.array([[1, 0, 0, 0, 0, 0]], np.float32))
    s = exclude_seen(scores.copy(), fold)
    assert top_k(s, 3).tolist() == [[1, 2, 3]]
    assert ndcg_at_k(s, held, 2)[0] == 1.0 and recall_at_k(s, held, 1)[0] == 1.0
    # ties that straddle the cut: scores 2,1,1,1,1,0 with k = 3 keep items 0, 1, 2 (not 3 or 4)
    s2 = np.array([[1.0, 1.0, 2.0, 0.0, 1.0, 1.0]])
    assert top_k(s2, 3).tolist() == [[2, 0, 1]]
    # fold-in items come last even when k exceeds the unseen items
    assert top_k(exclude_seen(s2.copy(), sparse.csr_matrix(np.array([[0, 0, 1, 0, 0, 0]]))), 6).tolist() == \
        [[0, 1, 4, 5, 3, 2]]


def test_exclude_seen_is_in_place_and_only_at_fold_in_entries():
    rng = np.random.default_rng(4)
    scores = rng.standard_normal((5, 8)).astype(np.float32)
    fold = sparse.random(5, 8, density=0.3, format="csr", random_state=5, dtype=np.float32)
    fold.data[:] = 1.0
    original = scores.copy()
    out = exclude_seen(scores, fold)
    assert out is scores
    dense = fold.toarray() != 0
    assert np.all(np.isneginf(scores[dense])) and np.array_equal(scores[~dense], original[~dense])


# ---------------------------------------------------------------- summaries and errors


def test_summarise_mean_and_standard_error():
    rng = np.random.default_rng(6)
    values = rng.uniform(0, 1, 37)
    got = summarise({"ndcg@100": values, "recall@20": values[:1]})
    assert got["ndcg@100"]["mean"] == pytest.approx(float(np.mean(values)), rel=1e-12)
    assert got["ndcg@100"]["se"] == pytest.approx(float(scipy.stats.sem(values)), rel=1e-12)
    assert got["ndcg@100"]["n"] == 37
    assert got["recall@20"]["n"] == 1 and math.isnan(got["recall@20"]["se"])
    assert mean_se_text(got["recall@20"]) == f"{values[0]:.4f} ± n/a"
    assert mean_se_text(got["ndcg@100"]) == f"{np.mean(values):.4f} ± {scipy.stats.sem(values):.4f}"


def test_one_user_table_stays_strict_json_and_prints_without_nan():
    import json

    from vaekit.recsys.harness import format_table, json_table

    rows = summarise({"ndcg@100": np.array([0.25])})
    table = {"ks": {"ndcg@100": 100}, "rows": {"EASE": rows}, "per_user": {}, "n_users": 1, "split": "test"}
    stored = json.loads(json.dumps(json_table(table), allow_nan=False))  # raises on a NaN token
    assert stored["rows"]["EASE"]["ndcg@100"] == {"mean": 0.25, "se": None, "n": 1}
    assert "per_user" not in stored
    lines = format_table(stored)
    assert "0.2500 ± n/a" in lines[1] and "nan" not in " ".join(lines).lower()


@pytest.mark.parametrize("problem, match", [
    ("no-heldout", "no held-out item"),
    ("nan", "NaN"),
    ("shape", "shape"),
    ("overlap", "both fold-in and held out"),
    ("k", "positive integer"),
    ("name", "unknown ranking metric"),
])
def test_bad_inputs_are_one_line_errors(problem, match):
    scores = np.ones((3, 5), np.float32)
    fold = sparse.csr_matrix(np.array([[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0]], np.float32))
    held = sparse.csr_matrix(np.array([[0, 0, 0, 0, 1], [0, 0, 0, 1, 0], [0, 0, 0, 0, 1]], np.float32))
    ks: dict[str, int] = {"ndcg@3": 3}
    if problem == "no-heldout":
        held = sparse.csr_matrix(np.array([[0, 0, 0, 0, 1], [0, 0, 0, 0, 0], [0, 0, 0, 0, 1]], np.float32))
    elif problem == "nan":
        scores[1, 2] = np.nan
    elif problem == "shape":
        scores = np.ones((3, 4), np.float32)
    elif problem == "overlap":
        held = held + fold
    elif problem == "k":
        ks = {"ndcg@0": 0}
    elif problem == "name":
        ks = {"precision@3": 3}
    with pytest.raises(VaekitError, match=match) as info:
        rank_metrics(lambda b: scores.copy(), fold, held, ks, batch_size=10)
    assert "\n" not in str(info.value) and ";" in str(info.value)


# ---------------------------------------------------------------- baselines


def random_interactions(rng, n_users, n_items, density):
    x = (rng.uniform(size=(n_users, n_items)) < density * np.linspace(2, 0.1, n_items)).astype(np.float32)
    return x


def test_popularity_scores_are_training_item_counts():
    rng = np.random.default_rng(7)
    train = random_interactions(rng, 60, 20, 0.2)
    train[:, 5] = train[:, 6]                    # a tie in counts
    model = Popularity().fit(sparse.csr_matrix(train))
    fold = sparse.csr_matrix(random_interactions(rng, 4, 20, 0.1))
    s = model.scores(fold)
    assert s.shape == (4, 20) and s.dtype == np.float32
    np.testing.assert_array_equal(s, np.broadcast_to((train > 0).sum(axis=0), (4, 20)))
    # its ranking: most popular first, equal counts by item index, fold-in items excluded
    ranked = top_k(exclude_seen(s, fold), 20)
    counts = (train > 0).sum(axis=0)
    for u in range(4):
        seen = set(np.flatnonzero(fold[u].toarray()[0]))
        assert ranked[u].tolist() == ref_ranking(counts, seen)


def ease_closed_form(x, l2):
    """Steck (2019) eq. 8 with a direct numpy inverse, float64."""
    p = np.linalg.inv(x.T.astype(np.float64) @ x + l2 * np.eye(x.shape[1]))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


@pytest.mark.parametrize("l2", [0.5, 10.0, 300.0])
def test_ease_matches_the_closed_form_and_per_item_ridge(l2):
    rng = np.random.default_rng(8)
    x = random_interactions(rng, 80, 15, 0.25).astype(np.float64)
    model = EASE(l2).fit(sparse.csr_matrix(x))
    b = ease_closed_form(x, l2)
    assert model.weights.shape == (15, 15) and model.weights.dtype == np.float32
    np.testing.assert_allclose(model.weights, b, rtol=1e-5, atol=1e-6)
    assert np.all(np.diag(model.weights) == 0)
    # independently: diag(B) = 0 makes the problem one ridge regression of column j on the other columns
    for j in range(15):
        others = np.delete(np.arange(15), j)
        xo = x[:, others]
        coef = np.linalg.solve(xo.T @ xo + l2 * np.eye(14), xo.T @ x[:, j])
        np.testing.assert_allclose(model.weights[others, j], coef, rtol=1e-4, atol=1e-6)
    fold = random_interactions(rng, 5, 15, 0.3)
    np.testing.assert_allclose(model.scores(sparse.csr_matrix(fold)), fold @ b, rtol=1e-5, atol=1e-6)
    assert model.scores(sparse.csr_matrix(fold)).dtype == np.float32


def test_select_ease_picks_the_best_validation_ndcg():
    rng = np.random.default_rng(9)
    n_items = 25
    train = sparse.csr_matrix(random_interactions(rng, 120, n_items, 0.2))
    _, val_in, val_out = random_case(rng, 30, n_items, tied=False)
    val_in, val_out = sparse.csr_matrix(val_in), sparse.csr_matrix(val_out)
    grid = (0.1, 5.0, 50.0, 5000.0)
    model, table = select_ease(train, val_in, val_out, grid, batch_size=8)
    assert list(table) == list(grid)
    for l2 in grid:
        ref = EASE(l2).fit(train)
        s = exclude_seen(ref.scores(val_in), val_in)
        # the table is the mean of the brute-force NDCG@100 of every validation user
        ref_ndcg, _ = ref_metrics(s, val_in.toarray(), val_out.toarray(), 100)
        assert table[l2] == pytest.approx(float(ref_ndcg.mean()), rel=1e-9)
    best = max(grid, key=lambda v: (table[v], -grid.index(v)))
    assert model.l2 == best
    np.testing.assert_array_equal(model.weights, EASE(best).fit(train).weights)


def test_baseline_errors():
    with pytest.raises(VaekitError, match="l2 must be a positive"):
        EASE(0.0)
    with pytest.raises(VaekitError, match="not fitted"):
        Popularity().scores(sparse.csr_matrix(np.ones((1, 3))))
    model = Popularity().fit(sparse.csr_matrix(np.ones((2, 3))))
    with pytest.raises(VaekitError, match="fitted on 3"):
        model.scores(sparse.csr_matrix(np.ones((1, 4))))
    with pytest.raises(VaekitError, match="grid is empty"):
        select_ease(sparse.csr_matrix(np.ones((2, 3))), sparse.csr_matrix(np.ones((1, 3))),
                    sparse.csr_matrix(np.ones((1, 3))), ())
