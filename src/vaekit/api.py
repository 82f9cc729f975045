"""Library calls behind the CLI: one function per sub-command, usable from Python too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.batch import Batch
from vaekit.checkpoint import load_model
from vaekit.data import DataBundle
from vaekit.data.rundata import display_range
from vaekit.devices import to_device
from vaekit.errors import VaekitError
from vaekit.evaluate import evaluate_run as evaluate_run  # re-export: the library call behind `vaekit eval`
from vaekit.fileio import atomic_write_bytes, check_writable
from vaekit.images import is_image_shape, save_grid
from vaekit.inputs import check_input, trusted
from vaekit.model import VAE
from vaekit.runload import example_condition, load_run, user_condition

__all__ = ["encode", "evaluate_run", "load", "load_run", "reconstruct", "sample", "write_artifacts"]


def load(path: str | Path, device: str | torch.device = "cpu") -> VAE:
    """The trained model of a run directory (its best checkpoint) or of a checkpoint directory."""
    return load_model(path, device)[0]


def _values(value: Any, what: str) -> Any:
    """A condition as given: a .npy path (str or Path) is read, a string of comma-separated numbers is
    parsed, anything else (an int, a list, an array) is passed on."""
    if value is None or not isinstance(value, (str, Path)):
        return value
    if str(value).endswith(".npy"):
        try:
            return np.load(value, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise VaekitError(f"cannot read {value} as a .npy array of {what} ({err}); save it with numpy.save"
                              ) from None
    try:
        out = [float(v) for v in str(value).split(",") if v.strip()]
    except ValueError:
        raise VaekitError(f"{what} '{value}' are not comma-separated numbers; give e.g. 3 or 0.5,1.2, or a .npy "
                          "file") from None
    if not out:
        raise VaekitError(f"{what} '{value}' is empty; give numbers, e.g. 0.5,1.2, or a .npy file")
    return np.asarray(out)


def _rows(label: Any, c: Any) -> int | None:
    """The number of examples a condition gives: n labels (n > 1) or (n, k) covariates; None when it gives
    one for all."""
    if label is not None and np.ndim(label) == 1 and np.size(label) > 1:
        return int(np.size(label))
    if c is not None and np.ndim(c) == 2:
        return int(np.shape(c)[0])
    return None


def _save_array_or_grid(values: torch.Tensor, out: str | Path, event_shape: tuple[int, ...],
                        ncol: int | None = None, value_range: tuple[float, float] = (0.0, 1.0)) -> Path:
    """``.npy``: the values as they are (the model's units). ``.png``: a grid with ``value_range`` (the
    run's data range in file units, :func:`vaekit.data.rundata.display_range`) mapped to black..white."""
    out = check_writable(out)
    if out.suffix == ".npy":
        import io

        buf = io.BytesIO()
        np.save(buf, values.cpu().numpy())
        return atomic_write_bytes(out, buf.getvalue())
    if out.suffix == ".png":
        if not is_image_shape(event_shape):
            raise VaekitError(f"data of shape {event_shape} are not images; write .npy instead of {out.name}")
        lo, hi = value_range
        return save_grid((values - lo) / max(hi - lo, 1e-12), out, ncol=ncol)
    raise VaekitError(f"unsupported output type '{out.suffix}' for {out}; use .png or .npy")


def sample(path: str | Path, n: int | None, out: str | Path, seed: int = 0, mean: bool = True, *,
           label: Any = None, c: Any = None) -> Path:
    """Draw n samples from the prior, decode, and write a .png grid or a .npy array.

    A conditional run needs its condition: ``label`` (an int for all samples, n ints, or a .npy of them)
    for a label-conditional model; ``c`` (k covariates in the data's units as a list, a string
    ``"0.5,1.2"``, an (n, k) array or a .npy of one) for a covariate-conditional model. ``n`` None: the
    condition's number of rows, else 64."""
    label, c = _values(label, "labels"), _values(c, "covariates")
    if n is None:
        n = _rows(label, c) or 64
    if n < 1:
        raise VaekitError(f"the number of samples n (-n) must be >= 1, got {n}")
    check_writable(out)  # before any work: a read-only or missing folder fails at once
    model, _, meta = load_model(path)
    y, cond = user_condition(model, meta, n, label, c)
    x = model.sample(n, mean=mean, generator=torch.Generator().manual_seed(seed), c=cond, y=y)
    return _save_array_or_grid(x, out, model.event_shape, value_range=display_range(meta))


def reconstruct(path: str | Path, out: str | Path, n: int = 32, data: DataBundle | None = None) -> Path:
    """Reconstruct the first n test examples (a conditional model with each example's own label /
    covariates); a .png shows inputs (odd rows) above outputs. ``data``: the run's data when the caller
    holds them already (the run's own recorded preprocessing; else they are loaded and checked)."""
    check_writable(out)  # before loading the data
    if data is None:
        model, _, meta, data = load_run(path)
    else:
        model, _, meta = load_model(path)
    data = to_device(data, torch.device("cpu"))  # the model is loaded on the CPU; a GPU run's data are on the GPU
    split = data.test if len(data.test) else data.val
    rng = display_range(meta)
    batch = split.batch_of(torch.arange(min(n, len(split))))
    x = batch.x
    x_hat = model.reconstruct(batch)
    if Path(out).suffix == ".png":
        ncol = min(16, len(x))
        rows = [t for i in range(0, len(x), ncol) for t in (x[i:i + ncol], x_hat[i:i + ncol])]
        return _save_array_or_grid(torch.cat(rows), out, model.event_shape, ncol=ncol, value_range=rng)
    return _save_array_or_grid(torch.stack([x, x_hat]), out, model.event_shape)


def encode(path: str | Path, out: str | Path, input: str | Path | None = None, split: str = "test",
           sample: bool = False, *, label: Any = None, c: Any = None) -> Path:
    """Posterior means (or one draw per point) of an array file or of a split: (n, d) float32 .npy.
    A split is encoded with its rows' own labels / covariates; an ``input`` file of a conditional run
    needs ``label`` / ``c`` (as for :func:`sample`: one for all rows, or one per row)."""
    out = check_writable(out)  # before loading the data
    if out.suffix != ".npy":
        raise VaekitError(f"latent codes are written as .npy; use --out {out.with_suffix('.npy')} (out= in Python)")
    if input is not None:
        model, _, meta = load_model(path)
        try:
            arr = np.load(input, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise VaekitError(f"cannot read {input} as a .npy array ({err}); save it with numpy.save") from None
        x = torch.from_numpy(np.asarray(arr, dtype=np.float32))
        x = check_input(model, x, str(input))  # shape (conform_shape), NaN/inf, range
        y, cond = user_condition(model, meta, len(x), _values(label, "labels"), _values(c, "covariates"))
        batch = Batch(x, y=y, c=cond)
    else:
        if label is not None or c is not None:
            raise VaekitError("a split is encoded with its own labels / covariates; give --label / --condition "
                              "only with --input FILE (label= / c= with input= in Python)")
        model, _, _, data = load_run(path)  # one load: the model and the data it was trained on
        batch = getattr(data, split).all_of()
    with torch.no_grad(), trusted(model):
        q_z = model.encode(batch)
        z = q_z.sample() if sample else q_z.mean
    return _save_array_or_grid(z, out, model.event_shape)


def write_artifacts(run_dir: Path, model: VAE, data: DataBundle, seed: int = 0) -> list[Path]:
    """Sample and reconstruction grids (images) or arrays (other data) for a finished run. A
    label-conditional model's grid has one column per class; a covariate-conditional model's samples take
    the held-out split's first covariate rows (:func:`vaekit.runload.example_condition`)."""
    model = model.cpu().eval()
    data = to_device(data, torch.device("cpu"))  # a GPU run's trainer holds its data on the GPU
    written = []
    ext = ".png" if is_image_shape(model.event_shape) else ".npy"
    n, ncol = 64, None
    if model.conditional and model.schema.condition == "label":
        ncol = model.schema.n_classes
        n = ncol * max(1, -(-64 // ncol))
    y, c = example_condition(model, data, n)
    x = model.sample(n, generator=torch.Generator().manual_seed(seed), y=y, c=c)
    written.append(_save_array_or_grid(x, run_dir / f"samples{ext}", model.event_shape, ncol=ncol,
                                       value_range=display_range({"data": data.info})))
    written.append(reconstruct(run_dir, run_dir / f"reconstructions{ext}", data=data))
    return written


def collapse_warning(path: str | Path, data: DataBundle) -> str | None:
    """The posterior-collapse warning (:func:`vaekit.probes.collapse_warning`) for the run at ``path``
    on its validation split (the training split when there is none), or None: active units by
    :func:`vaekit.probes.split_stats`, the function behind ``vaekit eval`` and the report. ``vaekit train``
    prints it."""
    from vaekit.probes import split_stats

    model, config, _ = load_model(path)
    data = to_device(data, torch.device("cpu"))  # the model is loaded on the CPU; a GPU run's data are on the GPU
    split = "val" if len(data.val) else "train"
    return split_stats(model, data, split, probe=False).warning(config.model.likelihood, data.info.get("prep"))
