"""What a trained model may be given: the shape, finiteness and value range of its inputs.

One check, :func:`check_input`, guards the public entry points (``VAE.elbo``, ``VAE.reconstruct``,
``VAE.encode`` / ``decode`` in eval mode, ``evaluate.log_likelihood``, ``api.encode`` /
``api.reconstruct``). Its rules, for x of shape (n, *event_shape) in the model's input units:

* per-example shape: :func:`conform_shape` (the one rule, also applied by ``load_run_data``): a shape
  holding as many values as ``event_shape`` is reshaped to it when the model's networks read flat
  vectors (``model.accepts_flat``, true for MLPs), with a :class:`VaekitWarning` saying so; any other
  shape, or a non-float dtype -> :class:`VaekitError` naming both;
* any NaN/inf -> :class:`VaekitError` with the count and the index of the first;
* a Bernoulli model given values outside [0, 1] -> :class:`VaekitError` (it was trained on 0/1 data);
* a Gaussian model given values far outside the range it was trained on (beyond the training range
  widened by :data:`RANGE_SLACK` of its width on each side) -> :class:`VaekitWarning`.

The training range is an :class:`InputSpec` stored on the model object (``model.input_spec``, never in
its state_dict) when a checkpoint is loaded, from ``meta["data"]["input_range"]`` / ``"input_binary"``;
runs written before those keys existed fall back to [0, 1] for Bernoulli models and for ``data.scale
unit`` runs, and skip the range test otherwise. The check reads the device once per call; loops that
serve already-checked data (validation, importance-sampling chunks) run inside :func:`trusted`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vaekit.errors import VaekitError, VaekitWarning

#: A Gaussian model warns when inputs leave [lo - s * w, hi + s * w], w = hi - lo the training range's width.
RANGE_SLACK = 0.5


@dataclass(frozen=True)
class InputSpec:
    """The values a model was trained on: ``[lo, hi]`` in model-input units (None: unknown), whether they
    were all 0/1 (``binary``), and ``how`` the run prepared them (for messages)."""

    lo: float | None
    hi: float | None
    binary: bool = False
    how: str = ""


def default_spec(likelihood: str) -> InputSpec | None:
    """What is known without a run's metadata: a Bernoulli model takes values in [0, 1]."""
    if likelihood == "bernoulli":
        return InputSpec(0.0, 1.0, binary=True, how="a Bernoulli likelihood models 0/1 values")
    return None


def _how(data: Mapping[str, Any]) -> str:
    parts = []
    if data.get("scale"):
        detail = f": {data['scale_detail']}" if data.get("scale_detail") else ""
        parts.append(f"data.scale {data['scale']}{detail}")
    if data.get("binarize") and data.get("binarize") != "none":
        parts.append(f"data.binarize {data['binarize']}")
    return "; ".join(parts)


def spec_from_meta(meta: Mapping[str, Any], likelihood: str) -> InputSpec | None:
    """The :class:`InputSpec` of a checkpoint from its ``meta.json`` (see the module doc for old runs)."""
    data = meta.get("data")
    data = data if isinstance(data, Mapping) else {}
    how = _how(data)
    prep: Mapping[str, Any] = data["prep"] if isinstance(data.get("prep"), Mapping) else {}
    # the recorded training range; else the data's known range when a Gaussian model reads file units
    rng = data.get("input_range") or prep.get("input_range") or (
        prep.get("value_range") if list(prep.get("affine") or [1.0, 0.0]) == [1.0, 0.0] else None)
    binary = data.get("input_binary", data.get("binary"))
    binary = bool(binary) if isinstance(binary, bool) else likelihood == "bernoulli"
    if likelihood == "bernoulli":
        return InputSpec(0.0, 1.0, binary=True, how=how or "a Bernoulli likelihood models 0/1 values")
    if (isinstance(rng, Sequence) and len(rng) == 2 and all(isinstance(v, (int, float)) for v in rng)
            and all(math.isfinite(v) for v in rng) and rng[0] <= rng[1]):
        return InputSpec(float(rng[0]), float(rng[1]), binary=binary, how=how)
    if data.get("scale") == "unit":
        return InputSpec(0.0, 1.0, binary=binary, how=how)
    return InputSpec(None, None, binary=binary, how=how)


def _shape_text(shape: Sequence[int]) -> str:
    return "(n, " + ", ".join(str(s) for s in shape) + ")"


def conform_shape(got: Sequence[int], shape: Sequence[int], accepts_flat: bool, what: str, fix: str) -> str | None:
    """The one rule for the per-example shape ``got`` of data given to a model of event shape ``shape``:
    None when they are equal; when they differ but hold the same number of values and the model's networks
    read flat vectors (``accepts_flat``), a note saying the data are reshaped (the caller reshapes); else
    :class:`VaekitError` "``what`` have shape ... but the model expects ...; ``fix``"."""
    got, shape = tuple(int(s) for s in got), tuple(int(s) for s in shape)
    if got == shape:
        return None
    if accepts_flat and math.prod(got) == math.prod(shape):
        verb = "flattened" if len(shape) == 1 else "reshaped"
        return (f"data of shape {got} {verb} to the model's {shape} (its networks read each example as "
                f"{math.prod(shape)} values)")
    need = "" if accepts_flat else " (its networks need that exact shape)"
    raise VaekitError(f"{what} have shape {got} but the model expects {shape}{need}; {fix}")


