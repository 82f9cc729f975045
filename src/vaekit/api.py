"""Library calls behind the CLI: one function per sub-command, usable from Python too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.checkpoint import load_model
from vaekit.config import Config
from vaekit.data import DataBundle, load_run_data
from vaekit.data.rundata import display_range
from vaekit.errors import VaekitError
from vaekit.evaluate import evaluate_run as evaluate_run  # re-export: the library call behind `vaekit eval`
from vaekit.fileio import atomic_write_bytes, check_writable
from vaekit.images import is_image_shape, save_grid
from vaekit.inputs import check_input, trusted
from vaekit.model import VAE


def load(path: str | Path, device: str | torch.device = "cpu") -> VAE:
    """The trained model of a run directory (its best checkpoint) or of a checkpoint directory."""
    return load_model(path, device)[0]


def load_run(path: str | Path, device: str = "cpu", overrides: dict[str, str] | None = None,
             ) -> tuple[VAE, Config, dict[str, Any], DataBundle]:
    """Model, config, checkpoint metadata and the run's data: the run's recorded preprocessing applied
    (never recomputed) and its data files checked against their recorded fingerprints. ``overrides``:
    dotted ``data.*`` keys that choose other data of the same kind (see :mod:`vaekit.data.rundata`)."""
    model, config, meta = load_model(path, device)
    config, data = load_run_data(config, meta, overrides)
    return model, config, meta, data


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


def sample(path: str | Path, n: int, out: str | Path, seed: int = 0, mean: bool = True) -> Path:
    """Draw n samples from the prior, decode, and write a .png grid or a .npy array."""
    if n < 1:
        raise VaekitError(f"the number of samples n (-n) must be >= 1, got {n}")
    check_writable(out)  # before any work: a read-only or missing folder fails at once
    model, _, meta = load_model(path)
    x = model.sample(n, mean=mean, generator=torch.Generator().manual_seed(seed))
    return _save_array_or_grid(x, out, model.event_shape, value_range=display_range(meta))


def reconstruct(path: str | Path, out: str | Path, n: int = 32) -> Path:
    """Reconstruct the first n test examples; a .png shows inputs (odd rows) above outputs."""
    check_writable(out)  # before loading the data
    model, _, meta, data = load_run(path)
    split = data.test if len(data.test) else data.val
    rng = display_range(meta)
    x = split.batch(torch.arange(min(n, len(split))))
    x_hat = model.reconstruct(x)
    if Path(out).suffix == ".png":
        ncol = min(16, len(x))
        rows = [t for i in range(0, len(x), ncol) for t in (x[i:i + ncol], x_hat[i:i + ncol])]
        return _save_array_or_grid(torch.cat(rows), out, model.event_shape, ncol=ncol, value_range=rng)
    return _save_array_or_grid(torch.stack([x, x_hat]), out, model.event_shape)


def encode(path: str | Path, out: str | Path, input: str | Path | None = None, split: str = "test",
           sample: bool = False) -> Path:
    """Posterior means (or one draw per point) of an array file or of a split: (n, d) float32 .npy."""
    out = check_writable(out)  # before loading the data
    if out.suffix != ".npy":
        raise VaekitError(f"latent codes are written as .npy; use --out {out.with_suffix('.npy')} (out= in Python)")
    model = load(path)
    if input is not None:
        try:
            arr = np.load(input, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise VaekitError(f"cannot read {input} as a .npy array ({err}); save it with numpy.save") from None
        x = torch.from_numpy(np.asarray(arr, dtype=np.float32))
        x = check_input(model, x, str(input))  # shape (conform_shape), NaN/inf, range
    else:
        _, _, _, data = load_run(path)
        x = getattr(data, split).all()
    with torch.no_grad(), trusted(model):
        q_z = model.encode(x)
        z = q_z.sample() if sample else q_z.mean
    return _save_array_or_grid(z, out, model.event_shape)


def write_artifacts(run_dir: Path, model: VAE, data: DataBundle, seed: int = 0) -> list[Path]:
    """Sample and reconstruction grids (images) or arrays (other data) for a finished run."""
    model = model.cpu().eval()
    written = []
    ext = ".png" if is_image_shape(model.event_shape) else ".npy"
    x = model.sample(64, generator=torch.Generator().manual_seed(seed))
    written.append(_save_array_or_grid(x, run_dir / f"samples{ext}", model.event_shape,
                                       value_range=display_range({"data": data.info})))
    written.append(reconstruct(run_dir, run_dir / f"reconstructions{ext}"))
    return written


def collapse_warning(path: str | Path, data: DataBundle) -> str | None:
    """The posterior-collapse warning (:func:`vaekit.probes.collapse_warning`) for the run at ``path``
    on its validation split (the training split when there is none), or None: active units by
    :func:`vaekit.probes.latent_summary`, the function behind ``vaekit eval``. ``vaekit train`` prints it."""
    from vaekit.probes import latent_summary

    model, config, _ = load_model(path)
    split = "val" if len(data.val) else "train"
    return latent_summary(model, data, split, probe=False).warning(config.model.likelihood, data.info.get("prep"))
