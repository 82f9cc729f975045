"""Using a trained recommender: the one ranking harness (model beside popularity and EASE on the same users),
``vaekit.recommender(run).recommend(items, k)``, ``vaekit eval`` / ``vaekit recommend`` / ``vaekit report`` on a
recommender run, and the warning for an importance-sampled estimate looser than the naive one."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_vaekit

from vaekit.config import ModelConfig
from vaekit.errors import VaekitError, VaekitWarning
from vaekit.evaluate import bits_per_dim_convention, loose_proposal_warning
from vaekit.model import VAE
from vaekit.recsys.baselines import EASE, Popularity
from vaekit.recsys.bundle import interaction_bundle
from vaekit.recsys.harness import model_label, ranking_table
from vaekit.recsys.interactions import Interactions, implicit
from vaekit.recsys.metrics import rank_metrics
from vaekit.recsys.recommend import RunRecommender, parse_item_ids
from vaekit.recsys.scores import recommendation_scores
from vaekit.recsys.split import split_users
from vaekit.schema import DataSchema

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_ml100k = pytest.mark.skipif(not (SHARED / "movielens-100k" / "u.data").is_file(),
                                  reason=f"MovieLens-100k not found at {SHARED}")


def synthetic_bundle(seed: int = 0, users: int = 120, items: int = 40):
    """A small implicit-feedback split: users with 6-15 distinct items from a popularity-skewed law."""
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, items + 1) ** 0.8
    u, i = [], []
    for user in range(users):
        chosen = rng.choice(items, size=int(rng.integers(6, 16)), replace=False, p=pop / pop.sum())
        u += [user] * len(chosen)
        i += (chosen + 100).tolist()  # item ids 100.. (not column numbers)
    inter = Interactions(np.asarray(u, dtype=np.int64), np.asarray(i, dtype=np.int64), None, None, "synthetic")
    rec = split_users(implicit(inter, min_user_items=5), heldout_users=20, seed=seed)
    return interaction_bundle(rec, {int(x): f"item {x}" for x in rec.items})


def multinomial_model(n_items: int, seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    config = ModelConfig(hidden=(16,), latent_dim=4, likelihood="multinomial", activation="tanh")
    return VAE(config, schema=DataSchema.for_shape((n_items,))).eval()


# ====================================================================================== the harness

def test_ranking_table_scores_every_recommender_on_the_same_users_with_the_same_metric_code():
    bundle = synthetic_bundle()
    rec = bundle.rec
    model = multinomial_model(rec.n_items)
    table = ranking_table({"Mult-VAE": lambda rows: recommendation_scores(model, rows)}, rec.data, "test")
    ks = {"ndcg@100": 100, "recall@20": 20, "recall@50": 50}
    assert table["n_users"] == rec.test_in.shape[0] == 20 and table["ks"] == ks
    # each row equals rank_metrics of that recommender computed directly
    pop = Popularity().fit(rec.train)
    want = {"Mult-VAE": rank_metrics(lambda rows: recommendation_scores(model, rows), rec.test_in, rec.test_out, ks),
            "popularity": rank_metrics(pop.scores, rec.test_in, rec.test_out, ks)}
    best_l2 = max(table["ease_validation"], key=table["ease_validation"].get)
    assert table["ease_l2"] == best_l2
    want[f"EASE (l2 {best_l2:g})"] = rank_metrics(EASE(best_l2).fit(rec.train).scores, rec.test_in, rec.test_out, ks)
    assert list(table["rows"]) == list(want)
    for name, per_user in want.items():
        for key, values in per_user.items():
            np.testing.assert_array_equal(table["per_user"][name][key], values)
            row = table["rows"][name][key]
            assert row["mean"] == pytest.approx(values.mean(), abs=1e-12)
            assert row["se"] == pytest.approx(values.std(ddof=1) / math.sqrt(len(values)), rel=1e-12)
    with pytest.raises(VaekitError, match="split must be 'val' or 'test'"):
        ranking_table({}, rec.data, "train")


def test_model_label_uses_the_papers_names():
    assert model_label(multinomial_model(5)) == "Mult-VAE"
    dae = VAE(ModelConfig(hidden=(8,), latent_dim=2, likelihood="multinomial", kind="ae"),
              schema=DataSchema.for_shape((5,)))
    assert model_label(dae) == "Mult-DAE"
    assert model_label(VAE(ModelConfig(hidden=(8,), latent_dim=2), schema=DataSchema.for_shape((5,)))) == \
        "VAE (bernoulli)"


# ================================================================================ recommend(items, k)

def test_recommend_ranks_unseen_items_by_the_decoders_log_probability():
    bundle = synthetic_bundle(seed=1)
    rec = bundle.rec
    model = multinomial_model(rec.n_items, seed=1)
    r = RunRecommender(model, rec)
    given = [int(rec.items[0]), int(rec.items[3]), int(rec.items[7])]
    recs = r.recommend(given, k=5)
    # independently: log softmax of the decoder's logits at the posterior mean of the user's 0/1 row
    x = torch.zeros(1, rec.n_items)
    x[0, [0, 3, 7]] = 1.0
    with torch.no_grad():
        logp = torch.log_softmax(model.decode(model.encode(x).mean).logits, -1)[0].numpy()
    logp[[0, 3, 7]] = -np.inf
    order = np.argsort(-logp, kind="stable")[:5]
    assert [x.item for x in recs] == [int(rec.items[j]) for j in order]
    assert [x.rank for x in recs] == [1, 2, 3, 4, 5]
    np.testing.assert_allclose([x.log_prob for x in recs], logp[order], rtol=1e-5)
    assert all(x.title == f"item {x.item}" for x in recs) and not set(given) & {x.item for x in recs}
    # unknown ids are left out with one warning; the string ids of a file are accepted
    with pytest.warns(VaekitWarning, match="1 of the items given are not in the model's"):
        again = r.recommend([*map(str, given), "99999"], k=5)
    assert [x.item for x in again] == [x.item for x in recs]
    with pytest.raises(VaekitError, match="none of the 1 items given is known"):
        r.recommend([99999])
    with pytest.raises(VaekitError, match="not an integer"):
        r.recommend(["abc"])
    with pytest.raises(VaekitError, match="positive integer"):
        r.recommend(given, k=0)


def test_recommend_user_reads_the_users_row_from_the_runs_split():
    bundle = synthetic_bundle(seed=2)
    rec = bundle.rec
    r = RunRecommender(multinomial_model(rec.n_items), rec)
    row = r.user_row(int(rec.train_users[4]))
    assert (row != rec.train[4]).nnz == 0
    held = r.user_row(str(rec.test_users[1]))
    assert (held != (rec.test_in[1] + rec.test_out[1])).nnz == 0
    seen = set(held.indices.tolist())
    assert not seen & {int(np.flatnonzero(rec.items == x.item)[0]) for x in r.recommend_user(rec.test_users[1], 8)}
    with pytest.raises(VaekitError, match="is not in this run's data"):
        r.user_row(10**9)


def test_parse_item_ids_accepts_lines_commas_spaces_and_comments():
    assert parse_item_ids("50\n181, 258\t1  # liked\n\n# only a comment\n7") == ["50", "181", "258", "1", "7"]


# =============================================================================== honest likelihood notes

def test_a_multinomial_has_no_bits_per_dim_and_a_loose_importance_estimate_is_flagged():
    value, why = bits_per_dim_convention({"likelihood": "multinomial", "dequantize": "none"}, -200.0, 1000)
    assert value is None and "multinomial" in why
    gen = torch.Generator().manual_seed(0)
    is_est = -100.0 + torch.randn(50, generator=gen, dtype=torch.float64)
    assert loose_proposal_warning(is_est, is_est - 5.0) is None  # IS tighter: nothing to say
    assert loose_proposal_warning(is_est, is_est + 0.5) is None  # less than a nat
    msg = loose_proposal_warning(is_est, is_est + 4.0 + 0.1 * torch.randn(50, generator=gen, dtype=torch.float64))
    assert msg is not None and re.search(r"4\.\d\d nats higher", msg)


@pytest.mark.parametrize("proposal", ["posterior", "prior"])
def test_split_log_likelihood_in_blocks_draws_exactly_what_one_call_on_the_whole_split_draws(proposal):
    """vaekit eval serves a split block by block (a sparse split is never densified whole); one generator makes
    the estimate identical to one call on all rows."""
    from vaekit.evaluate import log_likelihood, split_log_likelihood

    bundle = synthetic_bundle(seed=4)
    model = multinomial_model(bundle.rec.n_items, seed=4)
    split = bundle.test
    whole = log_likelihood(model, split.all_of(), k=7, chunk=3, batch_size=4, seed=11, proposal=proposal)
    blocks = split_log_likelihood(model, split, 7, 3, 4, 11, proposal=proposal, block=9)  # blocks of 8 rows
    assert blocks.shape == (len(split),) == (20,)
    torch.testing.assert_close(blocks, whole, rtol=0, atol=0)


# ========================================================================== the CLI on MovieLens-100k

def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}


@pytest.fixture(scope="module")
def ml_run(tmp_path_factory):
    """A tiny Mult-VAE trained on MovieLens-100k through the CLI (3 epochs, hidden 32, d 8)."""
    root = tmp_path_factory.mktemp("recruns")
    proc = run_vaekit("train", "--data.name", "movielens-100k", "--data.dir", str(SHARED), "--model.hidden", "32",
                      "--model.latent_dim", "8", "--model.activation", "tanh", "--model.input_norm", "l2",
                      "--model.input_dropout", "0.5", "--train.epochs", "3", "--train.batch_size", "100",
                      "--train.beta", "0.2", "--train.warmup_steps", "20", "--no-progress", "--no-report",
                      "--no-artifacts", "--runs", str(root), "--name", "ml", env=_env())
    assert proc.returncode == 0, proc.stderr
    return root / "ml"


@needs_ml100k
def test_cli_eval_of_a_recommender_prints_the_ranking_table_beside_the_baselines(ml_run):
    proc = run_vaekit("eval", str(ml_run), "--k", "20", "--naive-k", "20", "--json", "--out",
                      str(ml_run / "e.json"), env=_env())
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    ranking = result["ranking"]
    assert ranking["split"] == "test" and ranking["n_users"] == result["n_examples"] == 94
    names = list(ranking["rows"])
    assert names[:2] == ["Mult-VAE", "popularity"] and names[2].startswith("EASE (l2 ")
    for row in ranking["rows"].values():
        assert set(row) == {"ndcg@100", "recall@20", "recall@50"}
        assert all(0.0 <= m["mean"] <= 1.0 and m["se"] > 0 and m["n"] == 94 for m in row.values())
    assert "per_user" not in ranking and result["bits_per_dim"] is None
    assert math.isfinite(result["log_likelihood_nats"]) and result["log_likelihood_nats"] < 0
    text = run_vaekit("eval", str(ml_run), "--k", "5", "--naive-k", "5", "--out", str(ml_run / "e2.json"),
                      env=_env())
    assert text.returncode == 0, text.stderr
    assert re.search(r"Mult-VAE\s+0\.\d{4} ± 0\.\d{4}", text.stdout) and "94 test users" in text.stdout


@needs_ml100k
def test_cli_recommend_prints_unseen_top_items_with_titles_and_refuses_bad_requests(ml_run, tmp_path):
    items = tmp_path / "items.txt"
    items.write_text("50\n181\n# a comment\n258\n")
    proc = run_vaekit("recommend", str(ml_run), "--user-items", str(items), "--top", "7", "--json", env=_env())
    assert proc.returncode == 0, proc.stderr
    recs = json.loads(proc.stdout)
    assert [r["rank"] for r in recs] == list(range(1, 8))
    assert not {50, 181, 258} & {r["item"] for r in recs}
    assert all(r["title"] for r in recs)  # MovieLens titles from u.item
    assert [r["log_prob"] for r in recs] == sorted((r["log_prob"] for r in recs), reverse=True)
    text = run_vaekit("recommend", str(ml_run), "--user", "1", "--top", "3", env=_env())
    assert text.returncode == 0 and len(text.stdout.strip().splitlines()) == 3
    for args, message in ((["--top", "3"], "one of the two"),
                          (["--user", "1", "--user-items", str(items)], "one of the two"),
                          (["--user", "999999"], "is not in this run's data"),
                          (["--user", "1", "--top", "0"], "positive integer")):
        bad = run_vaekit("recommend", str(ml_run), *args, env=_env())
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1


@needs_ml100k
def test_cli_report_of_a_recommender_shows_ranking_users_and_validation_ndcg(ml_run, tmp_path):
    from vaekit.report.recommender import REC_SECTION_IDS

    out = tmp_path / "r.html"
    proc = run_vaekit("report", str(ml_run), "--out", str(out), env=_env())
    assert proc.returncode == 0, proc.stderr
    page = out.read_text()
    assert re.findall(r'<section id="([^"]+)"', page) == list(REC_SECTION_IDS)
    assert "Toy Story (1995)" in page or "Star Wars (1977)" in page  # titles of fold-in items / recommendations
    assert re.search(r"<td>Mult-VAE</td><td[^>]*>0\.\d{4} ± 0\.\d{4}", page)
    assert "popularity" in page and "EASE (l2 " in page


def test_cli_trains_and_recommends_from_a_users_own_tsv_with_named_columns(tmp_path):
    """A practitioner's interaction log (TSV with its own column names, string item ids) through the CLI:
    train, then recommend for a user of the file; ids come back as the file spells them."""
    rng = np.random.default_rng(3)
    lines = ["uid\tproduct\tstars"]
    for user in range(150):
        for item in rng.choice(30, size=int(rng.integers(6, 14)), replace=False, p=np.linspace(2, 1, 30) / 45):
            lines.append(f"u{user}\tsku-{item}\t{int(rng.integers(3, 6))}")
    log = tmp_path / "events.tsv"
    log.write_text("\n".join(lines) + "\n")
    proc = run_vaekit("train", "--data.path", str(log), "--data.format", "interactions", "--data.user_column", "uid",
                      "--data.item_column", "product", "--data.rating_column", "stars", "--data.min_rating", "3.5",
                      "--data.heldout_users", "15", "--model.hidden", "16", "--model.latent_dim", "4",
                      "--train.epochs", "2", "--train.batch_size", "32", "--no-progress", "--no-report",
                      "--no-artifacts", "--runs", str(tmp_path), "--name", "mine", env=_env())
    assert proc.returncode == 0, proc.stderr
    assert "best val_ndcg@100" in proc.stdout
    kept: dict[str, set[str]] = {}
    for line in lines[1:]:
        u, item, stars = line.split("\t")
        if int(stars) > 3:  # the filter keeps ratings > 3.5
            kept.setdefault(u, set()).add(item)
    user = next(u for u, items in kept.items() if len(items) >= 8)
    given = kept[user]
    out = run_vaekit("recommend", str(tmp_path / "mine"), "--user", user, "--top", "5", "--json", env=_env())
    assert out.returncode == 0, out.stderr
    recs = json.loads(out.stdout)
    assert len(recs) == 5 and all(r["item"].startswith("sku-") for r in recs)
    assert not given & {r["item"] for r in recs}  # the user's kept items are never recommended
    report = run_vaekit("report", str(tmp_path / "mine"), env=_env())  # string ids in the users' tables too
    assert report.returncode == 0, report.stderr
    assert "sku-" in (tmp_path / "mine" / "report.html").read_text()
