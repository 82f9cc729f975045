"""The learned priors (``mog``, ``vamp``): densities against explicit mixtures built with torch.distributions,
the Monte-Carlo KL against the closed form, the VampPrior built once per batch (encoder calls counted), and a
trained run's checkpoint round trip and exact resume."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import pytest
import torch
from cli_helpers import run_vaekit
from tiny_runs import tiny_config
from torch.distributions import Independent, Normal

from vaekit import distributions as D
from vaekit.batch import Batch
from vaekit.bounds import elbo_terms, iwae_terms, log_terms
from vaekit.checkpoint import load_model
from vaekit.config import ModelConfig
from vaekit.evaluate import log_likelihood
from vaekit.model import VAE, build_model
from vaekit.priors import MixtureOfGaussians, VampPrior
from vaekit.schema import DataSchema
from vaekit.train import fit, resume


def tiny(prior: str, k: int = 3, posterior: str = "diag", seed: int = 0) -> tuple[VAE, torch.Tensor]:
    torch.manual_seed(seed)
    config = ModelConfig(prior=prior, prior_components=k, latent_dim=2, hidden=(16,), likelihood="bernoulli",
                         posterior=posterior)
    model = build_model(config, DataSchema.for_shape((6,)))
    x = torch.bernoulli(torch.full((5, 6), 0.4), generator=torch.Generator().manual_seed(seed))
    return model, x


def test_mog_log_prob_is_the_explicit_weighted_mixture():
    prior = MixtureOfGaussians(3, components=4)
    with torch.no_grad():
        prior.logits.copy_(torch.tensor([0.2, -1.0, 0.5, 0.0]))
        prior.log_scales.copy_(0.3 * torch.randn(4, 3))
    z = torch.randn(7, 5, 3)
    w = torch.softmax(prior.logits, 0)
    by_hand = torch.logsumexp(torch.stack([
        w[j].log() + Independent(Normal(prior.means[j], prior.log_scales[j].exp()), 1).log_prob(z)
        for j in range(4)]), 0)
    torch.testing.assert_close(prior().log_prob(z), by_hand, rtol=1e-5, atol=1e-5)


def _wide_mixture(dtype: torch.dtype = torch.float64):
    """K = 500 diagonal components in d = 40 with scales from 0.018 to 2 (a = 1 / s^2 up to 3,000: where the
    expanded square cancels) and points both far from and drawn from the components."""
    g = torch.Generator().manual_seed(0)
    k, d = 500, 40
    loc = 2 * torch.randn(k, d, generator=g, dtype=torch.float64)
    scale = torch.exp(torch.empty(k, d, dtype=torch.float64).uniform_(-4, 0.7, generator=g))
    logits = torch.randn(k, generator=g, dtype=torch.float64)
    z = 3 * torch.randn(50, 4, d, generator=g, dtype=torch.float64)
    z[:20] = (loc[:80] + scale[:80] * torch.randn(80, d, generator=g, dtype=torch.float64)).reshape(20, 4, d)
    return [t.to(dtype) for t in (logits, loc, scale, z)]


def test_diag_gaussian_mixture_log_prob_and_gradients_are_torchs_mixture():
    """The two-matrix-product log p(z) of a diagonal mixture (VampPrior, MoG) against torch.distributions'
    MixtureSameFamily: equal to 1e-9 in float64 with equal gradients; from float32 inputs within float32's own
    rounding of the float64 truth; the same under bf16 autocast (computed outside it)."""
    from torch.distributions import Categorical, MixtureSameFamily

    logits, loc, scale, z = (t.requires_grad_() for t in _wide_mixture())
    fast = D.mixture(logits, D.diag_normal(loc, scale))
    assert isinstance(fast, D.DiagGaussianMixture)
    ref = MixtureSameFamily(Categorical(logits=logits), D.diag_normal(loc, scale))
    a, b = fast.log_prob(z), ref.log_prob(z)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-9)
    grads_a = torch.autograd.grad(a.sum(), (logits, loc, scale, z))
    grads_b = torch.autograd.grad(b.sum(), (logits, loc, scale, z))
    for ga, gb in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(ga, gb, rtol=1e-9, atol=1e-9)
    truth = b.detach()
    l32, m32, s32, z32 = (t.detach().float() for t in (logits, loc, scale, z))
    fast32 = D.mixture(l32, D.diag_normal(m32, s32))
    got = fast32.log_prob(z32)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), truth, rtol=1e-6, atol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = fast32.log_prob(z32)
    torch.testing.assert_close(under_autocast, got, rtol=0, atol=0)
    expanded = fast32.expand((3,))  # an expanded mixture (the naive estimator's p(z) per point) is torch's own
    torch.testing.assert_close(expanded.log_prob(z32[:, :3]), got[:, :3], rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("posterior", ["diag", "full"])
def test_vamp_log_prob_is_the_mean_of_the_posteriors_at_the_pseudo_inputs(posterior):
    model, _ = tiny("vamp", k=3, posterior=posterior)
    u = model.latent_prior.pseudo_inputs
    z = torch.randn(4, 5, 2)
    parts = []
    for j in range(3):  # each pseudo-input through the encoder by itself: q(z | u_j) as torch sees it
        q_j = model.encode(u[j:j + 1])
        if posterior == "diag":
            ref = Independent(Normal(q_j.mean[0], q_j.stddev[0]), 1)
        else:
            ref = torch.distributions.MultivariateNormal(q_j.mean[0], scale_tril=q_j.scale_tril[0])
        parts.append(ref.log_prob(z))
    by_hand = torch.logsumexp(torch.stack(parts), 0) - math.log(3)
    p_z = model.prior()
    assert isinstance(p_z, D.DiagGaussianMixture) == (posterior == "diag")  # the matrix-product form for diag
    torch.testing.assert_close(p_z.log_prob(z), by_hand, rtol=1e-5, atol=1e-5)


def test_vamp_gradient_reaches_the_pseudo_inputs_and_samples_are_reproducible():
    model, x = tiny("vamp")
    out = elbo_terms(model, x, n_samples=2)
    assert out.kl_estimator == "monte-carlo"
    out.loss.backward()
    g = model.latent_prior.pseudo_inputs.grad
    assert g is not None and bool(torch.isfinite(g).all()) and float(g.abs().sum()) > 0
    a = model.latent_prior.sample(6, torch.Generator().manual_seed(1))
    torch.testing.assert_close(model.latent_prior.sample(6, torch.Generator().manual_seed(1)), a)
    assert a.shape == (6, 2)


def test_unbound_vamp_prior_is_an_error_naming_the_fix():
    with pytest.raises(RuntimeError, match="build it through a model"):
        VampPrior(2, 3, (6,))()


class EncoderCalls:
    """Counts forward passes of a module (a forward hook)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.n = 0
        self.rows: list[int] = []
        module.register_forward_hook(self)

    def __call__(self, module, args, output) -> None:
        self.n += 1
        self.rows.append(int(args[0].shape[0]))


