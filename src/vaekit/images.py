"""Image grids written with Pillow (no matplotlib on this path, so the CLI stays quick)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch

from vaekit.fileio import atomic_write_bytes


def is_image_shape(event_shape: tuple[int, ...]) -> bool:
    """(H, W) grey or (C, H, W) with C in {1, 3}, both sides at least 4 pixels."""
    if len(event_shape) == 2:
        return min(event_shape) >= 4
    return len(event_shape) == 3 and event_shape[0] in (1, 3) and min(event_shape[1:]) >= 4


def grid_array(images: torch.Tensor | np.ndarray, ncol: int | None = None, pad: int = 1,
               upscale: int = 1) -> np.ndarray:
    """(n, H, W) or (n, C, H, W) values in [0, 1] -> one uint8 (rows*H', cols*W'[, 3]) mosaic."""
    a = images.detach().cpu().float().numpy() if isinstance(images, torch.Tensor) else np.asarray(images, "f4")
    if a.ndim == 4:
        a = a.transpose(0, 2, 3, 1)
        if a.shape[-1] == 1:
            a = a[..., 0]
    n, h, w = a.shape[:3]
    ncol = ncol or math.ceil(math.sqrt(n))
    nrow = math.ceil(n / ncol)
    shape = (nrow * (h + pad) + pad, ncol * (w + pad) + pad, *a.shape[3:])
    canvas = np.ones(shape, dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, ncol)
        canvas[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = a[i]
    out = (np.clip(canvas, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    if upscale > 1:
        out = out.repeat(upscale, 0).repeat(upscale, 1)
    return out


def save_grid(images: torch.Tensor | np.ndarray, path: str | Path, ncol: int | None = None,
              upscale: int | None = None) -> Path:
    """Write a PNG grid atomically. Small images (like 8x8 digits) are upscaled for legibility."""
    from PIL import Image

    h = images.shape[-2]
    scale = upscale or max(1, 64 // max(h, 1))
    buf = io.BytesIO()
    Image.fromarray(grid_array(images, ncol=ncol, upscale=scale)).save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())
