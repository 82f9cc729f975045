"""vaekit.sklearn.VAE: determinism, the likelihood against quadrature, units, persistence, and use inside
scikit-learn's Pipeline, ColumnTransformer and GridSearchCV (tiny models, a few seconds each)."""

from __future__ import annotations

import json
import pickle
import re

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import norm
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import vaekit
from vaekit.errors import VaekitError
from vaekit.sklearn import VAE

SMALL = {"latent_dim": 2, "hidden": (16,), "epochs": 3, "batch_size": 64, "k": 16, "random_state": 0}


@pytest.fixture(scope="module")
def digits_x() -> np.ndarray:
    return load_digits().data[:400]


@pytest.fixture(scope="module")
def fitted(digits_x) -> VAE:
    return VAE(**SMALL).fit(digits_x)


def test_fit_is_deterministic_with_random_state_and_leaves_the_global_rng_alone(digits_x, fitted):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    again = VAE(**SMALL).fit(digits_x)
    assert torch.equal(torch.get_rng_state(), before)
    np.testing.assert_array_equal(again.transform(digits_x), fitted.transform(digits_x))
    np.testing.assert_array_equal(again.score_samples(digits_x), fitted.score_samples(digits_x))
    other = VAE(**{**SMALL, "random_state": 1}).fit(digits_x)
    assert not np.allclose(other.transform(digits_x), fitted.transform(digits_x))


def test_outputs_have_the_documented_shapes_and_names(digits_x, fitted):
    z = fitted.transform(digits_x)
    assert z.shape == (400, 2) and z.dtype == np.float64
    assert fitted.inverse_transform(z).shape == (400, 64)
    assert fitted.score_samples(digits_x).shape == (400,)
    assert list(fitted.get_feature_names_out()) == ["vae0", "vae1"]
    assert fitted.n_features_in_ == 64 and fitted.likelihood_ == "gaussian-learned"
    np.testing.assert_allclose(fitted.fit_transform(digits_x), z)  # same random_state: the same model
    assert len(fitted.history_) == SMALL["epochs"]


def test_transform_is_the_posterior_mean_of_standardised_inputs(digits_x, fitted):
    """An independent reading of the encoder: the MLP's layers applied by hand to (x - mean) / std."""
    x = digits_x.astype(np.float64)
    mean, std = x.mean(0), x.std(0)
    std[std == 0] = 1.0
    h = (x - mean) / std
    layers = [m for m in fitted.model_.encoder.modules() if isinstance(m, torch.nn.Linear)]
    for i, lin in enumerate(layers):
        h = h @ lin.weight.detach().double().numpy().T + lin.bias.detach().double().numpy()
        if i < len(layers) - 1:
            h = np.maximum(h, 0.0)
    np.testing.assert_allclose(fitted.transform(digits_x), h[:, :2], atol=1e-4)  # first d outputs: the mean


def test_score_samples_matches_quadrature_over_a_one_dimensional_latent():
    """log p(x) = log integral N(z; 0, 1) p(x|z) dz by the trapezoid rule on a fine grid (an estimator
    independent of importance sampling) against the estimator's importance-sampled value."""
    rng = np.random.default_rng(0)
    t = rng.normal(size=(300, 1))
    x = np.hstack([t, 2 * t + 0.3 * rng.normal(size=(300, 1)), rng.normal(size=(300, 1))]) * 5 + 10
    est = VAE(latent_dim=1, hidden=(8,), epochs=20, batch_size=32, k=2000, random_state=0).fit(x)
    rows = x[:5]
    grid = np.linspace(-10, 10, 4001)
    with torch.no_grad():
        p_x = est.model_.decode(torch.tensor(grid, dtype=torch.float32)[:, None, None].expand(4001, 5, 1))
        log_px_z = p_x.log_prob(torch.tensor(rows, dtype=torch.float32)).double().numpy()  # (grid, rows)
    log_joint = log_px_z + norm.logpdf(grid)[:, None]
    dz = grid[1] - grid[0]
    exact = logsumexp(log_joint, axis=0, b=np.where((grid == grid[0]) | (grid == grid[-1]), 0.5, 1.0)[:, None]) \
        + np.log(dz)
    np.testing.assert_allclose(est.score_samples(rows), exact, atol=0.05)
    assert est.score(rows) == pytest.approx(float(np.mean(est.score_samples(rows))))


