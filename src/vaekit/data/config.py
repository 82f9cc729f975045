"""Configuration of the data section (``[data]`` in config.toml, ``--data.*`` on the command line)."""

from __future__ import annotations

from dataclasses import dataclass

from vaekit.errors import VaekitError
from vaekit.typed import check_fields

BINARIZE = ("auto", "none", "threshold", "static", "dynamic")
SCALE = ("auto", "unit", "standardize", "none")
DEQUANTIZE = ("auto", "uniform", "none")
SPLITS = ("random", "iwae", "all")
FORMATS = ("auto", "array", "interactions")
DATASETS = ("digits", "mnist", "fashion-mnist", "frey-faces", "binarized-mnist",
            "movielens-100k", "movielens-1m", "movielens-20m", "movielens-latest-small")


@dataclass(frozen=True)
class DataConfig:
    """Where the data comes from and how it is preprocessed.

    ``name`` is a named dataset (``digits``, ``mnist``, ...); ``path`` a user file or folder, which wins
    over ``name`` when set. ``scale``, ``binarize`` and ``dequantize`` = ``'auto'`` are resolved from the
    data and the likelihood (docs/data.md, "Defaults"); the saved config of a run holds the resolved
    values and resolved absolute ``path`` / ``dir``. ``dequantize='uniform'`` adds U(0, 1) noise in file
    units to integer-valued data for a Gaussian likelihood (a density over bins of width 1, so bits/dim
    are meaningful). ``verify=False`` turns a named dataset's checksum mismatch from an error into a
    warning recorded in the run.
    ``val_path`` / ``test_path``: files (or image folders) of the same kind and shape as ``path`` whose
    every row is the validation / test split; ``val_fraction`` / ``test_fraction`` apply only to a split
    that has no file (it is then carved from ``path``), and the preprocessing is decided from ``path``.
    ``condition_columns``: the covariates of a conditional VAE (``model.condition covariates``): CSV columns
    (removed from x) or ``.npz`` arrays (e.g. key ``c``, shape (n,) or (n, k)) by name; they are served as
    ``Split.c``, float32, standardised with the training split's mean/std (recorded in the run).
    ``split`` is ``random``, ``iwae`` (MNIST's 59,600/400) or ``all`` (evaluation only: every row of
    ``path`` is the test split, nothing is dropped); ``download_timeout`` is in seconds.
    A saved config has ``name = ''`` when ``path`` is set (the path is what was used).

    Recommender data (docs/recommend.md, "Data"): ``format`` is ``auto`` (interactions for the
    ``movielens-*`` names and for files named ``u.data`` / ``ratings.dat`` / ``ratings.csv``, array data
    otherwise), ``array`` or ``interactions`` (an event log: one (user, item[, rating[, time]]) per line).
    ``user_column`` / ``item_column`` / ``rating_column`` / ``time_column`` name the columns of an interaction
    table with a header ('' = the common names: user/userId, item/movieId, rating, timestamp). Implicit feedback
    keeps ratings strictly above ``min_rating`` (the paper: 3.5, i.e. 4 and 5 stars), then users with at least
    ``min_user_items`` items. ``heldout_users`` validation users and as many test users (0 = 10% of the users
    each) are held out whole; each one's events are split ``holdout_fraction`` to predict and the rest to fold
    in. The split is drawn with ``seed``.
    Tables of mixed types (``model.likelihood mixed``, docs/tables.md): ``column_types`` overrides the
    inferred type of columns as NAME=TYPE entries (``["age=real", "sex=categorical"]``, a TOML table
    ``[data.column_types]`` of NAME = "TYPE", or ``--data.column_types age=real,sex=categorical``);
    ``unknown_categories`` is ``error`` (a category unseen in training is an error) or ``unknown`` (it maps
    to an extra level '<unknown>').
    Full description: docs/data.md.
    """

    name: str = "digits"
    path: str = ""
    val_path: str = ""
    test_path: str = ""
    dir: str = ""
    label_column: str = ""
    condition_columns: tuple[str, ...] = ()
    scale: str = "auto"
    binarize: str = "auto"
    threshold: float = 0.5
    binarize_seed: int = 0
    split: str = "random"
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    image_size: tuple[int, ...] = ()
    grayscale: bool = False
    mmap: bool = False
    download: bool = True
    limit: int = 0
    download_timeout: float = 60.0
    dequantize: str = "auto"
    verify: bool = True
    format: str = "auto"
    user_column: str = ""
    item_column: str = ""
    rating_column: str = ""
    time_column: str = ""
    min_rating: float = 3.5
    min_user_items: int = 5
    heldout_users: int = 0
    holdout_fraction: float = 0.2
    column_types: tuple[str, ...] = ()
    unknown_categories: str = "error"

    def __post_init__(self) -> None:
        check_fields(self, "data")  # types first: one-line errors naming the key

        def check(ok: bool, key: str, message: str) -> None:
            if not ok:
                raise VaekitError(f"config key 'data.{key}': {message}")

        check(self.scale in SCALE, "scale", f"use one of {', '.join(SCALE)}")
        check(self.dequantize in DEQUANTIZE, "dequantize", f"use one of {', '.join(DEQUANTIZE)}")
        check(self.binarize in BINARIZE, "binarize", f"use one of {', '.join(BINARIZE)}")
        check(0.0 <= self.threshold <= 1.0, "threshold", f"must be in [0, 1], got {self.threshold}")
        check(0.0 <= self.val_fraction < 1.0, "val_fraction", f"must be in [0, 1), got {self.val_fraction}")
        check(0.0 <= self.test_fraction < 1.0, "test_fraction",
              f"must be in [0, 1), got {self.test_fraction}")
        carved = (0.0 if self.val_path else self.val_fraction) + (0.0 if self.test_path else self.test_fraction)
        check(carved < 1.0, "val_fraction", "val_fraction + test_fraction must leave some training data")
        for key in ("val_path", "test_path"):
            check(not getattr(self, key) or bool(self.path), key,
                  f"a {key.split('_')[0]} file needs the training file in data.path (--data.path FILE)")
        check(self.split != "all" or not (self.val_path or self.test_path), "split",
              "split 'all' scores every row of data.path as the test split; drop data.val_path / data.test_path")
        check(self.split != "all" or bool(self.path), "split",
              "split 'all' scores every row of a file given with data.path (--data.path FILE)")
        check(self.limit >= 0, "limit", "must be >= 0 (0 means all examples)")
        check(self.split in SPLITS, "split", f"use one of {', '.join(SPLITS)}")
        check(bool(self.path) or self.name in DATASETS, "name",
              f"unknown dataset '{self.name}'; use one of {', '.join(DATASETS)} or set data.path")
        check(self.download_timeout > 0, "download_timeout",
              f"must be > 0 seconds, got {self.download_timeout}")
        check(all(s >= 1 for s in self.image_size), "image_size",
              f"sizes must be >= 1, got {self.image_size}")
        check(len(set(self.condition_columns)) == len(self.condition_columns), "condition_columns",
              f"names a column twice ({', '.join(self.condition_columns)}); name each covariate once")
        check(self.label_column not in self.condition_columns or not self.label_column, "condition_columns",
              f"'{self.label_column}' is the label column; a column is either the label or a covariate")
        check(len(self.image_size) in (0, 2), "image_size", "give height,width, e.g. --data.image_size 28,28")
        check(self.unknown_categories in ("error", "unknown"), "unknown_categories", "use 'error' or 'unknown'")
        check(self.format in FORMATS, "format", f"use one of {', '.join(FORMATS)}")
        check(self.min_rating == self.min_rating, "min_rating", "is NaN; give a number (the paper keeps > 3.5)")
        check(self.min_user_items >= 1, "min_user_items", f"must be >= 1 (the paper uses 5), got {self.min_user_items}")
        check(self.heldout_users >= 0, "heldout_users",
              f"must be >= 0 (0 = 10% of the users each), got {self.heldout_users}")
        check(0.0 < self.holdout_fraction < 1.0, "holdout_fraction",
              f"must be in (0, 1) (the paper uses 0.2), got {self.holdout_fraction}")
