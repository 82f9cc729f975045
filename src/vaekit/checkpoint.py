"""Checkpoints that rebuild their own model and can never execute code.

A checkpoint is a directory::

    model.safetensors     weights and buffers (safetensors: a JSON header + raw tensors)
    meta.json             format version, the resolved config, data event shape and provenance
    trainer.safetensors   optimiser tensors and RNG states              (training checkpoints only)
    trainer.json          optimiser hyper-parameters, step, epoch, ...  (training checkpoints only)

It is written under a temporary name and renamed into place, so a reader sees a whole checkpoint or
none. Nothing on the load path unpickles: a ``torch.save`` archive or a raw pickle is refused before
any byte of it is interpreted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import tomllib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vaekit.config import Config, config_from_dict, config_to_dict, load_config
from vaekit.errors import VaekitError, VaekitWarning
from vaekit.fileio import error_message, file_mode, fsync_dir, is_write_error

# 2: preprocessing record meta["data"]["prep"]; Gaussian `unit` scaling inside the model.
# 3: the model's family, parts and data schema in meta.json (meta["family"], ["parts"], ["schema"]); the
#    likelihood's parameters under `likelihood.` (format 2's `log_sigma` is `likelihood.log_sigma`).
FORMAT_VERSION = 3
MODEL_FILE, META_FILE, TRAINER_TENSORS, TRAINER_JSON = (
    "model.safetensors", "meta.json", "trainer.safetensors", "trainer.json")
STEP_NAME = re.compile(r"step-\d{9}")
# Test hook: seconds to sleep after a checkpoint is fully written under its temporary name and before
# it is renamed into place, so a test can kill the process in the middle of a checkpoint write.
PAUSE_ENV = "VAEKIT_TEST_PAUSE_IN_CHECKPOINT"


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def refuse_non_finite(weights: dict[str, torch.Tensor]) -> None:
    """A one-line VaekitError when a floating-point tensor of ``weights`` holds NaN or inf: vaekit never
    keeps a non-finite model as a checkpoint (on disk or in memory)."""
    for name, tensor in weights.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise VaekitError(f"refusing to save a non-finite model (tensor '{name}'); "
                              "lower --train.lr or check the data for NaN/inf")


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module | Mapping[str, torch.Tensor],
    config: Config,
    meta: dict[str, Any],
    trainer_tensors: dict[str, torch.Tensor] | None = None,
    trainer_state: dict[str, Any] | None = None,
    fix: str | None = None,
) -> Path:
    """Write a checkpoint directory at ``path`` atomically. ``path`` must not exist yet. A failed write
    (disk full, read-only folder) removes the temporary and raises a one-line :class:`VaekitError`
    naming ``path``; ``fix`` replaces the fix it suggests. ``model`` is the module or its state dict."""
    path = Path(path)
    if path.exists():
        raise VaekitError(f"checkpoint {path} already exists; vaekit never overwrites a checkpoint")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        weights = model.state_dict() if isinstance(model, torch.nn.Module) else model
        state = {k: v.detach().contiguous().cpu() for k, v in weights.items()}
        refuse_non_finite(state)
        save_file(state, tmp / MODEL_FILE)
        full_meta = {"format_version": FORMAT_VERSION, "config": config_to_dict(config), **meta}
        (tmp / META_FILE).write_text(json.dumps(full_meta, indent=2))
        if trainer_tensors is not None:
            save_file({k: v.contiguous().cpu() for k, v in trainer_tensors.items()}, tmp / TRAINER_TENSORS)
            (tmp / TRAINER_JSON).write_text(json.dumps(trainer_state or {}, indent=2))
        mode = file_mode()  # safetensors writes 0600: give what an ordinary write would (the umask)
        for f in tmp.iterdir():
            _fsync_file(f)  # first: a umask like 0277 leaves no write permission to open it with
            f.chmod(mode)
        fsync_dir(tmp)
        if os.environ.get(PAUSE_ENV):
            time.sleep(float(os.environ[PAUSE_ENV]))
        os.rename(tmp, path)
        fsync_dir(path.parent)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, Exception) and is_write_error(err):  # disk full, read-only: one line naming it
            raise VaekitError(error_message(path, err, fix)) from None
        raise
    return path


def clean_temporaries(ckpts: Path) -> list[Path]:
    """Remove what a killed writer left behind in ``ckpts``: half-written ``.step-*.tmp-*`` folders and
    ``.last.*.tmp`` / ``.best.*.tmp`` pointer files. Readers never look at them; returns what was removed."""
    removed = []
    if ckpts.is_dir():
        for p in ckpts.glob(".*.tmp*"):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a checkpoint file (JSON cannot execute code); errors are one-line VaekitErrors."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise VaekitError(f"{path} is missing; the checkpoint is incomplete, use another one") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise VaekitError(f"{path} is unreadable or corrupted ({err}); use another checkpoint") from None
    if not isinstance(value, dict):
        raise VaekitError(f"{path} does not hold a JSON object; the checkpoint is corrupted, use another one")
    return value


def _file_kind(path: Path) -> str:
    """'safetensors' for a well-formed safetensors header, 'pickle' for a pickle or torch.save archive,
    else 'other'.

    A safetensors file starts with its JSON header's length (8 bytes, little-endian) followed by '{'.
    That length may itself begin with byte 0x80, so the pickle test comes only after the header test."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
        size = path.stat().st_size
    except OSError as err:
        raise VaekitError(f"cannot read {path}: {err.strerror}; check the checkpoint path") from None
    if len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") <= size - 8:
        return "safetensors"
    if head[:2] == b"PK" or head[:1] == b"\x80":
        return "pickle"
    return "other"


def _pickle_error(path: Path) -> VaekitError:
    return VaekitError(f"{path} is a pickle/torch.save archive, which can run code when loaded; "
                       "vaekit only loads safetensors checkpoints written by vaekit")


def _refuse_pickles(path: Path) -> None:
    """Accept only a well-formed safetensors header; name pickles and torch.save archives as such."""
    kind = _file_kind(path)
    if kind == "pickle":
        raise _pickle_error(path)
    if kind != "safetensors":
        raise VaekitError(f"{path} is not a safetensors file (truncated or corrupted); "
                          "use another checkpoint, e.g. the run's checkpoints/best")


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file after checking it is one; errors are one-line VaekitErrors."""
    _refuse_pickles(path)
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as err:
        raise VaekitError(f"{path} is truncated or corrupted ({err}); use another checkpoint") from None


def read_meta(path: str | Path) -> dict[str, Any]:
    """The checkpoint's ``meta.json`` with its format version and required fields checked."""
    meta_path = Path(path) / META_FILE
    if not meta_path.exists():
        raise VaekitError(f"{path} is not a vaekit checkpoint (no {META_FILE}); "
                          "pass a run directory or one of its checkpoints")
    meta = read_json(meta_path)
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise VaekitError(f"{meta_path} has no format_version; it was not written by vaekit")
    if version > FORMAT_VERSION:
        raise VaekitError(f"checkpoint format {version} is newer than this vaekit understands "
                          f"({FORMAT_VERSION}); upgrade vaekit")
    shape = meta.get("event_shape")
    if not isinstance(meta.get("config"), dict) or not isinstance(shape, list) or not all(
            isinstance(s, int) and s >= 1 for s in shape):
        raise VaekitError(f"{meta_path} lacks a valid 'config' or 'event_shape'; the checkpoint is corrupted, "
                          "use another one")
    if version == 1:
        meta = upgrade_meta(meta)
    if version < 3:
        meta = _meta_v2_to_v3(meta)
    return meta


def _meta_v2_to_v3(meta: dict[str, Any]) -> dict[str, Any]:
    """Format 2 had one model family (the MLP VAE) and no schema: record both as format 3 does."""
    from vaekit.model import parts_of
    from vaekit.schema import DataSchema

    meta = {**meta, "family": "vae", "schema": DataSchema.from_meta(meta).to_meta()}
    meta["parts"] = parts_of(config_from_dict(meta["config"]).model)
    meta.setdefault("upgraded_from", meta["format_version"])
    return meta


def upgrade_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """A format-1 meta.json read as format 2 (in memory; the file is not changed; :func:`read_meta` then
    goes on to format 3).

    Format 1 served Gaussian ``unit`` data scaled (served = a * x + b, no Jacobian in log p) and had no
    preprocessing record. The upgrade records it as format 2 does: data served in file units and the
    model's loc = -b / a, scale = 1 / a (the encoder then sees exactly what it was trained on, and log p
    gains the Jacobian, i.e. is in the file's units); the v1 fixed ``sigma`` of a ``standardize`` run was
    in file units and stays so (``prep["sigma_units"] = "file"``); no dequantisation."""
    meta = json.loads(json.dumps(meta))
    info = meta.setdefault("data", {})
    cfg = meta["config"]
    data_cfg, model_cfg = cfg.setdefault("data", {}), cfg.setdefault("model", {})
    data_cfg.setdefault("dequantize", "none")
    data_cfg.setdefault("verify", True)
    lik = model_cfg.get("likelihood", "bernoulli")
    model_cfg["likelihood"] = lik
    scale = info.get("scale", data_cfg.get("scale", "unit"))
    a, b = (float(v) for v in info.get("affine", [1.0, 0.0]))
    prep = {"likelihood": lik, "scale": scale, "scale_detail": info.get("scale_detail", ""),
            "affine": [a, b], "model_affine": None, "binarize": info.get("binarize", data_cfg.get("binarize", "none")),
            "threshold": info.get("threshold", data_cfg.get("threshold", 0.5)), "dequantize": "none",
            "value_range": None, "input_range": None, "input_binary": bool(info.get("binary", False)),
            "reasons": {"upgrade": "read from a format-1 checkpoint"}, "sigma_units": "scaled"}
    if lik != "bernoulli":
        if scale == "unit" and (a, b) != (1.0, 0.0):
            prep.update(affine=[1.0, 0.0], model_affine=[-b / a, 1.0 / a], value_range=[-b / a, (1.0 - b) / a])
            info["input_range"] = prep["value_range"]  # now in file units, for vaekit.inputs' range check
            meta["standardised"] = True
        if scale == "standardize" and lik == "gaussian":
            prep["sigma_units"] = "file"
    info["prep"] = prep
    meta["upgraded_from"] = meta["format_version"]
    return meta


#: State-dict names that moved in format 3 (the likelihood became a part with its own parameters).
RENAMED_V3 = {"log_sigma": "likelihood.log_sigma"}


def upgrade_state(meta: dict[str, Any], state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Older weights under this format's names: format 1 with the model loc/scale that
    :func:`upgrade_meta` recorded; formats 1 and 2 with :data:`RENAMED_V3` applied."""
    prep = (meta.get("data") or {}).get("prep") or {}
    if meta.get("upgraded_from") == 1 and prep.get("model_affine") and "data_loc" in state:
        loc, scale = prep["model_affine"]
        state = {**state, "data_loc": torch.full_like(state["data_loc"], loc),
                 "data_scale": torch.full_like(state["data_scale"], scale)}
    if meta.get("upgraded_from") in (1, 2):
        state = {RENAMED_V3.get(k, k): v for k, v in state.items()}
    return state


@dataclass(frozen=True)
class CheckpointChoice:
    """The checkpoint a run or checkpoint path stands for. ``role`` is 'best', 'last', 'given' (a checkpoint
    directory passed directly) or 'last (best step-... is missing)' / 'last (no best recorded)'; ``warning``
    says why, whenever it is not the run's best checkpoint that was asked for and found."""

    path: Path
    role: str
    warning: str | None = None


def choose_checkpoint(path: str | Path) -> CheckpointChoice:
    """A run directory stands for its best checkpoint, else (with a warning) its last; a checkpoint
    directory stands for itself. Which checkpoint is best is read from the committed ``last`` checkpoint
    (see :func:`best_name`), so a kill between the ``last`` and ``best`` pointer writes cannot make an
    older checkpoint 'best'."""
    path = Path(path)
    if not path.exists():
        raise VaekitError(f"{path} does not exist; pass a run directory such as runs/<name>")
    if path.is_file():
        kind = _file_kind(path)
        if kind == "pickle":
            raise _pickle_error(path)
        what = "a weights file" if kind == "safetensors" else "a file"
        raise VaekitError(f"{path} is {what}, not a run directory or checkpoint; pass a run directory such as "
                          "runs/<name> or one of its checkpoints/step-* folders")
    if (path / META_FILE).exists():
        return CheckpointChoice(path, "given")
    ckpts = path / "checkpoints"
    best_file = pointer_name(ckpts, "best")  # a corrupted pointer is an error even where it is not needed
    last = read_pointer(ckpts, "last")
    best = best_name(ckpts, last) if last is not None else best_file
    if best is not None and (ckpts / best / META_FILE).exists():
        return CheckpointChoice(ckpts / best, "best")
    if last is not None:
        if best is not None:
            return CheckpointChoice(last, f"last (best {best} is missing)",
                                    f"best checkpoint {best} is missing from {ckpts}; using last {last.name}, "
                                    "the final weights rather than the best ones")
        return CheckpointChoice(last, "last (no best recorded)",
                                f"{ckpts} records no best checkpoint (no epoch reached a finite validation "
                                f"ELBO); using last {last.name}")
    raise VaekitError(f"{path} holds no checkpoint; train first with `vaekit train --name NAME`")


def resolve_checkpoint(path: str | Path, notes: list[str] | None = None) -> Path:
    """:func:`choose_checkpoint`'s path. When it is not the best checkpoint asked for, the reason is
    appended to ``notes``, or without ``notes`` issued as a ``VaekitWarning`` (the CLI prints it)."""
    choice = choose_checkpoint(path)
    if choice.warning is not None:
        if notes is None:
            warnings.warn(choice.warning, VaekitWarning, stacklevel=2)
        else:
            notes.append(choice.warning)
    return choice.path


def run_dir_of(path: str | Path) -> Path:
    """The run directory holding ``path``'s checkpoint (``path`` itself when it is a run directory)."""
    ckpt = choose_checkpoint(path).path
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else Path(path)


def pointer_name(ckpts: Path, name: str) -> str | None:
    """The checkpoint name in the pointer file ``ckpts/name`` (``last`` or ``best``); None without one."""
    pointer = ckpts / name
    if not pointer.is_file():
        return None
    try:
        target_name = pointer.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        target_name = ""
    if not STEP_NAME.fullmatch(target_name):
        raise VaekitError(f"{pointer} is corrupted (it must name a checkpoint such as step-000000100); "
                          f"write the name of one of the folders in {ckpts} into it")
    return target_name


def read_pointer(ckpts: Path, name: str) -> Path | None:
    """Checkpoints are named by step; ``last`` and ``best`` are small text files naming one. None when
    the pointer or the checkpoint it names is missing."""
    target_name = pointer_name(ckpts, name)
    if target_name is None:
        return None
    target = ckpts / target_name
    return target if (target / META_FILE).exists() else None


def best_name(ckpts: Path, last: Path) -> str | None:
    """The name of the run's best checkpoint. ``last`` is the commit point: the trainer state inside it
    records the best checkpoint (``best_checkpoint``), which wins over a ``best`` file left stale by a
    kill between the two pointer writes. Checkpoints older than that field use the ``best`` file."""
    state_path = last / TRAINER_JSON
    recorded = read_json(state_path).get("best_checkpoint") if state_path.is_file() else None
    if isinstance(recorded, str) and STEP_NAME.fullmatch(recorded):
        return recorded
    return pointer_name(ckpts, "best")  # none recorded: the file (written only after a record) is not stale


def load_weights(module: torch.nn.Module, ckpt: Path, state: dict[str, torch.Tensor] | None = None) -> None:
    """Load ``ckpt``'s model.safetensors (or ``state``, already read from it) into ``module`` strictly:
    every name and shape must match. Format-1 weights are upgraded by :func:`load_model` (resume refuses
    the format-1 runs whose weights would need it)."""
    state = load_tensors(ckpt / MODEL_FILE) if state is None else state
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        detail = " ".join(line.strip() for line in str(err).strip().splitlines()[:3])
        raise VaekitError(f"checkpoint {ckpt} does not match its config (tampered or mixed files: "
                          f"{detail}); use an untouched checkpoint") from None


def model_meta(model: Any) -> dict[str, Any]:
    """What rebuilds ``model`` besides its weights and config: family, parts, data schema (format 3)."""
    from vaekit.model import family_of, parts_of

    return {"family": family_of(model.config), "parts": parts_of(model.config), "schema": model.schema.to_meta(),
            "event_shape": list(model.event_shape), "standardised": bool(model.standardised)}


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[Any, Config, dict[str, Any]]:
    """Rebuild the model from a run or checkpoint directory through the model-family registry
    (``meta["family"]``); returns (model, config, meta). Older formats are read through the migrations
    (:func:`read_meta`, :func:`upgrade_state`)."""
    from vaekit.inputs import spec_from_meta
    from vaekit.model import build_model
    from vaekit.schema import DataSchema

    ckpt = resolve_checkpoint(path)
    meta = read_meta(ckpt)
    config = config_from_dict(meta["config"])
    state = upgrade_state(meta, load_tensors(ckpt / MODEL_FILE))
    schema = DataSchema.from_meta(meta)
    prep = (meta.get("data") or {}).get("prep") or {}
    model = build_model(config.model, schema, data_loc=state.get("data_loc") if schema.standardised else None,
                        data_scale=state.get("data_scale") if schema.standardised else None,
                        sigma_units=prep.get("sigma_units", "scaled"), family=str(meta.get("family", "vae")))
    load_weights(model, ckpt, state)
    model.input_spec = spec_from_meta(meta, config.model.likelihood)  # what check_input compares inputs with
    model.to(device).eval()
    return model, config, meta


# ------------------------------------------------------------------------ optimiser state by name
def optimizer_tensors(model: torch.nn.Module, optimizer: Any) -> dict[str, torch.Tensor]:
    """The per-parameter state of ``optimizer`` (a ``torch.optim`` optimiser or
    :class:`vaekit.train.adam.FusedAdam`; Adam: ``step``, ``exp_avg``, ``exp_avg_sq``) as trainer
    tensors keyed by parameter name, ``opt:<parameter name>:<key>`` (CPU copies)."""
    out: dict[str, torch.Tensor] = {}
    for name, p in model.named_parameters():
        for key, value in optimizer.state.get(p, {}).items():
            out[f"opt:{name}:{key}"] = value.detach().cpu()
    return out


def optimizer_state(model: torch.nn.Module, tensors: Mapping[str, torch.Tensor]) -> dict[int, dict[str, torch.Tensor]]:
    """The optimiser state saved in ``tensors`` as ``optimizer.state_dict()["state"]`` holds it: keyed by
    the parameter's position in ``model.parameters()`` (the optimiser's order). Reads the names
    ``opt:<parameter name>:<key>`` and the index keys ``opt.<index>.<key>`` of older checkpoints, whose
    index is the position in ``model.named_parameters()``. Every moment's shape is checked against its
    parameter. A key naming no parameter raises ``KeyError``, a wrong shape ``ValueError``."""
    params = dict(model.named_parameters())
    names = list(params)
    position = {name: i for i, name in enumerate(names)}
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt:"):
            name, _, field = key[len("opt:"):].rpartition(":")
        elif key.startswith("opt."):
            _, index, field = key.split(".", 2)
            name = names[int(index)] if index.isdigit() and int(index) < len(names) else ""
        else:
            continue
        if name not in position or not field:
            raise KeyError(f"optimizer tensor {key} names no parameter")
        if field in ("exp_avg", "exp_avg_sq") and value.shape != params[name].shape:
            raise ValueError(f"optimizer tensor {key} has shape {tuple(value.shape)}, "
                             f"expected {tuple(params[name].shape)}")
        slot = state.setdefault(position[name], {})
        if field in slot:
            raise KeyError(f"optimizer tensor {key} is a second '{field}' of parameter {name}")
        slot[field] = value
    return state


# ------------------------------------------------------------------------ a run's config
#: What a run's config.toml may change between a checkpoint and its resume: how long, where and how often
#: to checkpoint or stop early, never what is trained (model, data, optimiser, objective, seed).
RESUME_EDITABLE = ("name", "train.epochs", "train.device", "train.patience", "train.keep_last",
                   "train.checkpoint_every", "train.checkpoint_every_epochs", "train.nproc",
                   "train.threads")


def _flat(raw: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return out


def run_config(run_dir: str | Path, meta: dict[str, Any] | None) -> tuple[Config, str | None]:
    """The config a run continues with, and a note when its config.toml was edited.

    The truth is the resolved config saved with the weights (``meta["config"]`` of the checkpoint the run
    continues, as :func:`load_model` reads it). ``config.toml`` is written once for people; it is read
    alone only when ``meta`` is None (a run killed before its first checkpoint). A key written in
    config.toml whose value differs from the checkpoint's is an edit: edits of :data:`RESUME_EDITABLE`
    (e.g. more ``train.epochs``) are applied and named in the note; any other is a one-line
    :class:`VaekitError`, since the checkpoint was trained with another config. Keys an older vaekit
    did not write are not edits."""
    toml_path = Path(run_dir) / "config.toml"
    if meta is None:
        return load_config(toml_path), None
    saved = config_from_dict(meta["config"])
    if not toml_path.is_file():
        return saved, None
    edited = load_config(toml_path)  # its own one-line errors first
    written = _flat(tomllib.loads(toml_path.read_text(encoding="utf-8")))
    before, after = _flat(config_to_dict(saved)), _flat(config_to_dict(edited))
    changed = [key for key in after if key in written and after[key] != before.get(key)]
    if not changed:
        return saved, None
    what = ", ".join(f"{key} {before.get(key)!r} -> {after[key]!r}" for key in changed)
    refused = [key for key in changed if key not in RESUME_EDITABLE]
    if refused:
        raise VaekitError(f"{toml_path} was edited after training ({what}); a run continues with the config "
                          f"saved with its checkpoint, where only {', '.join(RESUME_EDITABLE)} may change: undo "
                          f"the edit of {', '.join(refused)}, or train a new run from it (vaekit train --config "
                          f"{toml_path} --name NEW)")
    merged = config_to_dict(saved)
    for key in changed:
        section, _, field = key.rpartition(".")
        (merged[section] if section else merged)[field] = after[key]
    return config_from_dict(merged), f"{toml_path} was edited after training: {what} (applied)"
