"""Explicit split files: ``data.path`` (training), ``data.val_path`` and ``data.test_path``.

Each file is read with the same loader as ``data.path`` (:func:`vaekit.data.files.load_path`) and used
whole. The files must be of one kind (all ``.npy``, all ``.npz``, all CSV or all image folders), hold rows
of one shape and dtype, the same CSV columns, labels in all of them or in none, and the covariates named by
``data.condition_columns`` (each file's own, stacked like the rows). They are stacked
into one :class:`RawData` whose ``fixed`` rows say which rows are which file: ``pool`` = the training
file's rows (a split without a file is carved from them by its fraction), ``val`` / ``test`` = the rows
of the val / test file. ``info["split_files"]`` records each file's absolute path, fingerprint and
number of rows; ``info["decide_rows"]`` = the training file's rows, from which a new run decides its
preprocessing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vaekit.data.config import DataConfig
from vaekit.data.files import load_path
from vaekit.data.raw import RawData
from vaekit.errors import VaekitError

ROLES = (("train", "path"), ("val", "val_path"), ("test", "test_path"))


def _kind(path: Path) -> str:
    if path.is_dir():
        return "image folder"
    suffix = path.suffix.lower()
    return "CSV file" if suffix in (".csv", ".txt") else f"{suffix} file"


def _file_record(raw: RawData) -> dict[str, Any]:
    return {"path": raw.info.get("path"), "fingerprint": raw.info.get("fingerprint"), "n_rows": len(raw.x)}


def load_split_files(cfg: DataConfig) -> RawData:
    """The training file of ``cfg.path`` plus ``cfg.val_path`` / ``cfg.test_path`` as one RawData
    (module doc). Raises :class:`VaekitError` naming the file and the fix when the files do not match."""
    if cfg.mmap and (cfg.val_path or cfg.test_path):
        raise VaekitError("data.mmap reads one .npy file; with data.val_path / data.test_path set "
                          "data.mmap false (--data.mmap false)")
    raws: dict[str, RawData] = {}
    for role, key in ROLES:
        value = getattr(cfg, key)
        if value:
            raws[role] = load_path(value, cfg.label_column, cfg.image_size, cfg.grayscale, cfg.mmap,
                                   cfg.condition_columns)
    train = raws["train"]
    if len(raws) == 1:
        train.info["split_files"] = {"train": _file_record(train)}
        return train
    tpath = Path(train.info["path"])
    for role, raw in raws.items():
        if role == "train":
            continue
        key = f"data.{role}_path"
        path = Path(raw.info["path"])
        if _kind(path) != _kind(tpath):
            raise VaekitError(f"{key} {path} is a {_kind(path)} but the training file {tpath} is a {_kind(tpath)}; "
                              "give split files of one kind")
        if raw.x.ndim != train.x.ndim or raw.x.shape[1:] != train.x.shape[1:]:
            raise VaekitError(f"{key} {path} has rows of shape {tuple(raw.x.shape[1:])} but the training file "
                              f"{tpath} has {tuple(train.x.shape[1:])}; save every split file with rows of one shape")
        if raw.x.dtype != train.x.dtype:
            raise VaekitError(f"{key} {path} holds {raw.x.dtype} values but the training file {tpath} holds "
                              f"{train.x.dtype}; save every split file with one dtype")
        if raw.info.get("columns") != train.info.get("columns"):
            raise VaekitError(f"{key} {path} has the columns ({', '.join(raw.info.get('columns') or [])}) but the "
                              f"training file has ({', '.join(train.info.get('columns') or [])}); give every "
                              "split file the same header")
        if (raw.y is None) != (train.y is None):
            has, lacks = (path, tpath) if train.y is None else (tpath, path)
            raise VaekitError(f"{has} has labels but {lacks} has none; give labels in every split file or in none")
    ys = _labels(raws)
    xs = np.concatenate([np.asarray(raws[r].x) for r in raws])
    start, fixed = 0, {}
    for role, raw in raws.items():
        fixed["pool" if role == "train" else role] = np.arange(start, start + len(raw.x))
        start += len(raw.x)
    info = {k: v for k, v in train.info.items()}
    info["notes"] = [n for raw in raws.values() for n in raw.info.get("notes", [])]
    info["split_files"] = {role: _file_record(raw) for role, raw in raws.items()}
    info["decide_rows"] = len(train.x)
    cs = None if train.c is None else np.concatenate([np.asarray(raws[r].c) for r in raws])
    return RawData(xs, ys, value_range=train.value_range, fixed=fixed, info=info, c=cs)


def _labels(raws: dict[str, RawData]) -> np.ndarray | None:
    """The files' labels stacked; named classes (image sub-folders, CSV string labels) are mapped to the
    training file's class indices, and a class the training file lacks is an error."""
    train = raws["train"]
    if train.y is None:
        return None
    classes = train.info.get("classes")
    out = []
    for role, raw in raws.items():
        y = np.asarray(raw.y, dtype=np.int64)
        own = raw.info.get("classes")
        if classes is not None and own is not None and own != classes:
            missing = sorted(set(own) - set(classes))
            if missing:
                raise VaekitError(f"{raw.info['path']} ({role}) has classes {', '.join(map(str, missing))} that the "
                                  f"training file lacks; give every class of the {role} file training examples")
            y = np.array([classes.index(c) for c in own], dtype=np.int64)[y]
        out.append(y)
    return np.concatenate(out)
