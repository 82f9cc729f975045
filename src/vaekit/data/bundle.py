"""Pre-loaded splits served by index: the training loop never does per-item Python work.

A :class:`Split` holds ``x`` with shape (n, *event_shape) as a tensor (float32, or uint8 for 8-bit images
kept compact and converted per batch), or a NumPy memmap for data larger than RAM, plus optional integer
labels ``y`` with shape (n,) and covariates ``c`` (n, c_dim) float32. ``x`` is what is *stored*; what a
model sees is what :meth:`Split.batch` *serves* (always float32). ``Split.batch`` returns x alone;
``Split.batch_of`` the :class:`~vaekit.batch.Batch` of x with its labels and covariates (a conditional
model reads its condition from them).
"""

from __future__ import annotations

import dataclasses
import mmap
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vaekit.batch import Batch
from vaekit.data.sparse import SparseSplit

DEQUANT_SEED = 7_368_787  # offset of the fixed dequantisation draws from the binarisation seeds


def release_pages(x: np.ndarray) -> None:
    """Unmap the file pages a read of the memmap ``x`` brought into this process (MADV_DONTNEED on a
    read-only file mapping: the kernel keeps them in its page cache, the process's RSS stays flat)."""
    m = getattr(x, "_mmap", None)
    if m is not None and hasattr(m, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        m.madvise(mmap.MADV_DONTNEED)


def hash_uniform(seed: int, rows: np.ndarray, dim: int) -> np.ndarray:
    """Counter-based uniforms in [0, 1): float64 (len(rows), dim), a pure function of (seed, row, column).

    Used for the fixed ("static") Bernoulli draw of memory-mapped data, which cannot be stored: the
    draw of a pixel is the same whichever batch it is served in. (splitmix64 finaliser.)
    """
    with np.errstate(over="ignore"):
        z = rows.astype(np.uint64)[:, None] * np.uint64(dim) + np.arange(dim, dtype=np.uint64)[None, :]
        z = z + np.uint64((seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % 2**64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


@dataclass
class Split:
    """One split. ``dynamic=True`` draws a fresh Bernoulli binarisation each time a batch is served.

    In-memory float data (``x`` a float32 tensor) is stored already scaled and (statically) binarised, so
    serving a batch is one ``index_select``. In-memory 8-bit data (``x`` a uint8 tensor: image folders,
    MNIST-family IDX files, uint8 arrays) is stored as read, a quarter of the float32 size; a batch is
    converted to float32 and mapped by ``affine`` (then clamped to [0, 1] if ``clip``) with the same
    float32 operations the build step applies to float data, so the served values are bit-for-bit those
    of a float32 store; statically binarised 8-bit splits store their 0/1 draws as uint8.
    Memory-mapped data (``x`` a NumPy memmap of the WHOLE file) is read lazily, so the preprocessing is
    applied per batch: ``rows`` maps split positions to file rows (None = all rows in order),
    ``affine = (a, b)`` maps file units to served units as ``a * x + b``, ``binarize`` is
    ``'threshold'`` (``x > threshold``) or ``'static'`` (one fixed draw keyed by ``noise_seed``, row and
    pixel, see :func:`hash_uniform`) or ``'none'``. ``dequantize``: ``'fresh'`` adds new U(0, 1) noise to
    every served batch (training), ``'fixed'`` one fixed draw keyed like the static binarisation
    (memory-mapped evaluation splits; in-memory ones store it), ``'none'``.
    """

    x: Tensor | np.ndarray
    y: Tensor | None = None
    dynamic: bool = False
    rows: np.ndarray | None = None
    affine: tuple[float, float] = (1.0, 0.0)
    binarize: str = "none"
    threshold: float = 0.5
    noise_seed: int = 0
    dequantize: str = "none"
    c: Tensor | None = None
    clip: bool = False
    mask: Tensor | None = None

    def __len__(self) -> int:
        return int(len(self.rows) if self.rows is not None else self.x.shape[0])

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.x.shape[1:])

    @property
    def nbytes(self) -> int:
        """Bytes of the stored examples held in this process's memory (0 for a memory-mapped file)."""
        return int(self.x.nbytes) if isinstance(self.x, Tensor) else 0

    def batch(self, idx: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Rows ``idx`` (shape (b,)) as float32 (b, *event_shape); binarised if ``dynamic``.

        In-memory data is served on ``x``'s device (``idx`` is moved there; ``generator`` must live
        there); memory-mapped data is always served on the CPU.
        """
        if isinstance(self.x, Tensor):
            xb = self.x.index_select(0, idx.to(self.x.device))
            if xb.dtype != torch.float32:  # compact 8-bit store: the build step's float32 maps, per batch
                xb = xb.to(torch.float32)
                a, b = self.affine
                if a != 1.0:
                    xb.mul_(a)
                if b != 0.0:
                    xb.add_(b)
                if self.clip and not self.dynamic:  # u < p gives the same draw for p and p clamped to [0, 1]
                    xb.clamp_(0.0, 1.0)
        else:  # memmap: read the rows in file order, preprocess, then restore the requested order
            pos = idx.cpu().numpy()
            file_rows = pos if self.rows is None else self.rows[pos]
            order = np.argsort(file_rows, kind="stable")
            sorted_rows = file_rows[order]
            rows = np.asarray(self.x[sorted_rows], dtype=np.float32)
            release_pages(self.x)
            a, b = self.affine
            if (a, b) != (1.0, 0.0):
                rows *= np.float32(a)
                rows += np.float32(b)
            if self.binarize == "threshold":
                rows = (rows > self.threshold).astype(np.float32)
            elif self.binarize == "static":
                u = hash_uniform(self.noise_seed, sorted_rows, int(np.prod(self.event_shape)))
                rows = (u.reshape(rows.shape) < rows).astype(np.float32)
            elif self.dynamic:
                np.clip(rows, 0.0, 1.0, out=rows)  # min-max scaled val/test rows may leave [0, 1]
            if self.dequantize == "fixed":
                u = hash_uniform(self.noise_seed + DEQUANT_SEED, sorted_rows, int(np.prod(self.event_shape)))
                rows += u.reshape(rows.shape).astype(np.float32)
            xb = torch.empty((len(idx), *self.event_shape), dtype=torch.float32)
            xb[torch.from_numpy(order)] = torch.from_numpy(rows)
        if self.dynamic:  # Bernoulli(p) as (u < p): same law as torch.bernoulli, about 3x faster on CPU
            xb = (torch.rand(xb.shape, generator=generator, device=xb.device) < xb).to(torch.float32)
        if self.dequantize == "fresh":
            xb = xb + torch.rand(xb.shape, generator=generator, device=xb.device)
        return xb

    def levels(self, idx: Tensor | None = None) -> Tensor:
        """Rows ``idx`` (all rows when None) as :meth:`batch` serves them but without fresh draws: float32
        (b, *event_shape) holding the grey levels of a dynamically binarised split (the expectation of its
        binarisation) and no fresh dequantisation noise (use on small splits only)."""
        rows = torch.arange(len(self)) if idx is None else idx
        return dataclasses.replace(self, dynamic=False, dequantize="none").batch(rows)

    def batch_of(self, idx: Tensor, generator: torch.Generator | None = None, labels: bool = True) -> Batch:
        """Rows ``idx`` as a :class:`~vaekit.batch.Batch`: x as :meth:`batch` serves it, with the rows' labels
        ``y`` (when the split has them and ``labels``) and covariates ``c`` (when the split has them) on x's
        device."""
        x = self.batch(idx, generator)
        y = None if self.y is None or not labels else self.y.index_select(0, idx.to(self.y.device)).to(x.device)
        c = None if self.c is None else self.c.index_select(0, idx.to(self.c.device)).to(x.device)
        mask = None if self.mask is None else self.mask.index_select(0, idx.to(self.mask.device)).to(x.device)
        return Batch(x, y=y, c=c, mask=mask)

    def all_of(self, generator: torch.Generator | None = None) -> Batch:
        """The whole split as one Batch (use on small splits only)."""
        return self.batch_of(torch.arange(len(self)), generator)

    def all(self, generator: torch.Generator | None = None) -> Tensor:
        """The whole split as one float32 tensor (use on small splits only)."""
        return self.batch(torch.arange(len(self)), generator)


@dataclass
class DataBundle:
    """Train / validation / test splits plus what the model must know about the data.

    ``binary``: every served value is 0 or 1 (after any binarisation). ``loc``/``scale``: the
    standardisation statistics (event shape) from the training split, or None; the model stores them
    and maps decoded values back to data units. ``info``: provenance recorded in the run. ``rec``: for
    interaction data, the recommender's view of the same split (:class:`vaekit.recsys.bundle.RecSplits`:
    items, fold-in and to-predict matrices, titles); None otherwise.
    """

    train: Split | SparseSplit
    val: Split | SparseSplit
    test: Split | SparseSplit
    binary: bool
    loc: Tensor | None = None
    scale: Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)
    rec: Any = None

    @property
    def event_shape(self) -> tuple[int, ...]:
        return self.train.event_shape

    @property
    def n_classes(self) -> int:
        ys = [s.y for s in (self.train, self.val, self.test) if s.y is not None and len(s.y)]
        return int(max(int(y.max()) for y in ys) + 1) if ys else 0
