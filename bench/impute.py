"""Imputation benchmark (issue #12): values removed completely at random, vaekit's mixed-type VAE beside
scikit-learn's SimpleImputer (mean / most frequent), KNNImputer and IterativeImputer, in the same run.

Data: scikit-learn's bundled breast-cancer (569 x 30 real) and wine (178 x 13 real) tables and the Palmer
penguins table (``palmerpenguins``: 344 x 8, three categorical columns, real holes). For each seed, 20% of
the *observed* cells are removed completely at random (the penguins' own holes stay holes and are never
scored); every method sees the same holey table and is scored on the removed cells only:

* RMSE over the removed real cells, each in units of its column's standard deviation (over the full table's
  observed cells), so columns count alike;
* accuracy over the removed categorical cells (penguins: species, island, sex).

vaekit: ``model.likelihood mixed`` (types inferred; ``year`` is real), a small MLP VAE (hidden 64, latent 4 or
8), trained in memory on the holey table with the IWAE bound (5 samples, as MIWAE), then ``vaekit.impute``
(conditional mean / mode from 100 importance samples per row). scikit-learn imputers get the real columns
standardised and each categorical column dummy-coded (one 0/1 slot per level but the first, its holes NaN in
every slot; a full one-hot block is exactly collinear, which leaves IterativeImputer at the column means); a
categorical cell is filled with the level whose slot is largest after imputation, the first level's slot being
1 - the sum of the others (SimpleImputer: the most frequent level). Mean ± standard error over the seeds.

    PYTHONPATH=src .venv/bin/python bench/impute.py [--seeds 5] [--epochs 150] [--threads 2]

Prints the markdown table recorded in bench/IMPUTE_RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_name


def datasets() -> dict[str, pd.DataFrame]:
    from palmerpenguins import load_penguins
    from sklearn.datasets import load_breast_cancer, load_wine

    return {"breast-cancer": load_breast_cancer(as_frame=True).data, "wine": load_wine(as_frame=True).data,
            "penguins": load_penguins()}


def remove_mcar(df: pd.DataFrame, frac: float, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """``df`` with ``frac`` of its observed cells set missing (uniformly at random), and the removed mask."""
    rng = np.random.default_rng(seed)
    observed = ~df.isna().to_numpy()
    removed = observed & (rng.random(df.shape) < frac)
    holey = df.astype(object).mask(removed)
    return holey, removed


def sklearn_impute(holey: pd.DataFrame, cats: list[str], method: str, seed: int) -> pd.DataFrame:
    """Fill ``holey`` with a scikit-learn imputer (module docstring)."""
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer

    reals = [c for c in holey.columns if c not in cats]
    out = holey.copy()
    num = holey[reals].astype(float)
    mu, sd = num.mean(), num.std(ddof=0).replace(0, 1)
    blocks = [((num - mu) / sd).to_numpy()]
    levels = {}
    for c in cats:
        col = holey[c]
        levels[c] = sorted(col.dropna().unique())
        onehot = np.stack([(col == lv).astype(float).to_numpy() for lv in levels[c][1:]], 1)  # first level dropped
        onehot[col.isna().to_numpy()] = np.nan
        blocks.append(onehot)
    if method == "simple":
        out[reals] = SimpleImputer(strategy="mean").fit_transform(num)
        if cats:
            out[cats] = SimpleImputer(strategy="most_frequent", missing_values=None).fit_transform(
                holey[cats].astype(object).where(holey[cats].notna(), None))
        return out
    X = np.concatenate(blocks, 1)
    imputer = KNNImputer(n_neighbors=5) if method == "knn" else IterativeImputer(max_iter=10, random_state=seed)
    filled = imputer.fit_transform(X)
    out[reals] = filled[:, :len(reals)] * sd.to_numpy() + mu.to_numpy()
    at = len(reals)
    for c in cats:
        k = len(levels[c]) - 1
        block = filled[:, at:at + k]
        scores = np.concatenate([1.0 - block.sum(1, keepdims=True), block], 1)  # the dropped level's slot
        pick = np.asarray(levels[c], dtype=object)[scores.argmax(1)]
        out[c] = np.where(holey[c].isna(), pick, holey[c])
        at += k
    return out


def vaekit_impute(holey: pd.DataFrame, latent: int, epochs: int, seed: int) -> pd.DataFrame:
    import vaekit
    from vaekit.config import Config, TrainConfig
    from vaekit.tabular import infer_schema, model_config, table_bundle
    from vaekit.train.runs import fit

    schema = infer_schema(holey)
    config = Config(model=model_config(schema, latent_dim=latent, hidden=(64,)),
                    train=TrainConfig(epochs=epochs, batch_size=64, lr=3e-3, device="cpu", seed=seed,
                                      objective="iwae", n_samples=5))
    _, trainer = fit(config, runs_root=None, data=table_bundle(holey, schema))
    return vaekit.impute(trainer.model.eval(), holey, schema=schema, k=100, seed=seed)


def score(full: pd.DataFrame, filled: pd.DataFrame, removed: np.ndarray, cats: list[str]) -> tuple[float, float]:
    """(RMSE over removed real cells in column-sd units, accuracy over removed categorical cells; NaN if none)."""
    sq, hits, n_cat = [], 0, 0
    for j, c in enumerate(full.columns):
        r = removed[:, j]
        if not r.any():
            continue
        if c in cats:
            hits += int((filled[c][r].astype(str).to_numpy() == full[c][r].astype(str).to_numpy()).sum())
            n_cat += int(r.sum())
        else:
            sd = float(full[c].astype(float).std(ddof=0)) or 1.0
            d = (filled[c][r].astype(float).to_numpy() - full[c][r].astype(float).to_numpy()) / sd
            sq.append(d ** 2)
    rmse = math.sqrt(float(np.concatenate(sq).mean())) if sq else math.nan
    return rmse, (hits / n_cat if n_cat else math.nan)


def mean_se(values: list[float]) -> str:
    v = np.asarray(values, dtype=float)
    if np.isnan(v).all():
        return "–"
    se = v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else math.nan
    return f"{v.mean():.3f} ± {se:.3f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--frac", type=float, default=0.2)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    methods = ("vaekit", "simple", "knn", "iterative")
    names = {"vaekit": "vaekit (mixed VAE)", "simple": "SimpleImputer (mean / mode)", "knn": "KNNImputer (k=5)",
             "iterative": "IterativeImputer"}
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    seconds: dict[str, float] = {m: 0.0 for m in methods}
    for dname, full in datasets().items():
        cats = [c for c in full.columns if full[c].dtype == object or str(full[c].dtype) in ("str", "string")]
        latent = 8 if full.shape[1] > 15 else 4
        for seed in range(args.seeds):
            holey, removed = remove_mcar(full, args.frac, seed)
            for m in methods:
                t = time.perf_counter()
                filled = vaekit_impute(holey, latent, args.epochs, seed) if m == "vaekit" else \
                    sklearn_impute(holey, cats, m, seed)
                seconds[m] += time.perf_counter() - t
                assert not filled.isna().to_numpy().any(), (dname, m)
                results.setdefault((dname, m), []).append(score(full, filled, removed, cats))
        print(f"{dname}: done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    wall = time.perf_counter() - t0
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"{platform.machine()} {cpu_name()}, torch threads {args.threads}, {stamp}; wall time {wall:.0f} s "
          f"(vaekit {seconds['vaekit']:.0f} s, SimpleImputer {seconds['simple']:.1f} s, KNNImputer "
          f"{seconds['knn']:.1f} s, IterativeImputer {seconds['iterative']:.1f} s)")
    print(f"{args.seeds} seeds, {args.frac:.0%} of observed cells removed completely at random; vaekit "
          f"{args.epochs} epochs\n")
    print("| data | method | RMSE, real (sd units) | accuracy, categorical |")
    print("|---|---|---|---|")
    for dname in datasets():
        for m in methods:
            rows = results[(dname, m)]
            print(f"| {dname} | {names[m]} | {mean_se([r[0] for r in rows])} | {mean_se([r[1] for r in rows])} |")


if __name__ == "__main__":
    main()
