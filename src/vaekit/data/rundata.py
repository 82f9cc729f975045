"""A run's data, loaded again: the run's own preprocessing applied, its files checked.

Every path that reloads a run's data (eval, report, sample/reconstruct/encode, compare) goes through
:func:`load_run_data`, so they all see the same data prepared the same way.

Overrides (``vaekit eval RUN --data.KEY VALUE``) may change only *which* data are read
(:data:`WHICH_KEYS`); keys that would change how the data are prepared (:data:`PREP_KEYS`) are refused,
because the trained model scores only data prepared as in training.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from vaekit.data.bundle import DataBundle, Split
from vaekit.data.fingerprint import check_fingerprint
from vaekit.data.sparse import SparseSplit
from vaekit.errors import VaekitError
from vaekit.networks import networks_accept_flat
from vaekit.schema import DataSchema

#: data keys an evaluation may change: another file of the same kind, another split or draw.
WHICH_KEYS = ("path", "val_path", "test_path", "name", "dir", "download", "download_timeout", "verify", "split",
              "val_fraction", "test_fraction", "seed", "limit", "mmap", "binarize_seed", "label_column")
#: data keys that define the preprocessing the model was trained with.
PREP_KEYS = ("scale", "binarize", "threshold", "image_size", "grayscale", "dequantize", "condition_columns",
             "column_types", "unknown_categories")


def apply_data_overrides(config: Any, overrides: dict[str, str] | None) -> Any:
    """``config`` with dotted ``data.*`` overrides applied; preprocessing keys that differ from the
    run's value are refused with one line naming the key, the run's value and the fix."""
    from vaekit.config import apply_overrides

    overrides = {k: v for k, v in (overrides or {}).items() if k.startswith("data.")}
    if not overrides:
        return config
    given = {k.split(".", 1)[1] for k in overrides}
    cleared = {}
    new_path = "path" in given and not _same_path(overrides["data.path"], config.data.path)
    new_name = "name" in given and "path" not in given  # a named dataset asked for: the run's path does not win
    if new_path or new_name:  # other data: the run's own split files (and name or path) do not come along
        cleared = {f"data.{k}": "" for k in ("val_path", "test_path", "name" if new_path else "path")
                   if k not in given}
    if overrides.get("data.split") == "all" and "limit" not in given:
        cleared["data.limit"] = "0"  # every row means every row: the run's own data.limit does not come along
    new = apply_overrides(config, {**cleared, **overrides})
    for dotted in overrides:
        key = dotted.split(".", 1)[1]
        if key in PREP_KEYS and getattr(new.data, key) != getattr(config.data, key):
            raise VaekitError(f"data.{key} cannot be changed for a trained run: it was trained with data.{key} = "
                              f"{getattr(config.data, key)!r} and its model scores only data prepared that way; "
                              f"drop --data.{key} (evaluate other data of the same kind with --data.path FILE)")
    return new


def load_run_data(config: Any, meta: dict[str, Any], overrides: dict[str, str] | None = None,
                  ) -> tuple[Any, DataBundle]:
    """The run's data with its recorded preprocessing applied: returns (config with the data overrides,
    bundle). The run's own user file is checked against its recorded fingerprint (missing or changed:
    one-line error naming the file); a named dataset's files against the sha256 recorded at training."""
    from vaekit.data import load_data

    data_meta = meta.get("data") or {}
    prep = data_meta.get("prep")
    if prep is None:
        raise VaekitError("the checkpoint records no preprocessing (meta.json 'data.prep'); it is corrupted or "
                          "was not written by vaekit, use another checkpoint")
    run_cfg = config.data
    config = apply_data_overrides(config, overrides)
    cfg = config.data
    recorded = data_meta.get("split_files") or {}
    own = {}
    for role, key in (("train", "path"), ("val", "val_path"), ("test", "test_path")):
        value = getattr(cfg, key)
        own[role] = bool(value) and _same_path(value, getattr(run_cfg, key))
        if own[role]:
            fp = (recorded.get(role) or {}).get("fingerprint") or (data_meta.get("fingerprint") if role == "train"
                                                                   else None)
            check_fingerprint(value, fp)
        elif value and not Path(value).expanduser().exists():
            raise VaekitError(f"data {key} '{value}' does not exist; fix data.{key} (--data.{key})")
    own_file = own["train"] and all(own[r] or not getattr(cfg, k) for r, k in (("val", "val_path"),
                                                                               ("test", "test_path")))
    config = config.replace(data=_absolute_paths(cfg))
    cfg = config.data
    data = load_data(cfg, prep["likelihood"], prep=prep)
    if not cfg.path and cfg.name == run_cfg.name and not run_cfg.path:
        _check_named_files(data.info.get("files") or {}, data_meta.get("files") or {})
    cols, run_cols = data.info.get("columns"), data_meta.get("columns")
    if cols is not None and run_cols is not None and cols != run_cols:
        raise VaekitError(f"the data's feature columns ({', '.join(cols)}) differ from the run's "
                          f"({', '.join(run_cols)}); evaluate a file with the same columns (and the same "
                          "data.label_column)")
    if not own_file and not (cfg.name == run_cfg.name and not cfg.path and not run_cfg.path):
        _warn_if_out_of_range(data, prep)
    if "event_shape" in meta:
        data = _fit_shape(data, tuple(meta["event_shape"]), networks_accept_flat(config.model))
    _check_labels(data, DataSchema.from_meta(meta))
    return config, data


