"""User data files: NumPy ``.npy``/``.npz``, CSV with a header, and folders of images.

* ``.npy``: one array (n, *event_shape), no labels. With ``data.mmap`` it is memory-mapped read-only.
* ``.npz``: examples under key ``x`` or ``X``; optional integer labels under ``y`` or ``labels``
  (a single unnamed array is taken as ``x``); covariates under the keys named by ``data.condition_columns``
  (e.g. ``c``: (n,) or (n, k), stacked in the order named). ``.npz`` cannot be memory-mapped.
* CSV: first row is a header; every other column is a numeric feature; ``data.label_column`` names an
  optional label column (integers are kept, other values are mapped to 0..K-1 in sorted order);
  ``data.condition_columns`` names numeric covariate columns, removed from the features (RawData.c).
* Image folder: PNG/JPEG files, either all directly in the folder (no labels) or in class sub-folders
  (label = index of the sub-folder name in sorted order). Grey images are stored (n, H, W), colour
  images channels-first (n, 3, H, W); an RGB file with R = G = B is grey; any true colour image makes
  the whole set RGB unless ``data.grayscale`` (a note names them). ``data.image_size`` = (height, width)
  resizes every image (bilinear).
"""

from __future__ import annotations

import csv
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from vaekit.data.fingerprint import fingerprint
from vaekit.data.raw import RawData
from vaekit.errors import VaekitError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MISSING = ("", "na", "nan", "null", "none", "?")


