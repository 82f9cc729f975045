"""Datasets: named benchmarks, user files, preprocessing and splits.

``load_data(config.data, likelihood)`` returns a :class:`DataBundle` whose splits are served by index.
Named datasets: ``digits`` (offline), ``mnist``, ``fashion-mnist``, ``frey-faces``, ``binarized-mnist``
(see :mod:`vaekit.data.named`); user data via ``data.path`` (see :mod:`vaekit.data.files`);
preprocessing and splits in :mod:`vaekit.data.preprocess`. Documentation: docs/data.md.
"""

from __future__ import annotations

from typing import Any

from vaekit.data.bundle import DataBundle, Split
from vaekit.data.config import DataConfig
from vaekit.data.named import NAMES, load_digits, load_named
from vaekit.data.preprocess import build
from vaekit.data.rundata import load_run_data
from vaekit.data.splitfiles import load_split_files
from vaekit.errors import VaekitError

__all__ = ["NAMES", "DataBundle", "DataConfig", "Split", "load_data", "load_run_data"]


def load_data(cfg: DataConfig, likelihood: str = "auto", prep: dict[str, Any] | None = None) -> DataBundle:
    """Load, preprocess and split the data named by ``cfg`` for a model with ``likelihood``.

    ``likelihood`` is 'auto' (decided from the data), 'bernoulli', 'gaussian', 'gaussian-learned' or (for
    interaction data only) 'multinomial'. Interaction data (``data.format``, the ``movielens-*`` names;
    :func:`vaekit.recsys.bundle.is_interaction_data`) are read, filtered and split by users into sparse
    splits with the recommender's view on ``bundle.rec`` (:func:`vaekit.recsys.bundle.load_interactions`).
    ``data.path`` wins over ``data.name``; ``data.val_path`` / ``data.test_path`` are whole split files
    (:mod:`vaekit.data.splitfiles`). ``prep``: a run's recorded preprocessing to apply instead of
    deciding it (see :func:`vaekit.data.preprocess.build`; runs load their data with
    :func:`load_run_data`). Everything decided here (files and checksums, split, likelihood, scaling,
    binarisation, dequantisation, with reasons; notes and warnings) is recorded in ``bundle.info``.
    """
    from vaekit.recsys.bundle import is_interaction_data, load_interactions

    recorded = None if prep is None else prep.get("format")
    if (prep is None and (likelihood == "mixed" or cfg.column_types)) or (prep or {}).get("likelihood") == "mixed":
        from vaekit.tabular.bundle import load_table_data  # a mixed-type table (docs/tables.md)

        return load_table_data(cfg, prep)
    if recorded == "interactions" or (recorded is None and is_interaction_data(cfg)):
        return load_interactions(cfg, likelihood, prep)
    asked = likelihood if prep is None else prep.get("likelihood")
    if asked == "multinomial":
        raise VaekitError("model.likelihood multinomial models users' item counts: give interaction data (a "
                          "movielens-* dataset, or an event file with --data.format interactions); use auto, "
                          "bernoulli or gaussian-learned for array data")
    if not cfg.path:
        for key, value in (("label_column", cfg.label_column), ("condition_columns", cfg.condition_columns),
                           ("image_size", cfg.image_size), ("grayscale", cfg.grayscale)):
            if value:
                extra = " (named datasets have labels only: --model.condition label)" \
                    if key == "condition_columns" else ""
                raise VaekitError(f"data.{key} applies to user files (data.path), not to the named dataset "
                                  f"'{cfg.name}'{extra}; drop --data.{key}")
    if cfg.path:
        raw = load_split_files(cfg)  # data.path, plus data.val_path / data.test_path when given
        where = raw.info.get("path", cfg.path)
    elif cfg.name == "digits":
        raw, where = load_digits(), "digits"
    elif cfg.name in NAMES:
        raw = load_named(cfg.name, cfg.dir, cfg.download, cfg.download_timeout, cfg.verify)
        where = cfg.name
    else:
        raise VaekitError(f"unknown dataset '{cfg.name}'; use one of {', '.join(NAMES)} or --data.path FILE")
    if cfg.mmap and not cfg.path:
        raise VaekitError(f"--data.mmap applies to .npy files given with --data.path, not to '{cfg.name}'; "
                          "set --data.mmap false")
    return build(raw, cfg, likelihood, where, prep)
