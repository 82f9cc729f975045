"""Every registered part through the same generic tests, fed by one table of cases per registry (the
pattern of pyro's tests/distributions/conftest.py).

* Likelihoods (``LIKELIHOOD_CASES`` x event shapes): shapes with leading sample axes (V, n), log p(x|z)
  against scipy.stats computed from the decoder's raw output, normalisation (a pmf summed over all 2^D
  outcomes, a density integrated numerically in 1-D), gradients to the decoder (and ``log_sigma``), and the
  data units (with ``data_loc``/``data_scale`` the density is the change of variables).
* Posterior heads (``POSTERIOR_CASES``): n_params, shapes, rsample, log_prob against scipy, reparameterise.
* Priors (``PRIOR_CASES``): samples, log_prob against scipy, closed-form KL against Monte Carlo.
* Networks: every registered encoder x decoder on every shape it accepts, with and without a condition.
* Registries: an unknown name is a one-line error naming the config key and the known names (also in the CLI).

A part registered without a case here fails ``test_every_registered_*_has_a_case``: add its case (its
scipy reference) and it goes through every test. Networks need no case: they are read from the registries.

Then the interface for learnable priors whose KL has no closed form (a learnable Gaussian and a learnable
mixture, registered for the test only), and the one likelihood path: the ELBO, the IWAE bound and the IS and
naive estimators of log p(x) all equal hand computations from ``bounds.log_terms`` on the same draws.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
from cli_helpers import run_vaekit
from model_helpers import only_linear, ppca
from scipy import integrate, special, stats
from torch import Tensor, nn
from torch.distributions import (
    Categorical,
    Distribution,
    Independent,
    MixtureSameFamily,
    MultivariateNormal,
    Normal,
    kl_divergence,
)

from vaekit import distributions as D
from vaekit.batch import Batch
from vaekit.bounds import elbo_terms, iwae_bound, iwae_terms, log_terms, log_weights
from vaekit.checkpoint import load_model, model_meta, save_checkpoint
from vaekit.config import Config, ModelConfig
from vaekit.errors import VaekitError
from vaekit.evaluate import log_likelihood
from vaekit.likelihoods import LIKELIHOODS
from vaekit.model import MODEL_FAMILIES, VAE
from vaekit.networks import DECODERS, ENCODERS
from vaekit.posteriors import POSTERIORS
from vaekit.priors import PRIORS, Prior
from vaekit.registry import Registry
from vaekit.schema import DataSchema

EVENT_SHAPES = [(5,), (4, 3), (1, 6, 6)]
LATENT = 3
V, N = 3, 4  # sample axis, batch axis


def _ids(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


# =========================================================================================== likelihoods

def _event_sum(a: np.ndarray, event_ndims: int) -> np.ndarray:
    return a.reshape(*a.shape[:a.ndim - event_ndims], -1).sum(-1)


def _bernoulli_ref(model: VAE, params: np.ndarray, x: np.ndarray) -> np.ndarray:
    p = special.expit(params[:, :, 0])  # logits -> probabilities
    return _event_sum(stats.bernoulli.logpmf(x, p), x.ndim - 1)


def _data_units(model: VAE) -> tuple[np.ndarray, np.ndarray]:
    return model.data_loc.double().numpy(), model.data_scale.double().numpy()


def _gaussian_fixed_ref(model: VAE, params: np.ndarray, x: np.ndarray) -> np.ndarray:
    loc, scale = _data_units(model)
    mean, sd = params[:, :, 0] * scale + loc, model.config.sigma * scale  # sigma in the model's scaled units
    return _event_sum(stats.norm.logpdf(x, mean, sd), x.ndim - 1)


def _gaussian_per_dim_ref(model: VAE, params: np.ndarray, x: np.ndarray) -> np.ndarray:
    loc, scale = _data_units(model)
    log_sigma = model.likelihood.log_sigma.detach().double().numpy().reshape(model.event_shape)
    mean, sd = params[:, :, 0] * scale + loc, np.exp(log_sigma) * scale
    return _event_sum(stats.norm.logpdf(x, mean, sd), x.ndim - 1)


def _gaussian_per_output_ref(model: VAE, params: np.ndarray, x: np.ndarray) -> np.ndarray:
    loc, scale = _data_units(model)
    mean, sd = params[:, :, 0] * scale + loc, np.exp(params[:, :, 1]) * scale
    return _event_sum(stats.norm.logpdf(x, mean, sd), x.ndim - 1)


def _multinomial_ref(model: VAE, params: np.ndarray, x: np.ndarray) -> np.ndarray:
    logits = params[:, :, 0].reshape(*params.shape[:2], -1)  # (V, n, I): the event flattened to I items
    p = special.softmax(logits, axis=-1)
    flat = x.reshape(x.shape[0], -1)
    return stats.multinomial.logpmf(flat, flat.sum(-1), p)  # each row's own total count N


@dataclass(frozen=True)
class LikelihoodCase:
    """A registered likelihood with its other config fields, the number of parameters per data element the
    decoder must predict, and log p(x|z) (V, n) computed with scipy from the decoder's raw output
    (V, n, P, *event_shape) and the model's data transform. ``counts``: a pmf over count vectors with the
    total of the value scored (normalised over the vectors of each total)."""

    name: str
    n_params: int
    reference: Callable[[VAE, np.ndarray, np.ndarray], np.ndarray]
    options: dict[str, Any] = field(default_factory=dict)
    counts: bool = False

    @property
    def id(self) -> str:
        return "/".join([self.name, *map(str, self.options.values())])


LIKELIHOOD_CASES = [
    LikelihoodCase("bernoulli", 1, _bernoulli_ref),
    LikelihoodCase("gaussian", 1, _gaussian_fixed_ref, {"sigma": 0.3}),
    LikelihoodCase("gaussian-learned", 1, _gaussian_per_dim_ref, {"variance": "per-dim"}),
    LikelihoodCase("gaussian-learned", 2, _gaussian_per_output_ref, {"variance": "per-output"}),
    LikelihoodCase("multinomial", 1, _multinomial_ref, counts=True),
]
likelihood_cases = pytest.mark.parametrize("case", LIKELIHOOD_CASES, ids=lambda c: c.id)
event_shapes = pytest.mark.parametrize("shape", EVENT_SHAPES, ids=_ids)


#: likelihoods whose event is not an arbitrary shape, with their own parity suite (named here)
TESTED_ELSEWHERE = {"mixed": "tests/test_tabular_likelihood.py: a table row of a fixed column layout"}


def test_every_registered_likelihood_has_a_case():
    assert set(LIKELIHOODS.names()) <= {c.name for c in LIKELIHOOD_CASES} | set(TESTED_ELSEWHERE), \
        "add a LikelihoodCase for the new part"


def likelihood_model(case: LikelihoodCase, shape: tuple[int, ...], seed: int = 0,
                     data_units: bool = True) -> tuple[VAE, Tensor]:
    """(model, x): a small random model of ``case`` for data of ``shape`` and n = N data points. A continuous
    likelihood gets a random data transform (``data_units``) and a random ``log_sigma``; x is drawn in data
    units (0/1 for a discrete likelihood)."""
    torch.manual_seed(seed)
    config = ModelConfig(likelihood=case.name, latent_dim=LATENT, hidden=(8,), **case.options)
    is_discrete = LIKELIHOODS.get(case.name).discrete
    loc = scale = None
    if data_units and not is_discrete:
        loc, scale = torch.randn(shape), 0.5 + torch.rand(shape)
    model = VAE(config, shape, data_loc=loc, data_scale=scale)
    with torch.no_grad():
        for p in model.likelihood.parameters():
            p.copy_(0.3 * torch.randn(p.shape))
    x = torch.randint(0, 2, (N, *shape)).float() if is_discrete else model.data_loc + model.data_scale * torch.randn(
        N, *shape)
    return model, x


def raw_params(model: VAE, z: Tensor) -> Tensor:
    """The decoder network's output for z (V, n, d): (V, n, P, *event_shape), before the likelihood."""
    out = model.decoder(z.reshape(-1, z.shape[-1]))
    return out.reshape(*z.shape[:-1], *out.shape[1:])


