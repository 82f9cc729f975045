"""Parity of every log-prob and KL with independent references (torch.distributions, scipy, closed forms)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from vaekit import distributions as D

pytestmark = pytest.mark.usefixtures("float64")


def random_tril(n: int, d: int, g: torch.Generator) -> torch.Tensor:
    L = torch.randn(n, d, d, generator=g).tril(-1) * 0.5
    return L + torch.diag_embed(torch.rand(n, d, generator=g) + 0.3)


def test_diag_normal_log_prob_matches_scipy():
    g = torch.Generator().manual_seed(0)
    mu, sigma = torch.randn(5, 3, generator=g), torch.rand(5, 3, generator=g) + 0.2
    z = torch.randn(5, 3, generator=g)
    q = D.diag_normal(mu, sigma)
    assert q.batch_shape == (5,) and q.event_shape == (3,)
    ref = stats.norm.logpdf(z.numpy(), mu.numpy(), sigma.numpy()).sum(-1)
    np.testing.assert_allclose(q.log_prob(z).numpy(), ref, rtol=1e-12)


def test_full_normal_log_prob_matches_scipy():
    g = torch.Generator().manual_seed(1)
    mu, L = torch.randn(4, 3, generator=g), random_tril(4, 3, g)
    z = torch.randn(4, 3, generator=g)
    q = D.full_normal(mu, L)
    for i in range(4):
        cov = (L[i] @ L[i].T).numpy()
        ref = stats.multivariate_normal(mu[i].numpy(), cov).logpdf(z[i].numpy())
        assert q.log_prob(z)[i].item() == pytest.approx(ref, rel=1e-10)


@pytest.mark.parametrize("event_shape", [(7,), (3, 4), (2, 3, 3)])
def test_bernoulli_log_prob_matches_scipy(event_shape):
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(6, *event_shape, generator=g) * 3
    x = torch.bernoulli(torch.full((6, *event_shape), 0.4), generator=g)
    p_x = D.bernoulli(logits, len(event_shape))
    assert p_x.batch_shape == (6,) and p_x.event_shape == event_shape
    p = torch.sigmoid(logits).numpy()
    ref = stats.bernoulli.logpmf(x.numpy(), p).reshape(6, -1).sum(-1)
    np.testing.assert_allclose(p_x.log_prob(x).numpy(), ref, rtol=1e-9)


def test_bernoulli_logits_form_is_finite_for_saturated_logits():
    p_x = D.bernoulli(torch.tensor([[80.0, -80.0]]), 1)
    value = p_x.log_prob(torch.tensor([[0.0, 1.0]]))
    assert torch.isfinite(value).all() and value.item() == pytest.approx(-160.0)


@pytest.mark.parametrize("event_shape", [(5,), (2, 3)])
def test_gaussian_log_prob_matches_scipy(event_shape):
    g = torch.Generator().manual_seed(3)
    loc, scale = torch.randn(4, *event_shape, generator=g), torch.rand(4, *event_shape, generator=g) + 0.1
    x = torch.randn(4, *event_shape, generator=g)
    ref = stats.norm.logpdf(x.numpy(), loc.numpy(), scale.numpy()).reshape(4, -1).sum(-1)
    np.testing.assert_allclose(D.gaussian(loc, scale, len(event_shape)).log_prob(x).numpy(), ref, rtol=1e-12)
    fixed = D.gaussian(loc, torch.tensor(0.3), len(event_shape)).log_prob(x)
    ref_fixed = stats.norm.logpdf(x.numpy(), loc.numpy(), 0.3).reshape(4, -1).sum(-1)
    np.testing.assert_allclose(fixed.numpy(), ref_fixed, rtol=1e-12)


def test_prior_is_standard_normal():
    p = D.standard_normal(4, dtype=torch.float64)
    z = torch.randn(10, 4)
    ref = stats.multivariate_normal(np.zeros(4), np.eye(4)).logpdf(z.numpy())
    np.testing.assert_allclose(p.log_prob(z).numpy(), ref, rtol=1e-12)


def test_diag_kl_matches_torch_and_closed_form():
    g = torch.Generator().manual_seed(4)
    mu, sigma = torch.randn(8, 5, generator=g), torch.rand(8, 5, generator=g) + 0.1
    kl = D.kl_standard_normal(D.diag_normal(mu, sigma))
    ref = kl_divergence(Normal(mu, sigma), Normal(torch.zeros(5), torch.ones(5))).sum(-1)
    torch.testing.assert_close(kl, ref)
    closed = 0.5 * (mu**2 + sigma**2 - 1 - torch.log(sigma**2)).sum(-1)
    torch.testing.assert_close(kl, closed)
    torch.testing.assert_close(D.kl_per_dim(D.diag_normal(mu, sigma)).sum(-1), kl)


def test_full_kl_matches_torch_and_seed_formula():
    g = torch.Generator().manual_seed(5)
    mu, L = torch.randn(6, 4, generator=g), random_tril(6, 4, g)
    kl = D.kl_standard_normal(D.full_normal(mu, L))
    ref = kl_divergence(MultivariateNormal(mu, scale_tril=L), MultivariateNormal(torch.zeros(4), torch.eye(4)))
    torch.testing.assert_close(kl, ref)
    for i in range(6):  # seed 002: 0.5 (tr S + mu^T mu - d - log|S|), computed with numpy
        S = (L[i] @ L[i].T).numpy()
        m = mu[i].numpy()
        expected = 0.5 * (np.trace(S) + m @ m - 4 - np.log(np.linalg.det(S)))
        assert kl[i].item() == pytest.approx(expected, rel=1e-10)


def test_full_kl_with_diagonal_factor_equals_diag_kl():
    mu, sigma = torch.randn(3, 4), torch.rand(3, 4) + 0.2
    full = D.kl_standard_normal(D.full_normal(mu, torch.diag_embed(sigma)))
    torch.testing.assert_close(full, D.kl_standard_normal(D.diag_normal(mu, sigma)))


@pytest.mark.parametrize("kind", ["diag", "full"])
def test_analytic_kl_agrees_with_monte_carlo(kind):
    g = torch.Generator().manual_seed(6)
    mu = torch.randn(3, 2, generator=g)
    q = D.diag_normal(mu, torch.rand(3, 2, generator=g) + 0.3) if kind == "diag" else D.full_normal(
        mu, random_tril(3, 2, g))
    torch.manual_seed(0)
    z = q.sample((200_000,))
    samples = q.log_prob(z) - D.standard_normal(2, dtype=torch.float64).log_prob(z)
    mc, se = samples.mean(0), samples.std(0) / np.sqrt(z.shape[0])
    assert torch.all((mc - D.kl_standard_normal(q)).abs() < 4 * se + 1e-6)


def test_reparameterised_gradients_match_finite_differences():
    def objective(mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
        q = D.diag_normal(mu, torch.exp(log_sigma))
        torch.manual_seed(11)  # the same eps on every call: a deterministic function of (mu, log_sigma)
        z = q.rsample((64,))
        return (torch.sin(z) * z).sum(-1).mean() + D.kl_standard_normal(q).sum()

    mu = torch.randn(2, 3, requires_grad=True)
    log_sigma = (torch.randn(2, 3) * 0.3).requires_grad_()
    assert torch.autograd.gradcheck(objective, (mu, log_sigma), eps=1e-6, atol=1e-6)


def test_full_normal_rsample_gradients_match_finite_differences():
    def objective(mu: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        L = raw.tril(-1) + torch.diag_embed(torch.exp(torch.diagonal(raw, dim1=-2, dim2=-1)))
        q = D.full_normal(mu, L)
        torch.manual_seed(3)
        return (q.rsample((32,)) ** 3).mean() + D.kl_standard_normal(q).sum()

    mu = torch.randn(2, 3, requires_grad=True)
    raw = (torch.randn(2, 3, 3) * 0.3).requires_grad_()
    assert torch.autograd.gradcheck(objective, (mu, raw), eps=1e-6, atol=1e-6)


def test_point_mass_has_no_density():
    q = D.PointMass(torch.randn(4, 2))
    assert q.batch_shape == (4,) and q.event_shape == (2,)
    assert q.rsample((3,)).shape == (3, 4, 2)
    torch.testing.assert_close(q.rsample((3,))[1], q.mean)
    with pytest.raises(ValueError, match="no density"):
        q.log_prob(torch.zeros(4, 2))
    with pytest.raises(TypeError, match="no closed-form KL"):
        D.kl_standard_normal(q)


@pytest.mark.parametrize(("logits_shape", "x_shape", "event_ndims"), [
    ((50, 8, 784), (8, 784), 1),          # importance sampling: k draws share each example's x
    ((1, 8, 784), (8, 784), 1),           # training, one draw
    ((130, 3, 784), (3, 784), 1),         # at least SHARED_DRAWS_MIN draws: a batched product
    ((3, 4, 28, 28), (3, 4, 28, 28), 2),  # image event, no broadcast
    ((6, 5), (6, 5), 0),                  # no event axes
])
def test_bernoulli_summed_form_equals_torchs_elementwise_log_prob(logits_shape, x_shape, event_ndims) -> None:
    """vaekit's Bernoulli log p(x|z) (sum x*l - softplus(l)) against torch.distributions.Bernoulli, in float64,
    for 0/1 data and grey levels, with its gradient."""
    from torch.distributions import Bernoulli, Independent

    from vaekit.distributions import bernoulli

    g = torch.Generator().manual_seed(3)
    logits = (torch.randn(logits_shape, generator=g, dtype=torch.float64) * 6).requires_grad_()
    for x in ((torch.rand(x_shape, generator=g, dtype=torch.float64) < 0.3).double(),
              torch.rand(x_shape, generator=g, dtype=torch.float64)):
        ref = Independent(Bernoulli(logits=logits, validate_args=False), event_ndims).log_prob(x)
        ours = bernoulli(logits, event_ndims).log_prob(x)
        assert ours.shape == ref.shape
        # softplus(l) is l itself above l = 20 (torch's threshold): at most log1p(exp(-20)) = 2.1e-9 nats per
        # element, and the gradient's sigmoid rounds to 1 there
        torch.testing.assert_close(ours, ref, rtol=0, atol=2.1e-9 * x[0].numel())
        g_ref, = torch.autograd.grad(ref.sum(), logits)
        g_ours, = torch.autograd.grad(ours.sum(), logits)
        torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=2.1e-9)


def test_bernoulli_log_prob_of_bf16_logits_is_summed_in_float32() -> None:
    """Under bf16 autocast (train.precision bf16) the decoder's logits are bf16: the log-likelihood of 784 pixels
    is still summed in float32, as torch's autocast does for its binary cross-entropy."""
    from torch.distributions import Bernoulli, Independent

    from vaekit.distributions import bernoulli

    g = torch.Generator().manual_seed(5)
    logits = (torch.randn(4, 6, 784, generator=g) * 4).to(torch.bfloat16)
    x = (torch.rand(6, 784, generator=g) < 0.4).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = bernoulli(logits, 1).log_prob(x)
    ref = Independent(Bernoulli(logits=logits.double(), validate_args=False), 1).log_prob(x.double())
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours.double(), ref, rtol=0, atol=1e-3)


