"""Networks: the tensor-to-tensor maps inside a model, chosen by ``model.encoder`` / ``model.decoder``.

An :class:`EncoderNet` maps x (n, *event_shape) and an optional condition c (n, c_dim) to the
posterior head's parameters (n, out_features). A :class:`DecoderNet` maps codes z (m, d) and an optional
condition c (m, c_dim) to the likelihood's parameters (m, *out_shape), out_shape = (P, *event_shape)
with P parameters per data element (1 for a Bernoulli's logits, 2 for a Gaussian's mean and log sigma).
Neither knows about distributions. Register a new network with ``@ENCODERS.register("name")`` /
``@DECODERS.register("name")`` on a class whose constructor takes the arguments below.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor, nn

from vaekit.registry import Registry

if TYPE_CHECKING:
    from vaekit.config import ModelConfig


class EncoderNet(nn.Module, ABC):
    """(n, *event_shape), c (n, c_dim) or None -> (n, out_features).

    Constructor: ``(event_shape, cond_dim, out_features, config: ModelConfig)``. ``accepts_flat``: the
    network reads each example as one flat vector, so inputs of another shape with as many values are
    accepted (reshaped, with a warning: :mod:`vaekit.inputs`); a convolutional network says False."""

    accepts_flat: ClassVar[bool] = False

    @abstractmethod
    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor: ...


class DecoderNet(nn.Module, ABC):
    """(m, d), c (m, c_dim) or None -> (m, *out_shape).

    Constructor: ``(latent_dim, cond_dim, out_shape, config: ModelConfig)``, out_shape = (P, *event_shape)."""

    @abstractmethod
    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor: ...


ENCODERS: Registry[type[EncoderNet]] = Registry("encoder network", "model.encoder")
DECODERS: Registry[type[DecoderNet]] = Registry("decoder network", "model.decoder")


def with_condition(h: Tensor, c: Tensor | None) -> Tensor:
    """Features h (m, k) with the condition c (m, c_dim) appended on the last axis (h itself without one)."""
    return h if c is None else torch.cat([h, c.to(h.dtype)], dim=-1)


def build_encoder(config: ModelConfig, event_shape: Sequence[int], cond_dim: int, out_features: int) -> EncoderNet:
    return ENCODERS.get(config.encoder)(tuple(event_shape), cond_dim, out_features, config)


def build_decoder(config: ModelConfig, cond_dim: int, out_shape: Sequence[int]) -> DecoderNet:
    return DECODERS.get(config.decoder)(config.latent_dim, cond_dim, tuple(out_shape), config)


def networks_accept_flat(config: ModelConfig) -> bool:
    """Whether the encoder ``config`` builds reads flat vectors (an MLP) rather than a fixed shape."""
    return ENCODERS.get(config.encoder).accepts_flat


from vaekit.networks import conv as conv  # noqa: E402  (registers the convolutional networks)
from vaekit.networks import mlp as mlp  # noqa: E402  (registers the MLP networks)
