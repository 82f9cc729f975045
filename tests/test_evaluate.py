"""The importance-sampled and naive likelihood estimators against exact references.

The reference model is probabilistic PCA: a VAE with ``hidden=()`` has a linear decoder z -> W z + b with
fixed sigma, so log p(x) = log N(x; b, W W^T + sigma^2 I) exactly (torch MultivariateNormal, float64), and
its true posterior N(A (x - b), sigma^2 M^-1), M = W^T W + sigma^2 I, A = M^-1 W^T, is representable by a
linear full-covariance encoder.
"""

from __future__ import annotations

import math

import model_helpers
import numpy as np
import pytest
import torch
from model_helpers import only_linear
from scipy import special, stats
from torch.distributions import MultivariateNormal

from vaekit.evaluate import bits_per_dim, log_likelihood, reparameterise, standard_error
from vaekit.model import VAE
from vaekit.objectives import elbo_terms

D, LATENT, SIGMA = 5, 2, 0.6


def ppca(seed: int = 0, posterior: str = "full", perturb: float = 0.0) -> tuple[VAE, torch.Tensor, torch.Tensor]:
    """(model, W, b): :func:`model_helpers.ppca` at this file's sizes, with its decoder's W and b."""
    model, _ = model_helpers.ppca(posterior, data_dim=D, latent_dim=LATENT, sigma=SIGMA, seed=seed, perturb=perturb)
    dec = only_linear(model.decoder)
    return model, dec.weight.detach().clone(), dec.bias.detach().clone()


