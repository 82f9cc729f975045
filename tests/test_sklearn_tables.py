"""vaekit.sklearn.VAE on mixed-type tables with missing values (the Palmer penguins: text, real and integer
columns, 19 missing cells): the mask in transform and score, persistence, and use inside scikit-learn's
ColumnTransformer and Pipeline."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from palmerpenguins import load_penguins
from scipy.special import logsumexp
from scipy.stats import norm
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from vaekit.errors import VaekitError
from vaekit.sklearn import VAE

SMALL = {"latent_dim": 2, "hidden": (16,), "epochs": 5, "batch_size": 64, "k": 16, "random_state": 0}


@pytest.fixture(scope="module")
def penguins() -> pd.DataFrame:
    return load_penguins()


@pytest.fixture(scope="module")
def fitted(penguins) -> VAE:
    return VAE(**SMALL).fit(penguins)


def test_a_dataframe_with_text_and_missing_cells_trains_the_mixed_likelihood(penguins, fitted):
    assert int(penguins.isna().sum().sum()) == 19  # the table's own holes
    assert fitted.likelihood_ == "mixed"
    types = {c.name: c.type for c in fitted.schema_.columns}
    assert types["species"] == types["island"] == types["sex"] == "categorical"
    assert types["bill_length_mm"] == "real"
    assert fitted.__sklearn_tags__().input_tags.allow_nan
    z = fitted.transform(penguins)
    assert z.shape == (344, 2) and np.isfinite(z).all()
    scores = fitted.score_samples(penguins)
    assert scores.shape == (344,) and np.isfinite(scores).all()
    assert list(fitted.feature_names_in_) == list(penguins.columns)


def test_transform_reads_the_mask(penguins, fitted):
    """A missing cell is not the value it is filled with: the encoder sees the indicator slots too."""
    row = penguins.iloc[[0]].copy()
    holed = row.copy()
    holed["bill_length_mm"] = np.nan
    filled = row.copy()
    filled["bill_length_mm"] = fitted.schema_.columns[2].loc  # the value a missing cell is filled with
    z_holed, z_filled = fitted.transform(holed), fitted.transform(filled)
    assert not np.allclose(z_holed, z_filled)
    np.testing.assert_allclose(fitted.transform(row), fitted.transform(penguins)[[0]], rtol=1e-12)


def test_a_row_with_one_observed_cell_scores_that_cells_marginal_by_quadrature(penguins):
    """All but bill_length_mm missing: score_samples = log integral N(z) p(bill | z) dz (1-D latent, trapezoid
    rule on a fine grid over the likelihood's own per-slot term, no mask involved)."""
    est = VAE(latent_dim=1, hidden=(16,), epochs=10, k=2000, random_state=0).fit(penguins)
    row = penguins.iloc[[5]].copy()
    for col in penguins.columns:
        if col != "bill_length_mm":
            row[col] = np.nan if row[col].dtype.kind == "f" else None
    grid = np.linspace(-10, 10, 4001)
    from vaekit.tabular import encode_table

    x = encode_table(est.schema_, penguins.iloc[[5]]).x  # the observed row, every slot
    slot = est.schema_.slots(2).start  # bill_length_mm
    with torch.no_grad():
        p_x = est.model_.decode(torch.tensor(grid, dtype=torch.float32)[:, None])
        term = p_x.base_dist.log_prob(x.expand(4001, -1))[:, slot].double().numpy()  # (grid,)
    weights = np.where((grid == grid[0]) | (grid == grid[-1]), 0.5, 1.0)
    exact = logsumexp(term + norm.logpdf(grid), b=weights) + np.log(grid[1] - grid[0])
    assert est.score_samples(row)[0] == pytest.approx(exact, abs=0.02)


def test_inverse_transform_and_sample_give_tables_in_the_data_units(penguins, fitted):
    back = fitted.inverse_transform(fitted.transform(penguins))
    assert isinstance(back, pd.DataFrame) and list(back.columns) == list(penguins.columns)
    assert set(back["species"]) <= {"Adelie", "Chinstrap", "Gentoo"}
    lo, hi = penguins["body_mass_g"].min(), penguins["body_mass_g"].max()
    assert lo - (hi - lo) < back["body_mass_g"].mean() < hi + (hi - lo)  # grams, not standardised units
    draws = fitted.sample(20, random_state=0)
    assert isinstance(draws, pd.DataFrame) and draws.shape == (20, 8)
    assert set(draws["island"]) <= {"Biscoe", "Dream", "Torgersen"}
    pd.testing.assert_frame_equal(draws, fitted.sample(20, random_state=0))


def test_unseen_categories_error_or_map_to_unknown(penguins, fitted):
    new = penguins.iloc[:3].copy()
    new.loc[new.index[0], "island"] = "Atlantis"
    with pytest.raises(VaekitError, match="Atlantis"):
        fitted.transform(new)
    lenient = VAE(**{**SMALL, "unknown_categories": "unknown"}).fit(penguins)
    assert lenient.transform(new).shape == (3, 2)


def test_column_types_override_the_inferred_types(penguins):
    est = VAE(**{**SMALL, "column_types": {"year": "categorical"}}).fit(penguins)
    year = next(c for c in est.schema_.columns if c.name == "year")
    assert year.type == "categorical" and year.categories == (2007, 2008, 2009)


def test_nan_in_a_numeric_array_is_a_missing_cell():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 4))
    x[rng.random(x.shape) < 0.1] = np.nan
    est = VAE(**SMALL).fit(x)
    assert est.likelihood_ == "mixed" and [c.type for c in est.schema_.columns] == ["real"] * 4
    assert np.isfinite(est.transform(x)).all() and np.isfinite(est.score_samples(x)).all()
    with pytest.raises(ValueError, match="infinity"):
        est.transform(np.where(np.isnan(x), np.inf, x))


