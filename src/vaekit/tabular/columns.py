"""Column types of a table and how they are inferred.

Types (one likelihood each, :mod:`vaekit.tabular.likelihood`):

* ``real``: Gaussian with a learned standard deviation, in the column's own units;
* ``binary``: Bernoulli over {0, 1};
* ``categorical``: a softmax over the column's levels (one-hot in the model input);
* ``count``: Poisson over {0, 1, 2, ...};
* ``negbin``: negative binomial over {0, 1, 2, ...} (over-dispersed counts; never inferred, ask for it).

Inference, on the observed (non-missing) cells of a column, first rule that holds:

1. any cell that is not a number (a string that does not parse as a number) -> ``categorical``;
2. bools, or numbers all equal to 0 or 1 -> ``binary``;
3. whole numbers, all >= 0, at most :data:`MAX_COUNT` -> ``count``;
4. other numbers -> ``real``.

A column with no observed cell is an error (nothing to learn it from). Missing cells: None, NaN, pandas
NA / NaT, and the strings in :data:`MISSING` (case-insensitive, surrounding spaces ignored).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vaekit.errors import VaekitError

TYPES = ("real", "binary", "categorical", "count", "negbin")
MISSING = ("", "na", "nan", "null", "none", "?", "<na>", "nat")
MAX_COUNT = 100


def is_missing(cell: Any) -> bool:
    """True for an empty cell: None, NaN, pandas NA/NaT, or one of :data:`MISSING` as text."""
    if cell is None:
        return True
    if isinstance(cell, str):
        return cell.strip().lower() in MISSING
    if isinstance(cell, (float, np.floating)):
        return bool(math.isnan(cell))
    return type(cell).__name__ in ("NAType", "NaTType")


def as_number(cell: Any) -> float | None:
    """The cell as a float, or None when it is not a number (a non-numeric string)."""
    if isinstance(cell, (bool, np.bool_)):
        return float(cell)
    if isinstance(cell, (int, float, np.integer, np.floating)):
        return float(cell)
    if isinstance(cell, str):
        try:
            v = float(cell.strip())
        except ValueError:
            return None
        return v if math.isfinite(v) else None
    return None


def infer_type(cells: Sequence[Any], name: str) -> tuple[str, str]:
    """(type, reason) of a column from its observed ``cells`` (rules in the module docstring)."""
    if not len(cells):
        raise VaekitError(f"column '{name}' has no observed value; drop the column or fill some of its cells")
    numbers = [as_number(c) for c in cells]
    bad = next((c for c, v in zip(cells, numbers, strict=True) if v is None), None)
    if bad is not None:
        return "categorical", f"non-numeric values such as {str(bad)!r}"
    values = np.asarray(numbers, dtype=np.float64)
    if not np.isfinite(values).all():
        raise VaekitError(f"column '{name}' holds an infinite value; replace it with a finite number or leave "
                          "the cell empty")
    if np.isin(values, (0.0, 1.0)).all():
        return "binary", "only 0 and 1"
    if (values == np.round(values)).all() and values.min() >= 0 and values.max() <= MAX_COUNT:
        return "count", f"whole numbers in 0..{int(values.max())} (<= {MAX_COUNT})"
    return "real", "numbers" + (" with fractions" if (values != np.round(values)).any() else
                                (" below 0" if values.min() < 0 else f" above {MAX_COUNT}"))


def parse_column_types(spec: Mapping[str, str] | Sequence[str] | str | None) -> dict[str, str]:
    """Per-column type overrides as {column: type} from a mapping, ``"age=real,sex=categorical"`` or
    ``("age=real", "sex=categorical")``; an unknown type or a malformed entry is a one-line error."""
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        pairs = [(str(k), str(v)) for k, v in spec.items()]
    else:
        items = spec.split(",") if isinstance(spec, str) else list(spec)
        pairs = []
        for item in items:
            if not str(item).strip():
                continue
            key, sep, value = str(item).partition("=")
            if not sep or not key.strip():
                raise VaekitError(f"column type '{item}' is not NAME=TYPE; write e.g. "
                                  "--data.column_types age=real,sex=categorical")
            pairs.append((key.strip(), value.strip()))
    out: dict[str, str] = {}
    for key, value in pairs:
        if value not in TYPES:
            raise VaekitError(f"column '{key}': unknown column type '{value}'; use one of {', '.join(TYPES)}")
        out[key] = value
    return out
