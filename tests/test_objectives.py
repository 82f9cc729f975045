"""The ELBO, the IWAE bound and the importance-sampled log-likelihood against a model whose exact
log p(x) is known: probabilistic PCA, x = W z + b + sigma * noise, p(x) = N(b, W W^T + sigma^2 I)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from model_helpers import only_linear
from torch.distributions import MultivariateNormal

from vaekit import distributions as D
from vaekit.batch import Batch
from vaekit.config import ModelConfig
from vaekit.evaluate import log_likelihood
from vaekit.model import VAE
from vaekit.objectives import elbo_terms, iwae_bound, iwae_terms, kl_weight, log_weights, lr_factor

D_X, D_Z, SIGMA = 5, 2, 0.5


pytestmark = pytest.mark.usefixtures("float64")


def ppca(exact_posterior: bool, seed: int = 0) -> tuple[VAE, MultivariateNormal]:
    """A linear VAE set to a PPCA model; with ``exact_posterior`` its encoder is the true posterior."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(D_X, D_Z, generator=g))
    s = torch.tensor([2.0, 1.0])
    W, b = q * s, torch.randn(D_X, generator=g)  # orthogonal columns: the true posterior is diagonal
    model = VAE(ModelConfig(hidden=(), latent_dim=D_Z, likelihood="gaussian", sigma=SIGMA), (D_X,)).double()
    M_inv = torch.diag(1.0 / (s**2 + SIGMA**2))
    enc, dec = only_linear(model.encoder), only_linear(model.decoder)
    with torch.no_grad():
        dec.weight.copy_(W)
        dec.bias.copy_(b)
        post_w = M_inv @ W.T  # posterior mean = M^-1 W^T (x - b), covariance sigma^2 M^-1
        enc.weight.zero_()
        enc.weight[:D_Z] = post_w
        enc.bias[:D_Z] = -post_w @ b
        enc.bias[D_Z:] = torch.log(SIGMA**2 * torch.diagonal(M_inv))
        if not exact_posterior:
            enc.weight[:D_Z] *= 0.7
            enc.bias[D_Z:] += 0.8
    marginal = MultivariateNormal(b, covariance_matrix=W @ W.T + SIGMA**2 * torch.eye(D_X))
    return model, marginal


def data(marginal: MultivariateNormal, n: int = 16) -> torch.Tensor:
    torch.manual_seed(123)
    return marginal.sample((n,))


def test_exact_posterior_makes_every_importance_weight_equal_log_px():
    model, marginal = ppca(exact_posterior=True)
    x = data(marginal)
    exact = marginal.log_prob(x)
    lw = log_weights(model, x, k=50)  # log p(x,z) - log q(z|x) = log p(x) for every z
    assert lw.shape == (50, 16)
    torch.testing.assert_close(lw, exact.expand(50, -1), atol=1e-9, rtol=0)
    torch.testing.assert_close(log_likelihood(model, x, k=64, chunk=10), exact, atol=1e-9, rtol=0)
    # the ELBO is tight in expectation: recon (MC) - KL (closed form) -> log p(x)
    torch.manual_seed(0)
    elbo = elbo_terms(model, x, n_samples=20_000).elbo
    torch.testing.assert_close(elbo, exact, atol=0.02, rtol=0)


def test_elbo_below_exact_and_is_estimate_converges_with_k():
    model, marginal = ppca(exact_posterior=False)
    x = data(marginal)
    exact = marginal.log_prob(x)
    torch.manual_seed(1)
    elbo = elbo_terms(model, x, n_samples=20_000).elbo
    assert torch.all(elbo < exact - 0.05)
    errors = []  # mean bias of the k-sample estimate, averaged over 200 independent repeats for small k
    for k in (1, 10, 100):
        estimate = log_likelihood(model, x.repeat(200, 1), k=k, chunk=1000, seed=2).view(200, -1).mean(0)
        errors.append((exact - estimate).mean().item())
    errors.append((exact - log_likelihood(model, x, k=10_000, chunk=1000, seed=2)).mean().item())
    assert errors[0] > errors[1] > errors[2] > abs(errors[3])
    assert abs(errors[3]) < 0.01


def test_iwae_bound_with_k1_equals_elbo_in_expectation_and_grows_with_k():
    model, marginal = ppca(exact_posterior=False)
    x = data(marginal, n=4)
    torch.manual_seed(3)
    elbo = elbo_terms(model, x, n_samples=50_000).elbo
    torch.manual_seed(4)
    reps = iwae_bound(model, x.repeat(20_000, 1), k=1).view(20_000, 4)  # 20,000 independent k=1 bounds
    se = reps.std(0) / math.sqrt(reps.shape[0])
    assert torch.all((reps.mean(0) - elbo).abs() < 4 * se)
    means = [iwae_bound(model, x.repeat(2000, 1), k=k).mean().item() for k in (1, 2, 5, 20, 100)]
    assert all(a < b for a, b in itertools.pairwise(means))
    assert means[-1] < marginal.log_prob(x).mean().item()


