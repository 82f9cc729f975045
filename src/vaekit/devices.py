"""Which device a run computes on: the one rule shared by training, evaluation and the API."""

from __future__ import annotations

import torch

from vaekit.errors import VaekitError


def pick_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu. Asking for cuda without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VaekitError("train.device is 'cuda' but no CUDA device is available; use --train.device cpu")
    return torch.device(name)
