"""What a model knows about its data, saved with every checkpoint (``meta.json["schema"]``).

``event_shape`` (one example's shape), ``kind`` (``image`` for (H, W) / (C, H, W) pictures, ``vector``
otherwise), ``standardised`` (the model holds a data transform loc/scale), and for a conditional model
``condition`` (``label``: labels one-hot, ``covariates``: a float vector), ``cond_dim`` (the width of the
condition c) and ``n_classes`` (for labels). Checkpoints older than format 3 have no schema; it is read
from their ``event_shape`` and ``standardised`` keys (:meth:`DataSchema.from_meta`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from vaekit.errors import VaekitError
from vaekit.images import is_image_shape

CONDITIONS = ("none", "label", "covariates")


@dataclass(frozen=True)
class DataSchema:
    """See the module docstring."""

    event_shape: tuple[int, ...]
    kind: str = "vector"
    standardised: bool = False
    condition: str = "none"
    cond_dim: int = 0
    n_classes: int = 0

    @classmethod
    def for_shape(cls, event_shape: Sequence[int], standardised: bool = False, condition: str = "none",
                  cond_dim: int = 0, n_classes: int = 0) -> DataSchema:
        shape = tuple(int(s) for s in event_shape)
        kind = "image" if is_image_shape(shape) else "vector"
        return cls(shape, kind, standardised, condition, cond_dim, n_classes)

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> DataSchema:
        """The schema of a checkpoint's metadata (any format)."""
        raw = meta.get("schema")
        if raw is None:  # formats 1 and 2
            return cls.for_shape(meta["event_shape"], bool(meta.get("standardised")))
        try:
            return cls(tuple(int(s) for s in raw["event_shape"]), str(raw["kind"]), bool(raw["standardised"]),
                       str(raw.get("condition", "none")), int(raw.get("cond_dim", 0)), int(raw.get("n_classes", 0)))
        except (KeyError, TypeError, ValueError) as err:
            raise VaekitError(f"the checkpoint's schema is invalid ({err}); the checkpoint is corrupted, use "
                              "another one") from None

    def to_meta(self) -> dict[str, Any]:
        out = asdict(self)
        out["event_shape"] = list(self.event_shape)
        return out