def test_bernoulli_log_prob_casts_only_where_dtypes_differ_or_autocast_is_on() -> None:
    """float32 logits and data skip the cast and the autocast switch (a training step); float64 data, or the
    same float32 tensors under autocast, take the cast path: the same float32 numbers bit for bit."""
    from vaekit.distributions import bernoulli

    g = torch.Generator().manual_seed(6)
    logits = torch.randn(5, 28, 28, generator=g, dtype=torch.float32) * 4
    x = (torch.rand(5, 28, 28, generator=g) < 0.4).float()
    p_x = bernoulli(logits, 2)
    plain = p_x.log_prob(x)
    assert plain.dtype == torch.float32 and plain.shape == (5,)
    assert p_x.log_prob(x.double()).tolist() == plain.tolist()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert p_x.log_prob(x).tolist() == plain.tolist()
    wide = bernoulli(logits.double(), 2).log_prob(x)  # float64 logits: x cast up, the sum in float64
    assert wide.dtype == torch.float64
    torch.testing.assert_close(wide, plain.double(), rtol=1e-6, atol=0)


def test_diag_normal_is_torchs_independent_normal():
    """The lean DiagNormal against torch's own Independent(Normal): densities, entropy, moments, draws from the
    same seed, torch's KL registry, expand; loc and scale of other shapes fall back to torch's broadcasting."""
    from torch.distributions import Independent

    g = torch.Generator().manual_seed(8)
    mu, sigma = torch.randn(6, 4, generator=g), torch.rand(6, 4, generator=g) + 0.2
    ours, ref = D.diag_normal(mu, sigma), Independent(Normal(mu, sigma), 1)
    assert isinstance(ours, D.DiagNormal) and isinstance(ours, Independent)
    assert ours.batch_shape == ref.batch_shape and ours.event_shape == ref.event_shape
    z = torch.randn(3, 6, 4, generator=g)
    torch.testing.assert_close(ours.log_prob(z), ref.log_prob(z), rtol=0, atol=0)
    torch.testing.assert_close(ours.entropy(), ref.entropy(), rtol=0, atol=0)
    torch.testing.assert_close(ours.mean, ref.mean, rtol=0, atol=0)
    torch.testing.assert_close(ours.stddev, ref.stddev, rtol=0, atol=0)
    torch.manual_seed(2)
    a = ours.rsample((5,))
    torch.manual_seed(2)
    torch.testing.assert_close(a, ref.rsample((5,)), rtol=0, atol=0)
    other = Independent(Normal(mu.flip(0), sigma.flip(0)), 1)
    torch.testing.assert_close(kl_divergence(ours, other), kl_divergence(ref, other), rtol=0, atol=0)
    wide = ours.expand((2, 6))
    assert wide.batch_shape == (2, 6) and wide.event_shape == (4,)
    torch.testing.assert_close(wide.log_prob(z[:2]), ref.expand((2, 6)).log_prob(z[:2]), rtol=0, atol=0)
    broadcast = D.diag_normal(torch.zeros(4), torch.tensor(2.0).expand(4).clone()[None].expand(3, 4))
    assert broadcast.batch_shape == (3,)
    assert not isinstance(D.diag_normal(torch.zeros(3, 4), torch.ones(4)), D.DiagNormal)
    with pytest.raises(ValueError, match="one shape"):
        D.DiagNormal(torch.zeros(3, 4), torch.ones(4))


