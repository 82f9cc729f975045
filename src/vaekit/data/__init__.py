"""Datasets: named benchmarks, user files, preprocessing and splits.

``load_data(config.data, likelihood)`` returns a :class:`DataBundle` whose splits are served by index.
Named datasets: ``digits`` (offline), ``mnist``, ``fashion-mnist``, ``frey-faces``, ``binarized-mnist``
(see :mod:`vaekit.data.named`); user data via ``data.path`` (see :mod:`vaekit.data.files`);
preprocessing and splits in :mod:`vaekit.data.preprocess`. Documentation: docs/data.md.
"""

from __future__ import annotations

from vaekit.data.bundle import DataBundle, Split
from vaekit.data.config import DataConfig
from vaekit.data.files import load_path
from vaekit.data.named import NAMES, load_digits, load_named
from vaekit.data.preprocess import build
from vaekit.errors import VaekitError

__all__ = ["NAMES", "DataBundle", "DataConfig", "Split", "load_data"]


def load_data(cfg: DataConfig, likelihood: str = "bernoulli") -> DataBundle:
    """Load, preprocess and split the data named by ``cfg`` for a model with ``likelihood``.

    ``likelihood`` is 'bernoulli', 'gaussian' or 'gaussian-learned'. ``data.path`` wins over
    ``data.name``. Everything decided here (files and checksums, split, scaling, binarisation) is
    recorded in ``bundle.info``.
    """
    if cfg.path:
        raw = load_path(cfg.path, cfg.label_column, cfg.image_size, cfg.grayscale, cfg.mmap)
        where = cfg.path
    elif cfg.name == "digits":
        raw, where = load_digits(), "digits"
    elif cfg.name in NAMES:
        raw = load_named(cfg.name, cfg.dir, cfg.download, cfg.download_timeout)
        where = cfg.name
    else:
        raise VaekitError(f"unknown dataset '{cfg.name}'; use one of {', '.join(NAMES)} or --data.path FILE")
    if cfg.mmap and not cfg.path:
        raise VaekitError(f"--data.mmap applies to .npy files given with --data.path, not to '{cfg.name}'; "
                          "set --data.mmap false")
    return build(raw, cfg, likelihood, where)
