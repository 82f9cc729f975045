"""Active units, the collapse rule, the KL split and the linear probe against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_helpers import only_linear
from torch.distributions import Normal, kl_divergence

from vaekit import probes
from vaekit.config import ModelConfig
from vaekit.model import VAE


def linear_vae(latent: int, dims: int) -> VAE:
    return VAE(ModelConfig(likelihood="gaussian", hidden=(), latent_dim=latent), (dims,)).eval()


def test_active_units_of_a_known_linear_encoder_match_numpy_variances():
    model = linear_vae(4, 3)
    enc = only_linear(model.encoder)
    with torch.no_grad():
        enc.weight.zero_()
        enc.bias.zero_()
        enc.weight[0, 0] = 1.0  # var = var(x0) ~ 1       -> active
        enc.weight[1, 1] = 0.05  # var ~ 0.0025            -> inactive
        enc.weight[2, 2] = 0.2  # var ~ 0.04               -> active
        enc.bias[3] = 5.0  # constant code                 -> inactive
    x = torch.randn(2000, 3, generator=torch.Generator().manual_seed(0))
    means = probes.posterior_means(model, x, batch_size=300)
    np.testing.assert_allclose(means.numpy()[:, 0], x.numpy()[:, 0], rtol=0, atol=1e-6)
    n_active, var = probes.active_units(means)
    expected = np.var(means.numpy().astype(np.float64), axis=0)
    np.testing.assert_allclose(var.numpy(), expected, rtol=1e-6)
    assert n_active == int((expected > 0.01).sum()) == 2


@pytest.mark.parametrize(("active", "d", "warns"), [(0, 8, True), (1, 8, True), (2, 8, False), (0, 1, True),
                                                    (12, 50, True), (13, 50, False), (20, 20, False)])
def test_collapse_rule(active, d, warns):
    msg = probes.collapse_warning(active, d)
    assert (msg is not None) == warns
    if warns:
        assert f"{active} of {d}" in msg and "\n" not in msg


def test_mean_kl_per_dim_matches_torch_kl_divergence():
    model = linear_vae(3, 6)
    x = torch.randn(50, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        q = model.encode(x)
        ref = kl_divergence(q.base_dist, Normal(0.0, 1.0)).double().mean(0)
    got = probes.mean_kl_per_dim(model, x, batch_size=7)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_probe_accuracy_separable_random_and_subsampled():
    g = np.random.default_rng(0)
    train, test = g.normal(size=(3000, 4)), g.normal(size=(1000, 4))
    w = np.array([1.0, -2.0, 0.5, 0.0])

    def label(a):
        return torch.from_numpy((a @ w > 0).astype(np.int64) + 2 * (a[:, 3] > 1).astype(np.int64))

    tr, te = torch.from_numpy(train).float(), torch.from_numpy(test).float()
    acc = probes.probe_accuracy(tr, label(train), te, label(test))
    assert acc > 0.95
    # an independent count: the true linear rule classifies perfectly, the probe must come close to it
    small = probes.probe_accuracy(tr, label(train), te, label(test), max_train=60, seed=3)
    assert 0.7 < small <= acc + 0.02
    noise = torch.from_numpy(g.integers(0, 2, size=3000))
    chance = probes.probe_accuracy(tr, noise, te, torch.from_numpy(g.integers(0, 2, size=1000)))
    assert 0.4 < chance < 0.6
    one_class = probes.probe_accuracy(tr, torch.zeros(3000, dtype=torch.int64), te, label(test))
    assert one_class == pytest.approx(float((label(test) == 0).float().mean()))
