"""KL control and the IWAE objective's settings: the cyclical schedule and free bits as pure functions,
free bits in the loss, the explicit IWAE k, and the refusals (ae + iwae, beta / warm-up with iwae)."""

from __future__ import annotations

import math

import pytest
import torch

from vaekit import distributions as D
from vaekit.bounds import elbo_terms, free_bits_kl
from vaekit.config import Config, ModelConfig, TrainConfig, apply_overrides
from vaekit.errors import VaekitError
from vaekit.model import VAE, build_model
from vaekit.objectives import Objective, cyclical_kl_weight, kl_weight, kl_weight_of
from vaekit.schema import DataSchema


def test_cyclical_schedule_ramps_then_holds_in_every_cycle():
    total, cycles, ratio, beta = 100, 4, 0.5, 2.0  # cycles of 25 steps: ramp over 12.5, hold for 12.5
    w = [cyclical_kl_weight(s, total, beta, cycles, ratio) for s in range(total)]
    for start in (0, 25, 50, 75):
        assert w[start] == 0.0
        assert w[start + 5] == pytest.approx(beta * 5 / 12.5)
        assert w[start + 12] == pytest.approx(beta * 12 / 12.5)
        assert all(v == beta for v in w[start + 13:start + 25])
    assert max(w) == beta and min(w) == 0.0
    assert cyclical_kl_weight(7, 10, 1.0, 1, 1.0) == pytest.approx(0.7)  # one cycle, ratio 1: linear warm-up
    assert [cyclical_kl_weight(s, 10, 1.0, 1, 1.0) for s in range(10)] == \
        pytest.approx([kl_weight(s, 10, 1.0) for s in range(10)])
    with pytest.raises(ValueError):
        cyclical_kl_weight(0, 10, 1.0, 0, 0.5)


def test_kl_weight_of_follows_the_configured_schedule():
    cyc = TrainConfig(kl_schedule="cyclical", kl_cycles=2, kl_ratio=0.25, beta=1.0)
    assert kl_weight_of(cyc, 60, 100) == pytest.approx(cyclical_kl_weight(60, 100, 1.0, 2, 0.25))
    lin = TrainConfig(warmup_steps=10, beta=0.5)
    assert kl_weight_of(lin, 5, 100) == pytest.approx(0.25)
    assert kl_weight_of(TrainConfig(objective="iwae", iwae_k=5), 3, 100) == 1.0


def test_free_bits_floor_is_per_group_on_the_batch_mean():
    kl = torch.tensor([[0.1, 2.0, 0.0], [0.3, 4.0, 0.0]])  # (m = 2, G = 3): batch means 0.2, 3.0, 0.0
    assert float(free_bits_kl(kl, 1, 0.0)) == pytest.approx(3.2)
    assert float(free_bits_kl(kl, 1, 0.5)) == pytest.approx(0.5 + 3.0 + 0.5)
    assert float(free_bits_kl(kl, 2, 0.5)) == pytest.approx(1.0 + 3.0 + 1.0)  # groups of 2 dimensions
    k = kl.clone().requires_grad_(True)
    free_bits_kl(k, 1, 0.5).backward()
    assert k.grad is not None
    torch.testing.assert_close(k.grad, torch.tensor([[0.0, 0.5, 0.0], [0.0, 0.5, 0.0]]))  # floored groups: none


def test_free_bits_in_the_elbo_loss_closed_form_and_monte_carlo():
    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((6, 5), 0.4), generator=torch.Generator().manual_seed(0))
    model = VAE(ModelConfig(latent_dim=3, hidden=(8,), likelihood="bernoulli"), (5,))
    torch.manual_seed(1)
    out = elbo_terms(model, x, beta=0.7, free_bits=1.5)
    per_dim = D.kl_per_dim(model.encode(x)).detach()
    expected = -(out.recon.mean() - 0.7 * torch.clamp(per_dim.mean(0), min=1.5).sum())
    torch.testing.assert_close(out.loss, expected)
    torch.testing.assert_close(out.bound, out.recon - 0.7 * out.kl)  # the record keeps the true ELBO

    mog = build_model(ModelConfig(latent_dim=3, hidden=(8,), likelihood="bernoulli", prior="mog",
                                  prior_components=2), DataSchema.for_shape((5,)))
    torch.manual_seed(2)
    mc = elbo_terms(mog, x, n_samples=2, free_bits=10.0)  # one group of d = 3 dims: floor 30 nats
    torch.testing.assert_close(mc.loss, -(mc.recon.mean() - torch.clamp(mc.kl.mean(), min=30.0)))


def test_iwae_k_is_its_own_setting():
    tc = TrainConfig(objective="iwae", iwae_k=7)
    assert tc.k == 7 and TrainConfig(objective="iwae", n_samples=4).k == 4  # the older spelling still reads
    model = VAE(ModelConfig(latent_dim=2, hidden=(8,)), (5,))
    assert Objective.of(model, tc).n_samples == 7 and Objective.of(model, tc).kind == "iwae"
    with pytest.raises(VaekitError, match="train.iwae_k"):
        TrainConfig(iwae_k=5)  # elbo
    with pytest.raises(VaekitError, match="train.n_samples"):
        TrainConfig(objective="iwae", iwae_k=5, n_samples=3)


@pytest.mark.parametrize("key, value", [("train.beta", "0.5"), ("train.warmup_steps", "10"),
                                        ("train.free_bits", "0.1"), ("train.kl_schedule", "cyclical")])
def test_iwae_refuses_kl_weights_with_one_line(key, value):
    with pytest.raises(VaekitError, match="objective iwae") as err:
        apply_overrides(Config(), {"train.objective": "iwae", key: value})
    assert "\n" not in str(err.value) and key in str(err.value)


def test_autoencoder_with_iwae_is_an_error_not_a_fallback():
    with pytest.raises(VaekitError, match="autoencoder"):
        apply_overrides(Config(), {"model.kind": "ae", "train.objective": "iwae"})
    ae = VAE(ModelConfig(kind="ae", latent_dim=2, hidden=(8,)), (5,))
    with pytest.raises(VaekitError, match="no posterior density"):
        Objective(ae, "iwae", 5)


def test_cyclical_refuses_a_linear_warmup():
    with pytest.raises(VaekitError, match="train.warmup_steps"):
        TrainConfig(kl_schedule="cyclical", warmup_steps=5)
    assert math.isfinite(TrainConfig(kl_schedule="cyclical").kl_ratio)
