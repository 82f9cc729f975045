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

from vaekit.data.bundle import DataBundle
from vaekit.data.fingerprint import check_fingerprint
from vaekit.errors import VaekitError

#: data keys an evaluation may change: another file of the same kind, another split or draw.
WHICH_KEYS = ("path", "name", "dir", "download", "download_timeout", "verify", "split", "val_fraction",
              "test_fraction", "seed", "limit", "mmap", "binarize_seed", "label_column")
#: data keys that define the preprocessing the model was trained with.
PREP_KEYS = ("scale", "binarize", "threshold", "image_size", "grayscale", "dequantize")


def apply_data_overrides(config: Any, overrides: dict[str, str] | None) -> Any:
    """``config`` with dotted ``data.*`` overrides applied; preprocessing keys that differ from the
    run's value are refused with one line naming the key, the run's value and the fix."""
    from vaekit.config import apply_overrides

    overrides = {k: v for k, v in (overrides or {}).items() if k.startswith("data.")}
    if not overrides:
        return config
    new = apply_overrides(config, overrides)
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
    own_file = bool(cfg.path) and _same_path(cfg.path, run_cfg.path)
    if own_file:
        check_fingerprint(cfg.path, data_meta.get("fingerprint"))
    elif cfg.path and not Path(cfg.path).expanduser().exists():
        raise VaekitError(f"data path '{cfg.path}' does not exist; fix --data.path")
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
    shape = list(data.event_shape)
    if "event_shape" in meta and shape != list(meta["event_shape"]):
        raise VaekitError(f"the data have shape {tuple(shape)} but the model expects {tuple(meta['event_shape'])}; "
                          "point --data.* at data of the shape the run was trained on")
    return config, data


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
    """``cfg`` with what loading decided: absolute ``path``/``dir`` and the resolved ``scale``,
    ``binarize`` and ``dequantize`` (so the saved config reproduces the run exactly)."""
    prep = info.get("prep") or {}
    changes: dict[str, Any] = {}
    if cfg.path:
        changes["path"] = str(Path(cfg.path).expanduser().resolve())
    if cfg.dir:
        changes["dir"] = str(Path(cfg.dir).expanduser().resolve())
    for key in ("scale", "binarize", "dequantize"):
        if prep.get(key):
            changes[key] = prep[key]
    return dataclasses.replace(cfg, **changes)


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
