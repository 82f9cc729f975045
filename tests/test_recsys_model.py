"""The Mult-VAE's model side: the multinomial likelihood against torch.distributions.Multinomial, the
encoder's input transform, the sparse split against the dense rows it serves, the NDCG@100 selection of
the best checkpoint, and tiny Mult-VAE / Mult-DAE runs through the CLI on MovieLens-100k that reload the
same split."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from cli_helpers import run_vaekit
from torch import nn

from vaekit import distributions as D
from vaekit.batch import Batch
from vaekit.bounds import elbo_terms, iwae_bound
from vaekit.config import Config, ModelConfig, apply_overrides, load_config
from vaekit.data.sparse import SparseSplit
from vaekit.errors import VaekitError
from vaekit.model import VAE, EncoderInput
from vaekit.scoring import Selection


def random_counts(rng: np.random.Generator, n: int, items: int, density: float = 0.2,
                  high: int = 3) -> sp.csr_matrix:
    """(n, items) float32 CSR with counts 1..high at about ``density`` of the entries, at least one per row."""
    dense = (rng.random((n, items)) < density) * rng.integers(1, high + 1, (n, items))
    dense[np.arange(n), rng.integers(0, items, n)] += 1
    return sp.csr_matrix(dense.astype(np.float32))


# ============================================================================= the multinomial likelihood

@pytest.mark.parametrize("batch", [(), (5,), (3, 5)], ids=["one", "n", "Vxn"])
def test_multinomial_log_prob_equals_torch_multinomial_row_by_row(batch):
    """log p(x) with each row's own N = sum_i x_i, coefficient included, equals torch's Multinomial(N) for
    logits of batch shape (), (n,) and (V, n) (x (n, I) broadcast over V)."""
    gen = torch.Generator().manual_seed(0)
    items = 7
    logits = 2.0 * torch.randn(*batch, items, generator=gen, dtype=torch.float64)
    x = torch.randint(0, 4, (*batch[-1:], items), generator=gen).double()
    x[..., 0] += 1  # no empty row
    p = D.multinomial(logits, 1)
    assert p.batch_shape == batch and p.event_shape == (items,)
    got = p.log_prob(x)
    assert got.shape == batch
    flat_logits = logits.reshape(-1, items)
    rows = x.reshape(-1, items).expand(*batch[:-1], *x.shape).reshape(-1, items) if batch else x[None]
    want = torch.stack([torch.distributions.Multinomial(int(r.sum()), logits=lg).log_prob(r)
                        for lg, r in zip(flat_logits, rows, strict=True)]).reshape(batch)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-10)


def test_multinomial_coefficient_is_the_difference_to_the_papers_objective():
    """The paper's objective sum_i x_i log softmax(l)_i differs from log p(x) by the log multinomial
    coefficient lgamma(N+1) - sum lgamma(x_i+1), a constant of the data (0 for a single interaction)."""
    logits = torch.randn(4, 6, dtype=torch.float64)
    x = torch.tensor([[1, 0, 1, 0, 1, 0], [2, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 1], [1, 1, 1, 1, 1, 1]]).double()
    paper = (x * torch.log_softmax(logits, -1)).sum(-1)
    n = x.sum(-1)
    coefficient = torch.tensor([math.lgamma(float(k) + 1) for k in n]) - torch.tensor(
        [sum(math.lgamma(float(v) + 1) for v in row) for row in x])
    torch.testing.assert_close(D.multinomial(logits, 1).log_prob(x), paper + coefficient.double())
    assert float(coefficient[2]) == 0.0 and float(coefficient[0]) == pytest.approx(math.log(6))


def test_multinomial_mean_is_the_item_probabilities_and_samples_draw_total_count_events():
    logits = torch.randn(3, 5)
    p = D.multinomial(logits, 1)
    torch.testing.assert_close(p.mean, torch.softmax(logits, -1))
    draws = D.Multinomial(logits, 1, total_count=4).sample((2,))
    assert draws.shape == (2, 3, 5) and bool((draws.sum(-1) == 4).all())
    assert bool((D.multinomial(logits, 1).sample().sum(-1) == 1).all())


def test_multinomial_likelihood_goes_through_the_one_likelihood_path():
    """A VAE with model.likelihood multinomial: its ELBO's reconstruction term is the multinomial log_prob
    of the decoded logits at the same draws, and the IWAE bound with k = 1 equals recon + log p(z) - log q."""
    torch.manual_seed(0)
    model = VAE(ModelConfig(likelihood="multinomial", latent_dim=3, hidden=(8,)), (6,))
    x = torch.tensor([[1, 0, 1, 0, 1, 0], [0, 2, 0, 0, 0, 1]], dtype=torch.float32)
    torch.manual_seed(1)
    out = elbo_terms(model, Batch(x))
    torch.manual_seed(1)
    q_z = model.encode(x)
    z = q_z.rsample((1,))
    logits = model.decoder(z[0]).squeeze(1)
    want = torch.stack([torch.distributions.Multinomial(int(r.sum()), logits=lg).log_prob(r)
                        for lg, r in zip(logits, x, strict=True)])
    torch.testing.assert_close(out.recon, want)
    assert iwae_bound(model, x, 4).shape == (2,)


# ============================================================================== the encoder's input

def test_input_transform_l2_normalises_then_drops_out_in_training_only():
    x = torch.tensor([[3.0, 4.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    t = EncoderInput("l2", 0.5).eval()
    norms = np.maximum(np.linalg.norm(x.numpy(), axis=1, keepdims=True), 1e-12)
    torch.testing.assert_close(t(x), torch.from_numpy(x.numpy() / norms))  # eval: no dropout, a zero row stays zero
    t.train()
    torch.manual_seed(0)
    big = torch.rand(200, 50) + 0.1
    out = t(big)
    unit = big / big.norm(dim=1, keepdim=True)
    kept = out != 0
    torch.testing.assert_close(out[kept], 2.0 * unit[kept])  # survivors of p = 0.5 scaled by 1 / (1 - p)
    assert 0.45 < kept.float().mean().item() < 0.55
    assert torch.equal(EncoderInput("none", 0.0).train()(big), big)


def test_model_input_fields_are_validated_and_feed_only_the_encoder():
    with pytest.raises(VaekitError, match="model.input_dropout"):
        ModelConfig(input_dropout=1.0)
    with pytest.raises(VaekitError, match="model.input_norm"):
        ModelConfig(input_norm="l1")
    torch.manual_seed(0)
    config = ModelConfig(likelihood="multinomial", latent_dim=2, hidden=(4,), input_norm="l2", input_dropout=0.5)
    model = VAE(config, (6,)).eval()
    plain = VAE(ModelConfig(likelihood="multinomial", latent_dim=2, hidden=(4,)), (6,)).eval()
    plain.load_state_dict(model.state_dict())  # no new parameters: the same state_dict keys
    x = torch.tensor([[2.0, 0, 2, 0, 0, 1]])
    with torch.no_grad():
        torch.testing.assert_close(model.encode(x).mean, plain.encode(x / x.norm()).mean)


# =================================================================================== the sparse split

def test_sparse_split_batches_equal_the_dense_rows():
    rng = np.random.default_rng(0)
    csr = random_counts(rng, 40, 13)
    split = SparseSplit(csr)
    dense = csr.toarray()
    assert len(split) == 40 and split.event_shape == (13,) and split.y is None and split.c is None
    for idx in (torch.tensor([5, 0, 39, 5]), torch.randperm(40)[:7], torch.arange(40)):
        got = split.batch(idx)
        assert got.dtype == torch.float32 and got.shape == (len(idx), 13)
        np.testing.assert_array_equal(got.numpy(), dense[idx.numpy()])
    np.testing.assert_array_equal(split.all().numpy(), dense)
    assert torch.equal(split.batch_of(torch.tensor([3])).x, split.batch(torch.tensor([3])))


def test_sparse_split_sums_duplicate_entries_and_stores_float32():
    m = sp.csr_matrix((np.array([1, 1, 2], dtype=np.int64), (np.array([0, 0, 1]), np.array([2, 2, 0]))),
                      shape=(2, 3))
    m.has_canonical_format = False
    split = SparseSplit(m)
    assert split.x.dtype == np.float32
    np.testing.assert_array_equal(split.all().numpy(), [[0, 0, 2], [2, 0, 0]])


def test_sparse_split_memory_grows_with_interactions_not_users_times_items():
    """200,000 users x 50,000 items (1e10 cells: 40 GB dense) with 400,000 interactions: the stored bytes
    are those of the interactions and the row pointers (~ 8-12 bytes per interaction), and a batch is
    densified alone."""
    rng = np.random.default_rng(1)
    users, items, nnz = 200_000, 50_000, 400_000
    rows = rng.integers(0, users, nnz)
    cols = rng.integers(0, items, nnz)
    csr = sp.csr_matrix((np.ones(nnz, dtype=np.float32), (rows, cols)), shape=(users, items))
    split = SparseSplit(csr)
    per_interaction = (split.nbytes - (users + 1) * split.x.indptr.itemsize) / split.nnz
    assert 8 <= per_interaction <= 12 and split.nbytes < 16 * nnz + 8 * (users + 1)
    assert split.nbytes < users * items * 4 / 1000
    idx = torch.tensor([0, 123_456, users - 1])
    np.testing.assert_array_equal(split.batch(idx).numpy(), csr[idx.numpy()].toarray())


# ===================================================================== selecting the best checkpoint

def brute_ndcg(scores: np.ndarray, fold_in: sp.csr_matrix, heldout: sp.csr_matrix, k: int = 100) -> np.ndarray:
    """NDCG@k per user by a full sort (descending score, ties by item index), fold-in items ranked last."""
    out = []
    for u in range(scores.shape[0]):
        s = scores[u].astype(np.float64).copy()
        s[fold_in[u].indices] = -np.inf
        order = sorted(range(len(s)), key=lambda i: (-s[i], i))[:k]
        held = set(heldout[u].indices.tolist())
        dcg = sum(1.0 / math.log2(r + 2) for r, i in enumerate(order) if i in held)
        idcg = sum(1.0 / math.log2(r + 2) for r in range(min(k, len(held))))
        out.append(dcg / idcg)
    return np.asarray(out)


def clustered_split(seed: int = 0, train_users: int = 240, heldout: int = 30, items: int = 40):
    """A RecData of users who each like 6 of the 10 items of one of four item clusters: held-out users' items
    split into fold-in (3) and to-predict (3)."""
    from vaekit.recsys.split import RecData

    rng = np.random.default_rng(seed)

    def user_rows(n: int) -> list[np.ndarray]:
        return [rng.permutation(rng.integers(0, 4) * 10 + rng.choice(10, 6, replace=False)) for _ in range(n)]

    def csr(rows: list[np.ndarray]) -> sp.csr_matrix:
        r = np.concatenate([np.full(len(c), i) for i, c in enumerate(rows)])
        return sp.csr_matrix((np.ones(len(r), np.float32), (r, np.concatenate(rows))), shape=(len(rows), items))

    parts = {}
    for name in ("val", "test"):
        rows = user_rows(heldout)
        parts[name] = (csr([c[:3] for c in rows]), csr([c[3:] for c in rows]))
    users = np.arange(train_users + 2 * heldout)
    return RecData(items=np.arange(100, 100 + items), train_users=users[:train_users],
                   val_users=users[train_users:train_users + heldout], test_users=users[train_users + heldout:],
                   train=csr(user_rows(train_users)), val_in=parts["val"][0], val_out=parts["val"][1],
                   test_in=parts["test"][0], test_out=parts["test"][1], info={})


def test_ndcg_selection_picks_the_epoch_with_the_best_validation_ndcg():
    from tiny_runs import tiny_config

    from vaekit.recsys.bundle import interaction_bundle
    from vaekit.recsys.scores import recommendation_scores
    from vaekit.train import Trainer

    rec = clustered_split()
    data = interaction_bundle(rec)
    config = tiny_config(**{"model.likelihood": "multinomial", "model.latent_dim": "4", "model.input_norm": "l2",
                            "model.input_dropout": "0.5", "train.epochs": "5", "train.batch_size": "40",
                            "train.beta": "0.2", "train.lr": "3e-2"})
    trainer = Trainer(config, None, data)
    state = trainer.fit()
    ndcg = [row["val_ndcg@100"] for row in trainer.metrics]
    assert state.selected_on == "val_ndcg@100" and len(ndcg) == 5
    assert state.best_epoch == int(np.argmax(ndcg)) and state.best_val_score == max(ndcg)
    last = brute_ndcg(recommendation_scores(trainer.model, rec.val_in), rec.val_in, rec.val_out)
    assert float(last.mean()) == pytest.approx(ndcg[-1], abs=1e-12)
    trainer.model.load_state_dict(trainer.best_state_dict())
    best = brute_ndcg(recommendation_scores(trainer.model, rec.val_in), rec.val_in, rec.val_out)
    assert float(best.mean()) == pytest.approx(max(ndcg), abs=1e-12)
    assert max(ndcg) > 0.6  # four item clusters: the fold-in items tell which cluster to recommend


class ScriptedSelection(Selection):
    """A selection whose scores are given in advance (one per epoch)."""

    name = "val_scripted"

    def __init__(self, scores: list[float]) -> None:
        self.scores = list(scores)

    def score(self, model: nn.Module) -> float:
        assert not model.training  # scored in eval mode: no input dropout
        return self.scores.pop(0)


def test_a_selection_not_monotone_in_epochs_keeps_the_best_epochs_weights(digits):
    from tiny_runs import tiny_config

    from vaekit.train import Trainer

    trainer = Trainer(tiny_config(**{"train.epochs": "3"}), None, digits, selection=ScriptedSelection([0.1, 0.5, 0.3]))
    state = trainer.fit()
    assert state.selected_on == "val_scripted" and state.best_epoch == 1 and state.best_val_score == 0.5
    assert [row["val_scripted"] for row in trainer.metrics] == [0.1, 0.5, 0.3]
    best, last = trainer.best_state_dict(), trainer.model.state_dict()
    assert any(not torch.equal(best[k], last[k]) for k in last)  # epoch 2's weights, not the last ones
    assert math.isfinite(trainer.metrics[1]["val_elbo"])  # the ELBO is still scored every epoch


# ===================================================== tiny Mult-VAE / Mult-DAE runs on MovieLens-100k

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_ml100k = pytest.mark.skipif(not (SHARED / "movielens-100k" / "u.data").is_file(),
                                  reason=f"MovieLens-100k not found at {SHARED}")
TINY_REC = ["--data.name", "movielens-100k", "--data.dir", str(SHARED), "--model.hidden", "24",
            "--model.latent_dim", "6", "--model.activation", "tanh", "--model.input_norm", "l2",
            "--model.input_dropout", "0.5", "--train.epochs", "2", "--train.batch_size", "100",
            "--train.device", "cpu", "--no-progress", "--no-report"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}


@needs_ml100k
@pytest.mark.parametrize("kind", ["vae", "ae"])
def test_tiny_mult_vae_and_mult_dae_train_through_the_cli_and_select_on_ndcg(tmp_path, kind):
    proc = run_vaekit("train", *TINY_REC, "--model.kind", kind, "--train.beta", "0.2", "--train.warmup_steps",
                      "10", "--runs", str(tmp_path), "--name", kind, env=_env())
    assert proc.returncode == 0, proc.stderr
    assert "model.likelihood auto -> multinomial" in proc.stdout and "best val_ndcg@100" in proc.stdout
    run = tmp_path / kind
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    ndcg = [r["val_ndcg@100"] for r in rows]
    assert len(rows) == 2 and all(0.0 < v <= 1.0 for v in ndcg)
    best = (run / "checkpoints" / "best").read_text().strip()
    state = json.loads((run / "checkpoints" / best / "trainer.json").read_text())
    assert state["selected_on"] == "val_ndcg@100" and state["best_val_score"] == max(ndcg)
    assert state["best_epoch"] == int(np.argmax(ndcg))
    saved = load_config(run / "config.toml")
    assert (saved.model.likelihood, saved.model.kind, saved.data.format) == ("multinomial", kind, "interactions")


@needs_ml100k
def test_a_recommender_run_reloads_the_same_split_and_resumes_exactly(tmp_path):
    from vaekit import load
    from vaekit.checkpoint import choose_checkpoint, read_meta
    from vaekit.data import load_data, load_run_data
    from vaekit.recsys.scores import recommendation_scores
    from vaekit.train import fit, resume

    config = apply_overrides(Config(), {"name": "r", "data.name": "movielens-100k", "data.dir": str(SHARED),
                                        "model.hidden": "24", "model.latent_dim": "6", "model.input_norm": "l2",
                                        "model.input_dropout": "0.5", "train.epochs": "1",
                                        "train.batch_size": "100", "train.device": "cpu"})
    run, _ = fit(config, runs_root=tmp_path)
    fresh = load_data(config.data, "auto")
    saved = load_config(run / "config.toml")
    _, again = load_run_data(saved, read_meta(choose_checkpoint(run).path))
    for name in ("train", "val", "test"):
        assert (getattr(again, name).x != getattr(fresh, name).x).nnz == 0
    for name in ("train", "val_in", "val_out", "test_in", "test_out"):
        a, b = getattr(again.rec, name), getattr(fresh.rec, name)
        assert a.shape == b.shape and (a != b).nnz == 0
    assert np.array_equal(again.rec.items, fresh.rec.items)
    assert np.array_equal(again.rec.test_users, fresh.rec.test_users)
    assert again.rec.title(again.rec.items[0]) == "Toy Story (1995)"
    model = load(run)  # the best checkpoint, rebuilt from its own metadata
    assert model.config.likelihood == "multinomial" and model.event_shape == (fresh.rec.n_items,)
    assert recommendation_scores(model, again.rec.test_in[:3]).shape == (3, fresh.rec.n_items)
    with pytest.raises(VaekitError, match="item vocabulary"):  # other filtering: other items, refused
        load_run_data(saved, read_meta(choose_checkpoint(run).path), {"data.min_user_items": "60"})
    # resume to 2 epochs == 2 epochs uninterrupted
    (run / "config.toml").write_text((run / "config.toml").read_text().replace("epochs = 1", "epochs = 2"))
    resumed = resume(run)
    _, straight = fit(config.replace(train=dataclasses.replace(config.train, epochs=2)), runs_root=None)
    assert [r["val_ndcg@100"] for r in resumed.metrics] == [r["val_ndcg@100"] for r in straight.metrics]
    assert resumed.state.best_val_score == straight.state.best_val_score