def check_input(model: Any, x: Any, what: str = "x") -> Tensor:
    """Check x (n, *model.event_shape) against what ``model`` was trained on (rules: module doc) and
    return it, reshaped to (n, *model.event_shape) when :func:`conform_shape` allows it.

    Raises :class:`VaekitError` or warns with :class:`VaekitWarning`; reads the device once."""
    shape = tuple(model.event_shape)
    if not isinstance(x, Tensor):
        raise VaekitError(f"{what} is a {type(x).__name__}, not a torch.Tensor; convert it with "
                          "torch.as_tensor(x, dtype=torch.float32)")
    got = tuple(x.shape)
    if got[1:] != shape:
        if x.dim() < 2 or got == shape:
            hint = "add the batch axis, x[None]" if got == shape else "pass data of the run's shape"
            raise VaekitError(f"{what} has shape {got} but the model expects {_shape_text(shape)}; {hint}")
        note = conform_shape(got[1:], shape, getattr(model, "accepts_flat", False), f"the examples of {what}",
                             f"pass data of shape {_shape_text(shape)}")
        warnings.warn(f"{what}: {note}", VaekitWarning, stacklevel=3)
        x = x.reshape(got[0], *shape)
    if not x.is_floating_point():
        raise VaekitError(f"{what} has dtype {x.dtype}; the model takes float values in the units it was trained "
                          "in, e.g. x.float() / 255 for 8-bit pixels of a data.scale unit run")
    if x.numel() == 0 or getattr(model, "_inputs_trusted", False):
        return x
    bad = ~torch.isfinite(x)
    n_bad, lo, hi = torch.stack([bad.sum().double(), x.min().double(), x.max().double()]).tolist()
    if n_bad:
        first = tuple(int(i) for i in torch.nonzero(bad)[0].tolist())
        raise VaekitError(f"{what} holds {int(n_bad)} NaN/inf values, the first at index {first}; "
                          "clean or impute the inputs first")
    spec: InputSpec | None = getattr(model, "input_spec", None)
    if spec is None or spec.lo is None or spec.hi is None:
        return x
    how = f" ({spec.how})" if spec.how else ""
    if model.config.likelihood == "bernoulli":
        if lo < 0.0 or hi > 1.0:
            raise VaekitError(f"{what} has values in [{lo:g}, {hi:g}] but this Bernoulli model was trained on 0/1 "
                              f"data in [0, 1]{how}; scale the inputs the way the run scaled its data, e.g. "
                              "x / 255 for 8-bit pixels or x / 16 for the 0..16 digits")
        return x
    if (message := range_warning(spec, lo, hi, what)) is not None:
        warnings.warn(message, VaekitWarning, stacklevel=3)
    return x


def range_warning(spec: InputSpec, lo: float, hi: float, what: str = "x") -> str | None:
    """The warning for a Gaussian model given values spanning [lo, hi] far outside the range ``spec`` it was
    trained on (beyond :data:`RANGE_SLACK` of the range's width on either side), or None. Used by
    :func:`check_input` and by :func:`vaekit.data.load_run_data` for other data evaluated with a run."""
    if spec.lo is None or spec.hi is None:
        return None
    slack = RANGE_SLACK * (spec.hi - spec.lo if spec.hi > spec.lo else max(abs(spec.hi), 1.0))
    if spec.lo - slack <= lo and hi <= spec.hi + slack:
        return None
    how = f" ({spec.how})" if spec.how else ""
    return (f"{what} spans [{lo:g}, {hi:g}], far outside the range [{spec.lo:g}, {spec.hi:g}] the model was "
            f"trained on{how}; its codes and likelihoods mean little, prepare the inputs the way the run "
            "prepared its data")


def check_codes(model: Any, z: Any, what: str = "z") -> None:
    """Check latent codes z (*batch, d) for ``decode``: a float tensor with last axis d, all finite."""
    d = model.latent_dim
    if not isinstance(z, Tensor) or z.dim() == 0 or z.shape[-1] != d or not z.is_floating_point():
        got = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
        raise VaekitError(f"{what} has shape {got} but the decoder takes float codes of shape (..., {d}); "
                          f"pass codes with model.latent_dim = {d} on the last axis")
    bad = ~torch.isfinite(z)
    if z.numel() and bool(bad.any()):
        first = tuple(int(i) for i in torch.nonzero(bad)[0].tolist())
        raise VaekitError(f"{what} holds {int(bad.sum())} NaN/inf values, the first at index {first}; "
                          "decode finite codes")


@contextmanager
def trusted(model: Any) -> Iterator[None]:
    """Inside, ``model.encode`` / ``decode`` skip :func:`check_input` (the caller checked x once)."""
    before = getattr(model, "_inputs_trusted", False)
    model._inputs_trusted = True
    try:
        yield
    finally:
        model._inputs_trusted = before
