"""The model's distributions: shapes for every variant, likelihood parity, standardisation, training."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

from vaekit.api import load
from vaekit.checkpoint import load_model, read_pointer
from vaekit.config import Config, ModelConfig, TrainConfig
from vaekit.data import DataConfig, load_data
from vaekit.model import VAE
from vaekit.objectives import elbo_terms
from vaekit.train import fit

VARIANTS = [
    ModelConfig(likelihood="bernoulli"),
    ModelConfig(likelihood="gaussian", sigma=0.2),
    ModelConfig(likelihood="gaussian-learned", variance="per-dim"),
    ModelConfig(likelihood="gaussian-learned", variance="per-output"),
    ModelConfig(posterior="full"),
    ModelConfig(kind="ae"),
]


@pytest.mark.parametrize("config", VARIANTS, ids=lambda c: f"{c.kind}-{c.likelihood}-{c.variance}-{c.posterior}")
@pytest.mark.parametrize("event_shape", [(6,), (8, 8), (3, 4, 4)])
def test_shapes_of_every_variant(config, event_shape):
    model = VAE(ModelConfig(**{**vars(config), "latent_dim": 3, "hidden": (16,)}), event_shape)
    x = torch.rand(5, *event_shape).round()
    q_z = model.encode(x)
    assert q_z.batch_shape == (5,) and q_z.event_shape == (3,)
    z = q_z.rsample((4,))
    assert z.shape == (4, 5, 3)
    p_x = model.decode(z)
    assert p_x.batch_shape == (4, 5) and p_x.event_shape == event_shape
    assert p_x.log_prob(x).shape == (4, 5)
    assert model.prior().event_shape == (3,)
    assert model.sample(7).shape == (7, *event_shape)
    assert model.reconstruct(x).shape == x.shape
    out = elbo_terms(model, x, n_samples=2)
    assert out.recon.shape == out.kl.shape == (5,) and out.loss.dim() == 0
    if config.kind == "ae":
        assert torch.all(out.kl == 0)
    else:
        assert torch.all(out.kl >= 0)


def test_bernoulli_decoder_matches_scipy_on_the_network_output():
    model = VAE(ModelConfig(latent_dim=2, hidden=(8,)), (4, 3))
    z, x = torch.randn(6, 2), torch.rand(6, 4, 3).round()
    logits = model.decode(z).base_dist.logits
    ref = stats.bernoulli.logpmf(x.numpy(), torch.sigmoid(logits).detach().double().numpy()).reshape(6, -1).sum(-1)
    np.testing.assert_allclose(model.decode(z).log_prob(x).detach().numpy(), ref, rtol=1e-4)


def test_gaussian_decoders_match_scipy():
    z, x = torch.randn(6, 2), torch.randn(6, 5)
    fixed = VAE(ModelConfig(latent_dim=2, hidden=(8,), likelihood="gaussian", sigma=0.3), (5,))
    mean = fixed.decode(z).mean.detach().numpy()
    ref = stats.norm.logpdf(x.numpy(), mean, 0.3).sum(-1)
    np.testing.assert_allclose(fixed.decode(z).log_prob(x).detach().numpy(), ref, rtol=1e-5)

    per_dim = VAE(ModelConfig(latent_dim=2, hidden=(8,), likelihood="gaussian-learned"), (5,))
    with torch.no_grad():
        per_dim.likelihood.log_sigma.copy_(torch.linspace(-1, 1, 5))
    sigma = torch.exp(torch.linspace(-1, 1, 5)).numpy()
    ref = stats.norm.logpdf(x.numpy(), per_dim.decode(z).mean.detach().numpy(), sigma).sum(-1)
    np.testing.assert_allclose(per_dim.decode(z).log_prob(x).detach().numpy(), ref, rtol=1e-5)

    per_out = VAE(ModelConfig(latent_dim=2, hidden=(8,), likelihood="gaussian-learned", variance="per-output"), (5,))
    p_x = per_out.decode(z)
    assert not torch.allclose(p_x.stddev, p_x.stddev[:1])  # a sigma per output, not one per dimension
    ref = stats.norm.logpdf(x.numpy(), p_x.mean.detach().numpy(), p_x.stddev.detach().numpy()).sum(-1)
    np.testing.assert_allclose(per_out.decode(z).log_prob(x).detach().numpy(), ref, rtol=1e-5)


def test_standardised_model_reports_densities_in_data_units():
    """Change of variables: log p(x) = log p_std((x - loc) / scale) - sum(log scale)."""
    torch.manual_seed(0)
    loc, scale = torch.randn(4) * 10, torch.rand(4) * 5 + 0.5
    config = ModelConfig(latent_dim=2, hidden=(8,), likelihood="gaussian-learned")
    std_model = VAE(config, (4,))
    model = VAE(config, (4,), data_loc=loc, data_scale=scale)
    model.load_state_dict({**std_model.state_dict(), "data_loc": loc, "data_scale": scale})
    x = torch.randn(6, 4) * scale + loc
    z = torch.randn(6, 2)
    expected = std_model.decode(z).log_prob((x - loc) / scale) - torch.log(scale).sum()
    torch.testing.assert_close(model.decode(z).log_prob(x), expected)
    torch.testing.assert_close(model.encode(x).mean, std_model.encode((x - loc) / scale).mean)


def test_overfits_one_small_batch():
    data = load_data(DataConfig(binarize="static"), "bernoulli")
    x = data.train.batch(torch.arange(32))
    torch.manual_seed(0)
    model = VAE(ModelConfig(latent_dim=4, hidden=(128,)), data.event_shape)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    first = elbo_terms(model, x).loss.item()
    for _ in range(300):
        opt.zero_grad()
        loss = elbo_terms(model, x).loss
        loss.backward()
        opt.step()
    final = elbo_terms(model, x, n_samples=16).loss.item()
    assert first > 40 and final < 0.4 * first


def tiny(name: str, **train) -> Config:
    return Config(name=name, model=ModelConfig(latent_dim=2, hidden=(32,)),
                  train=TrainConfig(**{"epochs": 2, "batch_size": 64, **train}), data=DataConfig(limit=400))


def test_save_load_round_trip_reproduces_outputs_exactly(tmp_path):
    run_dir, trainer = fit(tiny("roundtrip"), runs_root=tmp_path)
    last = read_pointer(run_dir / "checkpoints", "last")
    model, config, meta = load_model(last, device=trainer.device)  # the trainer's data live there (a GPU's)
    assert config == trainer.config and meta["event_shape"] == [8, 8]
    trainer.model.eval()
    x = trainer.data.test.all()
    torch.testing.assert_close(model.encode(x).mean, trainer.model.encode(x).mean, rtol=0, atol=0)
    z = torch.randn(5, 2, device=trainer.device)
    torch.testing.assert_close(model.decode(z).mean, trainer.model.decode(z).mean, rtol=0, atol=0)
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert isinstance(load(run_dir), VAE)


def test_same_seed_same_result_and_other_seed_differs(tmp_path):
    _, a = fit(tiny("a", seed=3), runs_root=tmp_path)
    _, b = fit(tiny("b", seed=3), runs_root=tmp_path)
    _, c = fit(tiny("c", seed=4), runs_root=tmp_path)
    sa, sb, sc = (t.model.state_dict() for t in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert a.state.best_val_elbo == b.state.best_val_elbo


def test_training_improves_validation_elbo_and_logs_every_epoch(tmp_path):
    run_dir, _ = fit(tiny("curve", epochs=6, warmup_steps=20), runs_root=tmp_path)

    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[-1]["val_elbo"] > rows[0]["val_elbo"]
    assert rows[0]["kl_weight"] < 1.0 and rows[-1]["kl_weight"] == 1.0
    assert all(math.isfinite(r["train_loss"]) and r["samples_per_s"] > 0 for r in rows)
    assert (run_dir / "config.toml").exists()
