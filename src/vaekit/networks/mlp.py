"""MLP encoder and decoder: fully connected layers over each example flattened to one vector."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from torch import Tensor, nn

from vaekit.networks import DECODERS, ENCODERS, DecoderNet, EncoderNet, with_condition

if TYPE_CHECKING:
    from vaekit.config import ModelConfig

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
}


class MLP(nn.Module):
    """(..., in_features) -> (..., out_features) through ``hidden`` widths with ``activation`` between
    layers and a linear output layer (``net`` is the ``nn.Sequential``)."""

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: int, activation: str) -> None:
        super().__init__()
        widths = [in_features, *hidden]
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            layers += [nn.Linear(a, b), ACTIVATIONS[activation]()]
        layers.append(nn.Linear(widths[-1], out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return run_layers(self.net, x)


def run_layers(net: nn.Sequential, x: Tensor) -> Tensor:
    """``net(x)``: each layer called in turn (its hooks run), without the container's own call."""
    for layer in net:
        x = layer(x)
    return x



@ENCODERS.register("mlp")
class MLPEncoder(EncoderNet):
    """x (n, *event_shape) flattened to (n, D), concatenated with c (n, c_dim), through ``model.hidden``."""

    accepts_flat = True

    def __init__(self, event_shape: Sequence[int], cond_dim: int, out_features: int, config: ModelConfig) -> None:
        super().__init__()
        self.net = MLP(math.prod(event_shape) + cond_dim, config.hidden, out_features, config.activation).net

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        return run_layers(self.net, with_condition(x.flatten(1), c))


@DECODERS.register("mlp")
class MLPDecoder(DecoderNet):
    """z (m, d) concatenated with c (m, c_dim), through ``model.hidden`` reversed, to (m, *out_shape)."""

    def __init__(self, latent_dim: int, cond_dim: int, out_shape: Sequence[int], config: ModelConfig) -> None:
        super().__init__()
        self.out_shape = tuple(out_shape)
        self.net = MLP(latent_dim + cond_dim, tuple(reversed(config.hidden)), math.prod(self.out_shape),
                       config.activation).net

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        return run_layers(self.net, with_condition(z, c)).reshape(z.shape[0], *self.out_shape)