@likelihood_cases
@event_shapes
def test_likelihood_shapes_with_sample_axes(case, shape):
    model, x = likelihood_model(case, shape)
    assert model.likelihood.n_params == case.n_params
    z = torch.randn(V, N, LATENT)
    assert raw_params(model, z).shape == (V, N, case.n_params, *shape)
    p_x = model.decode(z)
    assert p_x.batch_shape == (V, N) and p_x.event_shape == shape
    assert p_x.mean.shape == p_x.sample().shape == (V, N, *shape)
    assert p_x.log_prob(x).shape == model.log_px(p_x, Batch(x)).shape == (V, N)
    assert model.decode(z[0]).batch_shape == (N,)  # no sample axis
    assert model.decode(z[0, 0]).batch_shape == ()  # one code


@likelihood_cases
@event_shapes
def test_likelihood_log_prob_matches_scipy_on_the_decoded_parameters(case, shape):
    model, x = likelihood_model(case, shape, seed=1)
    z = torch.randn(V, N, LATENT)
    with torch.no_grad():
        got = model.decode(z).log_prob(x).double().numpy()
        ref = case.reference(model, raw_params(model, z).double().numpy(), x.double().numpy())
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)


@likelihood_cases
def test_likelihood_normalises(case):
    """A pmf sums to 1 over all 2^6 outcomes of a (2, 3) event (a pmf over counts: over the 56 count vectors
    of total 3); a density integrates to 1 in 1-D (quad)."""
    discrete = LIKELIHOODS.get(case.name).discrete
    model, _ = likelihood_model(case, (2, 3) if discrete else (1,), seed=2)
    z = 1.5 * torch.randn(2, 3, LATENT)
    with torch.no_grad():
        p_x = model.decode(z)  # batch (2, 3)
        if case.counts:
            vectors = [v for v in itertools.product(range(4), repeat=6) if sum(v) == 3]
            assert len(vectors) == math.comb(3 + 5, 5)
            outcomes = torch.tensor(vectors, dtype=torch.float32).reshape(-1, 1, 1, 2, 3)
            total = torch.logsumexp(p_x.log_prob(outcomes).double(), 0)
            torch.testing.assert_close(total, torch.zeros(2, 3, dtype=torch.float64), atol=1e-5, rtol=0)
            return
        if discrete:
            outcomes = torch.tensor(list(itertools.product((0.0, 1.0), repeat=6))).reshape(64, 1, 1, 2, 3)
            total = torch.logsumexp(p_x.log_prob(outcomes).double(), 0)  # (2, 3)
            torch.testing.assert_close(total, torch.zeros(2, 3, dtype=torch.float64), atol=1e-5, rtol=0)
            return
        for v, i in itertools.product(range(2), range(3)):
            mean, sd = float(p_x.mean[v, i, 0]), float(p_x.stddev[v, i, 0])

            def density(t: float, v: int = v, i: int = i) -> float:
                return math.exp(float(p_x.log_prob(torch.full((2, 3, 1), t))[v, i]))

            area, err = integrate.quad(density, mean - 20 * sd, mean + 20 * sd, points=[mean], epsabs=1e-10)
            assert abs(area - 1.0) < 1e-5, (v, i, area, err)


