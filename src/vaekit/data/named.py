"""Named benchmark datasets: where their files live, how to fetch them, how to read them.

Lookup order for each file: ``data.dir``, then ``$VAEKIT_DATA``, then the user cache
``$XDG_CACHE_HOME/vaekit`` (default ``~/.cache/vaekit``). In each root both ``<root>/<file>`` and
``<root>/<dataset-dir>/<file>`` are accepted. Missing files are downloaded (``data.download``) into the
first root, under ``<root>/<dataset-dir>/``. Mirrors: ``$VAEKIT_MIRROR`` (a base URL serving
``<dataset-dir>/<file>``) is tried first, then the public mirrors in :data:`MIRRORS`.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vaekit.data import decoded
from vaekit.data.download import fetch, sha256_file, user_cache
from vaekit.data.idx import IMAGES_MAGIC, LABELS_MAGIC, idx_shape, read_idx
from vaekit.data.raw import RawData, scratch_array
from vaekit.errors import VaekitError


@dataclass(frozen=True)
class FileSpec:
    """One file of a dataset. ``names``: accepted file names (the first is downloaded);
    ``sha256``: digest of the file bytes; ``content_sha256``: digest of the parsed uint8 array bytes
    (C order), used where the container format varies between copies."""

    names: tuple[str, ...]
    sha256: str | None = None
    content_sha256: str | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset: accepted folder names (first = canonical download folder) and its files."""

    name: str
    dirs: tuple[str, ...]
    files: dict[str, FileSpec]


def _idx_files(sha: dict[str, str]) -> dict[str, FileSpec]:
    return {key: FileSpec((f"{key.replace('test', 't10k')}-idx{3 if 'images' in key else 1}-ubyte.gz",), s)
            for key, s in sha.items()}


