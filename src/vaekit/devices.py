"""Which device a run computes on: the one rule shared by training, evaluation and the API."""

from __future__ import annotations

import dataclasses

import torch

from vaekit.data import DataBundle, Split
from vaekit.data.sparse import SparseSplit
from vaekit.errors import VaekitError


def pick_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu. Asking for cuda without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VaekitError("train.device is 'cuda' but no CUDA device is available; use --train.device cpu")
    return torch.device(name)


def to_device(data: DataBundle, device: torch.device) -> DataBundle:
    """``data`` with its in-memory splits (not memory-mapped ones) copied to ``device`` once, so batches
    never cross the bus."""
    def move(split: Split | SparseSplit) -> Split | SparseSplit:
        if not isinstance(split, Split) or not isinstance(split.x, torch.Tensor):  # memory-mapped or sparse
            return split
        return dataclasses.replace(split, x=split.x.to(device))

    return dataclasses.replace(data, train=move(data.train), val=move(data.val), test=move(data.test))
