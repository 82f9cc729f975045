"""Convolutional encoder and decoder for images: event shape (H, W) (grey, no channel axis) or (C, H, W)
with C in {1, 3}, any height and width (odd ones included).

Each entry of ``model.channels`` is one block: a stride-2 convolution with ``model.kernel_size`` and
padding (k - 1) // 2, then ``model.activation``. The encoder flattens the last feature map, appends the
condition c (if any) and maps linearly to the posterior head's parameters. The decoder maps (z [, c])
linearly to the encoder's last feature-map shape and retraces the blocks with stride-2 transposed
convolutions (their ``output_padding`` chosen per side so every map has exactly the encoder's size),
the last one producing P * C channels at (H, W), reshaped to (m, P, *event_shape).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from torch import Tensor, nn

from vaekit.errors import VaekitError
from vaekit.networks import DECODERS, ENCODERS, DecoderNet, EncoderNet, with_condition
from vaekit.networks.mlp import ACTIVATIONS

if TYPE_CHECKING:
    from vaekit.config import ModelConfig


def image_layout(event_shape: Sequence[int], option: str) -> tuple[int, int, int]:
    """(C, H, W) of an image event shape (H, W) or (C, H, W), C in {1, 3}; anything else is a one-line
    VaekitError naming ``option`` (``model.encoder`` / ``model.decoder``) and the fix."""
    shape = tuple(int(s) for s in event_shape)
    if len(shape) == 2 and min(shape) >= 1:
        return 1, shape[0], shape[1]
    if len(shape) == 3 and shape[0] in (1, 3) and min(shape[1:]) >= 1:
        return shape[0], shape[1], shape[2]
    raise VaekitError(f"{option} conv needs images of shape (H, W) or (C, H, W) with C = 1 or 3, but the data "
                      f"have event shape {shape}; use --{option} mlp")


def _padding(kernel: int) -> int:
    return (kernel - 1) // 2


def feature_sizes(height: int, width: int, n_blocks: int, kernel: int, option: str) -> list[tuple[int, int]]:
    """Spatial sizes (h, w) before the first block and after each of ``n_blocks`` stride-2 blocks."""
    sizes = [(height, width)]
    p = _padding(kernel)
    for _ in range(n_blocks):
        h, w = sizes[-1]
        nxt = ((h + 2 * p - kernel) // 2 + 1, (w + 2 * p - kernel) // 2 + 1)
        if min(nxt) < 1:
            raise VaekitError(f"{option} conv: {height}x{width} images are too small for {n_blocks} stride-2 "
                              f"blocks with kernel {kernel}; use fewer --model.channels entries or a smaller "
                              "--model.kernel_size")
        sizes.append(nxt)
    return sizes



@ENCODERS.register("conv")
class ConvEncoder(EncoderNet):
    """x (n, *event_shape) -> (n, C, H, W) -> ``model.channels`` stride-2 conv blocks -> flatten, append c
    (n, c_dim) -> linear -> (n, out_features)."""

    accepts_flat = False

    def __init__(self, event_shape: Sequence[int], cond_dim: int, out_features: int, config: ModelConfig) -> None:
        super().__init__()
        self.layout = image_layout(event_shape, "model.encoder")
        c, h, w = self.layout
        k = config.kernel_size
        sizes = feature_sizes(h, w, len(config.channels), k, "model.encoder")
        layers: list[nn.Module] = []
        for a, b in zip((c, *config.channels), config.channels, strict=False):
            layers += [nn.Conv2d(a, b, k, stride=2, padding=_padding(k)), ACTIVATIONS[config.activation]()]
        self.convs = nn.Sequential(*layers)
        last = config.channels[-1] if config.channels else c
        self.head = nn.Linear(last * sizes[-1][0] * sizes[-1][1] + cond_dim, out_features)

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        h = self.convs(x.reshape(x.shape[0], *self.layout)).flatten(1)
        return self.head(with_condition(h, c))


@DECODERS.register("conv")
class ConvDecoder(DecoderNet):
    """z (m, d), c (m, c_dim) -> linear -> (m, channels[-1], h_L, w_L) -> stride-2 transposed convs back
    through the encoder's sizes -> (m, P * C, H, W) -> (m, P, *event_shape) (= (m, *out_shape))."""

    def __init__(self, latent_dim: int, cond_dim: int, out_shape: Sequence[int], config: ModelConfig) -> None:
        super().__init__()
        self.out_shape = tuple(int(s) for s in out_shape)
        c, h, w = image_layout(self.out_shape[1:], "model.decoder")
        p_out = self.out_shape[0] * c
        k = config.kernel_size
        sizes = feature_sizes(h, w, len(config.channels), k, "model.decoder")
        widths = [p_out, *config.channels]  # widths[i]: channels of the map of size sizes[i]
        self.start = (widths[-1], *sizes[-1])
        self.head = nn.Linear(latent_dim + cond_dim, widths[-1] * sizes[-1][0] * sizes[-1][1])
        act = ACTIVATIONS[config.activation]
        layers: list[nn.Module] = [act()] if config.channels else []
        pad = _padding(k)
        for i in range(len(config.channels), 0, -1):
            (hi, wi), (ho, wo) = sizes[i], sizes[i - 1]
            natural = ((hi - 1) * 2 - 2 * pad + k, (wi - 1) * 2 - 2 * pad + k)
            extra = (ho - natural[0], wo - natural[1])  # 0 or 1: restores an odd side exactly
            layers.append(nn.ConvTranspose2d(widths[i], widths[i - 1], k, stride=2, padding=pad, output_padding=extra))
            if i > 1:
                layers.append(act())
        self.deconvs = nn.Sequential(*layers)

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        h = self.head(with_condition(z, c)).reshape(z.shape[0], *self.start)
        return self.deconvs(h).reshape(z.shape[0], *self.out_shape)