@likelihood_cases
def test_likelihood_gradients_reach_the_decoder_and_its_own_parameters(case):
    model, x = likelihood_model(case, (4, 3), seed=3)
    model.decode(torch.randn(V, N, LATENT)).log_prob(x).sum().backward()
    named = [*model.decoder.named_parameters(prefix="decoder"), *model.likelihood.named_parameters(prefix="likelihood")]
    if case.options.get("variance") == "per-dim":
        assert "likelihood.log_sigma" in dict(named)
    for name, p in named:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@likelihood_cases
@event_shapes
def test_likelihood_in_data_units_is_the_change_of_variables(case, shape):
    """x = loc + scale * u: log p_X(x) = log p_U(u) - sum log scale for a density; a pmf has no Jacobian,
    so the transform leaves a discrete likelihood unchanged."""
    model, x = likelihood_model(case, shape, seed=4)
    torch.manual_seed(4)
    loc, scale = torch.randn(shape), 0.5 + torch.rand(shape)
    unit = copy.deepcopy(model)
    with torch.no_grad():
        unit.data_loc.zero_()
        unit.data_scale.fill_(1.0)
        model.data_loc.copy_(loc)
        model.data_scale.copy_(scale)
        z = torch.randn(V, N, LATENT)
        if LIKELIHOODS.get(case.name).discrete:
            torch.testing.assert_close(model.decode(z).log_prob(x), unit.decode(z).log_prob(x))
            return
        u = torch.randn(N, *shape)
        got = model.decode(z).log_prob(loc + scale * u)
        want = unit.decode(z).log_prob(u) - torch.log(scale).sum()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


# ====================================================================================== posterior heads

def _diag_ref(params: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    return params[:, :d], np.stack([np.diag(np.exp(row[d:])) for row in params])  # mu, log sigma^2


def _full_ref(params: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.tril_indices(d)  # row-major lower triangle
    L = np.zeros((params.shape[0], d, d))
    L[:, rows, cols] = params[:, d:]
    idx = np.arange(d)
    L[:, idx, idx] = np.exp(L[:, idx, idx])  # log-parameterised diagonal
    return params[:, :d], L @ L.transpose(0, 2, 1)


@dataclass(frozen=True)
class PosteriorCase:
    """A posterior head: n_params as a function of d, and (mean (n, d), covariance (n, d, d)) from its raw
    parameters (None for a head without a density)."""

    name: str
    n_params: Callable[[int], int]
    reference: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]] | None


