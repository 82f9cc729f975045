"""Deciding a new run's preprocessing from its data: likelihood, scaling, binarisation, dequantisation.

:func:`resolve` turns the ``auto`` settings into concrete ones, each with a one-line reason, and returns
the record that :func:`vaekit.data.preprocess.build` applies (and that every later load of the run's
data applies again, unchanged). Conflicting explicit settings are one-line errors naming the fix.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vaekit.data.config import DataConfig
from vaekit.data.preprocess import _chunks, _train_minmax
from vaekit.data.raw import RawData
from vaekit.errors import VaekitError


def integral(x: np.ndarray) -> bool:
    """True if every value of ``x`` is a whole number (integer dtypes trivially)."""
    if x.dtype.kind in "iub":
        return True
    return all((b == np.round(b)).all() for _, b in _chunks(x))


def resolve(raw: RawData, cfg: DataConfig, likelihood: str, binary: bool, train: np.ndarray,
            where: str) -> tuple[dict[str, Any], list[str]]:
    """Decide the preprocessing of a new run from the data: returns the record (see :func:`build`) and
    warnings. ``likelihood``, ``cfg.scale``, ``cfg.binarize`` and ``cfg.dequantize`` may be 'auto'."""
    from vaekit.images import is_image_shape

    x = raw.x
    warnings: list[str] = []
    reasons: dict[str, str] = {}
    known = raw.value_range or ((0.0, 255.0) if x.dtype == np.uint8 else None)
    image_like = known is not None and is_image_shape(tuple(x.shape[1:]))
    colour = image_like and len(x.shape) == 4 and x.shape[1] == 3  # (n, 3, H, W): RGB images
    # ---- likelihood
    lik = likelihood
    if lik == "auto":
        if binary:
            lik, reasons["likelihood"] = "bernoulli", "the data are binary (every value 0 or 1): Bernoulli"
        elif colour and known is not None:
            lik = "gaussian-learned"
            reasons["likelihood"] = (f"colour images with a known range [{known[0]:g}, {known[1]:g}]: a Gaussian "
                                     "with learned variance on the dequantised values of each channel (binarising "
                                     "each colour channel would leave 8 saturated colours; set model.likelihood "
                                     "bernoulli to binarise them anyway)")
        elif image_like and known is not None:
            lik = "bernoulli"
            reasons["likelihood"] = (f"grey-level images with a known range [{known[0]:g}, {known[1]:g}]: "
                                     "Bernoulli on dynamically binarised pixels (the usual benchmark setting; "
                                     "set model.likelihood gaussian-learned for a density of the grey levels)")
        else:
            lik = "gaussian-learned"
            reasons["likelihood"] = ("real-valued data without a known image range: a Gaussian with learned "
                                     "variance on standardised data (a fixed sigma has no meaning in unknown units)")
    else:
        reasons["likelihood"] = "set explicitly (model.likelihood)"
    gauss = lik != "bernoulli"
    # ---- scale
    scale = cfg.scale
    if scale == "auto":
        if not gauss:
            scale, reasons["scale"] = "unit", "Bernoulli: values mapped to [0, 1] before binarisation"
        elif known is not None:
            scale = "unit"
            reasons["scale"] = (f"known range [{known[0]:g}, {known[1]:g}]: the model maps it to [0, 1] "
                                "internally (log p stays in the file's units)")
        else:
            scale = "standardize"
            reasons["scale"] = ("real values of unknown range: the model standardises each feature with the "
                                "training split's mean and std internally (log p stays in the file's units)")
    else:
        reasons["scale"] = "set explicitly (data.scale)"
    if scale == "standardize" and not gauss:
        raise VaekitError("--data.scale standardize needs a Gaussian likelihood (config key data.scale); use "
                          "data.scale unit with model.likelihood bernoulli, or model.likelihood gaussian")
    # ---- binarisation
    mode = cfg.binarize
    if gauss and mode not in ("auto", "none"):
        raise VaekitError(f"data.binarize {mode} applies to a Bernoulli likelihood, but model.likelihood is "
                          f"{lik}; set data.binarize none (--data.binarize none), or use --model.likelihood "
                          "bernoulli")
    if mode == "auto":
        mode = "dynamic" if not gauss and not binary else "none"
        reasons["binarize"] = ("Bernoulli on non-binary data: a fresh Bernoulli draw of each value every time "
                               "it is served" if mode == "dynamic" else "not needed")
        if mode == "dynamic" and likelihood != "auto" and not image_like:
            warnings.append(f"Bernoulli likelihood on non-binary data ({where}): the values are min-max scaled "
                            "and binarised dynamically; say --data.binarize dynamic to make it explicit, or use "
                            "--model.likelihood gaussian-learned for real values")
    else:
        reasons["binarize"] = "set explicitly (data.binarize)"
    lo, hi = _train_minmax(x, train)  # one scan of the training split serves every check and scaling below
    if mode != "none" and scale == "none" and not binary and (lo < 0.0 or hi > 1.0):
        raise VaekitError(f"--data.binarize {mode} needs data in [0, 1] but the training data spans "
                          f"[{lo:g}, {hi:g}]; use --data.scale unit")
    if not gauss and not binary and mode == "none":
        raise VaekitError("Bernoulli likelihood on non-binary data; add --data.binarize dynamic "
                          "(or static/threshold), or use --model.likelihood gaussian")
    # ---- dequantisation
    dq = cfg.dequantize
    whole = integral(x) if known is not None or dq == "uniform" else False  # one scan, only when it matters
    if dq == "auto":
        dq = "uniform" if gauss and known is not None and whole else "none"
        reasons["dequantize"] = ("integer values with a known range under a Gaussian: uniform noise U(0, 1) "
                                 "in file units, so log p is a density over bins of width 1" if dq == "uniform"
                                 else "not needed (discrete Bernoulli data or real values)")
    else:
        reasons["dequantize"] = "set explicitly (data.dequantize)"
    if dq == "uniform" and not gauss:
        raise VaekitError("data.dequantize uniform applies to Gaussian likelihoods (a Bernoulli is already "
                          "discrete); set data.dequantize none or auto")
    if dq == "uniform" and not whole:
        raise VaekitError(f"data.dequantize uniform needs integer-valued data (bins of width 1 in file units), "
                          f"but {where} holds fractional values; set data.dequantize none")
    # ---- scaling parameters
    a, b = 1.0, 0.0
    model_affine = None
    if scale == "unit" and not gauss:
        if binary:
            detail = "binary data kept as 0/1"
        elif known is not None:
            a, b = 1.0 / (known[1] - known[0]), -known[0] / (known[1] - known[0])
            detail = f"known range [{known[0]:g}, {known[1]:g}] mapped to [0, 1]"
        elif x.dtype.kind == "f" and lo >= 0.0 and hi <= 1.0:
            detail = "float data already in [0, 1] on the training split, kept"
        else:
            a, b = (1.0 / (hi - lo), -lo / (hi - lo)) if hi > lo else (1.0, -lo)
            detail = f"min-max of the training split [{lo:g}, {hi:g}] mapped to [0, 1]"
    elif scale == "unit":
        r_lo, r_hi = known if known is not None else (lo, hi)
        width = (r_hi - r_lo) + (1.0 if dq == "uniform" else 0.0)
        model_affine = [float(r_lo), float(width) if width > 0 else 1.0]
        detail = (f"served in file units; the model maps [{r_lo:g}, {r_lo + model_affine[1]:g}] to [0, 1] "
                  "internally (model loc/scale), so log p is in nats of the file's units")
    elif scale == "standardize":
        detail = "per-feature mean/std of the training split in bundle.loc/scale; data served in file units"
    else:
        detail = "none: served in file units"
    served_binary = bool(binary or mode != "none") and dq == "none"
    if gauss:
        in_range = [lo, hi + (1.0 if dq == "uniform" else 0.0)]
    elif mode != "none" or binary:
        in_range = [0.0, 1.0]
    else:
        in_range = [a * lo + b, a * hi + b]
    prep = {"likelihood": lik, "scale": scale, "scale_detail": detail, "affine": [a, b],
            "model_affine": model_affine, "binarize": mode, "threshold": cfg.threshold, "dequantize": dq,
            "value_range": None if known is None else [float(known[0]), float(known[1])],
            "input_range": [float(in_range[0]), float(in_range[1])], "input_binary": served_binary,
            "reasons": reasons}
    return prep, warnings
