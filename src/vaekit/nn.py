"""Network blocks: plain ``nn.Module`` MLPs with shapes in the docstrings."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from torch import Tensor, nn

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
}


class MLP(nn.Module):
    """(..., in_features) -> (..., out_features) through ``hidden`` widths with ``activation`` between
    layers and a linear output layer.

    ``accepts_flat = True``: the network reads each example as one flat vector, so data whose examples
    hold the same number of values in another shape (28x28 vs 784) mean the same to it
    (:func:`vaekit.inputs.conform_shape`). A convolutional network would set False: it needs the image
    shape it was trained on."""

    accepts_flat: bool = True

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: int, activation: str) -> None:
        super().__init__()
        widths = [in_features, *hidden]
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            layers += [nn.Linear(a, b), _ACTIVATIONS[activation]()]
        layers.append(nn.Linear(widths[-1], out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def networks_accept_flat(config: object) -> bool:
    """Whether the networks a model config builds read flat vectors (every network is an :class:`MLP`
    today; a config that builds a convolutional network would answer False)."""
    return MLP.accepts_flat
