"""What flows from the data to the loss: a :class:`Batch`.

``x`` (n, *event_shape) in data units is always there. ``y`` (n,) int64 class labels, ``c`` (n, c_dim)
float condition (covariates, or labels one-hot, the input of a conditional VAE) and ``mask`` (n,
*event_shape) bool, True where an entry is observed, are there when the data have them. Every model
entry point that takes a batch also takes a plain tensor x (:func:`as_batch`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor


@dataclass(frozen=True)
class Batch:
    """One minibatch: ``x`` with optional ``y``, ``c`` and ``mask`` (shapes in the module docstring)."""

    x: Tensor
    y: Tensor | None = None
    c: Tensor | None = None
    mask: Tensor | None = None

    def __post_init__(self) -> None:
        n = self.x.shape[0]
        for name in ("y", "c", "mask"):
            value = getattr(self, name)
            if value is not None and value.shape[0] != n:
                raise ValueError(f"batch field {name} has {value.shape[0]} rows for {n} examples in x")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """The batch with every tensor on ``device`` (the batch itself when they all are there already)."""
        device = torch.device(device)
        if all(t is None or t.device == device for t in (self.x, self.y, self.c, self.mask)):
            return self
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device, non_blocking=non_blocking)
        return Batch(self.x.to(device, non_blocking=non_blocking), move(self.y), move(self.c), move(self.mask))

    def with_x(self, x: Tensor) -> Batch:
        """The same batch with another x (e.g. x checked and reshaped to the model's event shape)."""
        return replace(self, x=x)


def as_batch(x: Tensor | Batch, c: Tensor | None = None, y: Tensor | None = None) -> Batch:
    """``x`` itself when it is a Batch (``c``/``y`` given here fill its empty fields), else a Batch
    around the tensor ``x``."""
    if isinstance(x, Batch):
        if c is None and y is None:
            return x
        return replace(x, c=x.c if c is None else c, y=x.y if y is None else y)
    return Batch(x, y=y, c=c)
