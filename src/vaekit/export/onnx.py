"""ONNX: trace a graph module with PyTorch's exporter (``torch.onnx.export``, the ``torch.export``-based
one) into a self-contained model (weights inside, no external data file), with the batch axis of every
input and output dynamic; and run a model with onnxruntime.

The packages are optional (``pip install 'vaekit[export]'``: onnx, onnxscript, onnxruntime); a missing
one is a one-line :class:`~vaekit.errors.VaekitError` saying so.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vaekit.errors import VaekitError

#: The batch axis name in every exported graph.
BATCH = "batch"


def require(name: str) -> ModuleType:
    """Import ``name`` (onnx, onnxscript, onnxruntime) or fail with the install command."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise VaekitError(f"ONNX export needs the package {name}; install the export extra: pip install "
                          "'vaekit[export]' (onnx, onnxscript, onnxruntime)") from None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's own progress lines, log records and advisory warnings (about its internals, e.g.
    'torchvision is not installed') are not the user's business: silenced; errors still propagate, and the
    graphs are checked against PyTorch afterwards."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._export", "onnxscript")]
    levels = [log.level for log in loggers]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        for log in loggers:
            log.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for log, level in zip(loggers, levels, strict=True):
                log.setLevel(level)


def to_onnx(graph: nn.Module, args: Sequence[Tensor], input_names: Sequence[str],
            output_names: Sequence[str]) -> bytes:
    """The serialised ONNX model of ``graph`` traced at ``args`` (one tensor per input, batch first, at
    least 2 rows so the batch size is not specialised), every input's axis 0 dynamic (``batch``)."""
    require("onnx")
    require("onnxscript")
    batch = torch.export.Dim(BATCH, min=1)
    dynamic = tuple({0: batch} for _ in args)
    with _quiet(), torch.no_grad():
        program = torch.onnx.export(graph.eval(), tuple(args), dynamo=True, input_names=list(input_names),
                                    output_names=list(output_names), dynamic_shapes=dynamic,
                                    external_data=False, verbose=False, optimize=True)
    if program is None:  # pragma: no cover - only the TorchScript exporter returns None
        raise RuntimeError("torch.onnx.export returned no program")
    proto = program.model_proto
    return bytes(proto.SerializeToString())


def opset(model: bytes) -> int:
    """The default-domain opset version a serialised model uses."""
    onnx = require("onnx")
    proto = onnx.load_from_string(model)
    return int(next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")))


def session(model: bytes) -> Any:
    """An onnxruntime CPU inference session of a serialised model."""
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def run(model: bytes | Any, feeds: Mapping[str, Tensor | np.ndarray]) -> dict[str, np.ndarray]:
    """Run a serialised model (or a session) on ``feeds`` {input name: array}; {output name: array}."""
    sess = session(model) if isinstance(model, bytes) else model
    arrays = {k: v.detach().cpu().numpy() if isinstance(v, Tensor) else np.asarray(v) for k, v in feeds.items()}
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, arrays), strict=True))


def max_abs_diff(onnx_out: Mapping[str, np.ndarray], torch_out: Mapping[str, Tensor]) -> float:
    """max |onnx - torch| over every output (same names, same shapes), as a float."""
    if set(onnx_out) != set(torch_out):
        raise RuntimeError(f"the ONNX outputs {sorted(onnx_out)} differ from PyTorch's {sorted(torch_out)}")
    worst = 0.0
    for name, ref in torch_out.items():
        got = onnx_out[name]
        if tuple(got.shape) != tuple(ref.shape):
            raise RuntimeError(f"ONNX output {name} has shape {got.shape}, PyTorch's {tuple(ref.shape)}")
        worst = max(worst, float(np.max(np.abs(got.astype(np.float64) - ref.detach().double().cpu().numpy()),
                                        initial=0.0)))
    return worst
