"""Reach model weights through the public shape: a network is an ``nn.Module`` whose ``nn.Linear``
layers are found by type, whatever its internal layout."""

from __future__ import annotations

from torch import nn


def linear_layers(net: nn.Module) -> list[nn.Linear]:
    """The ``nn.Linear`` layers of ``net`` in order (a ``hidden=()`` MLP has exactly one)."""
    return [m for m in net.modules() if isinstance(m, nn.Linear)]


def only_linear(net: nn.Module) -> nn.Linear:
    """The single linear layer of a linear (``hidden=()``) network."""
    layers = linear_layers(net)
    assert len(layers) == 1, f"expected a linear network, found {len(layers)} linear layers"
    return layers[0]
