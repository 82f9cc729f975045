"""Which device a run computes on: the one rule shared by training, evaluation and the API."""

from __future__ import annotations

import dataclasses
import os

import torch

from vaekit.data import DataBundle, Split
from vaekit.data.sparse import SparseSplit
from vaekit.errors import VaekitError


def local_processes() -> int:
    """How many training processes share this machine: torchrun's LOCAL_WORLD_SIZE, 1 outside torchrun."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def gpu_per_process() -> bool:
    """Whether every training process on this machine can have a CUDA device of its own."""
    return torch.cuda.is_available() and torch.cuda.device_count() >= local_processes()


def pick_device(name: str) -> torch.device:
    """'auto' -> cuda when every training process of this machine gets a GPU of its own, else cpu. Asking for
    cuda without one (or with fewer GPUs than processes), for a GPU index the machine lacks, or for a device
    torch does not know is a one-line error."""
    if name == "auto":
        return torch.device("cuda" if gpu_per_process() else "cpu")
    if name != "cpu" and not name.startswith("cuda"):
        raise VaekitError(f"device {name!r} is not one vaekit computes on; use auto, cpu, cuda or cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VaekitError("train.device is 'cuda' but no CUDA device is available; use --train.device cpu")
    if name.startswith("cuda") and not gpu_per_process():
        n = torch.cuda.device_count()
        raise VaekitError(f"train.device is 'cuda' but this machine runs {local_processes()} training processes "
                          f"and has {n} GPU{'s' if n != 1 else ''}, one per process is needed; use "
                          f"--train.nproc {n} or --train.device cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise VaekitError(f"device {name!r} is not a device name; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        raise VaekitError(f"device {name!r} names a GPU this machine lacks: it has {n} (cuda:0 to cuda:{n - 1}); "
                          f"use one of those or cuda")
    return device


def to_device(data: DataBundle, device: torch.device) -> DataBundle:
    """``data`` with its in-memory splits (not memory-mapped ones) copied to ``device`` once, so batches
    never cross the bus."""
    def move(split: Split | SparseSplit) -> Split | SparseSplit:
        if not isinstance(split, Split) or not isinstance(split.x, torch.Tensor):  # memory-mapped or sparse
            return split
        return dataclasses.replace(split, x=split.x.to(device))

    return dataclasses.replace(data, train=move(data.train), val=move(data.val), test=move(data.test))
