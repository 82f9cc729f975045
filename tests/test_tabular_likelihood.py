"""The ``mixed`` likelihood of a table row: each column's term against torch.distributions / scipy, in the
data's own units (the Jacobian of the real columns' scaling), masking (missing cells never scored, not even
as NaN * 0), normalisation of the discrete terms, gradients, and its use by the one likelihood path
(ELBO, IWAE bound, importance-sampled log p(x))."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import special, stats
from torch.distributions import Bernoulli, Categorical, NegativeBinomial, Normal, Poisson

from vaekit.batch import Batch
from vaekit.bounds import elbo_terms, iwae_bound
from vaekit.config import ModelConfig
from vaekit.errors import VaekitError
from vaekit.evaluate import log_likelihood
from vaekit.model import VAE

COLUMNS = ("real", "categorical:3", "binary", "count", "negbin", "real")
WIDTH = 1 + 3 + 1 + 1 + 1 + 1 + len(COLUMNS)  # value slots + one indicator per column
N, V, LATENT = 5, 3, 2


def mixed_model(variance: str = "per-dim", seed: int = 0) -> VAE:
    """A small random mixed model with a random data transform on its real and count columns."""
    torch.manual_seed(seed)
    config = ModelConfig(likelihood="mixed", columns=COLUMNS, latent_dim=LATENT, hidden=(8,), variance=variance)
    loc, scale = torch.zeros(WIDTH), torch.ones(WIDTH)
    loc[[0, 7]], scale[[0, 7]] = torch.tensor([3.0, -2.0]), torch.tensor([2.5, 0.4])
    loc[[5, 6]] = torch.tensor([2.0, 4.0])  # count columns: their mean is the rate's offset
    model = VAE(config, (WIDTH,), data_loc=loc, data_scale=scale)
    with torch.no_grad():
        for p in model.likelihood.parameters():
            p.copy_(0.3 * torch.randn(p.shape))
    return model


def rows(n: int = N, seed: int = 0) -> torch.Tensor:
    """n rows of valid values: reals, a one-hot level, 0/1, counts; indicators 1."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, WIDTH)
    x[:, 0] = 3.0 + 2.0 * torch.randn(n, generator=g)
    x[torch.arange(n), 1 + torch.randint(0, 3, (n,), generator=g)] = 1.0
    x[:, 4] = torch.randint(0, 2, (n,), generator=g).float()
    x[:, 5] = torch.randint(0, 6, (n,), generator=g).float()
    x[:, 6] = torch.randint(0, 9, (n,), generator=g).float()
    x[:, 7] = -2.0 + 0.5 * torch.randn(n, generator=g)
    x[:, 8:] = 1.0
    return x


def raw(model: VAE, z: torch.Tensor) -> torch.Tensor:
    """The decoder network's output (V, n, 2, W) before the likelihood."""
    out = model.decoder(z.reshape(-1, LATENT))
    return out.reshape(*z.shape[:-1], *out.shape[1:])