def exact_log_px(W: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    cov = W.double() @ W.double().T + SIGMA**2 * torch.eye(D, dtype=torch.float64)
    return MultivariateNormal(b.double(), covariance_matrix=cov).log_prob(x.double())


def data(W: torch.Tensor, b: torch.Tensor, n: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, LATENT, generator=g)
    return z @ W.T + b + SIGMA * torch.randn(n, D, generator=g)


def test_exact_posterior_gives_the_exact_likelihood_at_any_k_and_chunking():
    model, W, b = ppca()
    x = data(W, b, 64)
    exact = exact_log_px(W, b, x)
    for k, chunk, batch in ((1, 1, 64), (7, 3, 5), (40, 40, 17)):
        est = log_likelihood(model, x, k=k, chunk=chunk, batch_size=batch, seed=3)
        torch.testing.assert_close(est, exact, atol=2e-4, rtol=0)
    with torch.no_grad():  # the ELBO is exact in expectation only (its recon term is a Monte-Carlo average)
        torch.manual_seed(0)
        torch.testing.assert_close(elbo_terms(model, x, n_samples=5000).elbo.double(), exact, atol=0.1, rtol=0)


@pytest.mark.parametrize("posterior", ["full", "diag"])
def test_is_estimate_is_within_three_standard_errors_of_exact(posterior):
    model, W, b = ppca(posterior=posterior, perturb=0.15)
    x = data(W, b, 150)
    exact = exact_log_px(W, b, x)
    est = log_likelihood(model, x, k=1500, chunk=300, batch_size=64, seed=0)
    diff = est - exact
    assert abs(float(diff.mean())) <= 3 * standard_error(diff) + 1e-3
    assert abs(float(diff.mean())) < 0.05
    with torch.no_grad():
        torch.manual_seed(0)
        elbo = elbo_terms(model, x, n_samples=2000).elbo.double()
    assert bool((elbo < exact + 1e-3).all()), "the ELBO must lie below log p(x) for every point"
    assert float((exact - elbo).mean()) > 0.05, "a perturbed posterior leaves a visible ELBO gap"


def test_bound_grows_with_k_and_equals_the_elbo_at_k1():
    model, W, b = ppca(posterior="diag", perturb=0.3, seed=2)
    x = data(W, b, 300, seed=5)
    exact = exact_log_px(W, b, x)
    means, ses = [], []
    for k in (1, 4, 16, 64, 256):
        est = torch.stack([log_likelihood(model, x, k=k, chunk=64, batch_size=300, seed=10 * r + k)
                           for r in range(4)]).mean(0)
        means.append(float(est.mean()))
        ses.append(standard_error(est - exact))
    for i in range(len(means) - 1):
        assert means[i + 1] >= means[i] - 3 * max(ses[i], ses[i + 1]), means
    assert means[-1] - means[0] > 0.1, means
    assert means[-1] <= float(exact.mean()) + 3 * ses[-1]
    with torch.no_grad():
        torch.manual_seed(1)
        elbo = elbo_terms(model, x, n_samples=4000).elbo.double()
    k1 = torch.stack([log_likelihood(model, x, k=1, seed=100 + r) for r in range(20)]).mean(0)
    assert abs(float((k1 - elbo).mean())) <= 3 * standard_error(k1 - elbo), "k = 1 is the ELBO in expectation"


def _reference_log_px(W, b, mu, L, eps, x, proposal: str) -> np.ndarray:
    """Per-sample, per-point loops in float64 with scipy densities: no vaekit code involved."""
    W, b, mu, L, eps, x = (t.double().numpy() for t in (W, b, mu, L, eps, x))
    k, n, _ = eps.shape
    out = np.empty(n)
    for i in range(n):
        lw = np.empty(k)
        for j in range(k):
            if proposal == "prior":
                z = eps[j, i]
                lw[j] = stats.norm.logpdf(x[i], W @ z + b, SIGMA).sum()
            else:
                z = mu[i] + L[i] @ eps[j, i]
                lw[j] = (stats.norm.logpdf(x[i], W @ z + b, SIGMA).sum() + stats.norm.logpdf(z).sum()
                         - stats.multivariate_normal.logpdf(z, mu[i], L[i] @ L[i].T))
        out[i] = special.logsumexp(lw) - math.log(k)
    return out


@pytest.mark.parametrize("proposal", ["posterior", "prior"])
def test_batched_chunked_equals_plain_per_sample_loop_on_the_same_draws(proposal):
    model, W, b = ppca(perturb=0.3)
    x = data(W, b, 9)
    k = 12
    eps = torch.randn(k, 9, LATENT, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        q = model.encode(x)
    ref = _reference_log_px(W, b, q.loc, q.scale_tril, eps, x, proposal)
    for chunk, batch in ((k, 9), (1, 1), (5, 4), (7, 9)):
        est = log_likelihood(model, x, k=k, chunk=chunk, batch_size=batch, eps=eps, proposal=proposal)
        np.testing.assert_allclose(est.numpy(), ref, atol=2e-4, rtol=0)


def test_seeded_estimates_are_reproducible_and_chunking_changes_only_the_draws():
    model, W, b = ppca(posterior="diag", perturb=0.3)
    x = data(W, b, 100)
    a = log_likelihood(model, x, k=500, chunk=100, batch_size=50, seed=7)
    torch.testing.assert_close(a, log_likelihood(model, x, k=500, chunk=100, batch_size=50, seed=7), atol=0, rtol=0)
    c = log_likelihood(model, x, k=500, chunk=37, batch_size=200, seed=7)
    assert not torch.equal(a, c)
    assert abs(float((a - c).mean())) <= 4 * standard_error(a - c) + 1e-4


def test_reparameterise_matches_rsample_from_the_same_noise():
    for posterior in ("diag", "full"):
        model, W, b = ppca(posterior=posterior, perturb=0.3)
        with torch.no_grad():
            q = model.encode(data(W, b, 6))
            torch.manual_seed(11)
            drawn = q.rsample((4,))
            torch.manual_seed(11)
            ours = reparameterise(q, torch.randn(4, 6, LATENT))
        torch.testing.assert_close(ours, drawn)


def test_naive_estimator_converges_in_low_dimension_and_is_worse_at_small_k():
    model, W, b = ppca(perturb=0.3)
    x = data(W, b, 100)
    exact = exact_log_px(W, b, x)
    naive = log_likelihood(model, x, k=20000, chunk=5000, batch_size=100, seed=0, proposal="prior")
    diff = naive - exact
    assert abs(float(diff.mean())) <= 3 * standard_error(diff) + 0.01
    small = torch.stack([log_likelihood(model, x, k=3, seed=r, proposal="prior") for r in range(5)]).mean(0)
    small_is = torch.stack([log_likelihood(model, x, k=3, seed=r) for r in range(5)]).mean(0)
    assert float(small.mean()) < float(small_is.mean()) < float(exact.mean()) + 0.01


def test_bf16_autocast_runs_and_stays_close():
    model, W, b = ppca(perturb=0.3)
    x = data(W, b, 50)
    fp32 = log_likelihood(model, x, k=64, seed=0)
    bf16 = log_likelihood(model, x, k=64, seed=0, precision="bf16")
    assert bf16.dtype == torch.float64 and bf16.shape == (50,)
    assert abs(float((bf16 - fp32).mean())) < 0.05  # same draws (sampled in float32), bf16 networks


def test_bad_arguments_and_bits_per_dim():
    model, W, b = ppca()
    x = data(W, b, 4)
    for kwargs in ({"k": 0}, {"chunk": 0}, {"batch_size": -1}, {"proposal": "uniform"}, {"precision": "fp8"},
                   {"eps": torch.zeros(3, 4, LATENT), "k": 5}):
        with pytest.raises(ValueError):
            log_likelihood(model, x, **kwargs)
    assert bits_per_dim(-math.log(2.0) * 784, 784) == pytest.approx(1.0)
    assert standard_error(torch.tensor([1.0])) == 0.0
    assert standard_error(torch.tensor([1.0, 3.0])) == pytest.approx(1.0)
