"""Export a trained run for serving without Python model code: ``vaekit export RUN --format onnx --out DIR``.

DIR holds ``encoder.onnx`` (x [, condition] -> the posterior's parameters), ``decoder.onnx`` (z [,
condition] -> the likelihood's parameters and mean) and ``preprocessing.json`` (:mod:`.preprocessing`),
written together or not at all (:mod:`.outdir`). The graphs are the model's own ``encode`` / ``decode``
(:mod:`.graphs`) traced by PyTorch's exporter (:mod:`.onnx`) with a dynamic batch axis; before anything is
written each is run with onnxruntime on a random batch and compared with PyTorch, and the largest absolute
difference is recorded (``check``). docs/export.md shows how to serve them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from vaekit.errors import VaekitError
from vaekit.export import onnx as onnx_io
from vaekit.export.graphs import DecoderGraph, EncoderGraph, example_inputs
from vaekit.export.outdir import check_out, staged
from vaekit.export.preprocessing import record
from vaekit.fileio import atomic_write_bytes, atomic_write_text

__all__ = ["FILES", "FORMATS", "TOLERANCE", "export_run"]

#: Export formats (``--format``).
FORMATS = ("onnx",)
#: The files an ONNX export writes (``--force`` replaces a folder holding only these).
FILES = ("encoder.onnx", "decoder.onnx", "preprocessing.json")
#: The largest difference between onnxruntime and PyTorch (float32) an export accepts, absolute for outputs of
#: magnitude up to 1 and relative to the largest output beyond (a Gaussian's mean in 0..255 pixel units).
TOLERANCE = 1e-4
#: Rows of the random batch the graphs are traced with (>= 2: a batch of 1 would be specialised) and checked on.
CHECK_ROWS = 5


def export_run(run: str | Path, out: str | Path, format: str = "onnx", force: bool = False, seed: int = 0,
               ) -> Path:
    """Export the model of ``run`` (a run directory: its best checkpoint; or a checkpoint directory) to the
    folder ``out`` in ``format``; returns ``out``. A non-empty ``out`` is refused unless ``force`` (and then
    only a previous export is replaced)."""
    if format not in FORMATS:
        raise VaekitError(f"unknown export format '{format}'; use one of: {', '.join(FORMATS)}")
    out = Path(out)
    check_out(out, force, FILES)  # before loading anything
    for name in ("onnx", "onnxscript", "onnxruntime"):
        onnx_io.require(name)
    from vaekit.checkpoint import choose_checkpoint, load_model

    ckpt = choose_checkpoint(run).path
    model, config, meta = load_model(run)
    model = model.cpu().eval()
    covariates = ((meta.get("data") or {}).get("prep") or {}).get("covariates")
    encoder, decoder = EncoderGraph(model, covariates).eval(), DecoderGraph(model, covariates).eval()
    g = torch.Generator().manual_seed(seed)
    x, z, cond = example_inputs(model, CHECK_ROWS, g, covariates)
    cond_name = encoder.condition.input_name
    cond_args = () if cond is None else (cond,)
    cond_names = [] if cond_name is None else [cond_name]
    with torch.no_grad():
        enc_ref, dec_ref = encoder.named(x, cond), decoder.named(z, cond)
    enc_bytes = onnx_io.to_onnx(encoder, (x, *cond_args), ["x", *cond_names], list(enc_ref))
    dec_bytes = onnx_io.to_onnx(decoder, (z, *cond_args), ["z", *cond_names], list(dec_ref))
    feeds_cond = {} if cond_name is None or cond is None else {cond_name: cond}
    diff_enc = onnx_io.max_abs_diff(onnx_io.run(enc_bytes, {"x": x, **feeds_cond}), enc_ref)
    diff_dec = onnx_io.max_abs_diff(onnx_io.run(dec_bytes, {"z": z, **feeds_cond}), dec_ref)
    for what, diff, ref in (("encoder", diff_enc, enc_ref), ("decoder", diff_dec, dec_ref)):
        size = max([1.0, *(float(t.abs().max()) for t in ref.values() if t.numel())])
        if diff > TOLERANCE * size:
            raise RuntimeError(f"the exported {what} disagrees with PyTorch by {diff:.3g} (outputs up to {size:.3g}, "
                               f"tolerance {TOLERANCE:g}); this is a bug in vaekit's export or in the exporter")
    ort = onnx_io.require("onnxruntime")
    check = {"onnxruntime": str(ort.__version__), "torch": torch.__version__, "opset": onnx_io.opset(enc_bytes),
             "rows": CHECK_ROWS, "seed": seed, "encoder_max_abs_diff": diff_enc, "decoder_max_abs_diff": diff_dec,
             "tolerance": TOLERANCE}
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt
    info = record(model, meta, str(run_dir), ckpt.name, list(enc_ref), list(dec_ref), covariates, check,
                  items=_items(config, meta))
    with staged(out, force, FILES) as tmp:
        atomic_write_bytes(tmp / "encoder.onnx", enc_bytes)
        atomic_write_bytes(tmp / "decoder.onnx", dec_bytes)
        atomic_write_text(tmp / "preprocessing.json", json.dumps(info, indent=1) + "\n")
    return out


def _items(config: Any, meta: dict[str, Any]) -> list[Any] | None:
    """A recommender's item ids in column order, rebuilt from the run's data (None for other models, or
    when the data cannot be read here: the export says so in a warning and records only the digest)."""
    prep = (meta.get("data") or {}).get("prep") or {}
    if prep.get("format") != "interactions":
        return None
    import warnings

    from vaekit.data import load_run_data
    from vaekit.errors import VaekitWarning

    try:
        data = load_run_data(config, meta)[1]
    except VaekitError as err:
        warnings.warn(f"the item vocabulary is not in preprocessing.json (the run's data could not be read: {err})",
                      VaekitWarning, stacklevel=3)
        return None
    return None if data.rec is None else list(data.rec.items.tolist())
