"""The report sections of a recommender run (a model trained on interaction data, ``bundle.rec``).

Instead of image grids: the ranking metrics of the model beside the popularity and EASE baselines on the
same test users (:func:`vaekit.recsys.harness.ranking_table`, the code behind ``vaekit eval``), the
validation NDCG@100 that chose the checkpoint, and for a few test users their fold-in items and the
model's top-10 (titles, with the to-predict items it found marked).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vaekit.recsys.harness import heldout_of, model_label, ranking_table
from vaekit.recsys.metrics import mean_se_text
from vaekit.recsys.recommend import RunRecommender
from vaekit.report import html as H
from vaekit.report import plots as P
from vaekit.report.runinfo import RunInfo

#: Section ids of a recommender report, in page order (the shared ones are built by vaekit.report.single).
REC_SECTION_IDS = ("curves", "ranking", "validation-ndcg", "users", "latent", "kl-per-dim", "evaluation", "config",
                   "provenance", "timings")
EXAMPLE_USERS = 5
TOP = 10
SHOWN_FOLD_IN = 12


def ranking_section(info: RunInfo) -> H.Section:
    """The model's NDCG@100, Recall@20 and Recall@50 on the test users beside popularity and EASE."""
    rec = info.data.rec
    split = "test" if rec.test_in.shape[0] else "val"
    model = info.model
    from vaekit.recsys.scores import recommendation_scores

    table = ranking_table({model_label(model): lambda rows: recommendation_scores(model, rows)}, rec.data, split)
    ks = list(table["ks"])
    rows = [[name, *(mean_se_text(v[k]) for k in ks)] for name, v in table["rows"].items()]
    grid = ", ".join(f"{l2:g}: {v:.4f}" for l2, v in table.get("ease_validation", {}).items())
    note = (f"{table['n_users']} {split} users never seen in training; each user's fold-in items are the input and "
            "their held-out (to-predict) items the target; fold-in items are never ranked. Mean over users ± "
            "standard error; every row uses the same users, split and metric code (vaekit.recsys.metrics). Recall@k "
            "is normalised by min(k, number held out), as in Liang et al. (2018). EASE's L2 weight was chosen on "
            f"the validation users' NDCG@100 ({grid}).")
    return H.Section("ranking", "Ranking metrics beside the baselines", H.para(note) + H.table(["", *ks], rows))


def validation_section(info: RunInfo) -> H.Section:
    """Validation NDCG@100 per epoch (what picked the best checkpoint) and the KL weight it was reached at."""
    key = next((k for m in info.metrics for k in m if k.startswith("val_ndcg@")), None)
    if key is None:
        return H.Section("validation-ndcg", "Validation NDCG", H.para("No validation NDCG was logged (no "
                                                                      "validation users)."))
    png = P.metric_curve(info.metrics, key, "kl_weight")
    values = [(m["epoch"], m[key], m.get("kl_weight")) for m in info.metrics if isinstance(m.get(key), float)]
    epoch, best, weight = max(values, key=lambda t: t[1])
    note = (f"The run's best checkpoint is the epoch with the highest validation {key[4:].upper()}: "
            f"{best:.4f} at epoch {epoch}, reached at KL weight {weight:.3g}. Liang et al. anneal the KL weight and "
            "keep the weight where validation NDCG peaks as the cap for the final model.")
    return H.Section("validation-ndcg", "Validation NDCG", H.para(note) + H.image(png, "validation NDCG"))


def users_section(info: RunInfo) -> H.Section:
    """A few test users: fold-in items, then the model's top 10 (to-predict items it found marked)."""
    rec = info.data.rec
    split = "test" if rec.test_in.shape[0] else "val"
    fold_in, heldout = heldout_of(rec.data, split)
    users = getattr(rec, f"{split}_users")
    recommender = RunRecommender(info.model, rec)
    column = {item: j for j, item in enumerate(rec.items.tolist())}  # item id -> matrix column
    body = H.para(f"The first {min(EXAMPLE_USERS, len(users))} {split} users: the items they gave (fold-in), and "
                  f"the model's top {TOP} of the items they did not give; ✓ marks a held-out item of the user (a "
                  "hit). log p is the decoder's log-probability of the item (nats).")
    for i in range(min(EXAMPLE_USERS, len(users))):
        row = fold_in[i]
        given = [rec.title(item) for item in rec.items[row.indices[:SHOWN_FOLD_IN]].tolist()]
        more = f" … and {row.nnz - SHOWN_FOLD_IN} more" if row.nnz > SHOWN_FOLD_IN else ""
        held = set(heldout[i].indices.tolist())
        recs = recommender.recommend_row(row, TOP)
        rows: list[list[Any]] = [[r.rank, "✓" if column[r.item] in held else "", r.title or r.item, r.item,
                                  f"{r.log_prob:.3f}"] for r in recs]
        hits = sum(1 for r in rows if r[1])
        body += H.para(f"User {users[i]} gave {row.nnz} items: {'; '.join(given)}{more}. {hits} of the top {TOP} "
                       f"are among their {len(held)} held-out items.")
        body += H.table(["rank", "hit", "title", "item", "log p"], rows)
    return H.Section("users", "Recommendations for test users", body)


def latent_note(info: RunInfo) -> str:
    """What the latent panel shows for a recommender: users, not items."""
    n_items = np.asarray(info.data.rec.items).size
    return f"Each point is a held-out user (their full row of {n_items} items encoded); no labels."