def _check_labels(data: DataBundle, schema: DataSchema) -> None:
    """A label-conditional run's model one-hots labels 0..n_classes-1: data with other labels (another
    file given to eval) are a one-line error here, checked once, not in every batch the model sees."""
    if schema.condition != "label":
        return
    for name in ("train", "val", "test"):
        y = getattr(data, name).y
        if y is not None and len(y) and (int(y.min()) < 0 or int(y.max()) >= schema.n_classes):
            raise VaekitError(f"the {name} rows have labels {int(y.min())}..{int(y.max())}, but the run's model is "
                              f"conditioned on classes 0..{schema.n_classes - 1}; give data with the run's classes")


def _absolute_paths(cfg: Any) -> Any:
    """``cfg`` with its user paths absolute (what eval.json and the report name)."""
    changes = {k: str(Path(getattr(cfg, k)).expanduser().resolve()) for k in ("path", "val_path", "test_path", "dir")
               if getattr(cfg, k)}
    return dataclasses.replace(cfg, **changes)


def _fit_shape(data: DataBundle, shape: tuple[int, ...], accepts_flat: bool) -> DataBundle:
    """The bundle with rows of the model's ``shape``: equal shapes pass; other shapes holding as many values
    are reshaped when the model's networks read flat vectors, with a note (:func:`vaekit.inputs.conform_shape`,
    the rule ``VAE.elbo`` and friends apply too); anything else is an error."""
    from vaekit.inputs import conform_shape

    note = conform_shape(data.event_shape, shape, accepts_flat, "the data",
                         "point --data.* at data of the shape the run was trained on")
    if note is None:
        return data

    def fit(split: Split | SparseSplit) -> Split | SparseSplit:
        if isinstance(split, SparseSplit):  # interaction rows: (n_items,) always, never reshaped
            return split
        return dataclasses.replace(split, x=split.x.reshape(split.x.shape[0], *shape))

    loc = None if data.loc is None else data.loc.reshape(shape)
    scale = None if data.scale is None else data.scale.reshape(shape)
    info = {**data.info, "event_shape": list(shape), "notes": [*data.info.get("notes", []), note]}
    return dataclasses.replace(data, train=fit(data.train), val=fit(data.val), test=fit(data.test), loc=loc,
                               scale=scale, info=info)


def _warn_if_out_of_range(data: DataBundle, prep: dict[str, Any]) -> None:
    """Other data evaluated with a Gaussian run: a recorded warning when their values leave the run's
    input range (another file 'of the same kind' in other units, e.g. 0..255 vs 0..16), by the rule of
    :func:`vaekit.inputs.range_warning` that a loaded model applies to its inputs."""
    import torch

    from vaekit.inputs import InputSpec, range_warning

    rng = prep.get("input_range")
    split = data.test if len(data.test) else data.val
    if prep.get("likelihood") == "bernoulli" or not rng or not isinstance(split.x, torch.Tensor) or not len(split):
        return
    spec = InputSpec(float(rng[0]), float(rng[1]), how="file units")
    message = range_warning(spec, float(split.x.min()), float(split.x.max()), "these data")
    if message is not None:
        data.info.setdefault("warnings", []).append(message)


def _same_path(a: str, b: str) -> bool:
    return bool(b) and Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def _check_named_files(now: dict[str, Any], recorded: dict[str, Any]) -> None:
    for key, rec in recorded.items():
        cur = now.get(key)
        if isinstance(rec, dict) and isinstance(cur, dict) and rec.get("sha256") and \
                cur.get("sha256") != rec.get("sha256"):
            raise VaekitError(f"{cur.get('path')} differs from the file the run was trained on (sha256 "
                              f"{str(cur.get('sha256'))[:12]}... vs {str(rec['sha256'])[:12]}...); restore it "
                              "or point data.dir at the original files")


def resolved_data_config(cfg: Any, info: dict[str, Any]) -> Any:
    """``cfg`` with what loading decided: absolute ``path``/``val_path``/``test_path``/``dir``, ``name`` = ''
    beside a ``path`` (no default dataset name that was not used) and the resolved ``scale``,
    ``binarize``, ``dequantize`` and, for interaction data, ``format`` (so the saved config reproduces the
    run exactly)."""
    prep = info.get("prep") or {}
    changes: dict[str, Any] = {"name": ""} if cfg.path else {}  # the file was used, not a named dataset
    for key in ("scale", "binarize", "dequantize", "format"):  # format: interaction data only
        if prep.get(key):
            changes[key] = prep[key]
    return dataclasses.replace(_absolute_paths(cfg), **changes)


def display_range(meta: dict[str, Any]) -> tuple[float, float]:
    """The file-unit values shown as black and white in image grids of a run (``meta`` = a checkpoint's
    meta.json, or ``{"data": bundle.info}``): [0, 1] for Bernoulli models, else the data's known range
    (e.g. 0..255, 0..16), else the training split's input range."""
    prep = (meta.get("data") or {}).get("prep") or {}
    if prep.get("likelihood", "bernoulli") == "bernoulli":
        return 0.0, 1.0
    rng = prep.get("value_range") or prep.get("input_range")
    if not rng or not rng[1] > rng[0]:
        return 0.0, 1.0
    return float(rng[0]), float(rng[1])
