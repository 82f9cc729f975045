"""User data files: NumPy ``.npy``/``.npz``, CSV with a header, and folders of images.

* ``.npy``: one array (n, *event_shape), no labels. With ``data.mmap`` it is memory-mapped read-only.
* ``.npz``: examples under key ``x`` or ``X``; optional integer labels under ``y`` or ``labels``
  (a single unnamed array is taken as ``x``). ``.npz`` cannot be memory-mapped.
* CSV: first row is a header; every other column is a numeric feature; ``data.label_column`` names an
  optional label column (integers are kept, other values are mapped to 0..K-1 in sorted order).
* Image folder: PNG/JPEG files, either all directly in the folder (no labels) or in class sub-folders
  (label = index of the sub-folder name in sorted order). Grey images are stored (n, H, W), colour
  images channels-first (n, 3, H, W); any colour image makes the whole set RGB unless
  ``data.grayscale``. ``data.image_size`` = (height, width) resizes every image (bilinear).
"""

from __future__ import annotations

import csv
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

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


def load_array(path: Path, mmap: bool) -> RawData:
    """Read a ``.npy`` (memory-mapped if ``mmap``) or ``.npz`` file."""
    info: dict[str, Any] = {"name": path.name, "path": str(path)}
    if path.suffix == ".npy":
        try:
            x = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise VaekitError(f"{path}: cannot read the .npy file ({err}); save it with numpy.save") from None
        return RawData(x, None, info=info)
    if mmap:
        raise VaekitError(f"{path}: data.mmap needs an uncompressed .npy file; save x with numpy.save "
                          "or set --data.mmap false")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise VaekitError(f"{path}: cannot read the .npz file ({err}); save it with numpy.savez") from None
    xkey = next((k for k in ("x", "X") if k in arrays), None)
    if xkey is None and len(arrays) == 1:
        xkey = next(iter(arrays))
    if xkey is None:
        raise VaekitError(f"{path}: no 'x' or 'X' array among keys {sorted(arrays)}; "
                          "save the examples as numpy.savez(path, x=..., y=...)")
    x = arrays[xkey]
    ykey = next((k for k in ("y", "labels") if k in arrays), None)
    y = _labels(arrays[ykey], len(x), f"{path} key '{ykey}'") if ykey else None
    return RawData(x, y, info={**info, "x_key": xkey, "y_key": ykey})


def load_csv(path: Path, label_column: str = "") -> RawData:
    """Read a CSV with a header: numeric features (n, d) float32 and an optional label column.

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
    feats = [j for j in range(len(header)) if j != li]
    if not feats:
        raise VaekitError(f"{path}: no feature columns besides the label; add numeric columns")
    data = np.empty((len(rows) - 1, len(feats)), dtype=np.float64)
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
                                  "fill or drop the missing values")
            try:
                v = float(cell)
            except ValueError:
                raise VaekitError(f"{path}: non-numeric value '{cell}' at row {line}, column {j + 1} "
                                  f"('{header[j]}'); remove the column or set it as --data.label_column"
                                  ) from None
            if not math.isfinite(v):
                raise VaekitError(f"{path}: non-finite value '{cell}' at row {line}, column {j + 1} "
                                  f"('{header[j]}'); replace it with a finite number")
            data[n, k] = v
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
    return RawData(data[:n].astype(np.float32), y, info=info)


def _open_image(p: Path, grayscale: bool, size: tuple[int, ...]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(p) as im:
            im.load()
            grey = im.mode in ("1", "L", "LA", "I", "I;16", "F") or grayscale
            im = im.convert("L" if grey else "RGB")
            if size:
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            a = np.asarray(im, dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as err:
        raise VaekitError(f"{p}: cannot read the image ({err}); remove or replace the file") from None
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
    if any(a.ndim == 3 for a in arrays):  # some colour: make all RGB
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
    info: dict[str, Any] = {"name": folder.name, "path": str(folder), "n_files": len(paths)}
    if classes:
        y = np.array([classes.index(p.parent.name) for p in paths], dtype=np.int64)
        info["classes"] = classes
    return RawData(np.stack(arrays), y, value_range=(0.0, 255.0), info=info)


def load_path(path_str: str, cfg_label_column: str, image_size: tuple[int, ...], grayscale: bool,
              mmap: bool) -> RawData:
    """Dispatch on the kind of ``path_str``: folder of images, ``.npy``/``.npz`` or ``.csv``."""
    path = Path(path_str).expanduser().resolve()
    if not path.exists():
        raise VaekitError(f"data path '{path}' does not exist; fix --data.path")
    suffix = path.suffix.lower()
    if mmap and (path.is_dir() or suffix != ".npy"):
        raise VaekitError(f"{path}: data.mmap needs an uncompressed .npy file; save x with numpy.save "
                          "or set --data.mmap false")
    if path.is_dir():
        return load_images(path, image_size, grayscale)
    if suffix in (".npy", ".npz"):
        raw = load_array(path, mmap)
    elif suffix in (".csv", ".txt"):
        raw = load_csv(path, cfg_label_column)
    else:
        raise VaekitError(f"data path '{path}': unsupported file type '{suffix}'; "
                          "use .npy, .npz, .csv or a folder of images")
    raw.info["bytes"] = path.stat().st_size
    return raw
