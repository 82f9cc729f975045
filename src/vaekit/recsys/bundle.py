"""Interaction data as a :class:`~vaekit.data.DataBundle`: what ``load_data`` returns for a recommender.

An event log (a MovieLens ``movielens-*`` dataset or a file of (user, item[, rating[, time]]) rows, see
:mod:`vaekit.recsys.interactions`) is filtered to implicit feedback (:func:`~vaekit.recsys.interactions.implicit`)
and split by users (:func:`~vaekit.recsys.split.split_users`, seeded by ``data.seed``). The bundle's
splits are sparse (:class:`~vaekit.data.sparse.SparseSplit`, densified one batch at a time):

* ``train``: the training users' rows (n_train_users, I), 1.0 per interaction;
* ``val`` / ``test``: the held-out users' full rows, fold-in + to-predict (for the ELBO and log p(x));
* ``rec``: :class:`RecSplits`, the recommender's view: the item vocabulary (column j is ``items[j]``), the
  fold-in and to-predict matrices of the held-out users (NDCG@100 selects the best checkpoint on
  ``val_in`` / ``val_out``), the users of each split and the item titles (MovieLens names; empty for a
  user file).

Reproducing the split. Everything that defines it is in the run's saved config (``data.*``: the file or
dataset, the columns, ``min_rating``, ``min_user_items``, ``heldout_users``, ``holdout_fraction``,
``seed``), and the recorded preprocessing (``meta["data"]["prep"]``) holds the number of items and a
sha256 of the item vocabulary; :func:`vaekit.data.load_run_data` rebuilds the split from the config and
refuses (one line) data whose vocabulary differs. The files themselves are checked against their recorded
sha256 (named datasets) or fingerprint (a user file).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, final

import numpy as np

from vaekit.data.bundle import DataBundle
from vaekit.data.config import DataConfig
from vaekit.data.fingerprint import fingerprint
from vaekit.data.sparse import SparseSplit
from vaekit.errors import VaekitError
from vaekit.recsys.interactions import implicit, read_interactions
from vaekit.recsys.movielens import load_movielens

if TYPE_CHECKING:  # SciPy's sparse module (8 MB, 0.1 s) is imported only when interaction data are loaded
    from scipy import sparse

    from vaekit.recsys.split import RecData

#: File names read as interactions by ``data.format auto`` (MovieLens' own rating files).
INTERACTION_FILES = ("u.data", "ratings.dat", "ratings.csv")
#: Likelihoods a model of interaction rows may use (``auto`` picks the multinomial).
INTERACTION_LIKELIHOODS = ("multinomial", "bernoulli")


def is_interaction_data(cfg: DataConfig) -> bool:
    """Whether ``cfg`` names interaction data: ``data.format interactions``, or ``auto`` with a
    ``movielens-*`` dataset or a file named u.data / ratings.dat / ratings.csv."""
    if cfg.format != "auto":
        return cfg.format == "interactions"
    if cfg.path:
        return Path(cfg.path).name in INTERACTION_FILES
    return cfg.name.startswith("movielens-")


@final
@dataclass(frozen=True)
class RecSplits:
    """The recommender's view of an interaction bundle (``bundle.rec``): A's split (``data``:
    :class:`~vaekit.recsys.split.RecData`) and the item ``titles`` {item id: title}."""

    data: RecData
    titles: Mapping[Any, str]

    @property
    def items(self) -> np.ndarray:
        """(I,) item ids; column j of every matrix is ``items[j]``."""
        return self.data.items

    @property
    def n_items(self) -> int:
        return len(self.data.items)

    @property
    def train(self) -> sparse.csr_matrix:
        return self.data.train

    @property
    def val_in(self) -> sparse.csr_matrix:
        return self.data.val_in

    @property
    def val_out(self) -> sparse.csr_matrix:
        return self.data.val_out

    @property
    def test_in(self) -> sparse.csr_matrix:
        return self.data.test_in

    @property
    def test_out(self) -> sparse.csr_matrix:
        return self.data.test_out

    @property
    def train_users(self) -> np.ndarray:
        return self.data.train_users

    @property
    def val_users(self) -> np.ndarray:
        return self.data.val_users

    @property
    def test_users(self) -> np.ndarray:
        return self.data.test_users

    def title(self, item: Any) -> str:
        """The title of ``item`` (an id of ``items``), or the id itself when there is none."""
        return str(self.titles.get(item, item))


def items_digest(items: np.ndarray) -> str:
    """sha256 of the item vocabulary in column order (ids as text, one per line): equal digests = the same
    items in the same columns."""
    h = hashlib.sha256()
    for item in items.tolist():
        h.update(f"{item}\n".encode())
    return h.hexdigest()


def _refuse_array_options(cfg: DataConfig) -> None:
    """Options of array data that have no meaning for an event log: one line naming the option."""
    given = [("val_path", cfg.val_path), ("test_path", cfg.test_path), ("label_column", cfg.label_column),
             ("condition_columns", cfg.condition_columns), ("image_size", cfg.image_size),
             ("grayscale", cfg.grayscale), ("mmap", cfg.mmap), ("limit", cfg.limit)]
    for key, value in given:
        if value:
            raise VaekitError(f"data.{key} applies to array data, not to interaction data (held-out users come from "
                              "data.heldout_users and data.holdout_fraction); drop --data." + key)
    if cfg.split != "random":
        raise VaekitError(f"data.split {cfg.split} applies to array data; interaction data are split by users "
                          "(data.heldout_users, data.holdout_fraction, data.seed): drop --data.split")
    for key in ("scale", "binarize", "dequantize"):
        if getattr(cfg, key) not in ("auto", "none"):
            raise VaekitError(f"data.{key} {getattr(cfg, key)} applies to array data; interaction rows are served "
                              f"as counts (1.0 per interaction): drop --data.{key}")


def load_interactions(cfg: DataConfig, likelihood: str = "auto", prep: dict[str, Any] | None = None) -> DataBundle:
    """Read, filter and split the interaction data ``cfg`` names into a sparse :class:`DataBundle` with
    ``rec`` (see the module doc). ``likelihood``: ``auto`` (-> multinomial, with a note), ``multinomial``
    or ``bernoulli``. ``prep``: a run's recorded record; the rebuilt item vocabulary must equal it."""
    _refuse_array_options(cfg)
    notes: list[str] = []
    lik = likelihood if prep is None else str(prep["likelihood"])
    if lik == "auto":
        lik = "multinomial"
        notes.append("model.likelihood auto -> multinomial: interaction data: each user's items are counts "
                     "drawn from a multinomial over the items (the Mult-VAE); set model.likelihood bernoulli for "
                     "independent 0/1 items")
    if lik not in INTERACTION_LIKELIHOODS:
        raise VaekitError(f"model.likelihood {lik} does not model interaction data; use "
                          f"{' or '.join(INTERACTION_LIKELIHOODS)} (or auto)")
    info: dict[str, Any] = {}
    if cfg.path:
        path = Path(cfg.path).expanduser().resolve()
        inter = read_interactions(path, user_column=cfg.user_column, item_column=cfg.item_column,
                                  rating_column=cfg.rating_column, time_column=cfg.time_column)
        titles: dict[Any, str] = {}
        info.update(path=str(path), fingerprint=fingerprint(path))
        where = str(path)
    else:
        inter, titles = load_movielens(cfg.name, cfg.dir, cfg.download, cfg.download_timeout, cfg.verify)
        dataset = inter.info.get("dataset") or {}
        info.update(name=cfg.name, files=dataset.get("files") or {})
        where = cfg.name
    kept = implicit(inter, cfg.min_rating, cfg.min_user_items)
    from vaekit.recsys.split import split_users

    rec = split_users(kept, cfg.heldout_users, cfg.holdout_fraction, cfg.seed)
    n_items, digest = rec.n_items, items_digest(rec.items)
    if prep is not None and (prep.get("n_items"), prep.get("items_sha256")) != (n_items, digest):
        raise VaekitError(f"{where}: the item vocabulary rebuilt from these data ({n_items} items, sha256 "
                          f"{digest[:12]}...) differs from the run's ({prep.get('n_items')} items, sha256 "
                          f"{str(prep.get('items_sha256'))[:12]}...); a model scores only its own items: use the "
                          "run's data and its data.* settings")
    why = "interaction rows: counts (1.0 per interaction) served as they are"
    record = {"likelihood": lik, "format": "interactions", "scale": "none", "scale_detail": why,
              "affine": [1.0, 0.0], "model_affine": None, "binarize": "none", "threshold": cfg.threshold,
              "dequantize": "none", "value_range": None, "input_range": [0.0, 1.0], "input_binary": True,
              "n_items": n_items, "items_sha256": digest,
              "reasons": {"likelihood": notes[0] if notes else "set explicitly (model.likelihood)",
                          "scale": why, "binarize": "not needed (0/1 interactions)", "dequantize": "not needed"}}
    n = {"train": rec.train.shape[0], "val": rec.val_in.shape[0], "test": rec.test_in.shape[0]}
    detail = (f"users: {n['val']} validation and {n['test']} test users held out (seed {cfg.seed}), each one's "
              f"events split {cfg.holdout_fraction:g} to predict / the rest to fold in; train = the other "
              f"{n['train']} users; items = the training users' {n_items}")
    info.update(format="interactions", split="users", split_detail=detail, seed=cfg.seed, limit=0, mmap=False,
                dtype="float32", event_shape=[n_items], n_items=n_items, **{f"n_{k}": v for k, v in n.items()},
                scale="none", scale_detail=why, affine=[1.0, 0.0], likelihood=lik, binarize="none",
                binarize_seed=cfg.binarize_seed, dequantize="none", binary=True, input_range=[0.0, 1.0],
                input_binary=True, prep=record, recsys=rec.info, notes=notes,
                warnings=list((inter.info.get("dataset") or {}).get("warnings") or []))
    return interaction_bundle(rec, titles, info)


def interaction_bundle(rec: RecData, titles: Mapping[Any, str] | None = None,
                       info: dict[str, Any] | None = None) -> DataBundle:
    """The sparse :class:`DataBundle` of a split ``rec``: train = the training users' rows, val / test = the
    held-out users' full rows (fold-in + to-predict, disjoint so their sum is the row), ``rec`` =
    :class:`RecSplits` (``rec`` and ``titles``); ``info`` is recorded with a run trained on it."""
    return DataBundle(SparseSplit(rec.train), SparseSplit(rec.val_in + rec.val_out),
                      SparseSplit(rec.test_in + rec.test_out), binary=True, info=dict(info or {}),
                      rec=RecSplits(rec, dict(titles or {})))
