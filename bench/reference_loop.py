"""The canonical VAE training loop that most VAE code copies, as the baseline for ``bench/throughput.py``.

A faithful re-statement of the pytorch/examples ``vae/main.py`` loop (pythae's trainer runs at the same
speed): a ``DataLoader`` over a ``TensorDataset`` (per-item ``__getitem__`` plus ``default_collate``),
sigmoid decoder outputs scored with ``F.binary_cross_entropy(recon, x, reduction='sum')``, the
closed-form KL, plain (for-each) ``torch.optim.Adam`` and a per-step host sync ``loss.item()``.
The maths is the same as vaekit's 784-400-20 Bernoulli VAE, so the two loops differ only in mechanics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset


class ReferenceVAE(nn.Module):
    """784 -> 400 -> (20, 20) encoder, 20 -> 400 -> 784 sigmoid decoder (pytorch/examples layout)."""

    def __init__(self, data_dim: int = 784, hidden: int = 400, latent: int = 20) -> None:
        super().__init__()
        self.data_dim = data_dim
        self.fc1 = nn.Linear(data_dim, hidden)
        self.fc21 = nn.Linear(hidden, latent)
        self.fc22 = nn.Linear(hidden, latent)
        self.fc3 = nn.Linear(latent, hidden)
        self.fc4 = nn.Linear(hidden, data_dim)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu: Tensor, logvar: Tensor) -> Tensor:
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z: Tensor) -> Tensor:
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (b, ...) in [0, 1] -> (x_hat (b, 784) probabilities, mu (b, 20), logvar (b, 20))."""
        mu, logvar = self.encode(x.view(-1, self.data_dim))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def loss_function(recon_x: Tensor, x: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """Summed negative ELBO of the batch in nats (BCE on probabilities + closed-form KL)."""
    bce = F.binary_cross_entropy(recon_x, x.view(-1, recon_x.shape[-1]), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


class ReferenceLoop:
    """Model, optimiser and loader of the canonical loop; ``train_epoch`` is its ``train(epoch)``."""

    def __init__(self, x_train: Tensor, batch_size: int, device: str = "cpu", seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.device = torch.device(device)
        self.model = ReferenceVAE(data_dim=int(x_train[0].numel())).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        dataset = TensorDataset(x_train, torch.zeros(len(x_train), dtype=torch.long))  # (image, label) pairs
        self.loader = DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                 pin_memory=self.device.type == "cuda")

    def train_epoch(self) -> tuple[float, int]:
        """One pass over the loader; returns (mean loss per example in nats, examples seen)."""
        self.model.train()
        train_loss, seen = 0.0, 0
        for data, _ in self.loader:
            data = data.to(self.device)
            self.optimizer.zero_grad()
            recon_batch, mu, logvar = self.model(data)
            loss = loss_function(recon_batch, data, mu, logvar)
            loss.backward()
            train_loss += loss.item()
            self.optimizer.step()
            seen += len(data)
        return train_loss / max(seen, 1), seen