def test_iwae_training_record_uses_the_same_weights():
    model, marginal = ppca(exact_posterior=True)
    x = data(marginal)
    out = iwae_terms(model, x, k=8)
    torch.testing.assert_close(out.bound, marginal.log_prob(x), atol=1e-9, rtol=0)
    torch.testing.assert_close(out.loss, -out.bound.mean())


def test_elbo_terms_split_into_recon_and_closed_form_kl():
    model, marginal = ppca(exact_posterior=False)
    x = data(marginal)
    torch.manual_seed(4)
    out = elbo_terms(model, x, n_samples=3, beta=0.25)
    assert out.recon.shape == out.kl.shape == out.bound.shape == (16,)
    torch.testing.assert_close(out.bound, out.recon - 0.25 * out.kl)
    torch.testing.assert_close(out.loss, -(out.recon - 0.25 * out.kl).mean())
    torch.testing.assert_close(out.elbo, out.recon - out.kl)
    torch.manual_seed(4)
    torch.testing.assert_close(model.elbo(x, n_samples=3, beta=0.25), out.bound)


@pytest.mark.parametrize("beta", [1.0, 0.25])
def test_elbo_loss_is_minus_the_mean_bound_bit_for_bit_with_the_same_gradients(beta):
    """The loss is written as mean(beta * KL - recon) (no negation node in the step's graph): the same float32
    value as -mean(bound), and the same gradients, bit for bit."""
    model, marginal = ppca(exact_posterior=False)
    x = data(marginal).float()
    model = model.float()
    torch.manual_seed(5)
    out = elbo_terms(model, x, beta=beta)
    assert torch.equal(out.loss, -out.bound.mean())
    grads = torch.autograd.grad(out.loss, list(model.parameters()), retain_graph=True)
    negated = torch.autograd.grad(-out.bound.mean(), list(model.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(grads, negated, strict=True))


def test_kl_weight_is_a_linear_warmup_in_the_step():
    assert kl_weight(0, 0, 2.0) == 2.0
    assert [kl_weight(s, 100, 1.0) for s in (0, 25, 50, 100, 1000)] == [0.0, 0.25, 0.5, 1.0, 1.0]
    assert kl_weight(50, 100, 4.0) == 2.0
    with pytest.raises(ValueError):
        kl_weight(-1, 10, 1.0)


def test_lr_schedules():
    assert lr_factor(10, 100, "constant") == 1.0
    assert lr_factor(0, 100, "cosine") == 1.0 and lr_factor(100, 100, "cosine") == pytest.approx(0.0)
    assert lr_factor(50, 100, "cosine") == pytest.approx(0.5)
    assert [lr_factor(s, 100, "step") for s in (0, 49, 50, 75)] == [1.0, 1.0, pytest.approx(0.1), pytest.approx(0.01)]


@pytest.mark.parametrize("prior", ["standard-normal", "mog"])
def test_one_draw_elbo_has_no_sample_axis_and_equals_its_parts(prior):
    """One draw (the training default) carries no sample axis: z (n, d), every term (n,), equal to the parts
    computed by hand from the same noise, for a closed-form KL and for a Monte-Carlo KL (a mixture prior)."""
    torch.manual_seed(0)
    model = VAE(ModelConfig(hidden=(7,), latent_dim=3, likelihood="bernoulli", prior=prior, prior_components=4),
                (6,)).double()
    x = (torch.rand(9, 6, dtype=torch.float64) < 0.5).double()
    torch.manual_seed(11)
    one = elbo_terms(model, x, n_samples=1)
    assert one.recon.shape == one.kl.shape == one.bound.shape == (9,)
    q = model.encode(x)
    torch.manual_seed(11)
    z = q.base_dist.loc + q.base_dist.scale * torch.randn(9, 3, dtype=torch.float64)
    torch.testing.assert_close(one.recon, model.log_px(model.decode(z), Batch(x)))
    if prior == "standard-normal":
        torch.testing.assert_close(one.kl, D.kl_standard_normal(q))
        assert one.kl_estimator == "analytic"
    else:
        torch.testing.assert_close(one.kl, q.log_prob(z) - model.prior().log_prob(z))
        assert one.kl_estimator == "monte-carlo"
    torch.testing.assert_close(one.loss, -(one.recon - one.kl).mean())