def test_vamp_prior_is_encoded_once_per_batch_not_once_per_chunk():
    model, x = tiny("vamp", k=4)
    calls = EncoderCalls(model.encoder)
    model.eval()
    log_likelihood(model, x, k=40, chunk=5, batch_size=len(x), seed=0)  # 8 chunks of samples, one batch
    assert calls.n == 2 and sorted(calls.rows) == [4, len(x)]  # the data once, the 4 pseudo-inputs once
    calls.n, calls.rows = 0, []
    log_likelihood(model, x, k=40, chunk=5, batch_size=2, seed=0)  # 3 batches of points: 3 + 3 passes
    assert calls.n == 6 and calls.rows.count(4) == 3
    calls.n = 0
    model.train()
    elbo_terms(model, x, n_samples=3)
    assert calls.n == 2
    calls.n = 0
    iwae_terms(model, x, 10)
    assert calls.n == 2


def test_mog_with_one_standard_component_gives_the_analytic_kl_elbo_in_expectation():
    """K = 1, mean 0, scale 1: the MoG prior is N(0, I). Same draws give the same reconstruction; the
    Monte-Carlo KL (its own draws) estimates the closed-form KL: within 4 standard errors of the mean of
    M draws (a two-sided test at about 6e-5 per example)."""
    mog, x = tiny("mog", k=1)
    assert float(mog.latent_prior.means.detach().abs().sum()) == 0.0  # K = 1 starts at N(0, I)
    standard = VAE(dataclasses.replace(mog.config, prior="standard-normal"), (6,))
    standard.load_state_dict({k: v for k, v in mog.state_dict().items() if not k.startswith("latent_prior.")})
    M = 20000
    with torch.no_grad():
        torch.manual_seed(4)
        mc = elbo_terms(mog, x, n_samples=M)
        torch.manual_seed(4)
        closed = elbo_terms(standard, x, n_samples=M)
        q = mog.encode(x)
        torch.manual_seed(4)
        z = q.rsample((M,))
        diff = (q.log_prob(z) - mog.prior().log_prob(z)).double()
    assert mc.kl_estimator == "monte-carlo" and closed.kl_estimator == "analytic"
    torch.testing.assert_close(mc.recon, closed.recon)
    se = diff.std(0) / math.sqrt(M)
    assert bool(((mc.elbo.double() - closed.elbo.double()).abs() <= 4 * se).all()), (mc.elbo, closed.elbo, se)
    assert bool((se < 0.05).all())  # the tolerance is tight, not vacuous


