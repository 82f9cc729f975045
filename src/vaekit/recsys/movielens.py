"""MovieLens datasets (GroupLens): where their files live, how to fetch them, how to read events and titles.

Lookup as for the image datasets (:mod:`vaekit.data.named`): ``data.dir``, then ``$VAEKIT_DATA``, then the
user cache; in each root the folder ``<root>/<dataset>/`` (e.g. ``movielens-100k/``, or GroupLens's own
``ml-100k/``) holding the ratings and the movie file. So ``--data.dir ../shared/data`` finds
``../shared/data/movielens-100k/u.data``. Missing files are downloaded (``data.download``) as GroupLens's zip,
from ``$VAEKIT_MIRROR/<dataset>/<zip>`` first, then :data:`MIRRORS`; the zip is verified (GroupLens's
published md5 where there is one) and its two files unpacked into ``<first root>/<dataset>/``, each written
to a temporary file and renamed into place, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import os
import tempfile
import urllib.error
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vaekit.data.download import CHUNK, fetch, sha256_file
from vaekit.data.named import data_roots
from vaekit.errors import VaekitError
from vaekit.fileio import file_mode, fsync_dir, write_errors
from vaekit.recsys.interactions import Interactions, read_interactions


@dataclass(frozen=True)
class MovieLensSpec:
    """One MovieLens release: accepted folder names (first = download folder), GroupLens's zip and its md5
    (None for ``latest-small``, which GroupLens updates in place), the ratings and movie files inside it,
    and sha256 digests of unpacked files where published values are known."""

    name: str
    dirs: tuple[str, ...]
    zip_name: str
    zip_md5: str | None
    ratings: str
    movies: str
    sha256: dict[str, str]


SPECS: dict[str, MovieLensSpec] = {
    "movielens-100k": MovieLensSpec(
        "movielens-100k", ("movielens-100k", "ml-100k"), "ml-100k.zip", "0e33842e24a9c977be4e0107933c0723",
        "u.data", "u.item", {
            "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
            "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701"}),
    "movielens-1m": MovieLensSpec(
        "movielens-1m", ("movielens-1m", "ml-1m"), "ml-1m.zip", "c4d9eecfca2ab87c1945afe126590906",
        "ratings.dat", "movies.dat", {}),
    "movielens-20m": MovieLensSpec(
        "movielens-20m", ("movielens-20m", "ml-20m"), "ml-20m.zip", "cd245b17a1ae2cc31bb14903e1204af3",
        "ratings.csv", "movies.csv", {}),
    "movielens-latest-small": MovieLensSpec(
        "movielens-latest-small", ("movielens-latest-small", "ml-latest-small"), "ml-latest-small.zip", None,
        "ratings.csv", "movies.csv", {}),
}
NAMES = tuple(SPECS)

#: Public base URLs per dataset (the zip is fetched from ``<base>/<zip name>``). Tests may edit this.
MIRRORS: dict[str, list[str]] = {key: ["https://files.grouplens.org/datasets/movielens"] for key in SPECS}


def _spec(name: str) -> MovieLensSpec:
    if name not in SPECS:
        raise VaekitError(f"unknown MovieLens dataset '{name}'; use one of {', '.join(NAMES)}")
    return SPECS[name]


def _find(spec: MovieLensSpec, roots: list[Path]) -> Path | None:
    for root in roots:
        for sub in spec.dirs:
            folder = root / sub
            if (folder / spec.ratings).is_file() and (folder / spec.movies).is_file():
                return folder
    return None


def _mirrors(spec: MovieLensSpec) -> list[str]:
    env = os.environ.get("VAEKIT_MIRROR", "").rstrip("/")
    return ([f"{env}/{spec.dirs[0]}"] if env else []) + list(MIRRORS.get(spec.name, []))


def _md5_check(spec: MovieLensSpec) -> Any:
    def verify(path: Path) -> None:
        if spec.zip_md5 is not None:
            h = hashlib.md5(usedforsecurity=False)
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(CHUNK), b""):
                    h.update(block)
            if h.hexdigest() != spec.zip_md5:
                raise VaekitError(f"checksum mismatch for {spec.zip_name}: md5 {h.hexdigest()}, expected "
                                  f"{spec.zip_md5} (published by GroupLens); nothing was kept, retry or use "
                                  "another mirror (VAEKIT_MIRROR)")
        if not zipfile.is_zipfile(path):
            raise VaekitError(f"{spec.zip_name} is not a zip file; nothing was kept, retry or use another "
                              "mirror (VAEKIT_MIRROR)")
    return verify


def _member(z: zipfile.ZipFile, name: str, spec: MovieLensSpec) -> zipfile.ZipInfo:
    found = [i for i in z.infolist() if not i.is_dir() and i.filename.rsplit("/", 1)[-1] == name]
    if len(found) != 1:
        raise VaekitError(f"{spec.zip_name} holds {len(found)} files named {name}, expected one; nothing was "
                          "kept, retry or use another mirror (VAEKIT_MIRROR)")
    return found[0]


def _unpack(zip_path: Path, spec: MovieLensSpec, target: Path) -> None:
    """Unpack the movie file, then the ratings file (the one :func:`_find` needs last), each via a temporary
    file in ``target`` renamed into place after its checksum (where known) matched."""
    with zipfile.ZipFile(zip_path) as z:
        for name in (spec.movies, spec.ratings):
            info = _member(z, name, spec)
            with write_errors(target / name):
                fd, tmp_name = tempfile.mkstemp(dir=target, prefix=f".{name}.", suffix=".part")
                os.fchmod(fd, file_mode(target / name))
            tmp = Path(tmp_name)
            try:
                with write_errors(target / name), os.fdopen(fd, "wb") as out, z.open(info) as src:
                    for block in iter(lambda src=src: src.read(CHUNK), b""):  # type: ignore[misc]
                        out.write(block)
                    out.flush()
                    os.fsync(out.fileno())
                expected = spec.sha256.get(name)
                if expected is not None and sha256_file(tmp) != expected:
                    raise VaekitError(f"{spec.zip_name}: {name} does not match its published sha256 {expected}; "
                                      "nothing was kept, retry or use another mirror (VAEKIT_MIRROR)")
                os.replace(tmp, target / name)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                raise
            fsync_dir(target)


def locate(name: str, dir: str = "", download: bool = True, timeout: float = 60.0) -> Path:
    """The folder holding dataset ``name``'s ratings and movie files, downloading them if missing and
    ``download``. Raises a one-line :class:`VaekitError` naming the folders searched and the fix."""
    spec = _spec(name)
    roots = data_roots(dir)
    found = _find(spec, roots)
    if found is not None:
        return found
    target = roots[0] / spec.dirs[0]
    files = f"{spec.ratings} and {spec.movies}"
    if not download:
        raise VaekitError(f"dataset '{name}': missing {files} (searched {', '.join(str(r) for r in roots)}, in "
                          f"folders {' or '.join(spec.dirs)}); put them in {target}/ or set --data.download true")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise VaekitError(f"dataset '{name}': cannot create {target} to download into ({err.strerror}); "
                          "set --data.dir (or VAEKIT_DATA) to a writable folder") from None
    errors, offline = [], True
    zip_path = target / spec.zip_name
    for base in _mirrors(spec):
        url = f"{base}/{spec.zip_name}"
        try:
            fetch(url, zip_path, None, _md5_check(spec), timeout)
            _unpack(zip_path, spec, target)
            return target
        except (urllib.error.URLError, OSError) as err:
            errors.append(f"{url}: {getattr(err, 'reason', err)}")
        except (VaekitError, zipfile.BadZipFile) as err:  # HTTP error, checksum, bad archive: next mirror
            errors.append(str(err))
            offline = False
        finally:
            with contextlib.suppress(FileNotFoundError):
                zip_path.unlink()
    why = "you seem to be offline: " if offline else ""
    raise VaekitError(f"dataset '{name}': could not download {spec.zip_name} from any mirror "
                      f"({'; '.join(errors)}); {why}put {files} in {target}/ (or set --data.dir / VAEKIT_DATA "
                      "to a folder holding them)")


def _provenance(spec: MovieLensSpec, folder: Path, verify: bool) -> dict[str, Any]:
    files: dict[str, Any] = {}
    bad = []
    for name in (spec.ratings, spec.movies):
        p = folder / name
        digest = sha256_file(p)
        entry: dict[str, Any] = {"path": str(p.resolve()), "sha256": digest, "size": p.stat().st_size}
        if name in spec.sha256:
            entry["sha256_matches_published"] = digest == spec.sha256[name]
            if digest != spec.sha256[name]:
                bad.append(str(p))
        files[name] = entry
    info: dict[str, Any] = {"name": spec.name, "files": files, "verify": verify}
    if bad:
        if verify:
            raise VaekitError(f"dataset '{spec.name}': {bad[0]} does not match the published checksum (is it "
                              "another release's file?); put the right files there, or set data.verify false "
                              "(--data.verify false) to use them anyway")
        info["mismatched"] = bad
        info["warnings"] = [f"dataset '{spec.name}': {', '.join(bad)} do(es) not match the published checksums; "
                            "used anyway because data.verify is false"]
    return info


def load_movielens(name: str, dir: str = "", download: bool = True, timeout: float = 60.0,
                   verify: bool = True) -> tuple[Interactions, dict[Any, str]]:
    """Events (as read: every rating, no filter) and movie titles {movie id: title} of MovieLens ``name``
    (``movielens-100k``, ``movielens-1m``, ``movielens-20m``, ``movielens-latest-small``).

    Files are located (and downloaded when missing and ``download``) by :func:`locate`. Files whose sha256 is
    published (ML-100k's ``u.data`` and ``u.item``) must match it unless ``verify`` is False (then
    ``info["dataset"]["warnings"]`` says so). ``info["dataset"]`` records the files, sizes and digests."""
    spec = _spec(name)
    folder = locate(name, dir, download, timeout)
    prov = _provenance(spec, folder, verify)
    inter = read_interactions(folder / spec.ratings)
    titles = item_titles(folder / spec.movies)
    return replace(inter, info={**inter.info, "dataset": prov}), titles


def item_titles(path: str | Path, sep: str = "auto", id_column: str = "", title_column: str = "") -> dict[Any, str]:
    """{item id: title} from a MovieLens movie file or any table of items.

    MovieLens ``u.item`` (``|``, latin-1, no header: id|title|...), ``movies.dat`` (``::``, latin-1:
    id::title::genres) and ``movies.csv`` (UTF-8 CSV, header ``movieId,title,genres``, quoted titles) are
    recognised from the content. Other files: a CSV/TSV with a header; ``id_column`` / ``title_column`` name
    the columns (default: the first of item/itemId/movieId/id, and title/name). Ids are int when every id is
    an integer, else str (as :class:`Interactions` ids)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise VaekitError(f"{p}: no such file; give a file of item titles (u.item, movies.dat, movies.csv)")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # u.item and movies.dat are latin-1
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise VaekitError(f"{p}: is empty or starts with a blank line; give a file of item ids and titles")
    first = lines[0]
    if sep == "auto":
        sep = next((s for s in ("::", "|", "\t", ",", ";") if s in first), "")
        if not sep:
            raise VaekitError(f"{p}: cannot tell the column separator from line 1 ({first[:60]!r}); use '|', "
                              "'::', a tab or ',' between the id and the title")
    quoted = sep in (",", ";")  # CSV quotes titles with commas; u.item / movies.dat are split as they are
    rows = list(csv.reader(lines, delimiter=sep, quotechar='"')) if quoted else [s.split(sep) for s in lines]
    head = rows[0]
    id_col, title_col = 0, 1
    start = 0
    if not head or not head[0].strip().lstrip("-").isdigit():  # a header
        norm = [h.strip().lower().replace("_", "") for h in head]
        id_names = (id_column.lower().replace("_", ""),) if id_column else ("item", "itemid", "movieid", "id")
        title_names = (title_column.lower().replace("_", ""),) if title_column else ("title", "name")
        id_col = next((norm.index(n) for n in id_names if n in norm), -1)
        title_col = next((norm.index(n) for n in title_names if n in norm), -1)
        if id_col < 0 or title_col < 0:
            which = "id" if id_col < 0 else "title"
            raise VaekitError(f"{p}: no item {which} column in the header ({', '.join(head)}); name it "
                              f"({'id_column' if which == 'id' else 'title_column'}=)")
        start = 1
    out: dict[Any, str] = {}
    for k, fields in enumerate(rows[start:], start=start + 1):
        if not fields or not "".join(fields).strip():
            continue
        if len(fields) <= max(id_col, title_col):
            raise VaekitError(f"{p}: line {k} has {len(fields)} field(s), expected an id and a title; fix or "
                              "remove that line")
        out[fields[id_col].strip()] = fields[title_col].strip()
    try:
        return {int(key): title for key, title in out.items()}
    except ValueError:
        return out