def test_score_samples_is_vaekits_log_likelihood_with_common_draws(digits_x, fitted):
    from vaekit.evaluate import log_likelihood
    from vaekit.sklearn import SCORE_SEED_OFFSET

    x = torch.tensor(digits_x[:7], dtype=torch.float32)
    eps = torch.randn((16, 1, 2), generator=torch.Generator().manual_seed(SCORE_SEED_OFFSET)).expand(16, 7, 2)
    ref = log_likelihood(fitted.model_, x, k=16, chunk=16, batch_size=7, eps=eps).numpy()
    np.testing.assert_allclose(fitted.score_samples(digits_x[:7]), ref, rtol=1e-6)
    # a row's score does not depend on the rows scored beside it
    np.testing.assert_allclose(fitted.score_samples(digits_x[3:4]), ref[3:4], rtol=1e-6)


def test_bernoulli_on_binary_data_and_inverse_transform_in_input_units():
    x = (load_digits().data[:300] > 8).astype(np.float64)
    est = VAE(**SMALL).fit(x)
    assert est.likelihood_ == "bernoulli"
    recon = est.inverse_transform(est.transform(x))
    with torch.no_grad():
        probs = torch.sigmoid(est.model_.decoder(torch.tensor(est.transform(x), dtype=torch.float32), None))
    np.testing.assert_allclose(recon, probs.reshape(300, 64).double().numpy(), atol=1e-6)
    draws = est.sample(50, random_state=3)
    assert set(np.unique(draws)) <= {0.0, 1.0}
    np.testing.assert_array_equal(draws, est.sample(50, random_state=3))
    assert not np.array_equal(draws, est.sample(50, random_state=4))
    # a min-max scaled Bernoulli model: decoder means mapped back to the data's [lo, hi]
    scaled = VAE(**{**SMALL, "likelihood": "bernoulli"}).fit(x * 4 + 1)
    out = scaled.inverse_transform(scaled.transform(x * 4 + 1))
    assert out.min() >= 1.0 and out.max() <= 5.0
    with pytest.raises(VaekitError, match="0/1 rows only"):
        scaled.score_samples(x * 4 + 1.5)


def test_gaussian_samples_are_draws_in_data_units(digits_x, fitted):
    s = fitted.sample(2000, random_state=0)
    assert s.shape == (2000, 64)
    assert np.all(np.abs(s.mean(0) - digits_x.mean(0)) < 4 * digits_x.std(0) + 1.0)  # data units, not standardised
    assert s.std() > 1.0  # draws x ~ p(x|z), not decoder means of standardised units


def test_pickle_clone_and_checkpoint_round_trips(tmp_path, digits_x, fitted):
    z = fitted.transform(digits_x)
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.transform(digits_x), z)
    np.testing.assert_array_equal(restored.score_samples(digits_x[:20]), fitted.score_samples(digits_x[:20]))
    assert b"torch.nn" not in pickle.dumps(fitted)  # weights and metadata only, no module objects
    assert clone(fitted).get_params() == fitted.get_params()
    path = fitted.save(tmp_path / "vae")
    assert sorted(p.name for p in path.iterdir()) == ["meta.json", "model.safetensors"]
    loaded = VAE.load(path)
    np.testing.assert_array_equal(loaded.transform(digits_x), z)
    np.testing.assert_array_equal(loaded.score_samples(digits_x[:20]), fitted.score_samples(digits_x[:20]))
    np.testing.assert_array_equal(loaded.sample(5, random_state=1), fitted.sample(5, random_state=1))
    assert loaded.get_params() == fitted.get_params()
    meta = json.loads((path / "meta.json").read_text())
    assert meta["sklearn"]["n_features_in"] == 64
    bare = vaekit.load(path)  # the same checkpoint is an ordinary vaekit model
    with torch.no_grad():
        np.testing.assert_allclose(bare.encode(torch.tensor(digits_x, dtype=torch.float32)).mean.numpy(), z,
                                   atol=1e-5)  # the float32 model vs the estimator's float64 copy of it
    with pytest.raises(VaekitError, match="already exists"):
        fitted.save(path)


