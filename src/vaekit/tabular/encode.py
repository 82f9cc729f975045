"""Rows of a table to the model's input (x, mask) and decoder means back to a table, by a
:class:`~vaekit.tabular.schema.TableSchema` (layout in its module docstring).

Missing cells are filled before anything is multiplied: a real or count cell with the column's ``loc``
(what the model's encoder fills with too), a binary or one-hot slot with 0; the mask says which were
observed, and the indicator slots carry it to the encoder."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from vaekit.batch import Batch
from vaekit.errors import VaekitError
from vaekit.tabular.columns import as_number, is_missing
from vaekit.tabular.schema import UNKNOWN_LEVEL, TableSchema, check_values, level_of
from vaekit.tabular.table import Cells, read_table


def cells_of(schema: TableSchema, table: Any) -> Cells:
    """``table`` read with the schema's column names (an array needs exactly the schema's columns; a
    DataFrame or file needs each schema column, in any order, and extra columns are ignored)."""
    cells = table if isinstance(table, Cells) else read_table(table, None if _named(table) else schema.names)
    if cells.names == schema.names:
        return cells
    missing = [n for n in schema.names if n not in cells.names]
    if missing:
        raise VaekitError(f"the table has no column '{missing[0]}' (it has {', '.join(cells.names)}); give the "
                          "columns the model was trained on")
    pos = {n: i for i, n in enumerate(cells.names)}
    return Cells(schema.names, tuple(cells.columns[pos[n]] for n in schema.names), cells.kind, cells.index)


def _named(table: Any) -> bool:
    return isinstance(table, (str, Cells)) or type(table).__name__ in ("DataFrame", "PosixPath", "WindowsPath")


def observed_of(schema: TableSchema, cells: Cells) -> np.ndarray:
    """bool (n, n_columns): True where a cell is observed."""
    return np.array([[not is_missing(v) for v in col] for col in cells.columns], dtype=bool).T.reshape(
        cells.n_rows, schema.n_columns)


def encode_table(schema: TableSchema, table: Any) -> Batch:
    """A :class:`~vaekit.batch.Batch` of the rows of ``table``: x float32 (n, width) in data units, missing
    cells filled, and mask bool (n, width) (True: an observed value slot, or an indicator slot). An unseen
    category is a one-line error naming the column and value (or the '<unknown>' level, when the schema's
    ``unknown`` is 'unknown')."""
    cells = cells_of(schema, table)
    n = cells.n_rows
    x = np.zeros((n, schema.width), dtype=np.float32)
    mask = np.zeros((n, schema.width), dtype=bool)
    seen = observed_of(schema, cells)
    for j, (spec, column) in enumerate(zip(schema.columns, cells.columns, strict=True)):
        sl, obs = schema.slots(j), seen[:, j]
        rows = np.flatnonzero(obs)
        mask[rows, sl] = True
        x[:, schema.n_values + j] = obs
        if spec.type == "categorical":
            index = {lv: k for k, lv in enumerate(spec.categories)}
            for i in rows:
                k = index.get(level_of(column[i]))
                if k is None:
                    if schema.unknown != "unknown":
                        raise VaekitError(f"column '{spec.name}' has the value {str(column[i])!r}, unseen in "
                                          f"training (levels: {', '.join(map(str, spec.categories[:8]))}"
                                          f"{' ...' if len(spec.categories) > 8 else ''}); fix the cell, leave it "
                                          "empty, or train with --data.unknown_categories unknown")
                    k = index[UNKNOWN_LEVEL]
                x[i, sl.start + k] = 1.0
            continue
        values = np.array([spec.loc if not o else _number(spec.name, column[i]) for i, o in enumerate(obs)],
                          dtype=np.float64)
        check_values(spec.name, spec.type, values[obs])
        x[:, sl.start] = values
    mask[:, schema.n_values:] = True
    return Batch(torch.from_numpy(x), mask=torch.from_numpy(mask))


def _number(name: str, cell: Any) -> float:
    v = as_number(cell)
    if v is None:
        raise VaekitError(f"column '{name}' holds the non-numeric value {str(cell)!r} but was trained as numbers; "
                          "fix the cell or leave it empty")
    return v


def decode_columns(schema: TableSchema, x_mean: Tensor | np.ndarray) -> list[list[Any]]:
    """Decoder means (n, width) in data units -> one list of n values per column: real the mean, count /
    negbin the rounded mean (an int), binary 0/1 (p > 0.5), categorical the most probable level."""
    m = x_mean.detach().cpu().numpy() if isinstance(x_mean, Tensor) else np.asarray(x_mean)
    m = m.reshape(-1, schema.width).astype(np.float64)
    out: list[list[Any]] = []
    for j, spec in enumerate(schema.columns):
        block = m[:, schema.slots(j)]
        if spec.type == "categorical":
            out.append([spec.categories[k] for k in block.argmax(1)])
        elif spec.type == "binary":
            out.append([int(v > 0.5) for v in block[:, 0]])
        elif spec.type in ("count", "negbin"):
            out.append([round(v) for v in block[:, 0]])
        else:
            out.append([float(f"{v:.7g}") for v in block[:, 0]])  # float32 precision, not its binary tail
    return out


def decode_table(schema: TableSchema, x_mean: Tensor | np.ndarray, *, as_frame: bool = False) -> Any:
    """:func:`decode_columns` as a table: float64 (n, n_columns) when every value is a number, else an object
    array; ``as_frame=True`` a pandas DataFrame named by the schema's columns."""
    cols = decode_columns(schema, x_mean)
    return assemble(schema.names, cols, "frame" if as_frame else "array")


def assemble(names: tuple[str, ...], cols: list[list[Any]], kind: str, index: Any = None) -> Any:
    """Columns back into the kind of table they came from ('frame': DataFrame; else an array)."""
    if kind == "frame":
        import pandas as pd  # type: ignore[import-untyped]

        return pd.DataFrame(dict(zip(names, cols, strict=True)), index=index)
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for c in cols for v in c)
    arr = np.empty((len(cols[0]) if cols else 0, len(cols)), dtype=np.float64 if numeric else object)
    for j, c in enumerate(cols):
        arr[:, j] = c
    return arr
