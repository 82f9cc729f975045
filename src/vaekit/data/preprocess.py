"""Validation, splits, scaling and binarisation: RawData -> DataBundle.

All statistics are computed in chunks of rows, so a memory-mapped array is never loaded whole.

Scaling (``data.scale``):
  * ``unit``: binary data (all values 0/1) is kept; data with a known range (uint8 pixels 0..255,
    digits 0..16) is mapped linearly to [0, 1]; float data already in [0, 1] on the training split is
    kept; anything else is min-max scaled with the training split's global min and max (one scalar
    pair, so relative contrast between features is kept; val/test values may then fall slightly outside
    [0, 1], and are clipped to [0, 1] only where they are binarised).
  * ``standardize``: the data is served in file units; ``bundle.loc``/``bundle.scale`` are the
    per-feature mean/std (event shape, float32) of the training split (std 0 -> 1) for the model to
    standardise internally. Gaussian likelihoods only.
  * ``none``: served in file units.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from vaekit.data.bundle import DataBundle, Split, release_pages
from vaekit.data.config import DataConfig
from vaekit.data.raw import RawData
from vaekit.errors import VaekitError

CHUNK_ROWS = 8192
IWAE_VAL = 400


def _chunks(x: np.ndarray, rows: np.ndarray | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(offset, block) pairs over ``x[rows]`` (or all of x), CHUNK_ROWS rows at a time."""
    n = len(x) if rows is None else len(rows)
    for start in range(0, n, CHUNK_ROWS):
        sel = slice(start, start + CHUNK_ROWS) if rows is None else rows[start:start + CHUNK_ROWS]
        if isinstance(x, np.memmap):  # copy the block, then unmap its file pages: RSS stays flat
            block = np.array(x[sel])
            release_pages(x)
        else:
            block = np.asarray(x[sel])
        yield start, block


def validate(raw: RawData, where: str) -> RawData:
    """Check dtype, emptiness, finiteness and label length; vectors (n,) become (n, 1)."""
    x = raw.x
    if x.dtype.kind not in "biuf":
        raise VaekitError(f"{where}: data has dtype {x.dtype}; save numeric (int or float) arrays")
    if x.ndim == 0 or len(x) == 0 or x.size == 0:
        raise VaekitError(f"{where}: the dataset is empty (shape {x.shape}); give at least one example")
    if x.ndim == 1:
        raw.x = x = x.reshape(-1, 1)
    if raw.y is not None and len(raw.y) != len(x):
        raise VaekitError(f"{where}: {len(raw.y)} labels for {len(x)} examples; give one label per example")
    if x.dtype.kind == "f":
        count, first = 0, None
        for off, block in _chunks(x):
            bad = ~np.isfinite(block)
            c = int(bad.sum())
            if c and first is None:
                loc = np.argwhere(bad)[0]
                first = (int(loc[0]) + off, *(int(i) for i in loc[1:]))
            count += c
        if count:
            raise VaekitError(f"{where}: {count} NaN/inf values, the first at index {first}; "
                              "clean or impute the data before training")
    return raw


def is_binary(x: np.ndarray) -> bool:
    """True if every value of ``x`` is 0 or 1 (stops at the first chunk that is not)."""
    return all(((b == 0) | (b == 1)).all() for _, b in _chunks(x))


def split_rows(raw: RawData, cfg: DataConfig) -> tuple[dict[str, np.ndarray], str]:
    """Row indices (sorted) of train/val/test and a sentence saying how they were made."""
    n = len(raw.x)
    rng = np.random.default_rng(cfg.seed)
    fixed = raw.fixed or {}
    if cfg.split == "iwae":
        pool = fixed.get("pool")
        if pool is None or len(pool) != 60000:
            raise VaekitError("split 'iwae' is defined for the 60,000 MNIST training images only; "
                              "use --data.name mnist or --data.split random")
        perm = pool[rng.permutation(len(pool))]
        out = {"train": perm[:-IWAE_VAL], "val": perm[-IWAE_VAL:], "test": fixed["test"]}
        how = (f"iwae: validation = last {IWAE_VAL} of a permutation (seed {cfg.seed}) of the 60,000 "
               "training images, train = the other 59,600; standard 10,000 test set")
    elif "train" in fixed:
        out = {k: fixed[k] for k in ("train", "val", "test")}
        how = "fixed: the dataset's own train/validation/test files (val_fraction and test_fraction unused)"
    elif "pool" in fixed:
        pool = fixed["pool"]
        perm = pool[rng.permutation(len(pool))]
        n_val = round(len(pool) * cfg.val_fraction)
        out = {"train": perm[n_val:], "val": perm[:n_val], "test": fixed["test"]}
        how = (f"standard test set; validation = first {n_val} of a permutation (seed {cfg.seed}) of the "
               "training file (val_fraction), train = the rest")
    else:
        perm = rng.permutation(n)
        n_test, n_val = round(n * cfg.test_fraction), round(n * cfg.val_fraction)
        out = {"test": perm[:n_test], "val": perm[n_test:n_test + n_val], "train": perm[n_test + n_val:]}
        how = (f"random: permutation (seed {cfg.seed}) of all examples; test = first {n_test} "
               f"(test_fraction), val = next {n_val} (val_fraction), train = the rest")
    out = {k: np.sort(v) for k, v in out.items()}
    if cfg.limit:
        lim = np.random.default_rng((cfg.seed, 1)).choice
        out = {k: v if len(v) <= cfg.limit else np.sort(lim(v, cfg.limit, replace=False))
               for k, v in out.items()}
        how += (f"; limit {cfg.limit}: each split larger than that keeps {cfg.limit} of its examples drawn "
                f"without replacement (seed ({cfg.seed}, 1)), in file order")
    if len(out["train"]) == 0:
        raise VaekitError(f"the training split is empty ({n} examples); lower --data.val_fraction / "
                          "--data.test_fraction or add data")
    return out, how