def test_load_refuses_a_checkpoint_without_the_estimators_record(tmp_path, fitted):
    from vaekit.checkpoint import model_meta, save_checkpoint

    path = save_checkpoint(tmp_path / "plain", fitted.model_, fitted.config_,
                           {**model_meta(fitted.model_), "data": {}})
    with pytest.raises(VaekitError, match="not one written by vaekit.sklearn.VAE.save"):
        VAE.load(path)


def test_dataframes_record_their_column_names(tmp_path, digits_x):
    df = pd.DataFrame(digits_x[:, :10], columns=[f"c{i}" for i in range(10)])
    est = VAE(**SMALL).fit(df)
    assert list(est.feature_names_in_) == list(df.columns)
    np.testing.assert_array_equal(est.transform(df), VAE(**SMALL).fit(digits_x[:, :10]).transform(digits_x[:, :10]))
    with pytest.raises(ValueError, match="feature names"):
        est.transform(df.rename(columns={"c0": "other"}))
    restored = VAE.load(est.save(tmp_path / "vae"))
    assert list(restored.feature_names_in_) == list(df.columns)


def test_parameters_are_checked_by_fit_not_by_the_constructor(digits_x):
    bad = VAE(latent_dim=0)
    assert bad.latent_dim == 0
    with pytest.raises(VaekitError, match="model.latent_dim"):
        bad.fit(digits_x)
    with pytest.raises(VaekitError, match="hidden must be a sequence"):
        VAE(hidden="64").fit(digits_x)
    with pytest.raises(VaekitError, match="epochs must be an integer"):
        VAE(epochs=2.5).fit(digits_x)


def test_run_dir_makes_a_vaekit_run(tmp_path, digits_x, fitted, capsys):
    est = VAE(**{**SMALL, "run_dir": tmp_path / "runs" / "mine", "verbose": 1}).fit(digits_x)
    out = capsys.readouterr().out
    assert out.count("[VAE] epoch") == SMALL["epochs"]
    run = tmp_path / "runs" / "mine"
    assert (run / "config.toml").is_file() and (run / "metrics.jsonl").is_file()
    np.testing.assert_array_equal(est.transform(digits_x), fitted.transform(digits_x))  # same training
    with torch.no_grad():
        z = vaekit.load(run).encode(torch.tensor(digits_x, dtype=torch.float32)).mean.numpy()
    np.testing.assert_allclose(z, fitted.transform(digits_x), atol=1e-5)  # float32 vs the estimator's float64
    with pytest.raises(VaekitError, match="already exists"):
        clone(est).fit(digits_x)