def test_pickle_and_checkpoint_keep_the_schema(tmp_path, penguins, fitted):
    z = fitted.transform(penguins)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(fitted)).transform(penguins), z)
    loaded = VAE.load(fitted.save(tmp_path / "penguins-vae"))
    assert loaded.schema_ == fitted.schema_
    np.testing.assert_array_equal(loaded.transform(penguins), z)
    np.testing.assert_array_equal(loaded.score_samples(penguins), fitted.score_samples(penguins))
    pd.testing.assert_frame_equal(loaded.inverse_transform(z[:5]), fitted.inverse_transform(z[:5]))


def test_penguins_species_from_a_column_transformer_pipeline(penguins):
    """The VAE codes the measurements and sex (with their holes), a one-hot encoder the island; a
    logistic regression predicts the species from both, far above the majority-class baseline."""
    X, y = penguins.drop(columns=["species"]), penguins["species"]
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    measured = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex"]
    features = ColumnTransformer([
        ("vae", VAE(latent_dim=3, hidden=(32,), epochs=60, batch_size=32, random_state=0), measured),
        ("island", OneHotEncoder(handle_unknown="ignore"), ["island"]),
    ])
    pipe = Pipeline([("features", features), ("clf", LogisticRegression(max_iter=1000))]).fit(X_tr, y_tr)
    chance = DummyClassifier().fit(X_tr, y_tr).score(X_te, y_te)
    assert pipe.score(X_te, y_te) > chance + 0.3
    names = pipe[0].get_feature_names_out().tolist()
    assert names[:3] == ["vae__vae0", "vae__vae1", "vae__vae2"] and names[3].startswith("island__")


def test_impute_fills_only_the_missing_cells(penguins, fitted):
    filled = fitted.impute(penguins)
    assert isinstance(filled, pd.DataFrame) and not filled.isna().any().any()
    observed = penguins.notna()
    for col in penguins.columns:
        pd.testing.assert_series_equal(filled[col][observed[col]], penguins[col][observed[col]], check_dtype=False)
    assert set(filled["sex"]) <= {"female", "male"}
    draws = fitted.impute(penguins, draws=3)
    assert len(draws) == 3 and all(not d.isna().any().any() for d in draws)
    with pytest.raises(VaekitError, match="no table schema"):
        VAE(**SMALL).fit(np.random.default_rng(0).normal(size=(50, 3))).impute(np.zeros((2, 3)))
