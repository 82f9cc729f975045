"""A split stored sparse: the rows of a user-by-item interaction matrix, densified one batch at a time.

:class:`SparseSplit` serves the interface of :class:`vaekit.data.Split` that the training loop, the
validation ELBO, the probes and the importance-sampled log p(x) use (``len``, ``event_shape``, ``nbytes``,
``batch``, ``batch_of``, ``all_of``, ``all``, ``levels``, ``dynamic``, ``y``, ``c``), holding a SciPy CSR
matrix (n_rows, n_items) float32. A batch of b rows is a dense float32 tensor (b, n_items) made from those
rows alone: memory is the stored interactions (about 12 bytes each: a float32 value and an int64 column,
plus one int64 row pointer per row) plus one batch, never n_rows x n_items. ``x`` is the CSR matrix itself
(what is stored, as ``Split.x`` is), always on the CPU; batches are moved to the model's device by the
caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from vaekit.batch import Batch

if TYPE_CHECKING:  # SciPy's sparse module takes 0.12 s to import: only interaction data pay for it
    import scipy.sparse as sp


@dataclass(frozen=True)
class SparseSplit:
    """Rows of a CSR matrix (n, I) served dense per batch (see the module doc)."""

    x: sp.csr_matrix
    y: Tensor | None = field(default=None, init=False)  # no labels or covariates: the Split interface
    c: Tensor | None = field(default=None, init=False)
    dynamic: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        import scipy.sparse as sp

        if not sp.issparse(self.x) or self.x.ndim != 2:
            raise TypeError(f"SparseSplit holds a 2-D scipy sparse matrix, got {type(self.x).__name__}")
        csr = self.x.tocsr()
        if csr.dtype != np.float32:
            csr = csr.astype(np.float32)
        if not csr.has_canonical_format:  # duplicate (row, column) entries summed, columns sorted
            csr = csr.copy()
            csr.sum_duplicates()
        object.__setattr__(self, "x", csr)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def event_shape(self) -> tuple[int, ...]:
        return (int(self.x.shape[1]),)

    @property
    def nnz(self) -> int:
        """Stored interactions."""
        return int(self.x.nnz)

    @property
    def nbytes(self) -> int:
        """Bytes of the stored matrix (values, column indices, row pointers): grows with the interactions."""
        return int(self.x.data.nbytes + self.x.indices.nbytes + self.x.indptr.nbytes)

    def rows(self, idx: Tensor | np.ndarray) -> sp.csr_matrix:
        """Rows ``idx`` (b,) as a CSR matrix (b, I), in the order given."""
        pos = idx.cpu().numpy() if isinstance(idx, Tensor) else np.asarray(idx)
        return self.x[pos.astype(np.int64, copy=False)]

    def batch(self, idx: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Rows ``idx`` (b,) as dense float32 (b, I) on the CPU (``generator`` is unused: no draws)."""
        sub = self.rows(idx)
        out = np.zeros(sub.shape, dtype=np.float32)
        counts = np.diff(sub.indptr)
        out[np.repeat(np.arange(sub.shape[0]), counts), sub.indices] = sub.data
        return torch.from_numpy(out)

    def levels(self, idx: Tensor | None = None) -> Tensor:
        """As :meth:`batch` (no binarisation or noise to leave out); all rows when ``idx`` is None."""
        return self.batch(torch.arange(len(self)) if idx is None else idx)

    def batch_of(self, idx: Tensor, generator: torch.Generator | None = None, labels: bool = True) -> Batch:
        """Rows ``idx`` as a :class:`~vaekit.batch.Batch` of x alone (interaction data have no labels)."""
        return Batch(self.batch(idx, generator))

    def all_of(self, generator: torch.Generator | None = None) -> Batch:
        """The whole split as one dense Batch (small splits only: n x I floats)."""
        return self.batch_of(torch.arange(len(self)), generator)

    def all(self, generator: torch.Generator | None = None) -> Tensor:
        """The whole split dense (small splits only: n x I floats)."""
        return self.batch(torch.arange(len(self)), generator)