POSTERIOR_CASES = [
    PosteriorCase("diag", lambda d: 2 * d, _diag_ref),
    PosteriorCase("full", lambda d: d + d * (d + 1) // 2, _full_ref),
    PosteriorCase("point", lambda d: d, None),
]
posterior_cases = pytest.mark.parametrize("case", POSTERIOR_CASES, ids=lambda c: c.name)


def test_every_registered_posterior_has_a_case():
    assert set(POSTERIORS.names()) <= {c.name for c in POSTERIOR_CASES}, "add a PosteriorCase for the new head"


def head_and_params(case: PosteriorCase, seed: int = 0) -> tuple[Any, Tensor]:
    torch.manual_seed(seed)
    head = POSTERIORS.get(case.name)(LATENT)
    return head, (0.7 * torch.randn(N, head.n_params)).requires_grad_()


@posterior_cases
def test_posterior_n_params_and_shapes(case):
    head, params = head_and_params(case)
    assert head.n_params == case.n_params(LATENT)
    assert head.has_density == (case.reference is not None)
    q = head(params)
    assert q.batch_shape == (N,) and q.event_shape == (LATENT,)
    assert q.mean.shape == (N, LATENT)
    assert q.rsample((V,)).shape == (V, N, LATENT)
    assert D.draw(q, (V,), torch.Generator().manual_seed(0)).shape == (V, N, LATENT)


@posterior_cases
def test_posterior_log_prob_matches_scipy(case):
    head, params = head_and_params(case, seed=1)
    q = head(params)
    z = torch.randn(V, N, LATENT)
    if case.reference is None:
        with pytest.raises(ValueError, match="no density"):
            q.log_prob(z)
        return
    mean, cov = case.reference(params.detach().double().numpy(), LATENT)
    got = q.log_prob(z).detach().double().numpy()
    for i in range(N):
        ref = stats.multivariate_normal(mean[i], cov[i]).logpdf(z[:, i].double().numpy())
        np.testing.assert_allclose(got[:, i], ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(q.mean.detach().double(), torch.from_numpy(mean))
    torch.testing.assert_close(q.variance.detach().double(), torch.from_numpy(np.diagonal(cov, 0, 1, 2).copy()),
                               rtol=1e-5, atol=1e-6)


@posterior_cases
def test_reparameterise_is_rsample_with_the_same_noise_and_carries_gradients(case):
    head, params = head_and_params(case, seed=2)
    q = head(params)
    torch.manual_seed(5)
    z = q.rsample((V,))
    torch.manual_seed(5)
    eps = torch.randn(V, N, LATENT)
    torch.testing.assert_close(D.reparameterise(q, eps), z)
    noise = torch.randn(V, N, LATENT, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(D.draw(q, (V,), torch.Generator().manual_seed(9)), D.reparameterise(q, noise))
    z.sum().backward()  # every raw parameter moves z (the diagonal of L and log sigma^2 included)
    assert params.grad is not None and bool((params.grad != 0).all())


# ================================================================================================ priors

@dataclass(frozen=True)
class PriorCase:
    """A prior and its density as scipy sees it, built from the prior module."""

    name: str
    reference: Callable[[Prior], Any]
    build: Callable[[], Prior] | None = None  # default: PRIORS.get(name)(LATENT)

    def prior(self) -> Prior:
        return self.build() if self.build is not None else PRIORS.get(self.name)(LATENT)


class ScipyMixture:
    """sum_j w_j N(m_j, diag s_j^2) with scipy's logpdf / rvs interface, from the mixture's parameters."""

    def __init__(self, w: np.ndarray, means: np.ndarray, scales: np.ndarray) -> None:
        self.w, self.parts = w, [stats.multivariate_normal(m, np.diag(s ** 2)) for m, s in zip(means, scales,
                                                                                                 strict=True)]

    def logpdf(self, z: np.ndarray) -> np.ndarray:
        return special.logsumexp([np.log(w) + part.logpdf(z) for w, part in zip(self.w, self.parts, strict=True)],
                                 axis=0)

    def rvs(self, n: int, random_state: np.random.Generator) -> np.ndarray:
        which = random_state.choice(len(self.w), size=n, p=self.w / self.w.sum())
        draws = np.stack([part.rvs(n, random_state=random_state).reshape(n, -1) for part in self.parts])
        return draws[which, np.arange(n)]


def _mixture_reference(p: Prior) -> ScipyMixture:
    mix = p()  # MixtureSameFamily of diagonal Gaussians
    comp = mix.component_distribution
    return ScipyMixture(mix.mixture_distribution.probs.detach().double().numpy(),
                        comp.mean.detach().double().numpy(), comp.stddev.detach().double().numpy())


def _vamp() -> Prior:
    torch.manual_seed(0)
    return VAE(ModelConfig(prior="vamp", prior_components=3, latent_dim=LATENT, hidden=(8,)), (6,)).latent_prior


PRIOR_CASES = [
    PriorCase("standard-normal", lambda p: stats.multivariate_normal(np.zeros(p.latent_dim), np.eye(p.latent_dim))),
    PriorCase("mog", _mixture_reference),
    PriorCase("vamp", _mixture_reference, _vamp),
]
prior_cases = pytest.mark.parametrize("case", PRIOR_CASES, ids=lambda c: c.name)


def test_every_registered_prior_has_a_case():
    assert set(PRIORS.names()) <= {c.name for c in PRIOR_CASES}, "add a PriorCase for the new prior"


@prior_cases
def test_prior_samples_and_log_prob_match_scipy(case):
    prior = case.prior()
    p_z = prior()
    assert p_z.batch_shape == () and p_z.event_shape == (LATENT,)
    z = prior.sample(7, torch.Generator().manual_seed(0))
    assert z.shape == (7, LATENT)
    torch.testing.assert_close(prior.sample(7, torch.Generator().manual_seed(0)), z)  # reproducible
    assert not torch.equal(prior.sample(7, torch.Generator().manual_seed(1)), z)
    zs = torch.randn(V, N, LATENT)
    ref = case.reference(prior).logpdf(zs.double().numpy())
    np.testing.assert_allclose(p_z.log_prob(zs).detach().double().numpy(), ref, rtol=1e-5)
    big = prior.sample(20000, torch.Generator().manual_seed(2)).double().numpy()  # the draws follow p(z)
    ref_draws = case.reference(prior).rvs(20000, random_state=np.random.default_rng(0))
    for j in range(LATENT):
        assert stats.ks_2samp(big[:, j], ref_draws[:, j]).pvalue > 1e-3


@prior_cases
@pytest.mark.parametrize("posterior", ["diag", "full"])
def test_prior_closed_form_kl_matches_monte_carlo_within_4_se(case, posterior):
    prior = case.prior()
    torch.manual_seed(3)
    q = POSTERIORS.get(posterior)(LATENT)(0.8 * torch.randn(N, POSTERIORS.get(posterior)(LATENT).n_params))
    kl = prior.analytic_kl(q)
    if kl is None:
        pytest.skip(f"the {case.name} prior has no closed-form KL to a {posterior} posterior")
    z = q.sample((40000,))
    diff = (q.log_prob(z) - prior().log_prob(z)).double()  # (M, n)
    se = diff.std(0) / math.sqrt(diff.shape[0])
    assert bool(((diff.mean(0) - kl.double()).abs() <= 4 * se).all()), (diff.mean(0), kl, se)
    per_dim = prior.analytic_kl_per_dim(q)
    if per_dim is not None:
        assert per_dim.shape == (N, LATENT)
        if posterior == "diag":
            torch.testing.assert_close(per_dim.sum(-1), kl)
        else:  # the marginals' split: its sum is at most the total
            assert bool((per_dim.sum(-1) <= kl + 1e-5).all())


# ============================================================================================== networks

NETWORK_PAIRS = list(itertools.product(ENCODERS.names(), DECODERS.names()))


def _network_model(encoder: str, decoder: str, shape: tuple[int, ...], cond_dim: int) -> VAE:
    """A VAE of the pair for ``shape``; a network that refuses the shape (a VaekitError naming its config key)
    skips the test, except a flat network, which takes every shape."""
    config = ModelConfig(encoder=encoder, decoder=decoder, latent_dim=LATENT, hidden=(8,),
                         likelihood="gaussian-learned", variance="per-output")
    schema = DataSchema.for_shape(shape, condition="covariates" if cond_dim else "none", cond_dim=cond_dim)
    try:
        return VAE(config, schema=schema)
    except VaekitError as err:
        message = str(err)
        assert "\n" not in message and ("model.encoder" in message or "model.decoder" in message), message
        assert not (ENCODERS.get(encoder).accepts_flat and "model.encoder" in message), message
        pytest.skip(f"{encoder}/{decoder} refuses {shape}: {message}")


@pytest.mark.parametrize(("encoder", "decoder"), NETWORK_PAIRS, ids=[f"{e}-{d}" for e, d in NETWORK_PAIRS])
@event_shapes
@pytest.mark.parametrize("cond_dim", [0, 2], ids=["no-c", "c"])
def test_network_pair_output_shapes(encoder, decoder, shape, cond_dim):
    model = _network_model(encoder, decoder, shape, cond_dim)
    torch.manual_seed(0)
    x = torch.randn(N, *shape)
    c = torch.randn(N, cond_dim) if cond_dim else None
    assert model.encoder(x, c).shape == (N, model.posterior.n_params)
    q = model.encode(x, c)
    assert q.batch_shape == (N,) and q.event_shape == (LATENT,)
    z = q.rsample((V,))
    c_rows = None if c is None else c.repeat(V, 1)
    assert model.decoder(z.reshape(-1, LATENT), c_rows).shape == (V * N, 2, *shape)
    p_x = model.decode(z, c)
    assert p_x.batch_shape == (V, N) and p_x.event_shape == shape
    assert model.elbo(x, c=c).shape == (N,)
    if c is None:
        with pytest.raises(VaekitError, match="not conditional"):
            model.encode(x, torch.zeros(N, 2))
        return
    with torch.no_grad():  # both networks read the condition
        other = c + 1.0
        assert not torch.allclose(model.encode(x, other).mean, q.mean)
        assert not torch.allclose(model.decode(z, other).mean, p_x.mean)
        torch.testing.assert_close(model.decode(z, c).mean[1], model.decode(z[1], c).mean)  # per-sample copies of c


# ============================================================================================ registries

REGISTRIES = [ENCODERS, DECODERS, POSTERIORS, PRIORS, LIKELIHOODS, MODEL_FAMILIES]


@pytest.mark.parametrize("registry", REGISTRIES, ids=lambda r: r.key)
def test_unknown_name_is_a_one_line_error_naming_the_key_and_the_names(registry: Registry[Any]):
    with pytest.raises(VaekitError) as info:
        registry.get("nope")
    message = str(info.value)
    assert "\n" not in message and f"'{registry.key}'" in message and "'nope'" in message
    assert registry.names() and all(name in message for name in registry.names())


@pytest.mark.parametrize("key", ["encoder", "decoder", "posterior", "prior", "likelihood"])
def test_config_refuses_an_unknown_part_naming_the_key_and_the_names(key):
    with pytest.raises(VaekitError) as info:
        ModelConfig(**{key: "nope"})
    message = str(info.value)
    registry = {"encoder": ENCODERS, "decoder": DECODERS, "posterior": POSTERIORS, "prior": PRIORS,
                "likelihood": LIKELIHOODS}[key]
    names = [n for n in registry.names() if n != "point"]  # the point mass is model.kind 'ae', not a posterior
    assert "\n" not in message and f"'model.{key}'" in message and all(n in message for n in names), message


@pytest.mark.parametrize("key", ["prior", "encoder"])
def test_cli_refuses_an_unknown_part_with_one_line(tmp_path, key):
    registry = PRIORS if key == "prior" else ENCODERS
    done = run_vaekit("train", f"--model.{key}", "nope", cwd=tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr  # the CLI's exit status for a user error (docs/bad-inputs.md)
    assert len(lines) == 1 and lines[0].startswith(f"vaekit: error: config key 'model.{key}'"), done.stderr
    assert "'nope'" in lines[0] and all(name in lines[0] for name in registry.names())
    assert list(tmp_path.iterdir()) == []  # nothing written


# ============================================================ learnable priors without a closed-form KL

class LearnedNormal(Prior):
    """p(z) = N(loc, diag exp(log_scale)^2), both learnable; it offers no closed-form KL (the base class's
    ``analytic_kl`` returns None), so the ELBO estimates the KL by Monte Carlo."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__(latent_dim)
        self.loc = nn.Parameter(torch.zeros(latent_dim))
        self.log_scale = nn.Parameter(torch.zeros(latent_dim))

    def forward(self) -> Distribution:
        return D.diag_normal(self.loc, self.log_scale.exp())

    def set(self, loc: Tensor, scale: Tensor) -> None:
        with torch.no_grad():
            self.loc.copy_(loc)
            self.log_scale.copy_(torch.log(scale))


class LearnedMixture(Prior):
    """A two-component mixture of N(mean_j, diag exp(log_scale_j)^2) with learnable weights and means."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__(latent_dim)
        self.logits = nn.Parameter(torch.zeros(2))
        self.means = nn.Parameter(torch.stack([torch.ones(latent_dim), -torch.ones(latent_dim)]))
        self.log_scales = nn.Parameter(torch.full((2, latent_dim), -0.5))

    def forward(self) -> Distribution:
        return MixtureSameFamily(Categorical(logits=self.logits, validate_args=False),
                                 D.diag_normal(self.means, self.log_scales.exp()), validate_args=False)


LEARNED = {"test-learned-normal": LearnedNormal, "test-mixture": LearnedMixture}


@pytest.fixture
def learned_priors() -> Iterator[None]:
    """The test priors registered for one test, and removed after it whatever happens."""
    for name, cls in LEARNED.items():
        PRIORS.register(name)(cls)
    try:
        yield
    finally:
        for name in LEARNED:
            if name in PRIORS:
                PRIORS.unregister(name)


def learned_model(prior: str, seed: int = 0) -> tuple[VAE, Tensor]:
    torch.manual_seed(seed)
    model = VAE(ModelConfig(prior=prior, latent_dim=2, hidden=(16,), likelihood="gaussian", sigma=0.5), (5,))
    if isinstance(model.latent_prior, LearnedNormal):
        model.latent_prior.set(torch.tensor([0.5, -1.0]), torch.tensor([0.7, 1.6]))
    return model, torch.randn(6, 5)


@pytest.mark.usefixtures("learned_priors")
def test_mixture_prior_density_matches_scipy():
    prior = LearnedMixture(2)
    with torch.no_grad():
        prior.logits.copy_(torch.tensor([0.3, -0.4]))
    z = torch.randn(V, N, 2)
    w = special.softmax(prior.logits.detach().double().numpy())
    m, s = prior.means.detach().double().numpy(), np.exp(prior.log_scales.detach().double().numpy())
    ref = special.logsumexp([np.log(w[j]) + stats.multivariate_normal(m[j], np.diag(s[j] ** 2)).logpdf(z.double())
                             for j in range(2)], axis=0)
    np.testing.assert_allclose(prior().log_prob(z).detach().double().numpy(), ref, rtol=1e-5)
    assert prior.sample(5, torch.Generator().manual_seed(0)).shape == (5, 2)


@pytest.mark.usefixtures("learned_priors")
@pytest.mark.parametrize("prior", list(LEARNED))
def test_learned_prior_gives_a_monte_carlo_kl_from_the_elbos_own_draws(prior):
    model, x = learned_model(prior)
    assert model.latent_prior.analytic_kl(model.encode(x)) is None
    torch.manual_seed(1)
    out = elbo_terms(model, x, n_samples=4)
    assert out.kl_estimator == "monte-carlo" and iwae_terms(model, x, 4).kl_estimator == "monte-carlo"
    torch.manual_seed(1)
    q = model.encode(x)
    z = q.rsample((4,))  # the same draws
    terms = log_terms(model, Batch(x), z, q, model.prior())
    torch.testing.assert_close(out.kl, (terms.log_qz - terms.log_pz).mean(0))
    torch.testing.assert_close(out.recon, terms.log_px_z.mean(0))
    out.loss.backward()  # the prior's parameters get gradients through log p(z)
    for name, p in model.latent_prior.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.usefixtures("learned_priors")
def test_monte_carlo_kl_matches_the_closed_form_of_the_equivalent_gaussian_in_expectation():
    model, x = learned_model("test-learned-normal")
    M = 20000
    with torch.no_grad():
        torch.manual_seed(2)
        out = elbo_terms(model, x, n_samples=M)
        q = model.encode(x)
        torch.manual_seed(2)
        z = q.rsample((M,))
        diff = (q.log_prob(z) - model.prior().log_prob(z)).double()
    torch.testing.assert_close(out.kl.double(), diff.mean(0), rtol=1e-4, atol=1e-4)
    se = diff.std(0) / math.sqrt(M)
    p = model.latent_prior
    exact = kl_divergence(Normal(q.mean, q.stddev), Normal(p.loc, p.log_scale.exp())).sum(-1).double()
    assert bool(((out.kl.double() - exact).abs() <= 4 * se).all()), (out.kl, exact, se)

    # at loc 0, scale 1 it is the standard-normal model: same draws, same recon, KL equal in expectation
    p.set(torch.zeros(2), torch.ones(2))
    standard = VAE(dataclasses.replace(model.config, prior="standard-normal"), (5,))
    standard.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("latent_prior.")})
    with torch.no_grad():
        torch.manual_seed(3)
        mc = elbo_terms(model, x, n_samples=M)
        torch.manual_seed(3)
        closed = elbo_terms(standard, x, n_samples=M)
    assert closed.kl_estimator == "analytic"
    torch.testing.assert_close(mc.recon, closed.recon)
    assert bool(((mc.kl.double() - closed.kl.double()).abs() <= 4 * se).all())


@pytest.mark.usefixtures("learned_priors")
def test_learned_prior_trains_to_the_aggregate_posterior():
    """With the networks frozen, maximising the ELBO over a Gaussian prior's loc and scale is maximising
    E_x E_q log p(z): the optimum is the aggregate posterior's mean and per-dimension variance."""
    model, _ = learned_model("test-learned-normal")
    model.requires_grad_(False)
    prior = model.latent_prior.requires_grad_(True)
    torch.manual_seed(4)
    x = 2.0 * torch.randn(32, 5) + 1.0
    with torch.no_grad():
        q = model.encode(x)
        target_loc = q.mean.mean(0)
        target_scale = (q.variance + (q.mean - target_loc).square()).mean(0).sqrt()
    assert float((prior.loc.detach() - target_loc).abs().max()) > 0.5  # it starts far away
    opt = torch.optim.Adam(prior.parameters(), lr=0.1)
    schedule = torch.optim.lr_scheduler.StepLR(opt, 80, 0.2)
    for _ in range(160):
        opt.zero_grad()
        elbo_terms(model, x, n_samples=8).loss.backward()
        opt.step()
        schedule.step()
    torch.testing.assert_close(prior.loc.detach(), target_loc, atol=0.06, rtol=0)
    torch.testing.assert_close(prior.log_scale.exp().detach(), target_scale, atol=0.06, rtol=0)


@pytest.mark.usefixtures("learned_priors")
@pytest.mark.parametrize("posterior", ["full", "diag"])
def test_learned_prior_bounds_are_exact_for_ppca_with_the_exact_posterior(posterior):
    """PPCA with p(z) = N(m, diag s^2) and its exact (full) posterior: every importance weight is log p(x), so
    the IWAE bound, the IS estimate at any k and the ELBO with its Monte-Carlo KL from the same draws all
    equal the exact log p(x). The diagonal head carries the posterior's marginals only: a strict lower bound."""
    m, s = torch.tensor([0.8, -0.5]), torch.tensor([1.5, 0.6])
    model, marginal = ppca(posterior, prior="test-learned-normal", prior_loc=m, prior_scale=s)
    model.latent_prior.set(m, s)
    x = marginal.sample((32,))
    exact = marginal.log_prob(x).double()
    with torch.no_grad():
        torch.manual_seed(0)
        elbo = elbo_terms(model, x, n_samples=1).bound.double()
        iwae = iwae_bound(model, x, 5).double()
    ll = log_likelihood(model, x, k=7, chunk=3, batch_size=5, seed=0)
    if posterior == "full":
        for value in (elbo, iwae, ll):
            torch.testing.assert_close(value, exact, atol=2e-4, rtol=0)
    else:
        assert float((exact - log_likelihood(model, x, k=1, seed=0)).mean()) > 0.01  # a visible gap at k = 1
        big = log_likelihood(model, x, k=3000, chunk=1000, batch_size=32, seed=1)
        assert abs(float((big - exact).mean())) < 0.01


@pytest.mark.usefixtures("learned_priors")
def test_naive_estimator_draws_from_the_learned_prior():
    """proposal='prior' draws z = loc + scale * eps from the learned prior: log p(x) ~ logsumexp_j log p(x|z_j)
    - log k, by hand from the decoder; and it approaches the exact PPCA log p(x)."""
    m, s = torch.tensor([0.8, -0.5]), torch.tensor([1.5, 0.6])
    model, marginal = ppca("full", prior="test-learned-normal", prior_loc=m, prior_scale=s)
    model.latent_prior.set(m, s)
    x = marginal.sample((8,))
    k = 6
    eps = torch.randn(k, 8, 2)
    got = log_likelihood(model, x, k=k, chunk=4, batch_size=3, eps=eps, proposal="prior")
    with torch.no_grad():
        log_px_z = model.decode(m + s * eps).log_prob(x)
    torch.testing.assert_close(got, (torch.logsumexp(log_px_z, 0) - math.log(k)).double(), atol=1e-5, rtol=0)
    naive = log_likelihood(model, x, k=5000, chunk=2500, batch_size=8, seed=0, proposal="prior")
    assert abs(float((naive - marginal.log_prob(x).double()).mean())) < 0.05


@pytest.mark.usefixtures("learned_priors")
@pytest.mark.parametrize("prior", list(LEARNED))
def test_learned_prior_round_trips_a_checkpoint_with_strict_weights(tmp_path, prior):
    model, x = learned_model(prior, seed=5)
    with torch.no_grad():
        for p in model.latent_prior.parameters():
            p.add_(0.1 * torch.randn(p.shape))
    path = save_checkpoint(tmp_path / "ckpt", model, Config(model=model.config), model_meta(model))
    saved = {k for k in model.state_dict() if k.startswith("latent_prior.")}
    assert saved == {f"latent_prior.{name}" for name, _ in model.latent_prior.named_parameters()}
    loaded, config, meta = load_model(path)  # strict: every name and shape must match
    assert config.model.prior == prior and meta["parts"]["prior"] == prior
    assert isinstance(loaded.latent_prior, LEARNED[prior])
    want = model.state_dict()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, want[key]), key
    model.eval()
    torch.testing.assert_close(log_likelihood(loaded, x, k=20, seed=3), log_likelihood(model, x, k=20, seed=3))
    PRIORS.unregister(prior)  # a checkpoint naming a prior this process does not have: a one-line error
    with pytest.raises(VaekitError, match=f"model.prior.*'{prior}'"):
        load_model(path)


# =========================================================================== the one likelihood path

def covariance(q: Distribution) -> Tensor:
    """The (n, d, d) covariance of a diagonal or full-covariance Gaussian q."""
    return q.covariance_matrix if isinstance(q, MultivariateNormal) else torch.diag_embed(q.variance)


@pytest.mark.parametrize("posterior", ["diag", "full"])
def test_elbo_iwae_and_both_estimators_are_hand_computations_from_log_terms(posterior):
    """On fixed noise eps (k, n, d), z = mu + L eps: the ELBO, the IWAE bound (training record and
    evaluation), the IS estimate and the naive estimate equal the values computed here from
    ``bounds.log_terms``, whose three densities are themselves checked against torch.distributions
    (log p(x|z) from the decoder's W and b)."""
    model, marginal = ppca(posterior, perturb=0.3, seed=1)
    n, k, d = 6, 5, 2
    x = marginal.sample((n,))
    batch = Batch(x)
    torch.manual_seed(7)
    eps = torch.randn(k, n, d)
    with torch.no_grad():
        q = model.encode(x)
        z = D.reparameterise(q, eps)
        terms = log_terms(model, batch, z, q, model.prior())
        dec = only_linear(model.decoder)
        sigma = model.config.sigma
        p_x = Independent(Normal(z @ dec.weight.T + dec.bias, sigma), 1)
        torch.testing.assert_close(terms.log_px_z, p_x.log_prob(x))
        torch.testing.assert_close(terms.log_pz, Independent(Normal(torch.zeros(d), torch.ones(d)), 1).log_prob(z))
        torch.testing.assert_close(terms.log_qz, q.log_prob(z))
        log_w = terms.log_px_z + terms.log_pz - terms.log_qz
        torch.testing.assert_close(terms.log_w, log_w)
        iw_hand = torch.logsumexp(log_w, 0) - math.log(k)

        # the ELBO draws its noise as q.rsample does: the same noise under the same seed
        for beta in (1.0, 0.5):
            torch.manual_seed(7)
            out = elbo_terms(model, x, n_samples=k, beta=beta)
            standard = MultivariateNormal(torch.zeros(n, d), scale_tril=torch.eye(d).expand(n, d, d))
            recon, kl = terms.log_px_z.mean(0), kl_divergence(MultivariateNormal(q.mean, covariance(q)), standard)
            torch.testing.assert_close(out.recon, recon)
            torch.testing.assert_close(out.kl, kl)
            torch.testing.assert_close(out.bound, recon - beta * kl)
            torch.testing.assert_close(out.elbo, recon - kl)
            torch.testing.assert_close(out.loss, -(recon - beta * kl).mean())
            assert out.kl_estimator == "analytic"

        torch.manual_seed(7)
        iw = iwae_terms(model, x, k)
        torch.testing.assert_close(iw.bound, iw_hand)
        torch.testing.assert_close(iw.recon, terms.log_px_z.mean(0))
        torch.testing.assert_close(iw.loss, -iw_hand.mean())
        torch.manual_seed(7)
        torch.testing.assert_close(iwae_bound(model, x, k), iw_hand)
        torch.testing.assert_close(log_weights(model, x, k, z=z), log_w)

    for chunk, batch_size in ((k, n), (2, 4)):  # the estimate does not depend on the chunking
        est = log_likelihood(model, x, k=k, chunk=chunk, batch_size=batch_size, eps=eps)
        torch.testing.assert_close(est, iw_hand.double(), atol=1e-5, rtol=0)
        naive = log_likelihood(model, x, k=k, chunk=chunk, batch_size=batch_size, eps=eps, proposal="prior")
        with torch.no_grad():  # the prior N(0, I) as proposal: z = eps, and log w = log p(x|z)
            naive_hand = torch.logsumexp(log_terms(model, batch, eps, q, model.prior()).log_px_z, 0) - math.log(k)
        torch.testing.assert_close(naive, naive_hand.double(), atol=1e-5, rtol=0)


@pytest.mark.usefixtures("learned_priors")
def test_naive_estimator_with_a_mixture_prior_draws_from_the_mixture():
    """A prior that is not Gaussian (no reparameterisation from N(0, I) noise) still serves as the naive
    proposal: log p(x) ~ logsumexp_j log p(x|z_j) - log k with z_j from the mixture's own sampler, seeded."""
    model, x = learned_model("test-mixture", seed=3)
    model.eval()
    a = log_likelihood(model, x, k=64, chunk=16, batch_size=3, seed=7, proposal="prior")
    b = log_likelihood(model, x, k=64, chunk=16, batch_size=3, seed=7, proposal="prior")
    torch.testing.assert_close(a, b)  # reproducible from the seed
    assert a.shape == (6,) and torch.isfinite(a).all()
    # the estimate converges to the importance-sampled log p(x), which has the same target
    naive = log_likelihood(model, x, k=20000, chunk=5000, batch_size=6, seed=1, proposal="prior")
    is_est = log_likelihood(model, x, k=20000, chunk=5000, batch_size=6, seed=2)
    assert float((naive - is_est).abs().max()) < 0.2 and abs(float((naive - is_est).mean())) < 0.05


def test_mlp_layers_run_their_hooks_and_the_input_transform_runs_when_it_changes_something():
    """The MLP networks call each layer in turn (not the container): a hook on a layer still sees every call.
    The encoder's input transform runs only when it changes x (l2 norm, dropout in training): same values."""
    from vaekit.config import ModelConfig
    from vaekit.model import VAE

    torch.manual_seed(0)
    model = VAE(ModelConfig(hidden=(8,), latent_dim=2, likelihood="bernoulli"), (5,))
    seen: list[tuple[int, ...]] = []
    for net in (model.encoder.net, model.decoder.net):
        net[0].register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    model.eval()
    x = (torch.rand(3, 5) < 0.5).float()
    model.decode(model.encode(x).mean)
    assert seen == [(3, 8), (3, 8)]
    l2 = VAE(ModelConfig(hidden=(8,), latent_dim=2, likelihood="bernoulli", input_norm="l2"), (5,))
    l2.load_state_dict(model.state_dict())
    l2.eval()
    h = torch.nn.functional.normalize(x, dim=1)
    torch.testing.assert_close(l2.encode(x).mean, model.encode(h).mean)