def test_kl_from_log_variance_equals_torch_and_stays_finite_where_sigma_underflows():
    """A posterior head made from log sigma^2 keeps it; the closed-form KL reads it: the same value as torch's
    KL, and finite (in float32) where exp(log_var / 2) underflows to 0 and log(sigma) would be -inf."""
    from vaekit.posteriors import DiagonalNormal

    g = torch.Generator().manual_seed(9)
    params = torch.randn(5, 6, generator=g)
    q = DiagonalNormal(3)(params)
    assert q.log_var is not None
    ref = kl_divergence(Normal(q.base_dist.loc, q.base_dist.scale), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(D.kl_standard_normal(q), ref)
    log_var = torch.tensor([[-250.0, -1.0, 0.0]], dtype=torch.float32)
    tiny = DiagonalNormal(3)(torch.cat([torch.zeros(1, 3, dtype=torch.float32), log_var], -1))
    assert tiny.base_dist.scale[0, 0] == 0  # exp(-125) underflows in float32 ...
    kl = D.kl_standard_normal(tiny)
    expected = 0.5 * (log_var.double().exp() - 1 - log_var.double()).sum()  # ... the KL does not: 124.5... nats
    assert torch.isfinite(kl).all()
    torch.testing.assert_close(kl.double()[0], expected, rtol=1e-6, atol=0)


def test_bernoulli_logits_expand_mean_and_sample_are_torchs():
    from torch.distributions import Bernoulli, Independent

    g = torch.Generator().manual_seed(10)
    logits = torch.randn(3, 2, 5, generator=g)
    ours, ref = D.bernoulli(logits, 2), Independent(Bernoulli(logits=logits), 2)
    assert ours.batch_shape == ref.batch_shape == (3,) and ours.event_shape == ref.event_shape == (2, 5)
    torch.testing.assert_close(ours.mean, ref.mean, rtol=0, atol=0)
    torch.manual_seed(1)
    a = ours.sample((4,))
    torch.manual_seed(1)
    torch.testing.assert_close(a, ref.sample((4,)), rtol=0, atol=0)
    wide = ours.expand((7, 3))
    assert isinstance(wide, D.BernoulliLogits) and wide.batch_shape == (7, 3)
    x = (torch.rand(7, 3, 2, 5, generator=g) < 0.5).double()
    torch.testing.assert_close(wide.log_prob(x), ref.expand((7, 3)).log_prob(x))
    with pytest.raises(ValueError, match="event_ndims"):
        D.bernoulli(logits, 4)
