"""Interaction logs (which user met which item, with an optional rating and time) and the paper's filter.

:func:`read_interactions` reads MovieLens ``u.data`` (tab, no header: user item rating timestamp),
``ratings.dat`` (``::``, no header, same columns), ``ratings.csv`` (header ``userId,movieId,rating,timestamp``)
and any CSV / TSV table with a header whose user, item, rating and time columns are named by arguments (or found
among common names). The format is recognised from the content, not the file name. Numeric files are parsed
in chunks by NumPy's C reader (a 20M-row ``ratings.csv`` in seconds, memory ~ the events); a file whose ids are
not integers is parsed line by line in Python (slower; its ids are kept as strings).

:func:`implicit` is the implicit-feedback filter of Liang et al. (2018): keep ratings strictly above a
threshold, then the users with at least ``min_user_items`` kept items; a repeated (user, item) pair counts once.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import numpy as np

from vaekit.errors import VaekitError

#: Separators recognised from the first line, in this order (``sep='auto'``).
SEPARATORS = ("::", "\t", ",", ";")
#: Column names tried when a header is present and no name is given (compared lower-case, without ``_ - ``).
USER_NAMES = ("user", "userid", "uid", "users", "customerid", "visitorid")
ITEM_NAMES = ("item", "itemid", "movieid", "movie", "iid", "items", "productid", "product", "songid", "trackid",
              "asin")
RATING_NAMES = ("rating", "ratings", "score", "stars")
TIME_NAMES = ("timestamp", "time", "ts", "unixtime")
CHUNK_BYTES = 1 << 25  # 32 MiB of text per parse
_EXACT = 2.0 ** 53  # ids and times read as float64 are exact below this


@dataclass(frozen=True, eq=False)
class Interactions:
    """One row per (user, item) event, in file order as read (after :func:`implicit`: one row per kept pair,
    ordered by user then item).

    ``users``, ``items``: (m,) ids as in the file (int64 when every id of the column is an integer, else str
    objects). ``ratings``: (m,) float32 in the file's units, or None when the file has no rating column.
    ``timestamps``: (m,) int64 as in the file (MovieLens: unix seconds), or None. ``source``: absolute path
    read. ``info``: JSON-able provenance (separator, header, columns, rows; the filter's thresholds and counts).
    """

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray | None
    timestamps: np.ndarray | None
    source: str
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.users)


# ------------------------------------------------------------------------------------------------ sniffing

def _norm(name: str) -> str:
    return "".join(ch for ch in name.strip().lower() if ch not in "_- ")


def _split_line(line: str, sep: str) -> list[str]:
    if len(sep) == 1:
        return next(csv.reader([line], delimiter=sep, quotechar='"'), [])
    return line.split(sep)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _sniff_sep(line: str, path: Path) -> str:
    for sep in SEPARATORS:
        if sep in line:
            return sep
    raise VaekitError(f"{path}: cannot tell the column separator from line 1 ({line[:60]!r}); use a tab, ',', "
                      "';' or '::' between columns (e.g. user,item,rating), or pass sep=")


def _find_column(header: list[str], given: str, defaults: tuple[str, ...], role: str, flag: str, path: Path,
                 required: bool) -> int | None:
    if given:
        if given in header:
            return header.index(given)
        normed = [_norm(h) for h in header]
        if _norm(given) in normed:
            return normed.index(_norm(given))
        raise VaekitError(f"{path}: no {role} column '{given}' in the header ({', '.join(header)}); "
                          f"name one of these columns with --data.{flag}")
    normed = [_norm(h) for h in header]
    for name in defaults:
        if name in normed:
            return normed.index(name)
    if required:
        raise VaekitError(f"{path}: no {role} column in the header ({', '.join(header)}); name it with "
                          f"--data.{flag} (Python: {flag}=), or add a header line such as user,item,rating")
    return None


@dataclass(frozen=True)
class _Layout:
    sep: str
    header: bool
    n_fields: int
    cols: dict[str, int]  # role -> field index (user, item, rating?, time?)
    names: dict[str, str]  # role -> header name or "field k"


def _layout(path: Path, first: str, sep: str, user_column: str, item_column: str, rating_column: str,
            time_column: str) -> _Layout:
    if sep == "auto":
        sep = _sniff_sep(first, path)
    elif not sep or "\n" in sep or '"' in sep or (len(sep) > 1 and sep != "::"):
        raise VaekitError(f"{path}: separator {sep!r} is not supported; use 'auto', one character such as "
                          "',' or '\\t', or '::'")
    fields = _split_line(first, sep)
    header = not all(_is_number(f) for f in fields)
    if not header:
        named = [k for k, v in (("user_column", user_column), ("item_column", item_column),
                                ("rating_column", rating_column), ("time_column", time_column)) if v]
        if named:
            raise VaekitError(f"{path}: the file has no header line (line 1 is numbers), so columns cannot be "
                              f"chosen by name; drop --data.{named[0]} or add a header line")
        if len(fields) < 2:
            raise VaekitError(f"{path}: line 1 has {len(fields)} field(s) with separator {sep!r}; an "
                              "interaction file needs user and item columns (then rating, timestamp)")
        cols = {"user": 0, "item": 1}
        if len(fields) >= 3:
            cols["rating"] = 2
        if len(fields) >= 4:
            cols["time"] = 3
        names = {role: f"field {i + 1}" for role, i in cols.items()}
        return _Layout(sep, False, len(fields), cols, names)
    header_names = [f.strip().lstrip("\ufeff") for f in fields]
    found = {
        "user": _find_column(header_names, user_column, USER_NAMES, "user", "user_column", path, True),
        "item": _find_column(header_names, item_column, ITEM_NAMES, "item", "item_column", path, True),
        "rating": _find_column(header_names, rating_column, RATING_NAMES, "rating", "rating_column", path, False),
        "time": _find_column(header_names, time_column, TIME_NAMES, "time", "time_column", path, False)}
    cols = {role: i for role, i in found.items() if i is not None}
    if len(set(cols.values())) != len(cols):
        raise VaekitError(f"{path}: one column is used for two roles ({cols}); name distinct columns with "
                          "--data.user_column / item_column / rating_column / time_column")
    return _Layout(sep, True, len(fields), cols, {role: header_names[i] for role, i in cols.items()})


# ------------------------------------------------------------------------------------------------ parsing

class _NotNumeric(Exception):
    """An id column holds something other than integers: the file is read again in string mode."""


def _chunks(f: BinaryIO) -> Iterator[bytes]:
    """Whole lines, about CHUNK_BYTES at a time; the last chunk ends with a newline too."""
    rest = b""
    while True:
        block = f.read(CHUNK_BYTES)
        if not block:
            if rest:
                yield rest if rest.endswith(b"\n") else rest + b"\n"
            return
        block = rest + block
        cut = block.rfind(b"\n")
        if cut < 0:
            rest = block
            continue
        rest = block[cut + 1:]
        yield block[: cut + 1]


def _decode(chunk: bytes) -> str:
    try:
        return chunk.decode("utf-8")
    except UnicodeDecodeError:
        return chunk.decode("latin-1")


class _Parsed:
    """The columns read so far. Numeric columns are written into arrays grown in place (sized from the first
    chunk's bytes per line, then x1.5, shrunk at the end), so reading needs about the final arrays plus one
    chunk; string ids (string mode) are gathered as object arrays and concatenated at the end."""

    DTYPES: ClassVar[dict[str, type]] = {"user": np.int64, "item": np.int64, "rating": np.float32,
                                         "time": np.int64}

    def __init__(self, roles: list[str], capacity: int, strings: bool) -> None:
        self.n = 0
        self.blank = 0
        self.strings = strings
        self.arrays: dict[str, np.ndarray] = {
            r: np.empty(0 if strings and r in ("user", "item") else capacity, dtype=self.DTYPES[r]) for r in roles}
        self.object_parts: dict[str, list[np.ndarray]] = {"user": [], "item": []}

    def add(self, cols: dict[str, np.ndarray]) -> None:
        k = len(cols["user"])
        for role, a in cols.items():
            if a.dtype == object:
                self.object_parts[role].append(a)
                continue
            arr = self.arrays[role]
            if self.n + k > len(arr):
                arr.resize(max(self.n + k, int(len(arr) * 1.5) + 1024), refcheck=False)
            arr[self.n:self.n + k] = a
        self.n += k

    def finish(self) -> dict[str, np.ndarray]:
        out = {}
        for role, arr in self.arrays.items():
            if role in ("user", "item") and self.strings:
                parts = self.object_parts[role]
                out[role] = np.concatenate(parts) if parts else np.array([], dtype=object)
            else:
                arr.resize(self.n, refcheck=False)  # shrinks in place
                out[role] = arr
        return out


def _fast_chunk(chunk: bytes, lay: _Layout) -> np.ndarray | None:
    """(rows, len(cols)) float64 via NumPy's C reader, or None when the chunk needs the exact line reader
    (blank lines, quotes around separators, ragged or non-numeric lines)."""
    delim = lay.sep
    if delim == "::":
        chunk, delim = chunk.replace(b"::", b"\x1f"), "\x1f"
    rows = chunk.count(b"\n")
    if chunk.count(delim.encode()) != (lay.n_fields - 1) * rows:
        return None
    usecols = tuple(lay.cols.values())
    try:
        arr = np.loadtxt(io.BytesIO(chunk), delimiter=delim, dtype=np.float64, usecols=usecols, ndmin=2,
                         comments=None, quotechar='"' if delim == "," else None, encoding="latin-1")
    except ValueError:
        return None
    return arr if arr.shape[0] == rows else None


def _exact_chunk(chunk: bytes, first_line: int, lay: _Layout, path: Path, strings: bool,
                 out: _Parsed) -> None:
    """Line by line, with errors naming the line. ``strings``: keep ids as text (else ids must be integers,
    or :class:`_NotNumeric` is raised)."""
    users: list[Any] = []
    items: list[Any] = []
    ratings: list[float] = []
    times: list[int] = []
    ci, cu = lay.cols["item"], lay.cols["user"]
    cr, ct = lay.cols.get("rating"), lay.cols.get("time")
    for k, raw in enumerate(_decode(chunk).split("\n")[:-1]):  # the chunk ends with a newline
        raw = raw.removesuffix("\r")
        line_no = first_line + k
        if not raw.strip():
            out.blank += 1
            continue
        fields = _split_line(raw, lay.sep)
        if len(fields) != lay.n_fields:
            raise VaekitError(f"{path}: line {line_no} has {len(fields)} fields separated by {lay.sep!r}, expected "
                              f"{lay.n_fields} as on line 1; fix or remove that line")
        for role, col, store in (("user", cu, users), ("item", ci, items)):
            text = fields[col].strip()
            if not text:
                raise VaekitError(f"{path}: line {line_no} has an empty {role} id; fill it in or remove the line")
            if strings:
                store.append(text)
            else:
                try:
                    store.append(int(text))
                except ValueError:
                    raise _NotNumeric from None
        if cr is not None:
            text = fields[cr].strip()
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise VaekitError(f"{path}: line {line_no}: rating {text!r} (column '{lay.names['rating']}') is not "
                                  "a finite number; fix the value, or name the rating column with "
                                  "--data.rating_column")
            ratings.append(value)
        if ct is not None:
            text = fields[ct].strip()
            try:
                stamp = float(text)
                ok = math.isfinite(stamp) and stamp == int(stamp) and abs(stamp) < _EXACT
            except ValueError:
                ok = False
            if not ok:
                raise VaekitError(f"{path}: line {line_no}: timestamp {text!r} (column '{lay.names['time']}') is "
                                  "not a whole number; give unix seconds, or name the time column with "
                                  "--data.time_column")
            times.append(int(stamp))
    cols = {"user": np.array(users, dtype=object if strings else np.int64),
            "item": np.array(items, dtype=object if strings else np.int64)}
    if cr is not None:
        cols["rating"] = np.array(ratings, dtype=np.float32)
    if ct is not None:
        cols["time"] = np.array(times, dtype=np.int64)
    out.add(cols)


def _take_fast(arr: np.ndarray, lay: _Layout, out: _Parsed) -> bool:
    """Store a chunk parsed by NumPy; False when an id column is not integral (string mode needed)."""
    roles = list(lay.cols)
    columns = {role: arr[:, j] for j, role in enumerate(roles)}
    for role in ("user", "item"):
        c = columns[role]
        if not (np.all(np.abs(c) < _EXACT) and np.array_equal(c, np.floor(c))):
            return False
    if "rating" in columns and not np.isfinite(columns["rating"]).all():
        return False  # the exact reader names the line
    if "time" in columns:
        t = columns["time"]
        if not (np.isfinite(t).all() and np.all(np.abs(t) < _EXACT) and np.array_equal(t, np.floor(t))):
            return False
    out.add(columns)  # converted to the column dtypes on assignment
    return True


def _ids_column(ids: np.ndarray) -> np.ndarray:
    """String-mode ids as int64 when every id of the column is an integer (as the spec says), else str."""
    if ids.dtype == object:
        try:
            as_int = np.array([int(v) for v in ids], dtype=np.int64)
        except (ValueError, OverflowError):
            return ids
        return as_int
    return ids


def _parse(path: Path, lay: _Layout, strings: bool) -> _Parsed:
    size = path.stat().st_size
    out: _Parsed | None = None
    with open(path, "rb") as f:
        line_no = 1
        if lay.header:
            f.readline()
            line_no = 2
        for chunk in _chunks(f):
            if out is None:  # room for the whole file at the first chunk's bytes per line, plus 2%
                capacity = int(size / len(chunk) * chunk.count(b"\n") * 1.02) + 16
                out = _Parsed(list(lay.cols), capacity, strings)
            arr = None if strings else _fast_chunk(chunk, lay)
            if arr is None or not _take_fast(arr, lay, out):
                _exact_chunk(chunk, line_no, lay, path, strings, out)
            line_no += chunk.count(b"\n")
    return out if out is not None else _Parsed(list(lay.cols), 0, strings)


def read_interactions(path: str | Path, *, sep: str = "auto", user_column: str = "", item_column: str = "",
                      rating_column: str = "", time_column: str = "") -> Interactions:
    """Read an interaction file into :class:`Interactions` (see the module docstring for the formats).

    ``sep``: ``'auto'`` (``::``, tab, ``,`` or ``;``, whichever appears first in that order on line 1), one
    character, or ``'::'``. A first line made only of numbers is data (MovieLens layout by position: user,
    item[, rating[, timestamp]]); otherwise it is a header and the ``*_column`` arguments (or the common names
    in :data:`USER_NAMES`, :data:`ITEM_NAMES`, :data:`RATING_NAMES`, :data:`TIME_NAMES`) pick the columns.
    Blank lines are skipped. Bad files raise a one-line :class:`VaekitError` naming the file, the line and
    the fix (missing column, ragged line, non-numeric rating or timestamp, empty file).
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise VaekitError(f"{p}: no such file; give the path of an interaction file (u.data, ratings.dat, "
                          "ratings.csv, or a CSV/TSV with user and item columns)")
    with open(p, "rb") as f:
        first_bytes = f.readline()
    first = _decode(first_bytes).rstrip("\r\n")
    if not first.strip():
        what = "is empty" if not first_bytes else "starts with a blank line"
        raise VaekitError(f"{p}: {what}; an interaction file has one (user, item[, rating[, time]]) event per "
                          "line, optionally after a header line")
    lay = _layout(p, first.lstrip("\ufeff"), sep, user_column, item_column, rating_column, time_column)
    strings = False
    try:
        parsed = _parse(p, lay, strings=False)
    except _NotNumeric:
        strings = True
        parsed = _parse(p, lay, strings=True)
    cols = parsed.finish()
    users, items = _ids_column(cols["user"]), _ids_column(cols["item"])
    if len(users) == 0:
        raise VaekitError(f"{p}: no interactions after the header; the file needs one event per line "
                          "(user, item[, rating[, time]])")
    ratings, times = cols.get("rating"), cols.get("time")
    info = {"path": str(p.resolve()), "sep": lay.sep, "header": lay.header, "columns": dict(lay.names),
            "rows": len(users), "blank_lines": parsed.blank, "string_ids": strings,
            "id_types": {"user": "int64" if users.dtype == np.int64 else "str",
                         "item": "int64" if items.dtype == np.int64 else "str"}}
    return Interactions(users, items, ratings, times, str(p.resolve()), {"read": info})


# ------------------------------------------------------------------------------------------------ coding

def codes(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unique sorted ids (k,), code of each id (m,) int64 in 0..k-1), like ``np.unique(return_inverse=True)``
    but by a lookup table when the ids are small non-negative integers (no sort of m values)."""
    if ids.dtype.kind in "iu" and len(ids):
        lo, hi = int(ids.min()), int(ids.max())
        if lo >= 0 and hi < 4 * len(ids) + (1 << 20):
            present = np.zeros(hi + 1, dtype=bool)
            present[ids] = True
            table = np.cumsum(present, dtype=np.int64) - 1
            return np.flatnonzero(present).astype(ids.dtype), table[ids]
    uniq, inverse = np.unique(ids, return_inverse=True)
    return uniq, inverse.reshape(-1).astype(np.int64)


@dataclass(frozen=True, eq=False)
class Pairs:
    """The distinct (user, item) pairs of an :class:`Interactions`, coded: ``users`` (U,) and ``items`` (I,)
    sorted unique ids; ``user_code``, ``item_code`` (m,) int64 per distinct pair, sorted by (user, item);
    ``first`` (m,) index in the input of each pair's first occurrence; ``duplicates`` = input rows - m."""

    users: np.ndarray
    items: np.ndarray
    user_code: np.ndarray
    item_code: np.ndarray
    first: np.ndarray
    duplicates: int


def distinct_pairs(inter: Interactions) -> Pairs:
    """Code users and items and keep each (user, item) pair once (its first occurrence), sorted by
    (user code, item code); the result does not depend on the order of the input rows. Memory ~ events."""
    return _distinct(inter.users, inter.items)


def _distinct(user_ids: np.ndarray, item_ids: np.ndarray) -> Pairs:
    users, uc = codes(user_ids)
    items, ic = codes(item_ids)
    n_items = np.int64(max(len(items), 1))
    key = uc * n_items + ic
    del uc, ic  # the sorted distinct keys give the codes back
    distinct, first = np.unique(key, return_index=True)
    del key
    return Pairs(users, items, distinct // n_items, distinct % n_items, first, len(user_ids) - len(first))


def implicit(inter: Interactions, min_rating: float = 3.5, min_user_items: int = 5) -> Interactions:
    """The paper's implicit feedback: keep events rated strictly above ``min_rating`` (MovieLens with 3.5:
    ratings 4 and 5), then the users with at least ``min_user_items`` distinct kept items. A (user, item) pair
    present twice counts once (its first kept row is kept). A file without ratings keeps every event.

    Returns one row per kept (user, item) pair ordered by user then item; ``info["implicit"]`` holds the
    thresholds and the counts at each step. ``min_rating=-inf`` keeps every rating.
    """
    if math.isnan(min_rating):
        raise VaekitError("min_rating is NaN; give a number (the paper keeps ratings > 3.5)")
    if min_user_items < 1:
        raise VaekitError(f"min_user_items must be >= 1, got {min_user_items}; the paper uses 5")
    n_in = len(inter)
    keep: np.ndarray | None = None
    if inter.ratings is not None:
        keep = np.flatnonzero(inter.ratings > min_rating)
        if len(keep) == n_in:
            keep = None  # every rating passes: no copy
    pairs = _distinct(*((inter.users, inter.items) if keep is None else (inter.users[keep], inter.items[keep])))
    n_rated = n_in if keep is None else len(keep)
    per_user = np.bincount(pairs.user_code, minlength=len(pairs.users))
    ok = per_user[pairs.user_code] >= min_user_items
    rows = pairs.first[ok] if keep is None else keep[pairs.first[ok]]  # rows of ``inter``
    out_users = pairs.users[pairs.user_code[ok]]
    out_items = pairs.items[pairs.item_code[ok]]
    ratings = None if inter.ratings is None else inter.ratings[rows]
    times = None if inter.timestamps is None else inter.timestamps[rows]
    stats = {"min_rating": float(min_rating), "min_user_items": int(min_user_items),
             "rating_column": inter.ratings is not None, "events_in": n_in,
             "events_rated_above": n_rated, "duplicate_pairs": pairs.duplicates,
             "users_rated_above": len(pairs.users), "users_kept": int(np.count_nonzero(per_user >= min_user_items)),
             "events_out": len(rows),
             "items_out": int(np.count_nonzero(np.bincount(pairs.item_code[ok], minlength=len(pairs.items))))}
    if len(rows) == 0:
        raise VaekitError(f"{inter.source}: no user has {min_user_items} or more items rated above {min_rating} "
                          f"({n_rated} of {n_in} events pass the rating threshold); lower "
                          "--data.min_rating or --data.min_user_items")
    return Interactions(out_users, out_items, ratings, times, inter.source, {**inter.info, "implicit": stats})