def test_vae_replaces_pca_before_logistic_regression():
    X, y = load_breast_cancer(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    pipe = Pipeline([("scale", StandardScaler()), ("vae", VAE(latent_dim=4, hidden=(32,), epochs=30,
                                                               random_state=0)),
                     ("clf", LogisticRegression())]).fit(X_tr, y_tr)
    chance = DummyClassifier().fit(X_tr, y_tr).score(X_te, y_te)
    assert pipe.score(X_te, y_te) > chance + 0.2
    assert pipe[:-1].get_feature_names_out().tolist() == ["vae0", "vae1", "vae2", "vae3"]


def test_column_transformer_encodes_some_columns_and_passes_the_rest(digits_x):
    df = pd.DataFrame(digits_x[:, :12], columns=[f"c{i}" for i in range(12)])
    ct = ColumnTransformer([("vae", VAE(**SMALL), [f"c{i}" for i in range(8)])], remainder="passthrough")
    out = ct.fit_transform(df)
    assert out.shape == (400, 2 + 4)
    alone = VAE(**SMALL).fit(df[[f"c{i}" for i in range(8)]])
    np.testing.assert_array_equal(out[:, :2], alone.transform(df[[f"c{i}" for i in range(8)]]))
    np.testing.assert_array_equal(out[:, 2:], digits_x[:, 8:12])
    assert list(ct.get_feature_names_out()[:3]) == ["vae__vae0", "vae__vae1", "remainder__c8"]


def test_grid_search_over_latent_dim_scores_held_out_log_likelihood(digits_x):
    x = digits_x[:200]
    base = VAE(hidden=(16,), epochs=3, k=16, random_state=0)
    search = GridSearchCV(base, {"latent_dim": [1, 3]}, cv=KFold(2)).fit(x)
    for i, d in enumerate([1, 3]):  # each cell recomputed by hand: fit on one fold, score the other
        scores = [clone(base).set_params(latent_dim=d).fit(x[tr]).score(x[te]) for tr, te in KFold(2).split(x)]
        assert search.cv_results_["mean_test_score"][i] == pytest.approx(np.mean(scores))
    best = int(np.argmax(search.cv_results_["mean_test_score"]))
    assert search.best_params_ == {"latent_dim": [1, 3][best]}
    assert search.best_estimator_.transform(x).shape == (200, [1, 3][best])


def test_the_documentation_examples_run():
    """docs/sklearn.md's Python blocks, run in order in one namespace, on tiny settings (3 epochs each)."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "sklearn.md").read_text(encoding="utf-8")
    blocks = [re.sub(r"epochs=\d+", "epochs=3", b.split("```", 1)[0]) for b in text.split("```python\n")[1:]]
    assert len(blocks) == 2
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/sklearn.md", "exec"), namespace)
    assert namespace["Z"].shape == (569, 2) and namespace["log_px"].shape == (569,)
    assert namespace["search"].best_params_["latent_dim"] in (2, 4, 8)
    assert not namespace["filled"].isna().any().any()


def test_learned_priors_and_the_hierarchy_as_estimator_parameters(tmp_path, digits_x):
    from vaekit.evaluate import log_likelihood
    from vaekit.sklearn import SCORE_SEED_OFFSET

    est = VAE(**SMALL, prior="vamp", prior_components=3, levels=2).fit(digits_x[:200])
    assert est.config_.model.prior == "vamp" and est.config_.model.levels == 2
    assert est.model_.latent_prior.top.pseudo_inputs.shape == (3, 64)
    z = est.transform(digits_x[:9])
    assert z.shape == (9, 4) and list(est.get_feature_names_out()) == [f"vae{i}" for i in range(4)]  # [z1, z2]
    assert est.inverse_transform(z).shape == (9, 64)
    with pytest.raises(ValueError, match="decodes codes of 4 features"):
        est.inverse_transform(z[:, :2])
    # the score is vaekit's log-likelihood with the same common noise, for the two-level posterior too
    x = torch.tensor(digits_x[:7], dtype=torch.float32)
    eps = torch.randn((16, 1, 4), generator=torch.Generator().manual_seed(SCORE_SEED_OFFSET)).expand(16, 7, 4)
    ref = log_likelihood(est.model_, x, k=16, chunk=16, batch_size=7, eps=eps).numpy()
    np.testing.assert_allclose(est.score_samples(digits_x[:7]), ref, rtol=1e-5)
    np.testing.assert_allclose(est.score_samples(digits_x[3:4]), est.score_samples(digits_x[:7])[3:4], rtol=1e-9)
    loaded = VAE.load(est.save(tmp_path / "hvae"))
    np.testing.assert_array_equal(loaded.transform(digits_x[:9]), z)
    np.testing.assert_array_equal(loaded.score_samples(digits_x[:7]), est.score_samples(digits_x[:7]))
    with pytest.raises(VaekitError, match="model.levels"):
        VAE(**SMALL, levels=3).fit(digits_x[:50])


def test_the_two_level_posterior_reparameterises_as_it_samples():
    from vaekit.config import ModelConfig
    from vaekit.distributions import reparameterise
    from vaekit.hierarchy import HierarchicalVAE

    torch.manual_seed(0)
    model = HierarchicalVAE(ModelConfig(latent_dim=2, hidden=(8,), likelihood="gaussian", levels=2), (5,)).eval()
    q = model.encode(torch.randn(3, 5))
    eps = torch.randn(4, 3, 4, generator=torch.Generator().manual_seed(1))
    z = reparameterise(q, eps)
    # by hand: z2 = mu2 + s2 * eps2 from q(z2|x), then z1 from q(z1|x, z2) with eps1
    top = q.top
    z2 = top.mean + top.stddev * eps[..., 2:]
    dist, _ = q.bottom(z2)
    z1 = (dist.mean + dist.stddev * eps[..., :2].reshape(-1, 2)).reshape(4, 3, 2)
    torch.testing.assert_close(z, torch.cat([z1, z2], -1))
    assert torch.isfinite(q.log_prob(z)).all() and q.log_prob(z).shape == (4, 3)
