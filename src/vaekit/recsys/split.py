"""The strong-generalisation split of Liang et al. (2018): users, not events, are held out.

Training users give their whole rows to training. Validation and test users (disjoint, drawn at random,
seeded) are never trained on: each one's events are split into a *fold-in* part (``*_in``, fed to the model)
and a *to-predict* part (``*_out``, ranked against). The item vocabulary is the items of the training users.

Differences from the authors' notebook (github.com/dawenl/vae_cf, ``VAE_ML20M_WWW2018.ipynb``), which this
otherwise follows (last ``2h`` users of a seeded permutation held out, ``h`` each; held-out events on items no
training user has are dropped; ``int(holdout_fraction * n)`` of a held-out user's ``n`` events drawn at random,
without replacement, to predict):

* the notebook gives users with fewer than 5 remaining events no to-predict part (they cannot be scored);
  here every held-out user with ``n >= 2`` remaining events gets ``max(1, int(holdout_fraction * n))`` to
  predict and the rest to fold in, and users with ``n < 2`` are dropped from the split (counted in ``info``);
  so both parts are non-empty for every held-out user;
* the random draws use NumPy's ``Generator`` streams spawned from ``seed`` (the notebook re-seeds the legacy
  global generator with 98765): same distribution, different draws;
* items (matrix columns) and the users of each split (rows) are in sorted id order, not order of appearance;
  the result does not depend on the order of the rows of the file (events are canonicalised first), and a
  repeated (user, item) pair counts once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from vaekit.errors import VaekitError
from vaekit.recsys.interactions import Interactions, distinct_pairs

MIN_HELDOUT_EVENTS = 2  # a held-out user needs one event to fold in and one to predict


@dataclass(frozen=True, eq=False)
class RecData:
    """A strong-generalisation split of implicit feedback.

    ``items``: (n_items,) item ids; column j of every matrix is ``items[j]``. ``train_users``, ``val_users``,
    ``test_users``: user ids, row i of the split's matrices is user ``*_users[i]`` (sorted ids).
    ``train``: (n_train_users, n_items) CSR float32, 1.0 per interaction. ``val_in`` / ``val_out`` and
    ``test_in`` / ``test_out``: (n_val_users | n_test_users, n_items) fold-in / to-predict, disjoint, each row
    non-empty. ``info``: JSON-able counts, thresholds, seed, sizes and dropped events / users.
    """

    items: np.ndarray
    train_users: np.ndarray
    val_users: np.ndarray
    test_users: np.ndarray
    train: sparse.csr_matrix
    val_in: sparse.csr_matrix
    val_out: sparse.csr_matrix
    test_in: sparse.csr_matrix
    test_out: sparse.csr_matrix
    info: dict[str, Any]

    @property
    def n_items(self) -> int:
        return len(self.items)


def _csr(rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int) -> sparse.csr_matrix:
    """CSR matrix of ones from coordinates already sorted by (row, col) and distinct: built directly from
    ``indptr`` (a bincount), no COO copy and no dense array."""
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
    index_dtype = np.int32 if max(len(cols), n_cols) < np.iinfo(np.int32).max else np.int64
    m = sparse.csr_matrix((np.ones(len(cols), dtype=np.float32), cols.astype(index_dtype),
                           indptr.astype(index_dtype)), shape=(n_rows, n_cols))
    m.has_sorted_indices = True
    return m


def heldout_count(n_users: int, heldout_users: int = 0) -> int:
    """Users per held-out split: ``heldout_users``, or when 0 ``max(1, round(0.1 * n_users))``."""
    return heldout_users if heldout_users > 0 else max(1, round(0.1 * n_users))


def split_users(inter: Interactions, heldout_users: int = 0, holdout_fraction: float = 0.2,
                seed: int = 0) -> RecData:
    """Strong-generalisation split of ``inter`` (usually :func:`~vaekit.recsys.interactions.implicit`'s output).

    ``heldout_users`` validation users and as many test users (0: ``max(1, round(0.1 * n_users))`` each) are the
    last ``2h`` of a permutation of the sorted user ids drawn with ``seed``; the rest train. Items are those of
    the training users (held-out events on other items are dropped and counted). Each held-out user with ``n >= 2``
    remaining events gets ``max(1, int(holdout_fraction * n))`` of them, drawn at random, to predict (``*_out``)
    and the rest to fold in (``*_in``); held-out users with fewer are dropped and counted. A pure function of
    its arguments: the same output on every call, whatever the order of the rows. Memory ~ the events.
    """
    if heldout_users < 0:
        raise VaekitError(f"heldout_users must be >= 0 (0 = 10% of the users each), got {heldout_users}; "
                          "set --data.heldout_users")
    if not 0.0 < holdout_fraction < 1.0:
        raise VaekitError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}; the paper uses 0.2 "
                          "(--data.holdout_fraction)")
    pairs = distinct_pairs(inter)
    n_users, n_all_items = len(pairs.users), len(pairs.items)
    h = heldout_count(n_users, heldout_users)
    if n_users - 2 * h < 1:
        raise VaekitError(f"{inter.source}: {n_users} users cannot give {h} validation and {h} test users and "
                          "keep a training user; lower --data.heldout_users (0 = 10% each) or use more data")
    perm_seed, val_seed, test_seed = np.random.SeedSequence(seed).spawn(3)
    perm = np.random.default_rng(perm_seed).permutation(n_users)
    role = np.zeros(n_users, dtype=np.int8)  # 0 train, 1 val, 2 test
    role[perm[n_users - 2 * h: n_users - h]] = 1
    role[perm[n_users - h:]] = 2
    uc, ic = pairs.user_code, pairs.item_code
    event_role = role[uc]

    train_ev = event_role == 0
    known = np.zeros(n_all_items, dtype=bool)
    known[ic[train_ev]] = True
    column = np.cumsum(known, dtype=np.int64) - 1
    n_items = int(known.sum())
    train_codes = np.flatnonzero(role == 0)
    row_of = np.full(n_users, -1, dtype=np.int64)
    row_of[train_codes] = np.arange(len(train_codes))
    train = _csr(row_of[uc[train_ev]], column[ic[train_ev]], len(train_codes), n_items)
    del train_ev

    info: dict[str, Any] = {
        "seed": int(seed), "heldout_users_setting": int(heldout_users), "heldout_users": h,
        "holdout_fraction": float(holdout_fraction), "min_heldout_events": MIN_HELDOUT_EVENTS,
        "events": len(uc), "duplicate_pairs": pairs.duplicates, "users": n_users, "items_all": n_all_items,
        "items": n_items, "source": inter.source,
        "train": {"users": len(train_codes), "events": int(train.nnz)}}
    parts: dict[str, tuple[np.ndarray, sparse.csr_matrix, sparse.csr_matrix]] = {}
    for name, code, ss in (("val", 1, val_seed), ("test", 2, test_seed)):
        mine = event_role == code
        on_known = mine & known[ic]
        dropped_events = int(np.count_nonzero(mine)) - int(np.count_nonzero(on_known))
        del mine
        n_per_user = np.bincount(uc[on_known], minlength=n_users)
        drawn = np.flatnonzero(role == code)
        kept = drawn[n_per_user[drawn] >= MIN_HELDOUT_EVENTS]
        on_known &= n_per_user[uc] >= MIN_HELDOUT_EVENTS
        row_of[:] = -1
        row_of[kept] = np.arange(len(kept))
        rows = row_of[uc[on_known]]
        cols = column[ic[on_known]]
        n_rows = len(kept)
        counts = np.bincount(rows, minlength=n_rows)
        n_out = np.maximum(1, np.floor(holdout_fraction * counts).astype(np.int64))
        # a uniform random subset of n_out[r] events per row: order each row's events by a random key
        keys = np.random.default_rng(ss).random(len(rows))
        order = np.lexsort((keys, rows))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank = np.arange(len(rows)) - starts[rows[order]]
        to_predict = np.empty(len(rows), dtype=bool)
        to_predict[order] = rank < n_out[rows[order]]
        fold_in = _csr(rows[~to_predict], cols[~to_predict], n_rows, n_items)
        out = _csr(rows[to_predict], cols[to_predict], n_rows, n_items)
        info[name] = {"users_drawn": len(drawn), "users": n_rows, "users_dropped": len(drawn) - n_rows,
                      "events_dropped_unseen_items": dropped_events,
                      "events_dropped_with_users": int(n_per_user[drawn].sum()) - len(rows),
                      "fold_in": int(fold_in.nnz), "to_predict": int(out.nnz)}
        if n_rows == 0:
            raise VaekitError(f"{inter.source}: no {name} user has {MIN_HELDOUT_EVENTS} or more events on items "
                              "of the training users; use more data or a larger --data.heldout_users")
        parts[name] = (pairs.users[kept], fold_in, out)
    if "interactions" not in info and inter.info:
        info["interactions"] = inter.info
    return RecData(items=pairs.items[known], train_users=pairs.users[train_codes], val_users=parts["val"][0],
                   test_users=parts["test"][0], train=train, val_in=parts["val"][1], val_out=parts["val"][2],
                   test_in=parts["test"][1], test_out=parts["test"][2], info=info)
