"""The common form every loader returns before preprocessing, and the scratch buffers loaders decode into."""

from __future__ import annotations

import mmap
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class RawData:
    """Unprocessed examples as read from disk.

    ``x``: (n, *event_shape) in file units, any numeric dtype, possibly a read-only ``np.memmap``.
    ``y``: int64 labels (n,) or None. ``c``: float covariates (n, k) in file units (``data.condition_columns``)
    or None. ``value_range``: the known (lo, hi) range of the file's values
    (e.g. (0, 255) for 8-bit pixels) used by ``scale='unit'``; None if unknown (then min-max of the
    training split, or kept as-is for floats already in [0, 1]). ``fixed``: predefined row indices of
    splits (``train``/``val``/``test``, or ``pool`` = rows from which train and val are carved).
    ``scratch``: ``x`` is a private buffer of the loader (:func:`scratch_array`) that preprocessing may
    overwrite: :func:`vaekit.data.preprocess.build` then stores the training split in ``x``'s own memory
    and gives the rest back, so ``x`` must not be read after it (never set it for a caller's array).
    """

    x: np.ndarray
    y: np.ndarray | None
    value_range: tuple[float, float] | None = None
    fixed: dict[str, np.ndarray] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    c: np.ndarray | None = None
    scratch: bool = False


def _mapping(x: np.ndarray) -> mmap.mmap | None:
    """The anonymous mapping ``x`` was made in by :func:`scratch_array`, or None."""
    base: Any = x
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, memoryview):  # np.frombuffer holds the mapping through a memoryview
        base = base.obj
    return base if isinstance(base, mmap.mmap) else None


def scratch_array(shape: tuple[int, ...], dtype: Any = np.uint8) -> np.ndarray:
    """An uninitialised C-contiguous array of ``shape`` in its own private anonymous memory mapping, so its
    unused pages can be given back to the OS later (:func:`release_after`); a plain ``np.empty`` where the
    platform has no private anonymous mappings."""
    count = int(np.prod(shape, dtype=np.int64))
    nbytes = count * np.dtype(dtype).itemsize
    flags = getattr(mmap, "MAP_PRIVATE", None), getattr(mmap, "MAP_ANONYMOUS", None)
    if nbytes == 0 or None in flags or not hasattr(mmap.mmap, "madvise"):
        return np.empty(shape, dtype=dtype)
    buf = mmap.mmap(-1, nbytes, flags=flags[0] | flags[1])  # type: ignore[operator]
    return np.frombuffer(buf, dtype=dtype, count=count).reshape(shape)


def can_release(x: np.ndarray) -> bool:
    """True if ``x`` starts a :func:`scratch_array` mapping whose pages :func:`release_after` can give back."""
    buf = _mapping(x)
    return (buf is not None and hasattr(mmap, "MADV_DONTNEED") and x.flags.c_contiguous
            and x.__array_interface__["data"][0] == np.frombuffer(buf, np.uint8).__array_interface__["data"][0])


def release_after(x: np.ndarray, nbytes: int) -> int:
    """Give back to the OS the whole pages of :func:`scratch_array` ``x`` past its first ``nbytes`` bytes (their
    contents are lost: only ``x``'s first ``nbytes`` may be read afterwards). Returns the bytes released (0 if
    ``x`` is not such an array)."""
    if not can_release(x):
        return 0
    buf = _mapping(x)
    assert buf is not None
    start = -(-nbytes // mmap.PAGESIZE) * mmap.PAGESIZE
    if start >= len(buf):
        return 0
    buf.madvise(mmap.MADV_DONTNEED, start, len(buf) - start)
    return len(buf) - start
