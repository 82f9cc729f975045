"""A table as a :class:`~vaekit.data.bundle.DataBundle` the trainer, evaluation and report can use:
in memory (:func:`table_bundle`, for the Python API and the scikit-learn estimator) or from ``data.path``
(:func:`load_table_data`, for ``vaekit train --model.likelihood mixed``). The splits carry the mask;
``bundle.info['prep']['table']`` is the schema, saved with the run's checkpoints so a reloaded run encodes
new rows exactly as it was trained."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.batch import Batch
from vaekit.data.bundle import DataBundle, Split
from vaekit.errors import VaekitError
from vaekit.tabular.encode import cells_of, encode_table
from vaekit.tabular.schema import TableSchema, infer_schema
from vaekit.tabular.table import Cells, read_table

LIKELIHOOD = "mixed"


def prep_of(schema: TableSchema) -> dict[str, Any]:
    """What a run records about its preparation of a table (``meta['data']['prep']``)."""
    return {"likelihood": LIKELIHOOD, "scale": "standardize", "scale_detail": "real and count columns: mean/std of "
            "their observed cells; binary and categorical columns: as they are", "affine": [1.0, 0.0],
            "model_affine": None, "binarize": "none", "threshold": 0.5, "dequantize": "none", "value_range": None,
            "input_range": None, "input_binary": False, "table": schema.to_dict()}


def schema_of_run(meta: Mapping[str, Any]) -> TableSchema:
    """The table schema recorded in a run's ``meta.json`` (one-line error for a run that is not a table)."""
    prep = (meta.get("data") or {}).get("prep") or {}
    if "table" not in prep:
        raise VaekitError("this run was not trained on a table (model.likelihood mixed); impute and table "
                          "encoding need a run trained with --model.likelihood mixed")
    return TableSchema.from_dict(prep["table"])


def _split(batch: Batch, rows: np.ndarray) -> Split:
    idx = torch.from_numpy(np.asarray(rows, dtype=np.int64))
    assert batch.mask is not None
    return Split(batch.x.index_select(0, idx).contiguous(), mask=batch.mask.index_select(0, idx).contiguous())


def bundle_of(batch: Batch, schema: TableSchema, rows: Mapping[str, np.ndarray], info: dict[str, Any]) -> DataBundle:
    """Splits of an encoded table by row indices, with the schema's data transform and ``info``."""
    loc, scale = schema.loc_scale()
    info = {**info, "likelihood": LIKELIHOOD, "prep": prep_of(schema), "columns": list(schema.names),
            "event_shape": [schema.width], **{f"n_{k}": len(v) for k, v in rows.items()}}
    info.setdefault("notes", [])
    return DataBundle(_split(batch, rows["train"]), _split(batch, rows["val"]), _split(batch, rows["test"]),
                      binary=False, loc=loc, scale=scale, info=info)


def table_bundle(table: Any, schema: TableSchema, train: Sequence[int] | None = None,
                 val: Sequence[int] | None = None, test: Sequence[int] | None = None) -> DataBundle:
    """The rows of ``table`` (DataFrame, array, rows or file) encoded by ``schema`` as a DataBundle: ``val`` /
    ``test`` row indices (default none), ``train`` the given rows or every row not in val / test."""
    cells = cells_of(schema, table)
    n = cells.n_rows
    v = np.asarray(val if val is not None else [], dtype=np.int64)
    t = np.asarray(test if test is not None else [], dtype=np.int64)
    if train is None:
        keep = np.ones(n, dtype=bool)
        keep[v] = False
        keep[t] = False
        tr = np.flatnonzero(keep)
    else:
        tr = np.asarray(train, dtype=np.int64)
    for name, r in (("train", tr), ("val", v), ("test", t)):
        if len(r) and (r.min() < 0 or r.max() >= n):
            raise VaekitError(f"{name} row indices must be in 0..{n - 1}; got {int(r.min())}..{int(r.max())}")
    return bundle_of(encode_table(schema, cells), schema, {"train": tr, "val": v, "test": t},
                     {"notes": schema.describe(), "source": "in memory"})


def load_table_data(cfg: Any, prep: Mapping[str, Any] | None = None) -> DataBundle:
    """``data.path`` read as a table (CSV/TSV with a header). A new run (``prep`` None) infers the schema
    from the file with ``data.column_types`` / ``data.unknown_categories``; a trained run's ``prep`` gives
    its recorded schema. Splits: ``data.split`` random (``val_fraction`` / ``test_fraction``, ``seed``) or
    all; ``data.val_path`` / ``data.test_path`` are whole split files."""
    from vaekit.data.fingerprint import fingerprint
    from vaekit.data.preprocess import split_rows
    from vaekit.data.raw import RawData

    if not cfg.path:
        raise VaekitError("model.likelihood mixed trains on a table: give it with --data.path table.csv")
    for key in ("label_column", "condition_columns", "image_size", "mmap"):
        if getattr(cfg, key):
            raise VaekitError(f"data.{key} does not apply to a mixed-type table (model.likelihood mixed); drop "
                              f"--data.{key}")
    for key, ok in (("scale", ("auto", "standardize")), ("binarize", ("auto", "none")),
                    ("dequantize", ("auto", "none"))):
        if prep is None and getattr(cfg, key) not in ok:
            raise VaekitError(f"data.{key} {getattr(cfg, key)} does not apply to a mixed-type table (real and count "
                              f"columns are standardised, nothing is binarised or dequantised); drop --data.{key}")
    path = Path(cfg.path).expanduser().resolve()
    if path.is_dir() or path.suffix.lower() not in (".csv", ".tsv", ".tab", ".txt"):
        raise VaekitError(f"{path}: a mixed-type table is a .csv or .tsv file with a header; convert it, or use "
                          "another model.likelihood for arrays and images")
    paths = {"train": path}
    for role, key in (("val", "val_path"), ("test", "test_path")):
        if getattr(cfg, key):
            paths[role] = Path(getattr(cfg, key)).expanduser().resolve()
    parts = {role: read_table(p) for role, p in paths.items()}
    if prep is None:
        schema = infer_schema(parts["train"], cfg.column_types, unknown=cfg.unknown_categories)
        notes = [f"{path.name}: {line}" for line in schema.describe()]
    else:
        schema, notes = TableSchema.from_dict(prep["table"]), []
    cells = [cells_of(schema, c) for c in parts.values()]
    joined = Cells(schema.names, tuple([v for c in cells for v in c.columns[j]] for j in range(schema.n_columns)),
                   "file")
    sizes = [c.n_rows for c in cells]
    n = sizes[0]
    fixed: dict[str, np.ndarray] = {}
    at = n
    for role, size in zip(list(parts)[1:], sizes[1:], strict=True):
        fixed[role] = np.arange(at, at + size)
        at += size
    if fixed:
        fixed["pool"] = np.arange(n)
    # each split file as the array loader records it (vaekit.data.splitfiles): its own path, fingerprint and rows,
    # so the split's description names the right file and an evaluation notices a changed one
    files = {role: {"path": str(p), "fingerprint": fingerprint(p), "n_rows": size}
             for (role, p), size in zip(paths.items(), sizes, strict=True)}
    raw = RawData(np.empty((at, 0), dtype=np.float32), None, fixed=fixed or None,
                  info={"split_files": files} if fixed else {})
    rows, how = split_rows(raw, cfg)
    info = {"name": path.name, "path": str(path), "fingerprint": files["train"]["fingerprint"], "split": cfg.split,
            "split_detail": how, "seed": cfg.seed, "notes": notes, "warnings": [], "split_files": files}
    return bundle_of(encode_table(schema, joined), schema, rows, info)
