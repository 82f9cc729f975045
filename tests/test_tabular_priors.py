"""Tables with the learned priors and the two-level hierarchy: a VampPrior's pseudo-inputs are rows of the
table model's input (value slots + observed indicators, in the encoder's units), the hierarchy scores observed
cells only, and ``vaekit eval`` on a table reports nats per observed cell and no bits/dim."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from cli_helpers import run_vaekit
from scipy.special import logsumexp
from scipy.stats import norm
from test_tabular import mixed_table

from vaekit.batch import Batch
from vaekit.config import Config, TrainConfig
from vaekit.evaluate import log_likelihood
from vaekit.tabular import encode_table, infer_schema, model_config, table_bundle
from vaekit.train.runs import fit


def _trained(df: pd.DataFrame, **model_fields: object) -> tuple[object, object]:
    schema = infer_schema(df)
    config = Config(model=model_config(schema, latent_dim=2, hidden=(8,), **model_fields),
                    train=TrainConfig(epochs=1, batch_size=40, device="cpu", seed=1))
    _, trainer = fit(config, runs_root=None, data=table_bundle(df, schema, val=range(len(df) - 20, len(df))))
    return trainer.model.eval(), schema


def test_a_vampprior_on_a_table_mixes_the_posteriors_of_row_wide_pseudo_inputs():
    df = mixed_table(80, seed=5)
    model, schema = _trained(df, prior="vamp", prior_components=3)
    u = model.latent_prior.pseudo_inputs.detach()
    assert u.shape == (3, schema.width)  # value slots and one indicator per column, like every encoded row
    with torch.no_grad():
        # a pseudo-input is encoded exactly as a row already in the encoder's units (holes filled, standardised)
        batch = encode_table(schema, df.head(4))
        filled = torch.where(batch.mask, batch.x.float(), model.data_loc)
        h = (filled - model.data_loc) / model.data_scale
        torch.testing.assert_close(model.encode_inputs(h).mean, model.encode(batch).mean)
        q_u = model.encode_inputs(u)
        mu, sd = q_u.mean.double().numpy(), q_u.stddev.double().numpy()  # (3, 2)
        z = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
        got = model.prior().log_prob(z).double().numpy()
    per_component = norm.logpdf(z.double().numpy()[:, None, :], mu[None], sd[None]).sum(-1)  # (6, 3)
    np.testing.assert_allclose(got, logsumexp(per_component, axis=1) - math.log(3), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("prior", ["standard-normal", "vamp"])
def test_the_hierarchy_on_a_table_scores_observed_cells_only(prior):
    df = mixed_table(80, seed=6)
    model, schema = _trained(df, levels=2, prior=prior, prior_components=3)
    batch = encode_table(schema, df.head(10))
    assert batch.mask is not None and not bool(batch.mask.all())  # the rows have holes
    junk = torch.where(batch.mask, batch.x, torch.full_like(batch.x, 7.5))  # any value in the holes
    ll = log_likelihood(model, batch, k=16, chunk=8, seed=3)
    torch.testing.assert_close(log_likelihood(model, Batch(junk, mask=batch.mask), k=16, chunk=8, seed=3), ll)
    assert torch.isfinite(ll).all() and ll.shape == (10,)
    first = int(torch.nonzero(batch.mask[0, :schema.n_values])[0])  # an observed value slot of row 0
    moved = batch.x.clone()
    moved[0, first] += 1.0
    changed = log_likelihood(model, Batch(moved, mask=batch.mask), k=16, chunk=8, seed=3)
    assert changed[0] != ll[0] and torch.equal(changed[1:], ll[1:])  # rows are scored independently


def test_vaekit_train_eval_impute_a_table_with_a_vampprior_hierarchy(tmp_path):
    df = mixed_table(150, seed=7)
    df.to_csv(tmp_path / "t.csv", index=False)
    run_vaekit("train", "--data.path", "t.csv", "--model.likelihood", "mixed", "--model.latent_dim", "2",
               "--model.hidden", "16", "--model.prior", "vamp", "--model.prior_components", "3", "--model.levels",
               "2", "--train.epochs", "2", "--train.batch_size", "50", "--train.device", "cpu", "--name", "tab",
               cwd=tmp_path, check=True)
    run_vaekit("eval", "runs/tab", "--k", "20", "--naive-k", "20", "--data.split", "all", cwd=tmp_path, check=True)
    result = json.loads((tmp_path / "runs" / "tab" / "eval.json").read_text())
    assert result["n_examples"] == 150 and set(result["kl_levels_nats"]) == {"z1", "z2"}
    observed = int(pd.read_csv(tmp_path / "t.csv").notna().to_numpy().sum())  # the file's non-empty cells
    assert observed < 150 * 4
    assert result["nats_per_dim"] == pytest.approx(-result["log_likelihood_nats"] * 150 / observed, rel=1e-9)
    assert "observed cell" in result["nats_per_dim_of"]
    assert result["bits_per_dim"] is None and "mixed-type table" in result["bits_per_dim_note"]
    run_vaekit("impute", "runs/tab", "--input", "t.csv", "--out", "filled.csv", "--k", "20", cwd=tmp_path,
               check=True)
    filled = pd.read_csv(tmp_path / "filled.csv")
    assert filled.shape == (150, 4) and not filled.isna().to_numpy().any()
