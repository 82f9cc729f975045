"""The common form every loader returns before preprocessing."""

from __future__ import annotations

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
    """

    x: np.ndarray
    y: np.ndarray | None
    value_range: tuple[float, float] | None = None
    fixed: dict[str, np.ndarray] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    c: np.ndarray | None = None
