"""Tables in and out: a pandas DataFrame, a NumPy array (numeric or object), a list of rows, or a CSV/TSV
file with a header, as column names plus one list of raw cells per column (:class:`Cells`); and a
filled table written back atomically (:func:`write_table`). Nothing here knows about column types."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vaekit.errors import VaekitError
from vaekit.fileio import atomic_write_text


@dataclass(frozen=True)
class Cells:
    """A table as ``names`` (d,) and ``columns``: d lists of n raw cells (str, numbers, None, NaN...).
    ``kind`` says what it came from ('frame', 'array', 'rows', 'file') so results can be returned alike."""

    names: tuple[str, ...]
    columns: tuple[list[Any], ...]
    kind: str = "array"
    index: Any = None

    @property
    def n_rows(self) -> int:
        return len(self.columns[0]) if self.columns else 0


def read_table(table: Any, names: Sequence[str] | None = None) -> Cells:
    """``table`` as :class:`Cells`. A str or Path is read as a CSV (``.tsv``/``.tab``: tab-separated) file
    with a header row; a DataFrame keeps its column names; an array (n, d) or list of rows is named by
    ``names`` or ``x0``, ``x1``, ..."""
    if isinstance(table, (str, Path)):
        return read_file(Path(table))
    if type(table).__name__ == "DataFrame" and hasattr(table, "columns"):
        cols = tuple(str(c) for c in table.columns)
        values = tuple(table[c].tolist() for c in table.columns)
        return Cells(cols, values, "frame", table.index)
    arr = np.asarray(table, dtype=object) if not isinstance(table, np.ndarray) else table
    if arr.ndim == 1 and arr.dtype.names is None:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise VaekitError(f"a table must be 2-D (rows, columns), got shape {arr.shape}; pass a DataFrame or an "
                          "(n, d) array")
    d = arr.shape[1]
    cols_names = tuple(str(s) for s in names) if names is not None else tuple(f"x{j}" for j in range(d))
    if len(cols_names) != d:
        raise VaekitError(f"{len(cols_names)} column names for a table of {d} columns; give one name per column")
    return Cells(cols_names, tuple(arr[:, j].tolist() for j in range(d)), "array")


def read_file(path: Path) -> Cells:
    """A CSV (or TSV) file with a header: every cell kept as text (types are decided later)."""
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f, delimiter=delimiter))
    except FileNotFoundError:
        raise VaekitError(f"table file '{path}' does not exist; fix the path") from None
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise VaekitError(f"{path}: cannot read the table ({err}); save it as UTF-8 CSV with a header") from None
    rows = [r for r in rows if r and not (len(r) == 1 and not r[0].strip())]
    if not rows:
        raise VaekitError(f"{path}: the file is empty; it needs a header row and data rows")
    header = tuple(h.strip() for h in rows[0])
    if len(set(header)) != len(header) or any(not h for h in header):
        raise VaekitError(f"{path}: the header has empty or repeated column names ({', '.join(header)}); give "
                          "each column a unique name")
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise VaekitError(f"{path}: row {line} has {len(row)} fields but the header has {len(header)}; fix "
                              "the ragged row")
    columns = tuple([r[j] for r in rows[1:]] for j in range(len(header)))
    return Cells(header, columns, "file")


def _text(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float) and v == int(v) and abs(v) < 1e15:
        return repr(v)
    return str(v)


def write_table(path: str | Path, names: Sequence[str], columns: Sequence[Sequence[Any]]) -> Path:
    """Write a CSV (tab-separated for ``.tsv``) with a header, atomically (a failed write leaves any old
    file as it was)."""
    path = Path(path)
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t" if path.suffix.lower() in (".tsv", ".tab") else ",", lineterminator="\n")
    w.writerow(list(names))
    for row in zip(*columns, strict=True):
        w.writerow([_text(v) for v in row])
    return atomic_write_text(path, buf.getvalue(), fix="choose a writable --out file")