def column_terms(model: VAE, params: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each column's log-likelihood (V, n) from torch.distributions, built from the raw decoder output."""
    loc, scale = model.data_loc, model.data_scale
    m, s = params[..., 0, :], params[..., 1, :]
    if model.likelihood.per_output:
        sig0, sig7 = torch.exp(s[..., 0]), torch.exp(s[..., 7])
    else:
        sig0, sig7 = torch.exp(model.likelihood.log_sigma[0]), torch.exp(model.likelihood.log_sigma[1])
    return {
        "real0": Normal(m[..., 0] * scale[0] + loc[0], sig0 * scale[0]).log_prob(x[:, 0]),
        "cat": Categorical(logits=m[..., 1:4]).log_prob(x[:, 1:4].argmax(-1)),
        "binary": Bernoulli(logits=m[..., 4]).log_prob(x[:, 4]),
        "count": Poisson(torch.exp(m[..., 5] + torch.log(loc[5]))).log_prob(x[:, 5]),
        "negbin": NegativeBinomial(torch.exp(s[..., 6]), logits=m[..., 6] + torch.log(loc[6]) - s[..., 6]
                                   ).log_prob(x[:, 6]),
        "real7": Normal(m[..., 7] * scale[7] + loc[7], sig7 * scale[7]).log_prob(x[:, 7]),
    }


@pytest.mark.parametrize("variance", ["per-dim", "per-output"])
def test_each_column_term_matches_torch_distributions(variance):
    model = mixed_model(variance, seed=1)
    x, z = rows(), torch.randn(V, N, LATENT)
    with torch.no_grad():
        p_x = model.decode(z)
        assert p_x.batch_shape == (V, N) and p_x.event_shape == (WIDTH,)
        per_slot = p_x.base_dist.log_prob(x)  # (V, N, W)
        want = column_terms(model, raw(model, z), x)
    torch.testing.assert_close(per_slot[..., 0], want["real0"])
    torch.testing.assert_close(per_slot[..., 1:4].sum(-1), want["cat"])
    torch.testing.assert_close(per_slot[..., 4], want["binary"])
    torch.testing.assert_close(per_slot[..., 5], want["count"])
    torch.testing.assert_close(per_slot[..., 6], want["negbin"])
    torch.testing.assert_close(per_slot[..., 7], want["real7"])
    assert (per_slot[..., 8:] == 0).all()  # indicator slots are never scored
    torch.testing.assert_close(p_x.log_prob(x), sum(want.values()))


def test_row_log_likelihood_matches_scipy():
    model = mixed_model("per-output", seed=2)
    x, z = rows(seed=2), torch.randn(V, N, LATENT)
    with torch.no_grad():
        got = model.decode(z).log_prob(x).double().numpy()
        p = raw(model, z).double().numpy()
    xs, loc, scale = x.double().numpy(), model.data_loc.double().numpy(), model.data_scale.double().numpy()
    m, s = p[..., 0, :], p[..., 1, :]
    ref = (stats.norm.logpdf(xs[:, 0], m[..., 0] * scale[0] + loc[0], np.exp(s[..., 0]) * scale[0])
           + (special.log_softmax(m[..., 1:4], -1) * xs[:, 1:4]).sum(-1)
           + stats.bernoulli.logpmf(xs[:, 4], special.expit(m[..., 4]))
           + stats.poisson.logpmf(xs[:, 5], np.exp(m[..., 5]) * loc[5])
           # scipy's nbinom(n, p) counts failures before n successes: mean n (1 - p) / p
           + stats.nbinom.logpmf(xs[:, 6], np.exp(s[..., 6]), 1 - special.expit(m[..., 6] + np.log(loc[6]) - s[..., 6]))
           + stats.norm.logpdf(xs[:, 7], m[..., 7] * scale[7] + loc[7], np.exp(s[..., 7]) * scale[7]))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)