def _labels(y: np.ndarray, n: int, where: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise VaekitError(f"{where}: labels have shape {y.shape} but there are {n} examples; "
                          f"save one integer label per example (shape ({n},))")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or not (y == np.round(y)).all():
            raise VaekitError(f"{where}: labels must be whole numbers; save integer class labels")
    elif y.dtype.kind not in "iub":
        raise VaekitError(f"{where}: labels have dtype {y.dtype}; save integer class labels")
    y = y.astype(np.int64)
    if n and y.min() < 0:
        raise VaekitError(f"{where}: labels must be >= 0, found {int(y.min())}; save labels 0..K-1")
    return y


def _covariates(arrays: dict[str, np.ndarray], keys: tuple[str, ...], n: int, path: Path) -> np.ndarray:
    """The .npz arrays ``keys`` as float64 (n, k): each (n,) or (n, j), finite, stacked in order."""
    cols = []
    for key in keys:
        if key not in arrays:
            raise VaekitError(f"{path}: no covariate array '{key}' among keys {sorted(arrays)}; save it as "
                              f"numpy.savez(path, x=..., {key}=...) or fix --data.condition_columns")
        a = np.asarray(arrays[key])
        if a.dtype.kind not in "biuf" or a.ndim not in (1, 2) or len(a) != n:
            raise VaekitError(f"{path}: covariate array '{key}' has shape {a.shape} and dtype {a.dtype}; save "
                              f"numbers of shape ({n},) or ({n}, k), one row per example")
        a = a.reshape(n, -1).astype(np.float64)
        bad = np.argwhere(~np.isfinite(a))
        if len(bad):
            raise VaekitError(f"{path}: missing or non-finite covariate in '{key}' at row {int(bad[0][0])} "
                              f"({len(bad)} in all); fill or drop those examples")
        cols.append(a)
    return np.concatenate(cols, axis=1)


def load_array(path: Path, mmap: bool, condition_columns: tuple[str, ...] = ()) -> RawData:
    """Read a ``.npy`` (memory-mapped if ``mmap``) or ``.npz`` file (covariates: the ``.npz`` arrays named
    by ``condition_columns``)."""
    info: dict[str, Any] = {"name": path.name, "path": str(path)}
    if path.suffix == ".npy":
        try:
            x = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise VaekitError(f"{path}: cannot read the .npy file ({err}); save it with numpy.save") from None
        if condition_columns:
            raise VaekitError(f"{path}: a .npy file holds one array, so no covariates; save x and the covariates "
                              "with numpy.savez(path, x=..., c=...) or drop --data.condition_columns")
        return channels_first(RawData(x, None, info=info), path)
    if mmap:
        raise VaekitError(f"{path}: data.mmap needs an uncompressed .npy file; save x with numpy.save "
                          "or set --data.mmap false")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise VaekitError(f"{path}: cannot read the .npz file ({err}); save it with numpy.savez") from None
    xkey = next((k for k in ("x", "X") if k in arrays), None)
    if xkey is None and len(arrays) == 1 and not condition_columns:
        xkey = next(iter(arrays))
    if xkey is None:
        raise VaekitError(f"{path}: no 'x' or 'X' array among keys {sorted(arrays)}; "
                          "save the examples as numpy.savez(path, x=..., y=...)")
    x = arrays[xkey]
    ykey = next((k for k in ("y", "labels") if k in arrays), None)
    y = _labels(arrays[ykey], len(x), f"{path} key '{ykey}'") if ykey else None
    c = _covariates(arrays, condition_columns, len(x), path) if condition_columns else None
    info = {**info, "x_key": xkey, "y_key": ykey}
    if condition_columns:
        info["condition_columns"] = list(condition_columns)
    return channels_first(RawData(x, y, info=info, c=c), path)


def channels_first(raw: RawData, path: Path) -> RawData:
    """Channels-last image arrays (n, H, W, C) with C in {1, 3, 4} and H, W >= 4 become channels-first
    (n, C, H, W) (C = 1 -> (n, H, W)); a note in ``info["notes"]`` says so. A memory-mapped array is
    transposed as a view (batches then read strided rows)."""
    x = raw.x
    if x.ndim == 4 and x.shape[-1] in (1, 3, 4) and min(x.shape[1:3]) >= 4 and x.shape[1] not in (1, 3, 4):
        shape = tuple(x.shape[1:])
        x = x[..., 0] if x.shape[-1] == 1 else x.transpose(0, 3, 1, 2)
        raw.x = x if isinstance(x, np.memmap) else np.ascontiguousarray(x)
        raw.info.setdefault("notes", []).append(
            f"{path}: rows of shape {shape} look like channels-last images (height, width, channels); read "
            f"as channels-first {tuple(raw.x.shape[1:])}")
        raw.info["channels_last"] = True
    return raw


def load_csv(path: Path, label_column: str = "", condition_columns: tuple[str, ...] = ()) -> RawData:
    """Read a CSV with a header: numeric features (n, d) float32, an optional label column and optional
    covariate columns ``condition_columns`` (RawData.c, (n, k) float64, removed from the features).

    Row numbers in errors are 1-based file lines (the header is line 1); columns are 1-based.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise VaekitError(f"{path}: cannot read the CSV file ({err}); save it as UTF-8 CSV") from None
    if not rows:
        raise VaekitError(f"{path}: the CSV file is empty; it needs a header row and data rows")
    header = [h.strip() for h in rows[0]]
    if label_column and label_column not in header:
        raise VaekitError(f"{path}: label column '{label_column}' not in the header ({', '.join(header)}); "
                          "fix --data.label_column")
    li = header.index(label_column) if label_column else -1
    missing_cols = [c for c in condition_columns if c not in header]
    if missing_cols:
        raise VaekitError(f"{path}: covariate column '{missing_cols[0]}' not in the header ({', '.join(header)}); "
                          "fix --data.condition_columns")
    ci = [header.index(c) for c in condition_columns]
    feats = [j for j in range(len(header)) if j != li and j not in ci]
    if not feats:
        raise VaekitError(f"{path}: no feature columns besides the label and covariates; add numeric columns")
    data = np.empty((len(rows) - 1, len(feats)), dtype=np.float64)
    cov = np.empty((len(rows) - 1, len(ci)), dtype=np.float64)
    raw_labels: list[str] = []
    n = 0
    for line, row in enumerate(rows[1:], start=2):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # blank line
        if len(row) != len(header):
            raise VaekitError(f"{path}: row {line} has {len(row)} fields but the header has {len(header)}; "
                              "fix the ragged row")
        for k, j in enumerate(feats):
            cell = row[j].strip()
            if cell.lower() in MISSING:
                raise VaekitError(f"{path}: missing value at row {line}, column {j + 1} ('{header[j]}'); "
                                  "fill or drop the missing values, or train a table with holes with "
                                  "--model.likelihood mixed")
            try:
                v = float(cell)
            except ValueError:
                raise VaekitError(f"{path}: non-numeric value '{cell}' at row {line}, column {j + 1} "
                                  f"('{header[j]}'); remove the column, set it as --data.label_column, or train a "
                                  "mixed-type table with --model.likelihood mixed"
                                  ) from None
            if not math.isfinite(v):
                raise VaekitError(f"{path}: non-finite value '{cell}' at row {line}, column {j + 1} "
                                  f"('{header[j]}'); replace it with a finite number")
            data[n, k] = v
        for k, j in enumerate(ci):
            cell = row[j].strip()
            try:
                v = float(cell)
            except ValueError:
                v = math.nan
            if not math.isfinite(v):
                what = "missing" if cell.lower() in MISSING else f"non-numeric or non-finite value '{cell}' for a"
                raise VaekitError(f"{path}: {what} covariate at row {line}, column {j + 1} ('{header[j]}'); "
                                  "fill or drop the rows with missing covariates")
            cov[n, k] = v
        if li >= 0:
            if not row[li].strip():
                raise VaekitError(f"{path}: missing label at row {line}, column {li + 1} ('{label_column}'); "
                                  "give every row a label")
            raw_labels.append(row[li].strip())
        n += 1
    info: dict[str, Any] = {"name": path.name, "path": str(path), "columns": [header[j] for j in feats]}
    y = None
    if li >= 0:
        try:
            y = _labels(np.array([int(v) for v in raw_labels], dtype=np.int64), n, f"{path}")
        except ValueError:
            classes = sorted(set(raw_labels))
            y = np.array([classes.index(v) for v in raw_labels], dtype=np.int64)
            info["classes"] = classes
        info["label_column"] = label_column
    c = None
    if ci:
        c = cov[:n]
        info["condition_columns"] = list(condition_columns)
    return RawData(data[:n].astype(np.float32), y, info=info, c=c)


def _open_image(p: Path, grayscale: bool, size: tuple[int, ...]) -> np.ndarray:
    """uint8 (H, W) for a grey image (or any image when ``grayscale``), (3, H, W) for colour. An RGB
    image whose three channels are equal everywhere is grey."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(p) as im:
            im.load()
            grey = im.mode in ("1", "L", "LA", "I", "I;16", "F") or grayscale
            out = im.convert("L" if grey else "RGB")
            if size:
                out = out.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            a = np.asarray(out, dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as err:
        raise VaekitError(f"{p}: cannot read the image ({err}); remove or replace the file") from None
    if a.ndim == 3 and (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all():
        return np.ascontiguousarray(a[..., 0])  # stored as RGB, but R = G = B: a grey image
    return a if a.ndim == 2 else a.transpose(2, 0, 1)


def load_images(folder: Path, image_size: tuple[int, ...] = (), grayscale: bool = False) -> RawData:
    """Read a folder of PNG/JPEG images into uint8 (n, H, W) (grey) or (n, 3, H, W) (colour)."""
    def images_in(d: Path) -> list[Path]:
        return sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)

    top = images_in(folder)
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and images_in(d))
    if top and classes:
        raise VaekitError(f"{folder}: has images both at the top level and in class sub-folders "
                          f"({', '.join(classes)}); move the top-level images into a class folder")
    paths = top or [p for c in classes for p in images_in(folder / c)]
    if not paths:
        raise VaekitError(f"{folder}: no .png/.jpg/.jpeg images found (directly or in class sub-folders); "
                          "point --data.path at a folder of images")
    arrays = [_open_image(p, grayscale, image_size) for p in paths]
    notes: list[str] = []
    colour = [p for p, a in zip(paths, arrays, strict=True) if a.ndim == 3]
    if colour and len(colour) < len(paths):  # some colour among grey ones: make all RGB, and say so
        names = ", ".join(str(p.relative_to(folder)) for p in colour[:5]) + (" ..." if len(colour) > 5 else "")
        notes.append(f"{folder}: {len(colour)} of {len(paths)} images are in colour ({names}), so the whole "
                     "set is read as RGB (n, 3, H, W); set data.grayscale true (--data.grayscale true) to read "
                     "all as grey")
        arrays = [np.repeat(a[None], 3, axis=0) if a.ndim == 2 else a for a in arrays]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        first = arrays[0].shape
        k = next(i for i, a in enumerate(arrays) if a.shape != first)
        raise VaekitError(f"{folder}: images have different sizes "
                          f"({paths[0].name} is {first[-2]}x{first[-1]}, "
                          f"{paths[k].name} is {arrays[k].shape[-2]}x{arrays[k].shape[-1]}); "
                          "set --data.image_size H,W to resize them all")
    y = None
    info: dict[str, Any] = {"name": folder.name, "path": str(folder), "n_files": len(paths), "notes": notes}
    if classes:
        y = np.array([classes.index(p.parent.name) for p in paths], dtype=np.int64)
        info["classes"] = classes
    return RawData(np.stack(arrays), y, value_range=(0.0, 255.0), info=info)


def load_path(path_str: str, cfg_label_column: str, image_size: tuple[int, ...], grayscale: bool,
              mmap: bool, condition_columns: tuple[str, ...] = ()) -> RawData:
    """Dispatch on the kind of ``path_str``: folder of images, ``.npy``/``.npz`` or ``.csv``."""
    path = Path(path_str).expanduser().resolve()
    if not path.exists():
        raise VaekitError(f"data path '{path}' does not exist; fix --data.path")
    suffix = path.suffix.lower()
    if mmap and (path.is_dir() or suffix != ".npy"):
        raise VaekitError(f"{path}: data.mmap needs an uncompressed .npy file; save x with numpy.save "
                          "or set --data.mmap false")
    if path.is_dir():
        if cfg_label_column:
            raise VaekitError(f"data.label_column '{cfg_label_column}' applies to CSV files, but {path} is an "
                              "image folder (labels come from class sub-folders); drop --data.label_column")
        if condition_columns:
            raise VaekitError(f"data.condition_columns applies to CSV and .npz files, but {path} is an image "
                              "folder; give the images with their covariates as a .npz (x=..., c=...)")
        raw = load_images(path, image_size, grayscale)
        raw.info["fingerprint"] = fingerprint(path)
        return raw
    for key, value in (("image_size", image_size), ("grayscale", grayscale)):
        if value:
            raise VaekitError(f"data.{key} applies to folders of images only, not to {path}; drop "
                              f"--data.{key}")
    if cfg_label_column and suffix in (".npy", ".npz"):
        raise VaekitError(f"data.label_column '{cfg_label_column}' applies to CSV files, not to {path} (a "
                          f"{suffix} file: labels go under key 'y' of a .npz); drop --data.label_column")
    if suffix in (".npy", ".npz"):
        raw = load_array(path, mmap, condition_columns)
    elif suffix in (".csv", ".txt"):
        raw = load_csv(path, cfg_label_column, condition_columns)
    else:
        raise VaekitError(f"data path '{path}': unsupported file type '{suffix}'; "
                          "use .npy, .npz, .csv or a folder of images")
    raw.info["bytes"] = path.stat().st_size
    raw.info["fingerprint"] = fingerprint(path)
    return raw
