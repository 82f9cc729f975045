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
from typing import TYPE_CHECKING, Any

from vaekit.errors import VaekitError
from vaekit.images import is_image_shape

if TYPE_CHECKING:
    from vaekit.config import ModelConfig
    from vaekit.data.bundle import DataBundle

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

    def __post_init__(self) -> None:
        if self.condition not in CONDITIONS or (self.condition == "none") != (self.cond_dim == 0):
            raise ValueError(f"condition {self.condition!r} with cond_dim {self.cond_dim}: a conditional schema has "
                             "a condition of width >= 1, an unconditional one none")

    @classmethod
    def for_shape(cls, event_shape: Sequence[int], standardised: bool = False, condition: str = "none",
                  cond_dim: int = 0, n_classes: int = 0) -> DataSchema:
        shape = tuple(int(s) for s in event_shape)
        kind = "image" if is_image_shape(shape) else "vector"
        return cls(shape, kind, standardised, condition, cond_dim, n_classes)

    @classmethod
    def from_data(cls, data: DataBundle, config: ModelConfig) -> DataSchema:
        """The schema of a model of ``config`` trained on ``data``: its event shape and scaling, and for
        ``model.condition`` ``label`` the number of classes (labels one-hot, c_dim = n_classes), for
        ``covariates`` the width of the training split's covariates. A condition the data cannot supply is
        a one-line error."""
        standardised = data.loc is not None
        if config.condition == "none":
            return cls.for_shape(data.event_shape, standardised)
        if config.condition == "label":
            if data.train.y is None:
                raise VaekitError("model.condition is 'label' but the training data have no labels; give labelled "
                                  "data (a labelled dataset, --data.label_column, class sub-folders) or "
                                  "--model.condition none")
            n_classes = data.n_classes
            if n_classes < 2:
                raise VaekitError(f"model.condition is 'label' but the data have {n_classes} class; a label "
                                  "condition needs at least 2 classes (or use --model.condition none)")
            return cls.for_shape(data.event_shape, standardised, "label", n_classes, n_classes)
        if data.train.c is None:
            raise VaekitError("model.condition is 'covariates' but the data have no covariates; name the covariate "
                              "columns of the data (docs/data.md) or use --model.condition none")
        return cls.for_shape(data.event_shape, standardised, "covariates", int(data.train.c.shape[1]))

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