@pytest.mark.parametrize("posterior", ["diag", "full"])
def test_monte_carlo_kl_matches_the_closed_form_where_both_exist(posterior):
    model, x = tiny("standard-normal", posterior=posterior)
    M = 20000
    with torch.no_grad():
        q = model.encode(x)
        z = q.rsample((M,))
        terms = log_terms(model, Batch(x), z, q, model.prior())  # the one likelihood path's densities
        diff = (terms.log_qz - terms.log_pz).double()
        closed = D.kl_standard_normal(q).double()
    se = diff.std(0) / math.sqrt(M)
    assert bool(((diff.mean(0) - closed).abs() <= 4 * se).all()), (diff.mean(0), closed, se)


def test_learned_priors_are_refused_for_an_autoencoder():
    from vaekit.errors import VaekitError

    with pytest.raises(VaekitError, match="model.kind"):
        ModelConfig(kind="ae", prior="vamp")


def _last_weights(trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


@pytest.mark.parametrize("overrides", [{"model.prior": "vamp", "model.prior_components": "5"},
                                       {"model.prior": "mog", "model.levels": "2", "train.free_bits": "0.05"}],
                         ids=["vamp", "hvae-mog"])
def test_learned_prior_checkpoint_loads_and_resumes_exactly(tmp_path: Path, overrides):
    config = tiny_config(**overrides, **{"data.name": "digits", "train.epochs": "2"})
    ref_dir, ref = fit(config.replace(name="ref"), tmp_path)
    model, _, meta = load_model(ref_dir)
    assert meta["parts"]["prior"] == overrides["model.prior"]
    for key, value in ref.model.state_dict().items():  # pseudo-inputs / mixture parameters are saved
        torch.testing.assert_close(model.state_dict()[key], value)
    assert any(k.startswith("latent_prior.") for k in model.state_dict())
    z = torch.randn(3, model.latent_dim)
    torch.testing.assert_close(model.prior().log_prob(z), ref.model.eval().prior().log_prob(z))

    short = tiny_config(**overrides, **{"data.name": "digits", "train.epochs": "1"}).replace(name="part")
    run_dir, _ = fit(short, tmp_path)
    toml = run_dir / "config.toml"
    toml.write_text(re.sub(r"(?m)^epochs = 1$", "epochs = 2", toml.read_text()))
    resumed = resume(run_dir)
    resumed.fit()
    for key, value in _last_weights(ref).items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=0, atol=0)


def test_cli_trains_evaluates_and_samples_a_vamp_run(tmp_path: Path):
    run_vaekit("train", "--name", "v", "--data.name", "digits", "--model.prior", "vamp", "--model.prior_components",
               "4", "--model.latent_dim", "2", "--model.hidden", "16", "--train.epochs", "1", "--train.batch_size",
               "64", "--train.device", "cpu", "--no-artifacts", cwd=tmp_path, check=True)
    run_vaekit("eval", "runs/v", "--k", "20", "--naive-k", "20", cwd=tmp_path, check=True)
    run_vaekit("sample", "runs/v", "-n", "5", "--out", "s.npy", cwd=tmp_path, check=True)
    import json

    import numpy as np

    result = json.loads((tmp_path / "runs/v/eval.json").read_text())
    assert result["log_likelihood_nats"] < 0 and result["naive_log_likelihood_nats"] < 0
    assert result["kl_per_dim"] is None  # no closed-form split for a mixture prior
    assert np.load(tmp_path / "s.npy").shape == (5, 8, 8)


def test_explorer_serves_draws_from_the_learned_prior(tmp_path: Path):
    import io
    import json

    from vaekit.explore.app import ExplorerApp
    from vaekit.explore.session import ExploredRun

    run_dir, _ = fit(tiny_config(**{"data.name": "digits", "train.epochs": "1", "model.prior": "mog",
                                    "model.prior_components": "3"}), tmp_path)
    run = ExploredRun(run_dir)
    model, _, _ = load_model(run_dir)
    assert run.info()["prior"] == "learned mog"  # the page's heading of its "draw from p(z)" control
    body = json.dumps({"n": 4, "seed": 7}).encode()
    environ = {"PATH_INFO": "/api/runs/0/prior", "REQUEST_METHOD": "POST", "CONTENT_LENGTH": str(len(body)),
               "wsgi.input": io.BytesIO(body)}
    status, payload, _ = ExplorerApp([run]).route(environ)
    got = json.loads(payload)
    assert status.startswith("200") and len(got["outputs"]) == 4
    expected = model.latent_prior.sample(4, torch.Generator().manual_seed(7))  # the mixture's own draws
    torch.testing.assert_close(torch.tensor(got["z"]), expected.detach())
