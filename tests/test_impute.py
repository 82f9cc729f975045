"""Imputation (``vaekit.impute``, ``vaekit impute``): every missing cell is filled, no observed cell ever
changes (on the Palmer penguins table, which has real holes), multiple draws by importance resampling,
atomic files and one-line errors; and the row log-likelihood of tables with holes."""

from __future__ import annotations

import csv
import math

import numpy as np
import pandas as pd
import pytest
from cli_helpers import run_vaekit
from palmerpenguins import load_penguins

import vaekit
from vaekit.config import Config, TrainConfig
from vaekit.errors import VaekitError
from vaekit.evaluate import log_likelihood
from vaekit.imputation import draw_paths, row_log_likelihood
from vaekit.tabular import encode_table, infer_schema, is_missing, model_config, table_bundle
from vaekit.train.runs import fit


@pytest.fixture(scope="module")
def penguins():
    """(table, schema, model): a small model trained for a few epochs on the penguins table as it is."""
    df = load_penguins()
    schema = infer_schema(df)
    config = Config(model=model_config(schema, latent_dim=2, hidden=(16,)),
                    train=TrainConfig(epochs=3, batch_size=64, device="cpu", seed=0))
    _, trainer = fit(config, runs_root=None, data=table_bundle(df, schema))
    return df, schema, trainer.model.eval()


def test_every_hole_is_filled_and_no_observed_cell_changes(penguins):
    df, schema, model = penguins
    assert df.isna().to_numpy().sum() == 19  # the table's own holes
    filled = vaekit.impute(model, df, schema=schema, k=20)
    assert isinstance(filled, pd.DataFrame) and list(filled.columns) == list(df.columns)
    assert filled.index.equals(df.index) and not filled.isna().to_numpy().any()
    observed = ~df.isna()
    for name in df.columns:
        assert filled[name][observed[name]].tolist() == df[name][observed[name]].tolist(), name
    assert set(filled["sex"]) <= {"male", "female"}
    holes = df["body_mass_g"].isna()
    lo, hi = df["body_mass_g"].min(), df["body_mass_g"].max()
    assert filled["body_mass_g"][holes].between(lo - 3 * (hi - lo), hi + 3 * (hi - lo)).all()


def test_multiple_draws_differ_only_in_the_holes(penguins):
    df, schema, model = penguins
    draws = vaekit.impute(model, df, schema=schema, k=20, draws=3, seed=1)
    assert len(draws) == 3
    observed = ~df.isna()
    for d in draws:
        assert not d.isna().to_numpy().any()
        for name in df.columns:
            assert d[name][observed[name]].tolist() == df[name][observed[name]].tolist()
    holes = df["bill_length_mm"].isna()
    assert draws[0]["bill_length_mm"][holes].tolist() != draws[1]["bill_length_mm"][holes].tolist()
    again = vaekit.impute(model, df, schema=schema, k=20, draws=3, seed=1)
    for a, b in zip(draws, again, strict=True):
        pd.testing.assert_frame_equal(a, b)  # the seed fixes the draws


def test_arrays_in_arrays_out(penguins):
    df, schema, model = penguins
    arr = df.to_numpy(dtype=object)
    filled = vaekit.impute(model, arr, schema=schema, k=10)
    assert isinstance(filled, np.ndarray) and filled.shape == arr.shape
    keep = np.array([[not is_missing(v) for v in row] for row in arr])
    assert (filled[keep] == arr[keep]).all() and not any(is_missing(v) for v in filled.ravel())


def test_row_log_likelihood_is_the_masked_importance_sampled_estimate(penguins):
    df, schema, model = penguins
    rows = df.head(6)
    got = row_log_likelihood(model, schema, rows, k=32, seed=3)
    want = log_likelihood(model, encode_table(schema, rows), k=32, chunk=32, batch_size=64, seed=3).numpy()
    np.testing.assert_allclose(got, want)
    one = rows.copy().astype(object)
    one.iloc[:, 1:] = None  # only 'species' observed: log p(species) <= 0 (a pmf)
    single = row_log_likelihood(model, schema, one, k=64)
    assert np.isfinite(single).all() and (single <= 1e-6).all()
    assert (single >= math.log(1e-6)).all()


def test_library_errors_are_one_line(penguins):
    df, schema, model = penguins
    with pytest.raises(VaekitError, match="needs the table's schema"):
        vaekit.impute(model, df)
    with pytest.raises(VaekitError, match="draws must be >= 0"):
        vaekit.impute(model, df, schema=schema, draws=-1)
    other = infer_schema(df.drop(columns="year"))
    with pytest.raises(VaekitError, match="not the model's"):
        vaekit.impute(model, df, schema=other)
    assert draw_paths("out/filled.csv", 2)[1].name == "filled_2.csv"


def _read(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_vaekit_impute_cli_fills_holes_keeps_observed_text_and_writes_atomically(tmp_path):
    df = load_penguins()
    df.to_csv(tmp_path / "p.csv", index=False)
    run_vaekit("train", "--data.path", "p.csv", "--model.likelihood", "mixed", "--model.latent_dim", "2",
               "--model.hidden", "16", "--train.epochs", "2", "--train.device", "cpu", "--name", "pg",
               cwd=tmp_path, check=True)
    holes = tmp_path / "holes.csv"
    rows = _read(tmp_path / "p.csv")
    rng = np.random.default_rng(0)
    for r in rows[1:]:
        for j in range(len(r)):
            if rng.random() < 0.2:
                r[j] = ""
    with open(holes, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    proc = run_vaekit("impute", "runs/pg", "--input", "holes.csv", "--out", "filled.csv", "--k", "10",
                      cwd=tmp_path, check=True)
    assert "wrote filled.csv" in proc.stdout
    out = _read(tmp_path / "filled.csv")
    assert out[0] == rows[0] and len(out) == len(rows)
    for a, b in zip(rows[1:], out[1:], strict=True):
        for cell, new in zip(a, b, strict=True):
            assert new != "" and (cell == "" or new == cell)  # observed text unchanged, every hole filled
    run_vaekit("impute", "runs/pg", "--input", "holes.csv", "--out", "m.csv", "--draws", "2", "--k", "10",
               cwd=tmp_path, check=True)
    assert (tmp_path / "m_1.csv").is_file() and (tmp_path / "m_2.csv").is_file()
    bad = tmp_path / "bad.csv"
    bad.write_text(",".join(rows[0]) + "\n" + ",".join(["Emu", *rows[1][1:]]) + "\n")
    before = (tmp_path / "filled.csv").read_bytes()
    proc = run_vaekit("impute", "runs/pg", "--input", "bad.csv", "--out", "filled.csv", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "column 'species' has the value 'Emu', unseen in training" in proc.stderr
    assert (tmp_path / "filled.csv").read_bytes() == before  # the good output is untouched
    proc = run_vaekit("impute", "runs/pg", "--input", "holes.csv", "--out", "holes.csv", cwd=tmp_path)
    assert proc.returncode == 2 and "is the input file" in proc.stderr