def test_discrete_terms_normalise_and_means_are_the_distributions_means():
    model = mixed_model("per-output", seed=3)
    z = torch.randn(2, LATENT)
    with torch.no_grad():
        p_x = model.decode(z)
        base, mean = p_x.base_dist, p_x.mean
        x = rows(2, seed=3)
        # categorical: the three one-hot outcomes; binary: 0 and 1; counts: 0..400
        cat = torch.logsumexp(torch.stack([base.log_prob(_with(x, slice(1, 4), k))[..., 1:4].sum(-1)
                                           for k in range(3)]), 0)
        binary = torch.logsumexp(torch.stack([base.log_prob(_set(x, 4, v))[..., 4] for v in (0.0, 1.0)]), 0)
        counts = torch.arange(0, 400.0)
        pois = torch.stack([base.log_prob(_set(x, 5, float(c)))[..., 5] for c in counts])
        nb = torch.stack([base.log_prob(_set(x, 6, float(c)))[..., 6] for c in counts])
    for total in (cat, binary, torch.logsumexp(pois, 0), torch.logsumexp(nb, 0)):
        torch.testing.assert_close(total, torch.zeros(2), atol=1e-4, rtol=0)
    torch.testing.assert_close(mean[:, 5], (pois.exp() * counts[:, None]).sum(0), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(mean[:, 6], (nb.exp() * counts[:, None]).sum(0), rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(mean[:, 1:4].sum(-1), torch.ones(2))


def _set(x: torch.Tensor, j: int, v: float) -> torch.Tensor:
    y = x.clone()
    y[:, j] = v
    return y


def _with(x: torch.Tensor, sl: slice, k: int) -> torch.Tensor:
    y = x.clone()
    y[:, sl] = 0.0
    y[:, sl.start + k] = 1.0
    return y


def test_real_columns_are_in_the_datas_units():
    """x = loc + scale * u: log p_X(x) = log p_U(u) - log scale for each real column; the discrete columns
    do not change."""
    model = mixed_model(seed=4)
    unit = mixed_model(seed=4)
    with torch.no_grad():
        unit.data_scale[[0, 7]] = 1.0
        unit.data_loc[[0, 7]] = 0.0
        z, x = torch.randn(V, N, LATENT), rows(seed=4)
        u = x.clone()
        u[:, [0, 7]] = (x[:, [0, 7]] - model.data_loc[[0, 7]]) / model.data_scale[[0, 7]]
        got = model.decode(z).log_prob(x)
        want = unit.decode(z).log_prob(u) - torch.log(model.data_scale[[0, 7]]).sum()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


def test_a_row_with_all_but_one_column_missing_scores_that_column_only():
    model = mixed_model("per-output", seed=5)
    x = rows(1, seed=5)
    z = torch.randn(V, 1, LATENT)
    slots = {"real0": [0], "cat": [1, 2, 3], "binary": [4], "count": [5], "negbin": [6], "real7": [7]}
    with torch.no_grad():
        want = column_terms(model, raw(model, z), x)
        for name, idx in slots.items():
            mask = torch.zeros(1, WIDTH, dtype=torch.bool)
            mask[0, idx] = True
            mask[0, 8:] = True
            holey = x.clone()
            holey[0, [j for j in range(8) if j not in idx]] = float("nan")  # missing cells hold NaN here
            got = model.log_px(model.decode(z), Batch(holey, mask=mask))
            assert torch.isfinite(got).all(), name
            torch.testing.assert_close(got, want[name], msg=name)


def test_masked_cells_give_finite_gradients_and_never_nan():
    model = mixed_model(seed=6)
    x = rows(seed=6)
    mask = torch.rand(N, WIDTH, generator=torch.Generator().manual_seed(6)) > 0.4
    mask[:, 8:] = True
    mask[:, 1:4] = mask[:, 1:2]  # a categorical column is observed or missing as a whole
    x = torch.where(mask, x, torch.full_like(x, float("nan")))
    model.train()
    out = elbo_terms(model, Batch(x, mask=mask), n_samples=2)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_the_one_likelihood_path_respects_the_mask():
    """ELBO, IWAE bound and importance-sampled log p(x) of rows with missing cells equal those of a model
    that never saw the missing columns' values: changing a missing cell's value changes nothing."""
    model = mixed_model(seed=7).eval()
    x = rows(seed=7)
    mask = torch.ones(N, WIDTH, dtype=torch.bool)
    mask[:, 0] = False
    mask[:, 5] = False
    other = x.clone()
    other[:, 0] += 100.0
    other[:, 5] += 7.0
    a, b = Batch(x, mask=mask), Batch(other, mask=mask)
    for f in (lambda t: elbo_terms(model, t, n_samples=4).bound,
              lambda t: iwae_bound(model, t, 8),
              lambda t: log_likelihood(model, t, k=16, chunk=8, batch_size=2)):
        torch.manual_seed(0)
        first = f(a)
        torch.manual_seed(0)
        second = f(b)
        torch.testing.assert_close(first, second)
    torch.manual_seed(0)
    full = log_likelihood(model, Batch(x), k=16, chunk=8, batch_size=2, seed=0)
    torch.manual_seed(0)
    holey = log_likelihood(model, a, k=16, chunk=8, batch_size=2, seed=0)
    assert (holey > full).all()  # fewer cells scored (and only densities/pmfs <= 1 dropped here)


def test_layout_errors_are_one_line():
    with pytest.raises(VaekitError, match="model.columns"):
        VAE(ModelConfig(likelihood="mixed", latent_dim=2, hidden=(4,)), (4,))
    with pytest.raises(VaekitError, match="width 4"):
        VAE(ModelConfig(likelihood="mixed", columns=("real", "binary"), latent_dim=2, hidden=(4,)), (5,))
    with pytest.raises(VaekitError, match="categorical:K"):
        VAE(ModelConfig(likelihood="mixed", columns=("categorical",), latent_dim=2, hidden=(4,)), (2,))


def test_samples_have_valid_values_in_each_column():
    model = mixed_model(seed=8)
    with torch.no_grad():
        s = model.decode(torch.randn(50, LATENT)).sample()
    assert s.shape == (50, WIDTH)
    assert ((s[:, 1:4] == 0) | (s[:, 1:4] == 1)).all() and (s[:, 1:4].sum(-1) == 1).all()
    assert set(s[:, 4].tolist()) <= {0.0, 1.0}
    assert (s[:, 5:7] >= 0).all() and (s[:, 5:7] == s[:, 5:7].round()).all()
    assert (s[:, 8:] == 1).all()
