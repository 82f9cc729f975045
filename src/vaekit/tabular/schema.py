"""A table's schema: each column's type, categorical levels and scaling, saved with a run (JSON-safe) so
new rows are encoded exactly as the training rows were.

The model input of one row (width :attr:`TableSchema.width`) is the columns' value slots in column order
(one slot for real / binary / count / negbin, K one-hot slots for a categorical column with K levels),
then one observed-indicator slot per column (1 observed, 0 missing), so the encoder sees the mask as in
MIWAE / HI-VAE. Scalings: real and count columns are standardised for the encoder with the mean and
standard deviation of their observed cells (``loc``, ``scale``); the likelihood maps the decoder's output
back, so log-likelihoods are in the data's own units. Binary and one-hot slots are not scaled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vaekit.errors import VaekitError
from vaekit.tabular.columns import TYPES, as_number, infer_type, is_missing, parse_column_types
from vaekit.tabular.table import Cells, read_table

UNKNOWN = ("error", "unknown")
UNKNOWN_LEVEL = "<unknown>"
Level = str | int | float


@dataclass(frozen=True)
class ColumnSpec:
    """One column: ``name``, ``type`` (:data:`vaekit.tabular.columns.TYPES`), ``categories`` (the levels of
    a categorical column, in slot order; else empty), ``loc`` / ``scale`` (the encoder's standardisation
    of a real or count column, in the column's units; 0 / 1 otherwise) and ``reason`` (why the type)."""

    name: str
    type: str
    categories: tuple[Level, ...] = ()
    loc: float = 0.0
    scale: float = 1.0
    reason: str = ""

    @property
    def n_slots(self) -> int:
        return len(self.categories) if self.type == "categorical" else 1

    @property
    def model_column(self) -> str:
        return f"categorical:{len(self.categories)}" if self.type == "categorical" else self.type


@dataclass(frozen=True)
class TableSchema:
    """The columns of a table (see the module docstring) and ``unknown``: what an unseen category does at
    encoding ('error': a one-line VaekitError; 'unknown': it maps to the level '<unknown>')."""

    columns: tuple[ColumnSpec, ...]
    unknown: str = "error"
    _slots: tuple[int, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.unknown not in UNKNOWN:
            raise VaekitError(f"unknown-category handling '{self.unknown}': use one of {', '.join(UNKNOWN)}")
        if not self.columns:
            raise VaekitError("a table needs at least one column")
        starts, at = [], 0
        for c in self.columns:
            if c.type not in TYPES:
                raise VaekitError(f"column '{c.name}': unknown column type '{c.type}'; use one of {', '.join(TYPES)}")
            if c.type == "categorical" and len(c.categories) < 1:
                raise VaekitError(f"column '{c.name}' is categorical but has no levels; it needs observed values")
            starts.append(at)
            at += c.n_slots
        object.__setattr__(self, "_slots", tuple(starts))

    # --------------------------------------------------------------------------------- shape
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def n_columns(self) -> int:
        return len(self.columns)

    @property
    def n_values(self) -> int:
        """Value slots (before the indicator slots)."""
        return sum(c.n_slots for c in self.columns)

    @property
    def width(self) -> int:
        """Width of one row of the model input: value slots + one indicator per column."""
        return self.n_values + self.n_columns

    def slots(self, j: int) -> slice:
        """The value slots of column ``j``."""
        return slice(self._slots[j], self._slots[j] + self.columns[j].n_slots)

    @property
    def model_columns(self) -> tuple[str, ...]:
        """The layout the ``mixed`` likelihood reads from ``model.columns``, e.g. ('real', 'categorical:3')."""
        return tuple(c.model_column for c in self.columns)

    def loc_scale(self) -> tuple[Tensor, Tensor]:
        """The model's data transform (data_loc, data_scale), each float32 (width,)."""
        loc, scale = torch.zeros(self.width), torch.ones(self.width)
        for j, c in enumerate(self.columns):
            if c.type in ("real", "count", "negbin"):
                loc[self.slots(j)], scale[self.slots(j)] = c.loc, c.scale
        return loc, scale

    def describe(self) -> list[str]:
        """One line per column, shown to the user before training."""
        out = []
        for c in self.columns:
            what = c.type + (f" ({len(c.categories)} levels)" if c.type == "categorical" else "")
            out.append(f"column '{c.name}': {what}" + (f" [{c.reason}]" if c.reason else ""))
        return out

    # --------------------------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (str, int, float, list, dict only); :meth:`from_dict` reads it back."""
        return {"unknown": self.unknown,
                "columns": [{"name": c.name, "type": c.type, "categories": list(c.categories),
                             "loc": float(c.loc), "scale": float(c.scale), "reason": c.reason}
                            for c in self.columns]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TableSchema:
        try:
            cols = tuple(ColumnSpec(str(c["name"]), str(c["type"]), tuple(_level(v) for v in c.get("categories", [])),
                                    float(c.get("loc", 0.0)), float(c.get("scale", 1.0)), str(c.get("reason", "")))
                         for c in d["columns"])
            return cls(cols, str(d.get("unknown", "error")))
        except (KeyError, TypeError, ValueError) as err:
            raise VaekitError(f"the table schema is invalid ({err}); the run is corrupted, train it again") from None


def _level(v: Any) -> Level:
    """A JSON-safe categorical level: ints and floats stay numbers, everything else is text."""
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return int(v) if float(v).is_integer() else float(v)
    return str(v).strip()


def level_of(cell: Any) -> Level:
    """The level a raw cell stands for (text cells that are numbers match numeric levels: '2' == 2)."""
    if isinstance(cell, str):
        v = as_number(cell)
        return _level(v) if v is not None else cell.strip()
    return _level(cell)


def _sort_key(v: Level) -> tuple[int, Any]:
    return (0, v) if isinstance(v, (int, float)) else (1, str(v))


def infer_schema(table: Any, column_types: Mapping[str, str] | Sequence[str] | str | None = None, *,
                 names: Sequence[str] | None = None, unknown: str = "error") -> TableSchema:
    """The schema of ``table`` (DataFrame, (n, d) array, rows, CSV path or :class:`Cells`): types inferred
    (:mod:`vaekit.tabular.columns`) unless named in ``column_types`` (by column name, or by 0-based index as
    text), levels sorted (numbers first), scalings from the observed cells."""
    cells = table if isinstance(table, Cells) else read_table(table, names)
    overrides = parse_column_types(column_types)
    unmatched = [k for k in overrides if k not in cells.names and not (k.isdigit() and int(k) < len(cells.names))]
    if unmatched:
        raise VaekitError(f"column type given for '{unmatched[0]}', which is not a column ({', '.join(cells.names)}); "
                          "fix data.column_types")
    specs = []
    for j, (name, column) in enumerate(zip(cells.names, cells.columns, strict=True)):
        observed = [v for v in column if not is_missing(v)]
        asked = overrides.get(name, overrides.get(str(j)))
        inferred, reason = infer_type(observed, name)
        kind = asked or inferred
        reason = "set by data.column_types" if asked else f"inferred: {reason}"
        specs.append(_fit_column(name, kind, observed, reason, unknown))
    return TableSchema(tuple(specs), unknown)


def _fit_column(name: str, kind: str, observed: list[Any], reason: str, unknown: str) -> ColumnSpec:
    if kind == "categorical":
        levels = sorted({level_of(v) for v in observed}, key=_sort_key)
        if unknown == "unknown":
            levels.append(UNKNOWN_LEVEL)
        return ColumnSpec(name, kind, tuple(levels), reason=reason)
    numbers = [as_number(v) for v in observed]
    bad = next((v for v, x in zip(observed, numbers, strict=True) if x is None), None)
    if bad is not None:
        raise VaekitError(f"column '{name}' is {kind} but holds the non-numeric value {str(bad)!r}; make it "
                          f"categorical (--data.column_types {name}=categorical) or fix the cell")
    values = np.asarray(numbers, dtype=np.float64)
    check_values(name, kind, values)
    if kind == "binary":
        return ColumnSpec(name, kind, reason=reason)
    loc, std = float(values.mean()), float(values.std())
    return ColumnSpec(name, kind, loc=loc, scale=std if std > 0 else 1.0, reason=reason)


def check_values(name: str, kind: str, values: np.ndarray) -> None:
    """Numbers that a ``kind`` column cannot hold are a one-line error naming the column and the fix."""
    if kind == "binary" and not np.isin(values, (0.0, 1.0)).all():
        bad = values[~np.isin(values, (0.0, 1.0))][0]
        raise VaekitError(f"column '{name}' is binary but holds {bad:g}; binary cells are 0 or 1 (make it "
                          f"--data.column_types {name}=categorical or real)")
    if kind in ("count", "negbin") and len(values) and not ((values >= 0) & (values == np.round(values))).all():
        bad = values[~((values >= 0) & (values == np.round(values)))][0]
        raise VaekitError(f"column '{name}' is {kind} but holds {bad:g}; counts are whole numbers >= 0 (make it "
                          f"--data.column_types {name}=real)")