SPECS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec("mnist", ("mnist",), _idx_files({
        "train-images": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "test-images": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "test-labels": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"})),
    "fashion-mnist": DatasetSpec("fashion-mnist", ("fashion-mnist", "fashion_mnist", "fashion"), _idx_files({
        "train-images": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "test-images": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "test-labels": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"})),
    # the original .mat bytes are not known (copies are re-serialised): verify the pixel content instead
    "frey-faces": DatasetSpec("frey-faces", ("frey-face", "frey-faces", "frey_faces"), {
        "ff": FileSpec(("frey_rawface.mat",),
                       content_sha256="2438ba4f0d2a6bd8bac43de756141eaa33c8d248dd613d464bdb1210d9b7af78")}),
    # text .amat on the public mirror, MATLAB .mat in the shared copy: verify the parsed 0/1 array
    "binarized-mnist": DatasetSpec("binarized-mnist", ("binarized-mnist", "binarized_mnist"), {
        split: FileSpec((f"binarized_mnist_{split}.amat", f"binarized_mnist_{split}.mat"), content_sha256=c)
        for split, c in (
            ("train", "43490d4d6ac9002727af4426d8748609fdb7e4094fa65ad8d681ea60082a7a5a"),
            ("valid", "069b4f0beb389b776478c3e872b4df71c95ac4be64d7cbe6d32e24ebac8e6d5e"),
            ("test", "ca0294c3b8d984c7a1dc891015a8eea6f37bae59a34e35ea0fc8c47110a8dd86"))}),
}

#: Public base URLs per dataset (a file is fetched from ``<base>/<file name>``). Tests may edit this.
MIRRORS: dict[str, list[str]] = {
    "mnist": ["https://ossci-datasets.s3.amazonaws.com/mnist"],
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"],
    "frey-faces": ["https://cs.nyu.edu/~roweis/data"],
    "binarized-mnist": ["http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist"],
}

NAMES = ("digits", *SPECS)


def data_roots(data_dir: str = "") -> list[Path]:
    """The folders searched for dataset files, in order (``data.dir``, ``$VAEKIT_DATA``, cache)."""
    roots = []
    if data_dir:
        roots.append(Path(data_dir).expanduser())
    if os.environ.get("VAEKIT_DATA"):
        roots.append(Path(os.environ["VAEKIT_DATA"]).expanduser())
    roots.append(user_cache())
    return roots


def _find(spec: DatasetSpec, f: FileSpec, roots: list[Path]) -> Path | None:
    for root in roots:
        for sub in ("", *spec.dirs):
            for name in f.names:
                p = root / sub / name if sub else root / name
                if p.is_file():
                    return p
    return None


def _mirrors(spec: DatasetSpec) -> list[str]:
    env = os.environ.get("VAEKIT_MIRROR", "").rstrip("/")
    return ([f"{env}/{spec.dirs[0]}"] if env else []) + list(MIRRORS.get(spec.name, []))


def content_sha256(arr: np.ndarray) -> str:
    """Hex sha256 of a parsed dataset array as uint8 bytes in C order (:attr:`FileSpec.content_sha256`)."""
    return hashlib.sha256(np.ascontiguousarray(arr, dtype=np.uint8).reshape(-1).data).hexdigest()  # no bytes copy


def _content_check(f: FileSpec, reader: Callable[[Path], np.ndarray]) -> Callable[[Path], None] | None:
    if f.content_sha256 is None:
        return None

    def verify(path: Path) -> None:
        got = content_sha256(reader(path))
        if got != f.content_sha256:
            raise VaekitError(f"content checksum mismatch for {f.names[0]}: sha256 {got}, expected "
                              f"{f.content_sha256}; nothing was kept, retry or use another mirror "
                              "(VAEKIT_MIRROR)")
    return verify


def locate(name: str, data_dir: str = "", download: bool = True, timeout: float = 60.0,
           readers: dict[str, Callable[[Path], np.ndarray]] | None = None) -> dict[str, Path]:
    """Paths of all files of dataset ``name``, downloading the missing ones if ``download``."""
    spec = SPECS[name]
    roots = data_roots(data_dir)
    found = {key: _find(spec, f, roots) for key, f in spec.files.items()}
    missing = [key for key, p in found.items() if p is None]
    target = roots[0] / spec.dirs[0]
    if missing and not download:
        names = ", ".join(spec.files[k].names[0] for k in missing)
        raise VaekitError(f"dataset '{name}': missing {names} (searched {', '.join(map(str, roots))}); "
                          f"put the files in {target}/ or set --data.download true")
    if missing:
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise VaekitError(f"dataset '{name}': cannot create {target} to download into ({err.strerror}); "
                              "set --data.dir (or VAEKIT_DATA) to a writable folder") from None
    for key in missing:
        f = spec.files[key]
        errors, offline = [], True
        for base in _mirrors(spec):
            url = f"{base}/{f.names[0]}"
            try:
                check = _content_check(f, readers[key]) if readers and key in readers else None
                found[key] = fetch(url, target / f.names[0], f.sha256, check, timeout)
                break
            except (urllib.error.URLError, OSError) as err:
                errors.append(f"{url}: {getattr(err, 'reason', err)}")
            except VaekitError as err:  # HTTP error, checksum or content mismatch: try the next mirror
                errors.append(str(err))
                offline = False
        if found[key] is None:
            names = ", ".join(spec.files[k].names[0] for k in missing)
            why = "you seem to be offline: " if offline else ""
            raise VaekitError(f"dataset '{name}': could not download {f.names[0]} from any mirror "
                              f"({'; '.join(errors)}); {why}put {names} in {target}/ (or set --data.dir / "
                              "VAEKIT_DATA to a folder holding them)")
    return {k: p for k, p in found.items() if p is not None}


# ---------------------------------------------------------------------------------------- readers

def read_binarized(path: Path) -> np.ndarray:
    """Binarized-MNIST split as uint8 (n, 784) in {0, 1}.

    Reads MATLAB ``.mat`` (variable ``X``) or text ``.amat`` (784 space-separated 0/1 per line), sniffed
    from the content, not the suffix.
    """
    raw = path.read_bytes()
    if raw[:6] == b"MATLAB":
        from scipy.io import loadmat

        try:
            x = loadmat(path)["X"]
        except (KeyError, ValueError, OSError) as err:
            raise VaekitError(f"{path}: cannot read variable 'X' from the MAT-file ({err}); "
                              "replace the file with the original") from None
    else:
        data = np.frombuffer(raw, dtype=np.uint8)
        bits = (data == ord("0")) | (data == ord("1"))
        if not np.isin(data[~bits], np.frombuffer(b" \t\r\n", np.uint8)).all():
            raise VaekitError(f"{path}: not a 0/1 text .amat file (found characters other than 0, 1 and "
                              "spaces); replace the file with the original")
        n_lines = sum(1 for line in raw.splitlines() if line.strip())
        vals = data[bits] - ord("0")
        if n_lines == 0 or vals.size != n_lines * 784:
            raise VaekitError(f"{path}: expected 784 values on each of {n_lines} lines, got {vals.size} "
                              "values in all; the file is truncated or corrupted, download it again")
        x = vals.reshape(n_lines, 784)
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != 784 or not np.isin(x, (0, 1)).all():
        raise VaekitError(f"{path}: expected a (n, 784) array of 0/1, got shape {x.shape}; "
                          "replace the file with the original")
    return x.astype(np.uint8)


def read_frey(path: Path) -> np.ndarray:
    """Frey faces as uint8 (1965, 28, 20) from Roweis's ``.mat`` (variable ``ff``, shape (560, 1965))."""
    from scipy.io import loadmat

    try:
        ff = np.asarray(loadmat(path)["ff"])
    except (KeyError, ValueError, OSError) as err:
        raise VaekitError(f"{path}: cannot read variable 'ff' from the MAT-file ({err}); "
                          "replace the file with the original") from None
    if ff.ndim != 2 or ff.shape[0] != 560:
        raise VaekitError(f"{path}: variable 'ff' has shape {ff.shape}, expected (560, n); "
                          "replace the file with the original")
    return np.ascontiguousarray(ff.T.reshape(-1, 28, 20))


#: the names of the readers whose output :mod:`vaekit.data.decoded` keeps (a changed reader needs a new name)
IDX_READER, BINARIZED_READER = "idx1", "binarized1"


def _decode_cached(digest: str, reader: str, out: np.ndarray, decode: Callable[[], object]) -> str:
    """Fill ``out`` with what the file of sha256 ``digest`` decodes to: from the decoded cache when it holds a
    checked entry, else by ``decode()`` (then kept there). Returns the sha256 of ``out``'s bytes."""
    cached = decoded.read_into(digest, reader, out)
    if cached is not None:
        return cached
    decode()
    return decoded.store(digest, reader, out)


def _read_idx_pair(files: dict[str, Path], digests: dict[str, str], part: str, x: np.ndarray) -> np.ndarray:
    """Decode the ``part`` images into ``x`` (their declared shape; cached); returns the labels."""
    images = files[f"{part}-images"]
    _decode_cached(digests[f"{part}-images"], IDX_READER, x, lambda: read_idx(images, IMAGES_MAGIC, out=x))
    y = read_idx(files[f"{part}-labels"], LABELS_MAGIC)
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise VaekitError(f"{images}: {len(x)} images but {len(y)} labels in "
                          f"{files[f'{part}-labels']}; the files do not belong together, replace them")
    return y


def _read_binarized_parts(files: dict[str, Path], digests: dict[str, str], keys: tuple[str, ...]
                          ) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """Binarized MNIST's parts ``keys`` as one (n, 784) uint8 array in scratch memory, the parts' row offsets
    (len(keys) + 1) and the sha256 of each part's bytes; from the decoded cache when it holds all of them."""
    shapes = [decoded.shape_of(digests[k], BINARIZED_READER) for k in keys]
    if all(s is not None and len(s) == 2 and s[1] == 784 for s in shapes):
        sizes = np.cumsum([0] + [s[0] for s in shapes if s is not None])
        flat = scratch_array((int(sizes[-1]), 784))
        content = {k: decoded.read_into(digests[k], BINARIZED_READER, flat[sizes[i]:sizes[i + 1]])
                   for i, k in enumerate(keys)}
        if all(v is not None for v in content.values()):
            return flat, sizes, {k: str(v) for k, v in content.items()}
    parts = [read_binarized(files[k]) for k in keys]
    sizes = np.cumsum([0] + [len(p) for p in parts])
    flat = np.concatenate(parts, out=scratch_array((int(sizes[-1]), 784)))  # build reuses it
    del parts  # the files' own arrays: from here on only their rows in the scratch buffer
    return flat, sizes, {k: decoded.store(digests[k], BINARIZED_READER, flat[sizes[i]:sizes[i + 1]])
                         for i, k in enumerate(keys)}


def _provenance(files: dict[str, Path], spec: DatasetSpec, digests: dict[str, str], contents: dict[str, str],
                verify: bool) -> dict[str, Any]:
    """Per file: path, sha256 (``digests``, of its bytes) and whether it matches the published digest (of the
    bytes, or of the parsed uint8 array where only that is known: ``contents``, as :func:`content_sha256`). A
    mismatch is an error unless ``verify`` is False; then ``info["warnings"]`` says which files differ and
    ``info["verify"]`` is False."""
    out: dict[str, Any] = {}
    bad = []
    for key, p in files.items():
        digest = digests[key]
        f = spec.files[key]
        entry: dict[str, Any] = {"path": str(p.resolve()), "sha256": digest, "size": p.stat().st_size}
        if f.sha256 is not None:
            entry["sha256_matches_published"] = ok = digest == f.sha256
        elif f.content_sha256 is not None and key in contents:
            content = contents[key]
            entry.update(content_sha256=content, content_sha256_matches_published=content == f.content_sha256)
            ok = content == f.content_sha256
        else:
            ok = True
        if not ok:
            bad.append(str(p))
        out[key] = entry
    info: dict[str, Any] = {"files": out, "verify": verify}
    if bad:
        if verify:
            more = f"; {len(bad) - 1} more differ" if len(bad) > 1 else ""
            raise VaekitError(f"dataset '{spec.name}': {bad[0]} does not match the published checksum (is it "
                              f"another dataset's file?{more}); put the right files there, or set data.verify "
                              "false (--data.verify false) to train on them anyway")
        info["mismatched"] = bad
        info["warnings"] = [f"dataset '{spec.name}': {len(bad)} file(s) do not match the published checksums "
                            f"({', '.join(bad)}); used anyway because data.verify is false"]
    return info


def load_named(name: str, data_dir: str = "", download: bool = True, timeout: float = 60.0,
               verify: bool = True) -> RawData:
    """Read named dataset ``name`` (not ``digits``) into a :class:`RawData` (uint8 pixels). Files that do
    not match the published checksums are an error unless ``verify`` is False (then a warning)."""
    spec = SPECS[name]
    if name in ("mnist", "fashion-mnist"):
        files = locate(name, data_dir, download, timeout)
        shapes = [idx_shape(files[f"{part}-images"], IMAGES_MAGIC) for part in ("train", "test")]
        if len(shapes[0]) != 3 or shapes[0][1:] != shapes[1][1:]:
            raise VaekitError(f"{files['test-images']}: images of shape {shapes[1][1:]} beside training images "
                              f"of shape {shapes[0][1:]}; the files do not belong together, replace them")
        n_tr = shapes[0][0]
        digests = {k: sha256_file(p) for k, p in files.items()}
        x = scratch_array((n_tr + shapes[1][0], *shapes[0][1:]))  # both parts decoded into it; build reuses it
        ytr = _read_idx_pair(files, digests, "train", x[:n_tr])
        yte = _read_idx_pair(files, digests, "test", x[n_tr:])
        prov = _provenance(files, spec, digests, {}, verify)
        return RawData(x, np.concatenate([ytr, yte]).astype(np.int64),
                       value_range=(0.0, 255.0),
                       fixed={"pool": np.arange(n_tr), "test": np.arange(n_tr, len(x))},
                       info={"name": name, **prov}, scratch=True)
    if name == "frey-faces":
        files = locate(name, data_dir, download, timeout, readers={"ff": read_frey})
        x = read_frey(files["ff"])
        return RawData(x, None, value_range=(0.0, 255.0),
                       info={"name": name, **_provenance(files, spec, {k: sha256_file(p) for k, p in files.items()},
                                                         {"ff": content_sha256(x)}, verify)})
    if name == "binarized-mnist":
        readers: dict[str, Callable[[Path], np.ndarray]] = dict.fromkeys(spec.files, read_binarized)
        files = locate(name, data_dir, download, timeout, readers=readers)
        keys = ("train", "valid", "test")
        digests = {k: sha256_file(p) for k, p in files.items()}
        flat, sizes, contents = _read_binarized_parts(files, digests, keys)
        return RawData(flat.reshape(-1, 28, 28), None, value_range=(0.0, 1.0),
                       fixed={"train": np.arange(sizes[0], sizes[1]), "val": np.arange(sizes[1], sizes[2]),
                              "test": np.arange(sizes[2], sizes[3])},
                       info={"name": name, **_provenance(files, spec, digests, contents, verify)}, scratch=True)
    raise VaekitError(f"unknown dataset '{name}'; use one of {', '.join(NAMES)} or --data.path FILE")


def load_digits() -> RawData:
    """scikit-learn's bundled 8x8 digits: float32 (1797, 8, 8) grey levels 0..16, labels 0..9."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    return RawData(d.images.astype(np.float32), d.target.astype(np.int64), value_range=(0.0, 16.0),
                   info={"name": "digits", "source": "scikit-learn bundled 8x8 digits"})