def _train_minmax(x: np.ndarray, rows: np.ndarray) -> tuple[float, float]:
    lo, hi = np.inf, -np.inf
    for _, b in _chunks(x, rows):
        lo, hi = min(lo, float(b.min())), max(hi, float(b.max()))
    return lo, hi


def _train_moments(x: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std (event shape, float64) over ``x[rows]`` (two-pass, chunked)."""
    total = np.zeros(x.shape[1:], dtype=np.float64)
    for _, b in _chunks(x, rows):
        total += b.sum(axis=0, dtype=np.float64)
    mean = total / len(rows)
    sq = np.zeros_like(mean)
    for _, b in _chunks(x, rows):
        sq += ((b.astype(np.float64) - mean) ** 2).sum(axis=0)
    return mean, np.sqrt(sq / len(rows))


def build(raw: RawData, cfg: DataConfig, likelihood: str, where: str) -> DataBundle:
    """Validate, split, scale and binarise ``raw`` into a :class:`DataBundle` (see module doc)."""
    raw = validate(raw, where)
    x = raw.x
    rows, how = split_rows(raw, cfg)
    binary = is_binary(x)
    mmap = isinstance(x, np.memmap)
    info: dict[str, Any] = {**raw.info, "split": cfg.split, "split_detail": how, "seed": cfg.seed,
                            "limit": cfg.limit, "mmap": mmap, "dtype": str(x.dtype),
                            "event_shape": list(x.shape[1:]),
                            **{f"n_{k}": len(v) for k, v in rows.items()}}
    # ---- scaling
    a, b = 1.0, 0.0
    loc = scale = None
    if cfg.scale == "standardize":
        if likelihood == "bernoulli":
            raise VaekitError("--data.scale standardize needs a Gaussian likelihood; use --data.scale unit "
                              "with --model.likelihood bernoulli, or --model.likelihood gaussian")
        mean, std = _train_moments(x, rows["train"])
        std[std == 0] = 1.0
        loc, scale = torch.from_numpy(mean.astype(np.float32)), torch.from_numpy(std.astype(np.float32))
        detail = "per-feature mean/std of the training split in bundle.loc/scale; data served in file units"
    elif cfg.scale == "unit":
        if binary:
            detail = "binary data kept as 0/1"
        elif raw.value_range is not None or x.dtype == np.uint8:
            lo, hi = raw.value_range or (0.0, 255.0)
            a, b = 1.0 / (hi - lo), -lo / (hi - lo)
            detail = f"known range [{lo:g}, {hi:g}] mapped to [0, 1]"
        else:
            lo, hi = _train_minmax(x, rows["train"])
            if x.dtype.kind == "f" and lo >= 0.0 and hi <= 1.0:
                detail = "float data already in [0, 1] on the training split, kept"
            else:
                a, b = (1.0 / (hi - lo), -lo / (hi - lo)) if hi > lo else (1.0, -lo)
                detail = f"min-max of the training split [{lo:g}, {hi:g}] mapped to [0, 1]"
    else:
        detail = "none: served in file units"
    info.update(scale=cfg.scale, scale_detail=detail, affine=[a, b])
    # ---- binarisation
    mode = cfg.binarize
    if mode == "auto":
        mode = "dynamic" if likelihood == "bernoulli" and not binary else "none"
    if mode != "none" and cfg.scale == "standardize":
        raise VaekitError(f"--data.binarize {mode} needs data in [0, 1]; use --data.scale unit "
                          "(or --data.binarize none)")
    if mode != "none" and cfg.scale == "none" and not binary:
        lo, hi = _train_minmax(x, rows["train"])
        if lo < 0.0 or hi > 1.0:
            raise VaekitError(f"--data.binarize {mode} needs data in [0, 1] but the training data spans "
                              f"[{lo:g}, {hi:g}]; use --data.scale unit")
    if likelihood == "bernoulli" and not binary and mode == "none":
        raise VaekitError("Bernoulli likelihood on non-binary data; add --data.binarize dynamic "
                          "(or static/threshold), or use --model.likelihood gaussian")
    info.update(binarize=mode, binarize_seed=cfg.binarize_seed, binary=bool(binary or mode != "none"))
    if mode == "threshold":
        info["threshold"] = cfg.threshold
    y = None if raw.y is None else np.asarray(raw.y, dtype=np.int64)

    def make(part: str, offset: int) -> Split:
        r = rows[part]
        ys = None if y is None else torch.from_numpy(y[r])
        dynamic = mode == "dynamic" and part == "train"
        fixed_draw = mode == "static" or (mode == "dynamic" and part != "train")
        if mmap:
            per_batch = "static" if fixed_draw else ("threshold" if mode == "threshold" else "none")
            return Split(x, ys, dynamic=dynamic, rows=r, affine=(a, b), binarize=per_batch,
                         threshold=cfg.threshold, noise_seed=cfg.binarize_seed * 3 + offset)
        xs = torch.from_numpy(np.asarray(x[r], dtype=np.float32))
        if (a, b) != (1.0, 0.0):
            xs.mul_(a).add_(b)
        if mode == "threshold":
            xs = (xs > cfg.threshold).float()
        elif fixed_draw:
            g = torch.Generator().manual_seed(cfg.binarize_seed * 3 + offset)
            xs = torch.bernoulli(xs.clamp_(0.0, 1.0), generator=g)
        elif dynamic:
            xs.clamp_(0.0, 1.0)
        return Split(xs, ys, dynamic=dynamic)

    return DataBundle(make("train", 0), make("val", 1), make("test", 2), binary=info["binary"],
                      loc=loc, scale=scale, info=info)
