"""Property-based tests (hypothesis): distributions against torch.distributions, and the config parser."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import kl_divergence

from vaekit import distributions as D
from vaekit import likelihoods
from vaekit.config import (
    ACTIVATIONS,
    SECTIONS,
    Config,
    EvalConfig,
    ModelConfig,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    config_to_toml,
    load_config,
)
from vaekit.errors import VaekitError

LIKELIHOODS = ("auto", *likelihoods.LIKELIHOODS.names())  # every registered likelihood, and auto

SETTINGS = settings(max_examples=50, deadline=None)
seeds = st.integers(0, 2**31 - 1)
shapes = st.lists(st.integers(1, 4), min_size=0, max_size=2).map(tuple)


def _diag(seed: int, batch: tuple[int, ...], d: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    loc = torch.randn(*batch, d, generator=g, dtype=torch.float64)
    scale = torch.rand(*batch, d, generator=g, dtype=torch.float64) * 2 + 0.05
    return loc, scale


def _tril(seed: int, batch: tuple[int, ...], d: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    loc = torch.randn(*batch, d, generator=g, dtype=torch.float64)
    L = torch.randn(*batch, d, d, generator=g, dtype=torch.float64).tril(-1) * 0.5
    diag = torch.rand(*batch, d, generator=g, dtype=torch.float64) + 0.1
    return loc, L + torch.diag_embed(diag)


@SETTINGS
@given(seed=seeds, batch=shapes, d=st.integers(1, 6))
def test_diag_kl_is_nonnegative_and_matches_torch(seed: int, batch: tuple[int, ...], d: int) -> None:
    loc, scale = _diag(seed, batch, d)
    q = D.diag_normal(loc, scale)
    kl = D.kl_standard_normal(q)
    assert kl.shape == batch
    assert (kl >= -1e-12).all()
    torch.testing.assert_close(kl, kl_divergence(q, D.standard_normal(d, dtype=torch.float64)))
    torch.testing.assert_close(D.kl_per_dim(q).sum(-1), kl)


@SETTINGS
@given(seed=seeds, batch=shapes, d=st.integers(1, 6))
def test_full_kl_matches_torch_and_diag_case(seed: int, batch: tuple[int, ...], d: int) -> None:
    loc, tril = _tril(seed, batch, d)
    q = D.full_normal(loc, tril)
    kl = D.kl_standard_normal(q)
    p = torch.distributions.MultivariateNormal(torch.zeros(d, dtype=torch.float64),
                                               scale_tril=torch.eye(d, dtype=torch.float64))
    assert kl.shape == batch and (kl >= -1e-10).all()
    torch.testing.assert_close(kl, kl_divergence(q, p))
    diag_scale = torch.diagonal(tril, dim1=-2, dim2=-1)
    torch.testing.assert_close(D.kl_standard_normal(D.full_normal(loc, torch.diag_embed(diag_scale))),
                               D.kl_standard_normal(D.diag_normal(loc, diag_scale)))


@SETTINGS
@given(d=st.integers(1, 8), batch=shapes, eps=st.floats(1e-3, 1.0), seed=seeds)
def test_kl_is_zero_iff_q_is_the_prior(d: int, batch: tuple[int, ...], eps: float, seed: int) -> None:
    zeros, ones = torch.zeros(*batch, d, dtype=torch.float64), torch.ones(*batch, d, dtype=torch.float64)
    assert torch.equal(D.kl_standard_normal(D.diag_normal(zeros, ones)), torch.zeros(batch, dtype=torch.float64))
    eye = torch.eye(d, dtype=torch.float64).expand(*batch, d, d)
    torch.testing.assert_close(D.kl_standard_normal(D.full_normal(zeros, eye)), torch.zeros(batch,
                                                                                            dtype=torch.float64))
    j = seed % d
    moved = zeros.clone()
    moved[..., j] = eps
    widened = ones.clone()
    widened[..., j] = 1 + eps
    for q in (D.diag_normal(moved, ones), D.diag_normal(zeros, widened)):
        assert (D.kl_standard_normal(q) > 0).all()


@SETTINGS
@given(seed=seeds, batch=shapes, event=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple))
def test_likelihood_log_prob_parity(seed: int, batch: tuple[int, ...], event: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(seed)
    shape = (*batch, *event)
    logits = torch.randn(shape, generator=g, dtype=torch.float64) * 3
    x = torch.bernoulli(torch.full(shape, 0.5, dtype=torch.float64), generator=g)
    lp = D.bernoulli(logits, len(event)).log_prob(x)
    assert lp.shape == batch
    ref = torch.distributions.Bernoulli(logits=logits).log_prob(x).sum(tuple(range(-len(event), 0)))
    torch.testing.assert_close(lp, ref)
    loc = torch.randn(shape, generator=g, dtype=torch.float64)
    scale = torch.rand(shape, generator=g, dtype=torch.float64) + 0.1
    y = torch.randn(shape, generator=g, dtype=torch.float64)
    ref = torch.distributions.Normal(loc, scale).log_prob(y).sum(tuple(range(-len(event), 0)))
    torch.testing.assert_close(D.gaussian(loc, scale, len(event)).log_prob(y), ref)


# --------------------------------------------------------------------------------------- config
names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12)
positive_floats = st.floats(1e-8, 1e3, allow_nan=False, allow_infinity=False)

_model_args = {"latent_dim": st.integers(1, 64), "hidden": st.lists(st.integers(1, 512), max_size=3).map(tuple),
               "activation": st.sampled_from(ACTIVATIONS), "likelihood": st.sampled_from(LIKELIHOODS),
               "sigma": positive_floats, "variance": st.sampled_from(("per-dim", "per-output")),
               "posterior": st.sampled_from(("diag", "full"))}
# learned priors and the hierarchy need a VAE (an autoencoder has no prior to learn)
vae_models = st.builds(ModelConfig, kind=st.just("vae"), prior=st.sampled_from(("standard-normal", "mog", "vamp")),
                       prior_components=st.integers(1, 1000), levels=st.sampled_from((1, 2)), **_model_args)
# a table's model: the mixed likelihood with a column layout, under any prior and either number of levels
column_types = st.one_of(st.sampled_from(("real", "binary", "count", "negbin")),
                         st.integers(1, 50).map(lambda k: f"categorical:{k}"))
table_models = st.builds(ModelConfig, kind=st.just("vae"), likelihood=st.just("mixed"),
                         columns=st.lists(column_types, min_size=1, max_size=6).map(tuple),
                         prior=st.sampled_from(("standard-normal", "mog", "vamp")),
                         prior_components=st.integers(1, 1000), levels=st.sampled_from((1, 2)),
                         **{k: v for k, v in _model_args.items() if k != "likelihood"})
models = st.one_of(vae_models, table_models, st.builds(ModelConfig, kind=st.just("ae"), **_model_args))
_train_args = {"epochs": st.integers(1, 10**6), "batch_size": st.integers(1, 4096), "lr": positive_floats,
               "lr_schedule": st.sampled_from(("constant", "cosine", "step")), "weight_decay": st.floats(0, 1),
               "patience": st.integers(0, 100), "seed": st.integers(-(2**62), 2**62),
               "device": st.sampled_from(("auto", "cpu", "cuda", "cuda:1")),
               "precision": st.sampled_from(("fp32", "bf16")), "grad_clip": st.floats(0, 1e3),
               "keep_last": st.integers(1, 50), "max_bad_steps": st.integers(1, 1000),
               "checkpoint_every": st.integers(0, 10**5)}
elbo_trains = st.one_of(
    st.builds(TrainConfig, objective=st.just("elbo"), beta=st.floats(0, 100), warmup_steps=st.integers(0, 10**6),
              n_samples=st.integers(1, 64), free_bits=st.floats(0, 10), **_train_args),
    st.builds(TrainConfig, objective=st.just("elbo"), beta=st.floats(0, 100), kl_schedule=st.just("cyclical"),
              kl_cycles=st.integers(1, 100), kl_ratio=st.floats(0.01, 1), n_samples=st.integers(1, 64), **_train_args))
# IWAE: the plain k-sample bound, no KL weight (beta 1, no warm-up): k from iwae_k or the older n_samples
iwae_trains = st.builds(TrainConfig, objective=st.just("iwae"), iwae_k=st.integers(0, 5000), **_train_args)
evals = st.builds(EvalConfig, k=st.integers(1, 10**5), chunk=st.integers(1, 10**4))
configs = st.one_of(st.builds(Config, name=names, model=models, train=elbo_trains, eval=evals),
                    st.builds(Config, name=names, model=st.one_of(vae_models, table_models), train=iwae_trains,
                              eval=evals))


@SETTINGS
@given(config=configs)
def test_config_round_trips_through_toml(config: Config, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("cfg") / "config.toml"
    path.write_text(config_to_toml(config), encoding="utf-8")
    assert load_config(path) == config


identifiers = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)


@SETTINGS
@given(section=st.sampled_from(sorted(SECTIONS)), key=identifiers, value=st.integers())
def test_unknown_keys_always_raise_naming_the_key(section: str, key: str, value: int) -> None:
    known = {f.name for f in dataclasses.fields(SECTIONS[section])}
    if key in known:
        return
    with pytest.raises(VaekitError, match=f"'{section}.{key}'"):
        config_from_dict({section: {key: value}})
    with pytest.raises(VaekitError, match=f"{section}.{key}"):
        apply_overrides(Config(), {f"{section}.{key}": str(value)})
    if key != "name" and key not in SECTIONS:
        with pytest.raises(VaekitError, match=f"'{key}'"):
            config_from_dict({key: value})
