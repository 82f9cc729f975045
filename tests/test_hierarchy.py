"""The two-level hierarchical VAE (``model.levels = 2``): its importance-sampled log p(x) converges to the exact
marginal of a linear-Gaussian two-level model set by hand; every estimator runs through the one likelihood path;
the KL per level is recorded; the CLI trains, evaluates and samples it end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_vaekit
from scipy import stats

from vaekit.bounds import elbo_terms, iwae_terms
from vaekit.config import ModelConfig
from vaekit.evaluate import log_likelihood
from vaekit.hierarchy import HierarchicalVAE, TwoLevelPosterior, TwoLevelPrior
from vaekit.model import build_model, family_of
from vaekit.schema import DataSchema

D_X, D_Z, SIGMA, S1 = 3, 1, 0.5, 0.7


def linear_gaussian(seed: int = 0) -> tuple[HierarchicalVAE, np.ndarray, np.ndarray]:
    """p(z2) = N(0, I), p(z1|z2) = N(A z2 + b, S1^2 I), p(x|z1, z2) = N(W1 z1 + W2 z2 + c, SIGMA^2 I), all set
    by hand in the model's own layers (linear: ``hidden = ()``). Returns the model and the exact marginal's
    mean (D_X,) and covariance (D_X, D_X)."""
    torch.manual_seed(seed)
    config = ModelConfig(levels=2, latent_dim=D_Z, hidden=(), likelihood="gaussian", sigma=SIGMA)
    model = build_model(config, DataSchema.for_shape((D_X,)))
    assert isinstance(model, HierarchicalVAE) and model.latent_dim == 2 * D_Z
    g = torch.Generator().manual_seed(seed + 1)
    A, b = torch.randn(D_Z, D_Z, generator=g), torch.randn(D_Z, generator=g)
    W = torch.randn(D_X, 2 * D_Z, generator=g)  # [W1, W2]
    c = torch.randn(D_X, generator=g)
    prior_net, decoder = model.latent_prior.net.net[0], model.decoder.net[0]
    with torch.no_grad():
        prior_net.weight.copy_(torch.cat([A, torch.zeros(D_Z, D_Z)]))  # rows: mean, then log-variance
        prior_net.bias.copy_(torch.cat([b, torch.full((D_Z,), 2 * math.log(S1))]))
        decoder.weight.copy_(W)
        decoder.bias.copy_(c)
    W1, W2 = W[:, :D_Z].double().numpy(), W[:, D_Z:].double().numpy()
    An, bn, cn = A.double().numpy(), b.double().numpy(), c.double().numpy()
    M = W1 @ An + W2
    cov = M @ M.T + S1 ** 2 * W1 @ W1.T + SIGMA ** 2 * np.eye(D_X)
    return model.eval(), W1 @ bn + cn, cov


def test_importance_sampled_log_px_converges_to_the_exact_two_level_marginal():
    model, mean, cov = linear_gaussian()
    x = torch.tensor(stats.multivariate_normal(mean, cov).rvs(12, random_state=np.random.default_rng(0)),
                     dtype=torch.float32)
    exact = stats.multivariate_normal(mean, cov).logpdf(x.double().numpy())
    errors = {}
    for k in (1, 30, 3000):
        est = log_likelihood(model, x, k=k, chunk=500, batch_size=12, seed=3).numpy()
        errors[k] = float(np.abs(est - exact).mean())
    # the k-sample estimate is a stochastic lower bound whose bias shrinks as k grows (the untrained encoder
    # is a poor proposal, so k = 1 is far off)
    assert errors[1] > errors[30] > errors[3000], errors
    assert errors[3000] < 0.05, errors
    naive = log_likelihood(model, x, k=20000, chunk=2000, batch_size=12, seed=4, proposal="prior").numpy()
    assert float(np.abs(naive - exact).mean()) < 0.1  # the prior proposal (z2 then z1) too, at a large k


def test_two_level_densities_are_the_product_of_the_levels():
    model, _, _ = linear_gaussian()
    x = torch.randn(4, D_X)
    q = model.encode(x)
    assert isinstance(q, TwoLevelPosterior) and q.batch_shape == (4,) and q.event_shape == (2 * D_Z,)
    z = q.rsample((5,))
    assert z.shape == (5, 4, 2 * D_Z)
    p = model.prior()
    assert isinstance(p, TwoLevelPrior)
    z1, z2 = z[..., :D_Z], z[..., D_Z:]
    net = model.latent_prior.net
    mu, logvar = net(z2).split(D_Z, -1)
    by_hand = (torch.distributions.Normal(mu, (0.5 * logvar).exp()).log_prob(z1).sum(-1)
               + torch.distributions.Normal(0.0, 1.0).log_prob(z2).sum(-1))
    torch.testing.assert_close(p.log_prob(z), by_hand)
    lq = q.log_prob_levels(z)
    torch.testing.assert_close(lq.sum(-1), q.log_prob(z))
    torch.testing.assert_close(lq[..., 1], q.top.log_prob(z2))


@pytest.mark.parametrize("prior", ["standard-normal", "vamp"])
def test_every_estimator_runs_and_the_kl_is_split_by_level(prior):
    torch.manual_seed(0)
    config = ModelConfig(levels=2, prior=prior, prior_components=3, latent_dim=2, hidden=(8,), likelihood="bernoulli")
    assert family_of(config) == "hvae"
    model = build_model(config, DataSchema.for_shape((6,)))
    x = torch.bernoulli(torch.full((5, 6), 0.5), generator=torch.Generator().manual_seed(0))
    out = elbo_terms(model, x, n_samples=3)
    assert out.kl_estimator == "monte-carlo" and out.kl_levels is not None and out.kl_levels.shape == (5, 2)
    torch.testing.assert_close(out.kl_levels.sum(-1), out.kl)
    iw = iwae_terms(model, x, 7)
    assert iw.kl_levels is not None and iw.bound.shape == (5,)
    model.eval()
    with torch.no_grad():
        ll = log_likelihood(model, x, k=50, chunk=20, batch_size=2, seed=0)
        naive = log_likelihood(model, x, k=50, chunk=20, batch_size=2, seed=0, proposal="prior")
    assert bool(torch.isfinite(ll).all() and torch.isfinite(naive).all())
    s = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert s.shape == (3, 6)


def test_cli_trains_evaluates_and_samples_a_hierarchical_vamp_run(tmp_path: Path):
    run_vaekit("train", "--name", "h", "--data.name", "digits", "--model.levels", "2", "--model.prior", "vamp",
               "--model.prior_components", "4", "--model.latent_dim", "2", "--model.hidden", "16", "--train.epochs",
               "2", "--train.batch_size", "64", "--train.device", "cpu", "--train.kl_schedule", "cyclical",
               "--train.free_bits", "0.05", "--no-artifacts", cwd=tmp_path, check=True)
    rows = [json.loads(line) for line in (tmp_path / "runs/h/metrics.jsonl").read_text().splitlines()]
    for row in rows:  # the validation KL per level, summing to the KL
        assert math.isclose(row["val_kl_z1"] + row["val_kl_z2"], row["val_kl"], rel_tol=1e-6, abs_tol=1e-6)
    run_vaekit("eval", "runs/h", "--k", "20", "--naive-k", "20", cwd=tmp_path, check=True)
    result = json.loads((tmp_path / "runs/h/eval.json").read_text())
    assert set(result["kl_levels_nats"]) == {"z1", "z2"} and set(result["active_units_levels"]) == {"z1", "z2"}
    assert sum(result["active_units_levels"].values()) == result["active_units"]
    assert math.isclose(sum(result["kl_levels_nats"].values()), result["kl_nats"], rel_tol=1e-6, abs_tol=1e-6)
    assert result["latent_dim"] == 4 and result["log_likelihood_nats"] < 0
    run_vaekit("sample", "runs/h", "-n", "6", "--out", "s.npy", cwd=tmp_path, check=True)
    assert np.load(tmp_path / "s.npy").shape == (6, 8, 8)


@pytest.mark.parametrize(("prior", "name"), [("standard-normal", "two-level p(z2) p(z1 | z2), p(z2) N(0, I)"),
                                             ("vamp", "two-level p(z2) p(z1 | z2), p(z2) learned vamp")])
def test_report_and_explorer_name_the_two_level_prior_alike(prior, name):
    from vaekit.report.latent import is_standard_prior, prior_name

    config = ModelConfig(levels=2, prior=prior, prior_components=3, latent_dim=2, hidden=(8,), likelihood="bernoulli")
    model = build_model(config, DataSchema.for_shape((6,)))
    assert not is_standard_prior(model)  # p(z1 | z2) is learned even under an N(0, I) top
    assert prior_name(model) == name
    flat = build_model(ModelConfig(latent_dim=2, hidden=(8,)), DataSchema.for_shape((6,)))
    assert prior_name(flat) == "N(0, I)"
