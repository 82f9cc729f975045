"""Validation, splits, scaling, binarisation and dequantisation: RawData -> DataBundle.

All statistics are computed in chunks of rows, so a memory-mapped array is never loaded whole.
A new run *decides* its preprocessing from the training split once (:func:`vaekit.data.decide.resolve`);
the decision is a
small record (``info["prep"]``, saved in every checkpoint) that is *applied*, never recomputed, when
the run's data (or other data evaluated with the run) are loaded again.

Defaults (``auto``): binary data -> Bernoulli, no binarisation; grey-level images with a known range
(named image datasets, uint8 arrays/folders, digits) -> Bernoulli with dynamic binarisation; any other
data (tables, float arrays) -> ``gaussian-learned`` on standardised data.

Scaling (``data.scale``):
  * ``unit``, Bernoulli: binary data is kept; data with a known range (uint8 0..255, digits 0..16) is
    mapped linearly to [0, 1]; float data already in [0, 1] on the training split is kept; anything
    else is min-max scaled with the training split's global min and max (``affine`` = [a, b]).
  * ``unit``, Gaussian: the data are served in file units and the model holds loc = lo, scale = hi - lo
    (the known range, else the training split's min-max; + 1 when dequantised), so log p is in nats of
    the file's units.
  * ``standardize``: the data is served in file units; ``bundle.loc``/``bundle.scale`` are the
    per-feature mean/std (event shape, float32) of the training split (std 0 -> 1) for the model to
    standardise internally. Gaussian likelihoods only.
  * ``none``: served in file units.

Dequantisation (``data.dequantize``): ``uniform`` adds U(0, 1) noise in file units (fresh each batch for
training, one fixed draw for val/test); ``auto`` picks it for a Gaussian on integer data of known range.

Storage: in-memory 8-bit data (uint8 image folders and arrays, MNIST-family IDX files) stay uint8; the
scaling, clamping and fresh draws are applied per batch (:meth:`Split.batch`), the served float32
values equal to the bit those of a float32 store. Statically binarised 8-bit splits store their 0/1
draws as uint8; evaluation splits with a fixed dequantisation draw are stored as float32. A loader's
scratch buffer (``RawData.scratch``: the MNIST-family files) is reused: the validation and test splits are
made from it first, then the training split is stored in its front rows and the rest of it is given back to
the OS, so the decoded file and a copy of the training split are never held at once.

Covariates (``RawData.c``, from ``data.condition_columns``) are standardised with the training split's
per-column mean and std (std 0 -> 1), recorded as ``prep["covariates"]`` = {columns, loc, scale} and
applied to any data evaluated with the run (:func:`standardise_covariates`); ``Split.c`` holds them
(n, k) float32.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vaekit.data.bundle import DEQUANT_SEED, DataBundle, Split, release_pages
from vaekit.data.config import DataConfig
from vaekit.data.raw import RawData, can_release, release_after
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
    if raw.c is not None and (raw.c.ndim != 2 or len(raw.c) != len(x)):
        raise VaekitError(f"{where}: covariates of shape {raw.c.shape} for {len(x)} examples; give one row of "
                          "covariates per example")
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
    if x.dtype.kind in "biu":  # whole numbers: binary iff within [0, 1] (no temporary arrays)
        return all(b.size == 0 or (int(b.min()) >= 0 and int(b.max()) <= 1) for _, b in _chunks(x))
    return all(((b == 0) | (b == 1)).all() for _, b in _chunks(x))


PREP_BLOCK = 1024  # rows preprocessed at a time for compact (uint8) splits (their float32 temporaries: 3 MB)


def _prepare(x: np.ndarray, rows: np.ndarray, a: float, b: float, mode: str, threshold: float, fixed_draw: bool,
             dynamic: bool, g: torch.Generator) -> Tensor:
    """Rows ``rows`` of ``x`` as float32 mapped by ``a * x + b``, then thresholded, binarised with one fixed draw
    from ``g`` (``fixed_draw``), or clamped to [0, 1] (a dynamically binarised split's grey levels)."""
    xs = torch.from_numpy(np.asarray(x[rows], dtype=np.float32))
    if (a, b) != (1.0, 0.0):
        xs.mul_(a).add_(b)
    if mode == "threshold":
        return (xs > threshold).float()
    if fixed_draw:
        return torch.bernoulli(xs.clamp_(0.0, 1.0), generator=g)
    if dynamic:
        xs.clamp_(0.0, 1.0)
    return xs


def _rows_to_front(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Move rows ``r`` (strictly increasing) of ``x`` to ``x[:len(r)]`` in place, a block of rows at a time, and
    return that view. Safe because row ``r[i] >= i``: a block's rows are copied out before it is written, and
    rows of later blocks lie past it."""
    for start in range(0, len(r), PREP_BLOCK):
        block = r[start:start + PREP_BLOCK]
        if block[0] != start or block[-1] != start + len(block) - 1:  # else the block is already in place
            x[start:start + len(block)] = x[block]
    return x[:len(r)]


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
    elif cfg.split == "all":
        out = {"train": np.arange(0), "val": np.arange(0), "test": np.arange(n)}
        how = "all: every row of the file is the test split (val_fraction and test_fraction unused)"
    elif "pool" in fixed:  # a training pool; a split without its own rows is carved from it by its fraction
        pool = fixed["pool"]
        perm = pool[rng.permutation(len(pool))]
        n_test = 0 if "test" in fixed else round(len(pool) * cfg.test_fraction)
        n_val = 0 if "val" in fixed else round(len(pool) * cfg.val_fraction)
        out = {"test": fixed["test"] if "test" in fixed else perm[:n_test],
               "val": fixed["val"] if "val" in fixed else perm[n_test:n_test + n_val],
               "train": perm[n_test + n_val:]}
        files = raw.info.get("split_files") or {}
        if not files:  # a named dataset's training file and standard test set
            how = (f"standard test set; validation = first {n_val} of a permutation (seed {cfg.seed}) of the "
                   "training file (val_fraction), train = the rest")
        else:
            part = {k: f"every row of {files[k]['path']}" for k in ("val", "test") if k in files}
            part.setdefault("test", f"first {n_test} of a permutation (seed {cfg.seed}) of the training file "
                                    "(test_fraction)")
            part.setdefault("val", f"{'next' if n_test else 'first'} {n_val} of a permutation (seed {cfg.seed}) of "
                                   "the training file (val_fraction)")
            unused = " and ".join(f"{k}_fraction" for k in ("val", "test") if k in files)
            rest = (f"every row of {files['train']['path']}" if n_test + n_val == 0 else
                    f"the other rows of {files['train']['path']}")
            how = f"split files: test = {part['test']}; val = {part['val']}; train = {rest} ({unused} unused)"
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
    if len(out["train"]) == 0 and cfg.split != "all":
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


def covariate_record(c: np.ndarray, train_rows: np.ndarray, columns: list[str]) -> dict[str, Any]:
    """``prep["covariates"]``: the covariate ``columns`` and their training-split mean ``loc`` and std
    ``scale`` (std 0 -> 1), lists of k floats, from ``c`` (n, k) file units restricted to ``train_rows``."""
    loc, scale = _train_moments(np.asarray(c, dtype=np.float64), train_rows)  # as data.scale standardize does
    scale[scale == 0] = 1.0
    return {"columns": list(columns), "loc": loc.tolist(), "scale": scale.tolist()}


def standardise_covariates(c: np.ndarray, record: dict[str, Any], where: str) -> np.ndarray:
    """Covariates ``c`` (n, k) or (k,) in file units -> float32 (n, k) as the model sees them:
    (c - loc) / scale with the run's recorded training statistics (:func:`covariate_record`). A width
    other than the run's k, or a missing (non-finite) value, is a one-line error naming ``where``."""
    c = np.asarray(c, dtype=np.float64)
    c = c.reshape(1, -1) if c.ndim == 1 else c
    loc, scale = np.asarray(record["loc"], np.float64), np.asarray(record["scale"], np.float64)
    if c.ndim != 2 or c.shape[1] != len(loc):
        raise VaekitError(f"{where}: covariates of shape {c.shape}, but the run's model takes {len(loc)} "
                          f"({', '.join(record['columns'])}) per example; give (n, {len(loc)}) values")
    if not np.isfinite(c).all():
        raise VaekitError(f"{where}: missing or non-finite covariate values; fill or drop them")
    return ((c - loc) / scale).astype(np.float32)


def _covariates(raw: RawData, prep: dict[str, Any], fresh: bool, train_rows: np.ndarray,
                where: str) -> np.ndarray | None:
    """The standardised covariates (n, k) float32 of every row (None without covariates); a new run
    records their statistics in ``prep`` first."""
    record = prep.get("covariates")
    if raw.c is None:
        if record is not None:
            raise VaekitError(f"{where}: the run's model takes covariates ({', '.join(record['columns'])}) but "
                              "these data have none; give data with the same covariates")
        return None
    if fresh:
        record = prep["covariates"] = covariate_record(raw.c, train_rows, raw.info.get("condition_columns") or [])
    elif record is None:
        raise VaekitError(f"{where}: these data have covariates but the run's model takes none; drop "
                          "--data.condition_columns")
    return standardise_covariates(raw.c, record, where)


def build(raw: RawData, cfg: DataConfig, likelihood: str, where: str,
          prep: dict[str, Any] | None = None) -> DataBundle:
    """Validate, split, scale and binarise ``raw`` into a :class:`DataBundle` (see module doc).

    ``prep`` None decides the preprocessing from this data (a new run, ``decide.resolve``); a run's
    recorded ``prep`` (``meta["data"]["prep"]``) is *applied* instead, so other data evaluated with a run
    get exactly the run's preprocessing. The record holds: ``likelihood``, ``scale``, ``affine`` = [a, b]
    (served = a * x + b; identity for Gaussians), ``model_affine`` = [loc, scale] (Gaussian ``unit``:
    the model's internal map to [0, 1]), ``binarize``, ``threshold``, ``dequantize``, ``value_range``,
    ``input_range`` (min, max of the model's inputs on the training split) and ``input_binary``.
    """
    from vaekit.data.decide import integral, resolve  # decide.py reads this module's chunked statistics

    raw = validate(raw, where)
    x = raw.x
    rows, how = split_rows(raw, cfg)
    mmap = isinstance(x, np.memmap)
    info: dict[str, Any] = {**raw.info, "split": cfg.split, "split_detail": how, "seed": cfg.seed,
                            "limit": cfg.limit, "mmap": mmap, "dtype": str(x.dtype),
                            "event_shape": list(x.shape[1:]),
                            **{f"n_{k}": len(v) for k, v in rows.items()}}
    decide_rows = info.pop("decide_rows", None)  # split files: the training file's rows decide
    notes = list(info.pop("notes", []))
    warnings = list(info.pop("warnings", []))
    fresh = prep is None
    if prep is None:
        if cfg.split == "all":
            raise VaekitError("data.split all scores every row of a file with a trained run (vaekit eval RUN "
                              "--data.path FILE --data.split all); to train, use --data.split random")
        own = raw if decide_rows is None else RawData(x[:decide_rows], None, raw.value_range, info=raw.info)
        prep, more = resolve(own, cfg, likelihood, is_binary(own.x), rows["train"], where)
        warnings += more
        sections = {"likelihood": "model", "scale": "data", "binarize": "data", "dequantize": "data"}
        for key, section in sections.items():
            asked = likelihood if key == "likelihood" else getattr(cfg, key)
            if asked == "auto" and (key in ("likelihood", "scale") or prep[key] != "none"):
                notes.append(f"{section}.{key} auto -> {prep[key]}: {prep['reasons'][key]}")
    else:
        prep = dict(prep)
    if fresh and decide_rows is None:
        pass  # decided from these very data: nothing to check
    elif prep["likelihood"] == "bernoulli" and prep["binarize"] == "none" and not is_binary(x):
        raise VaekitError(f"{where}: the training file is binary (a Bernoulli model, no binarisation), but the "
                          "val/test files hold values other than 0 and 1; give split files of one kind" if fresh else
                          f"{where}: the run's Bernoulli model was trained on binary data, but these data are not "
                          "binary (values other than 0 and 1); evaluate it on binary data")
    elif prep["dequantize"] == "uniform" and not integral(x):
        raise VaekitError(f"{where}: the training file holds integer values (uniform dequantisation), but the "
                          "val/test files hold fractional values; give split files of one kind" if fresh else
                          f"{where}: the run was trained on integer values with uniform dequantisation, but these "
                          "data hold fractional values; evaluate it on data of the same kind")
    gauss = prep["likelihood"] != "bernoulli"
    a, b = (float(v) for v in prep["affine"])
    mode, dq, threshold = prep["binarize"], prep["dequantize"], float(prep["threshold"])
    loc = scale = None
    cov = _covariates(raw, prep, fresh, rows["train"], where)
    if gauss and prep["scale"] == "standardize" and len(rows["train"]):
        mean, std = _train_moments(x, rows["train"])
        std[std == 0] = 1.0
        loc, scale = torch.from_numpy(mean.astype(np.float32)), torch.from_numpy(std.astype(np.float32))
    elif gauss and prep.get("model_affine"):
        m_loc, m_scale = prep["model_affine"]
        loc = torch.full(tuple(x.shape[1:]), float(m_loc), dtype=torch.float32)
        scale = torch.full(tuple(x.shape[1:]), float(m_scale), dtype=torch.float32)
    info.update(scale=prep["scale"], scale_detail=prep["scale_detail"], affine=[a, b], likelihood=prep["likelihood"],
                binarize=mode, binarize_seed=cfg.binarize_seed, dequantize=dq, binary=prep["input_binary"],
                input_range=prep["input_range"], input_binary=prep["input_binary"], prep=prep,
                notes=notes, warnings=warnings)
    if mode == "threshold":
        info["threshold"] = threshold
    y = None if raw.y is None else np.asarray(raw.y, dtype=np.int64)

    # a loader's scratch buffer of 8-bit rows: the training split is stored in x's own memory (moved to its front
    # after the other splits are made from it) and the rest of x is given back, so the whole file and a copy of
    # the training split are never held at once
    in_place = (raw.scratch and not mmap and x.dtype == np.uint8 and can_release(x)
                and bool(np.all(np.diff(rows["train"]) > 0)))

    def make(part: str, offset: int) -> Split:
        r = rows[part]
        own = in_place and part == "train"
        ys = None if y is None else torch.from_numpy(y[r])
        cs = None if cov is None else torch.from_numpy(cov[r])
        dynamic = mode == "dynamic" and part == "train"
        fixed_draw = mode == "static" or (mode == "dynamic" and part != "train")
        noise = "none" if dq != "uniform" else ("fresh" if part == "train" else "fixed")
        seed = cfg.binarize_seed * 3 + offset
        if mmap:
            per_batch = "static" if fixed_draw else ("threshold" if mode == "threshold" else "none")
            return Split(x, ys, dynamic=dynamic, rows=r, affine=(a, b), binarize=per_batch,
                         threshold=threshold, noise_seed=seed, dequantize=noise, c=cs)
        compact = x.dtype == np.uint8  # 8-bit images stay 8-bit in memory (Split.batch converts per batch)
        if compact and not fixed_draw and mode != "threshold" and noise != "fixed":
            stored = _rows_to_front(x, r) if own else np.ascontiguousarray(x[r])
            return Split(torch.from_numpy(stored), ys, dynamic=dynamic, affine=(a, b),
                         dequantize="fresh" if noise == "fresh" else "none", clip=dynamic, c=cs)
        if compact and noise != "fixed":  # 0/1 draws of 8-bit data, made a block of rows at a time and stored as
            # uint8 (served as the same float32 0/1): no float32 copy of the whole split is ever held; the
            # generator's draws run on across blocks, so they are those of one call on the whole split; in x's
            # own memory, a block's rows are read before it is written (as in _rows_to_front)
            xs = torch.from_numpy(x[:len(r)]) if own else torch.empty((len(r), *x.shape[1:]), dtype=torch.uint8)
            g = torch.Generator().manual_seed(seed)
            for start in range(0, len(r), PREP_BLOCK):
                block = r[start:start + PREP_BLOCK]
                xs[start:start + len(block)] = _prepare(x, block, a, b, mode, threshold, fixed_draw, dynamic, g)
        else:
            xs = _prepare(x, r, a, b, mode, threshold, fixed_draw, dynamic, torch.Generator().manual_seed(seed))
            if noise == "fixed":  # one fixed uniform draw for evaluation splits (stored as float32)
                xs.add_(torch.rand(xs.shape, generator=torch.Generator().manual_seed(DEQUANT_SEED + seed)))
        return Split(xs, ys, dynamic=dynamic, dequantize="fresh" if noise == "fresh" else "none", c=cs)

    val, test = make("val", 1), make("test", 2)  # before train: in place, the training split overwrites x
    train = make("train", 0)
    if in_place:
        release_after(x, int(train.x.nbytes))
    return DataBundle(train, val, test, binary=prep["input_binary"], loc=loc, scale=scale, info=info)
