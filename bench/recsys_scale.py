"""Scale: a synthetic power-law interaction log of 1,000,000 users x 20,000 items (~20M interactions) through
vaekit's recommender data path (implicit filter, strong-generalisation split, sparse bundle) and one training
epoch of the paper's Mult-VAE (I-600-200-600-I, batch 500) with its validation (ELBO + NDCG@100 of the held-out
users), with the peak resident memory (VmHWM) after each stage.

The dense users x items matrix would be 1e6 x 2e4 x 4 B = 80 GB; vaekit keeps CSR (memory ~ interactions) and
densifies one batch (500 x 20,000 floats = 40 MB) at a time. ``--users`` / ``--items`` / ``--mean`` scale the
log down to show that memory grows with interactions, not with users x items.

    .venv/bin/python bench/recsys_scale.py [--users 1000000] [--items 20000] [--mean 20] [--threads 2]

Synthetic law: user u has 5 + floor(8 * Pareto(1.5)) distinct items (mean about 20, heavy tail, capped at
2,000); items are drawn from a Zipf-like popularity p_j ~ 1 / (j + 10), repeats of a (user, item) pair count
once. Seeded (numpy default_rng(0)).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def peak_rss_mb() -> float:
    """VmHWM of this process (MB): the peak resident set size so far."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def power_law_log(users: int, items: int, mean: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(user, item) int64 arrays of a power-law log (see the module doc); ``mean`` scales the per-user counts."""
    rng = np.random.default_rng(seed)
    scale = (mean - 5.0) / 2.0  # E[Pareto(1.5)] = 2
    counts = np.minimum(5 + np.floor(scale * rng.pareto(1.5, users)), 2000).astype(np.int64)
    weights = 1.0 / (np.arange(items) + 10.0)
    cdf = np.cumsum(weights / weights.sum())
    user = np.repeat(np.arange(users, dtype=np.int64), counts)
    item = np.searchsorted(cdf, rng.random(len(user)), side="right").astype(np.int64)
    return user, np.minimum(item, items - 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--mean", type=float, default=20.5, help="mean events per user before de-duplication")
    ap.add_argument("--heldout", type=int, default=10_000, help="validation and test users each")
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--hidden", type=int, default=600)
    ap.add_argument("--latent-dim", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=0, help="stop the epoch after this many steps (0: the whole epoch)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from vaekit.config import Config, apply_overrides
    from vaekit.recsys.bundle import interaction_bundle
    from vaekit.recsys.interactions import Interactions, implicit
    from vaekit.recsys.split import split_users
    from vaekit.train.loop import Trainer

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, threads {args.threads}, "
          f"load average {os.getloadavg()[0]:.2f}, torch {torch.__version__}", flush=True)
    base = peak_rss_mb()
    t0 = time.perf_counter()
    user, item = power_law_log(args.users, args.items, args.mean)
    inter = Interactions(user, item, None, None, "synthetic power law")
    print(f"generated {len(user):,} events ({time.perf_counter() - t0:.1f} s); peak RSS {peak_rss_mb():.0f} MB "
          f"(after importing torch: {base:.0f} MB)")
    t0 = time.perf_counter()
    kept = implicit(inter, min_user_items=5)
    del inter, user, item
    rec = split_users(kept, heldout_users=args.heldout, seed=0)
    del kept
    bundle = interaction_bundle(rec)
    nnz = rec.train.nnz + rec.val_in.nnz + rec.val_out.nnz + rec.test_in.nnz + rec.test_out.nnz
    csr_mb = sum(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes
                 for m in (rec.train, rec.val_in, rec.val_out, rec.test_in, rec.test_out)) / 2**20
    dense_gb = rec.train.shape[0] * rec.n_items * 4 / 2**30
    print(f"implicit + split + bundle: {time.perf_counter() - t0:.1f} s; {rec.train.shape[0]:,} training users, "
          f"{rec.val_in.shape[0]:,} + {rec.test_in.shape[0]:,} held out, {rec.n_items:,} items, {nnz:,} "
          f"interactions kept; CSR {csr_mb:.0f} MB (dense training matrix would be {dense_gb:.1f} GB); peak RSS "
          f"{peak_rss_mb():.0f} MB")
    config = apply_overrides(Config(), {
        "model.hidden": str(args.hidden), "model.latent_dim": str(args.latent_dim), "model.activation": "tanh",
        "model.input_norm": "l2", "model.input_dropout": "0.5", "model.likelihood": "multinomial",
        "train.epochs": "1", "train.batch_size": str(args.batch_size), "train.beta": "0.2",
        "train.warmup_steps": "200000", "train.device": "cpu"})
    from vaekit.train.callbacks import Callback

    class Progress(Callback):
        """Prints the step rate every 200 steps (a long epoch shows where it is)."""

        def on_log(self, trainer: Trainer, stats: dict[str, float]) -> None:
            if trainer.state.step % 200 == 0:
                print(f"  step {trainer.state.step:,}: {stats['samples_per_s']:.0f} users/s, train loss "
                      f"{stats['train_loss']:.2f}, peak RSS {peak_rss_mb():.0f} MB, load {os.getloadavg()[0]:.2f}",
                      flush=True)

    trainer = Trainer(config, None, bundle, callbacks=[Progress()])
    if args.steps:
        trainer.steps_per_epoch = args.steps
    print(f"model built: {sum(p.numel() for p in trainer.model.parameters()):,} parameters; peak RSS "
          f"{peak_rss_mb():.0f} MB")
    t0 = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - t0
    row = trainer.metrics[-1]
    steps = trainer.state.step
    print(f"trained {steps:,} steps of batch {args.batch_size} ({steps * args.batch_size:,} users) in "
          f"{seconds:.1f} s including validation ({row['epoch_time_s']:.1f} s of steps, "
          f"{row['samples_per_s']:.0f} users/s); train loss {row['train_loss']:.2f} nats/user, val NDCG@100 "
          f"{row['val_ndcg@100']:.4f}, val ELBO {row['val_elbo']:.2f}")
    peak = peak_rss_mb()
    print(f"peak RSS of the whole run: {peak:.0f} MB ({peak / 1024:.2f} GB); "
          f"{'under' if peak < 2048 else 'OVER'} 2 GB; finite: {math.isfinite(row['train_loss'])}")


if __name__ == "__main__":
    main()
