"""(library for bench/throughput.py) A tight eager training loop with vaekit's maths and none of its machinery.

The same 784-400-20 ReLU VAE (encoder 784-400-(20 means, 20 log-variances), decoder 20-400-784 logits), the same
data as vaekit serves them (the uint8 training images held in memory, each batch converted to float32 grey
levels and dynamically binarised with u < p), the same loss (per-example sum of -(x*l - softplus(l)) plus the
closed-form KL, averaged over the batch), torch's fused Adam, a random permutation per epoch, and no host reads
inside the epoch (the loss is summed on the device). What a careful engineer would write by hand: the bound
vaekit's own epoch is compared with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TightLoop:
    """``train_epoch()`` runs one epoch over ``images`` (uint8 (n, 28, 28) or float32 grey levels in [0, 1])."""

    def __init__(self, images: Tensor, batch_size: int, seed: int = 0, scale: float = 1 / 255) -> None:
        g = torch.Generator().manual_seed(seed)
        self.images, self.batch, self.scale = images.reshape(len(images), -1), batch_size, scale
        self.gen = torch.Generator().manual_seed(seed + 1)
        d = self.images.shape[1]

        def linear(i: int, o: int) -> nn.Linear:
            layer = nn.Linear(i, o)
            with torch.no_grad():
                bound = 1 / i ** 0.5
                layer.weight.uniform_(-bound, bound, generator=g)
                layer.bias.uniform_(-bound, bound, generator=g)
            return layer

        self.enc1, self.enc2, self.dec1, self.dec2 = linear(d, 400), linear(400, 40), linear(20, 400), linear(400, d)
        params = [p for m in (self.enc1, self.enc2, self.dec1, self.dec2) for p in m.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=1e-3, fused=True)

    def loss(self, x: Tensor) -> Tensor:
        mu, logvar = self.enc2(F.relu(self.enc1(x))).chunk(2, dim=-1)
        z = mu + torch.randn(mu.shape, generator=self.gen) * (0.5 * logvar).exp()
        logits = self.dec2(F.relu(self.dec1(z)))
        log_px = (x * logits).sum(-1) - F.softplus(logits).sum(-1)
        kl = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(-1)
        return (kl - log_px).mean()

    def train_epoch(self) -> float:
        n = len(self.images)
        perm = torch.randperm(n, generator=self.gen)
        total = torch.zeros(())
        for start in range(0, n, self.batch):
            idx = perm[start:start + self.batch]
            p = self.images.index_select(0, idx).to(torch.float32).mul_(self.scale)
            x = (torch.rand(p.shape, generator=self.gen) < p).to(torch.float32)
            loss = self.loss(x)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.detach() * len(idx)
        return float(total) / n
