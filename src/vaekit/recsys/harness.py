"""One harness for every recommender: the same split, the same fold-in, the same metric code.

:func:`ranking_table` scores a trained model (Mult-VAE or Mult-DAE) and the baselines computed in the
same call (popularity; EASE with its L2 weight chosen on the validation users) on the held-out users of
one split: each held-out user's fold-in items are the input, their to-predict items the target, and
fold-in items are never ranked (:func:`vaekit.recsys.metrics.rank_metrics`). Every figure is a mean over
users with its standard error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from vaekit.errors import VaekitError
from vaekit.recsys.baselines import Popularity, select_ease
from vaekit.recsys.metrics import DEFAULT_KS, mean_se_text, rank_metrics, summarise
from vaekit.recsys.split import RecData

#: L2 weights tried for EASE on the validation users (Steck 2019 reports 200-1000 for ML-20M-sized data).
EASE_GRID = (1.0, 10.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 3000.0)

Scorer = Callable[[Any], np.ndarray]


def heldout_of(rec: RecData, split: str) -> tuple[Any, Any]:
    """(fold-in, to-predict) CSR matrices (n_users, n_items) of the ``split`` ('val' or 'test') users."""
    if split not in ("val", "test"):
        raise VaekitError(f"split must be 'val' or 'test' for ranking metrics, got '{split}'")
    fold_in, heldout = getattr(rec, f"{split}_in"), getattr(rec, f"{split}_out")
    if fold_in.shape[0] == 0:
        raise VaekitError(f"the recommender data have no {split} users; set --data.heldout_users 100 or more")
    return fold_in, heldout


def ranking_table(models: dict[str, Scorer], rec: RecData, split: str = "test", *, baselines: bool = True,
                  ease_grid: Sequence[float] = EASE_GRID, batch_size: int = 500) -> dict[str, Any]:
    """Ranking metrics of ``models`` (name -> scorer: fold-in CSR rows (b, I) -> scores (b, I)) and, with
    ``baselines``, of popularity and EASE, on the ``split`` users of ``rec``.

    Returns ``{"split", "n_users", "ks", "rows": {name: {metric: {"mean", "se", "n"}}}, "per_user": {name:
    {metric: (n_users,) array}}, "ease_l2", "ease_validation": {l2: val NDCG@100}}``. Per-user arrays
    share the user order of ``rec`` (paired comparisons between rows are valid)."""
    fold_in, heldout = heldout_of(rec, split)
    scorers: dict[str, Scorer] = dict(models)
    out: dict[str, Any] = {"split": split, "n_users": int(fold_in.shape[0]), "ks": dict(DEFAULT_KS)}
    if baselines:
        scorers["popularity"] = Popularity().fit(rec.train).scores
        ease, grid = select_ease(rec.train, rec.val_in, rec.val_out, grid=tuple(ease_grid))
        scorers[f"EASE (l2 {ease.l2:g})"] = ease.scores
        out["ease_l2"], out["ease_validation"] = float(ease.l2), {float(k): float(v) for k, v in grid.items()}
    per_user = {name: rank_metrics(fn, fold_in, heldout, ks=DEFAULT_KS, batch_size=batch_size)
                for name, fn in scorers.items()}
    out["rows"] = {name: summarise(values) for name, values in per_user.items()}
    out["per_user"] = per_user
    return out


def format_table(table: dict[str, Any]) -> list[str]:
    """The table as aligned text lines: one row per recommender, ``mean ± se`` per metric."""
    names = list(table["rows"])
    width = max(len(n) for n in names) + 2
    head = "".join(f"{k:>21}" for k in table["ks"])  # cells: 12 + " ± " + 6 characters
    lines = [f"{'':<{width}}{head}"]
    for name in names:
        cells = "".join(f"{mean_se_text(table['rows'][name][k]):>21}" for k in table["ks"])
        lines.append(f"{name:<{width}}{cells}")
    lines.append(f"({table['n_users']} {table['split']} users; fold-in items are not ranked; ± = standard error "
                 "over users)")
    return lines


def json_table(table: dict[str, Any]) -> dict[str, Any]:
    """The table without per-user arrays (what eval.json stores); an undefined standard error (one user) is
    None, so the file stays strict JSON (no NaN token)."""
    out = {k: v for k, v in table.items() if k not in ("per_user", "rows")}
    out["rows"] = {name: {k: {**stat, "se": None if math.isnan(stat["se"]) else stat["se"]}
                          for k, stat in row.items()} for name, row in table["rows"].items()}
    return out


def model_label(model: Any) -> str:
    """The row name of a trained model: Mult-VAE / Mult-DAE for a multinomial VAE / autoencoder (the paper's
    names), else e.g. 'VAE (bernoulli)'."""
    vae = bool(model.posterior.has_density)
    likelihood = model.config.likelihood
    if likelihood == "multinomial":
        return "Mult-VAE" if vae else "Mult-DAE"
    return f"{'VAE' if vae else 'AE'} ({likelihood})"
