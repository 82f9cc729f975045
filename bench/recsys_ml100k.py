"""MovieLens-100k end to end through the CLI: Mult-VAE (KL cap chosen on validation NDCG@100, as in Liang et al.
2018), Mult-DAE, and the popularity and EASE baselines that ``vaekit eval`` scores on the same test users.

Steps (each a real ``vaekit`` subprocess, timed):
1. cap selection: a Mult-VAE whose KL weight is annealed linearly to 1 over the whole run; the KL weight at the
   epoch of best validation NDCG@100 is the cap (the paper's procedure);
2. the final Mult-VAE: the same slope, stopped at that cap (``--train.beta CAP --train.warmup_steps CAP*steps``),
   then ``vaekit eval`` (ranking metrics of the model, popularity and EASE with its L2 chosen on validation, and
   the importance-sampled log p(x)) — this train + eval pair is the "end to end" time;
3. Mult-DAE: ``--model.kind ae`` with the same parts, then ``vaekit eval``.

    .venv/bin/python bench/recsys_ml100k.py [--epochs 150] [--threads 2] [--json bench/recsys_ml100k.json]

Prints the markdown table recorded in bench/RECSYS_RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
# the paper's architecture I-600-200-600-I, tanh, L2-normalised input with dropout 0.5
MODEL = ["--model.hidden", "600", "--model.latent_dim", "200", "--model.activation", "tanh",
         "--model.input_norm", "l2", "--model.input_dropout", "0.5"]


def vaekit(*args: str, threads: int) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "vaekit", *args], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"vaekit {' '.join(args)} failed:\n{proc.stderr}")
    return proc, seconds


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of every vaekit process")
    ap.add_argument("--k", type=int, default=1000, help="importance samples of vaekit eval")
    ap.add_argument("--runs", type=Path, help="where to keep the runs (default: a temporary folder)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    runs = args.runs or Path(tempfile.mkdtemp(prefix="recsys-ml100k-"))
    common = ["--data.name", "movielens-100k", "--data.dir", str(SHARED), *MODEL, "--train.epochs", str(args.epochs),
              "--train.batch_size", str(args.batch_size), "--no-progress", "--no-artifacts", "--runs", str(runs)]
    t_all = time.perf_counter()
    # 1. anneal to 1 over the whole run; the weight at the best validation NDCG@100 is the cap
    sys.path.insert(0, str(ROOT / "src"))
    from vaekit.data import DataConfig, load_data

    n_train = len(load_data(DataConfig(name="movielens-100k", dir=str(SHARED))).train)
    steps = args.epochs * math.ceil(n_train / args.batch_size)
    _, t_sel = vaekit("train", *common, "--name", "anneal-to-1", "--train.beta", "1.0", "--train.warmup_steps",
                      str(steps), "--no-report", threads=args.threads)
    rows = metrics(runs / "anneal-to-1")
    best = max(rows, key=lambda r: r["val_ndcg@100"])
    cap = round(float(best["kl_weight"]), 3)
    print(f"cap selection: anneal to 1 over {steps} steps; best val NDCG@100 {best['val_ndcg@100']:.4f} at epoch "
          f"{best['epoch']}, KL weight {best['kl_weight']:.3f} -> cap {cap} ({t_sel:.1f} s)")
    # 2. the final Mult-VAE (same slope, stopped at the cap) + eval: the end-to-end time
    warm = max(1, round(cap * steps))
    _, t_train = vaekit("train", *common, "--name", "mult-vae", "--train.beta", str(cap), "--train.warmup_steps",
                        str(warm), threads=args.threads)
    ev, t_eval = vaekit("eval", str(runs / "mult-vae"), "--k", str(args.k), "--json", threads=args.threads)
    vae = json.loads(ev.stdout)
    print(f"Mult-VAE: train {t_train:.1f} s (report included), eval {t_eval:.1f} s -> end to end "
          f"{t_train + t_eval:.1f} s")
    # 3. Mult-DAE
    _, t_dae = vaekit("train", *common, "--name", "mult-dae", "--model.kind", "ae", "--no-report",
                      threads=args.threads)
    ev_dae, t_dae_eval = vaekit("eval", str(runs / "mult-dae"), "--k", "1", "--naive-k", "1", "--json",
                                threads=args.threads)
    dae = json.loads(ev_dae.stdout)
    total = time.perf_counter() - t_all
    rows_out = dict(vae["ranking"]["rows"])
    rows_out["Mult-DAE"] = dae["ranking"]["rows"]["Mult-DAE"]
    order = ["Mult-VAE", "Mult-DAE", *[n for n in rows_out if n not in ("Mult-VAE", "Mult-DAE")]]
    ks = list(vae["ranking"]["ks"])
    print(f"\nMovieLens-100k, {vae['ranking']['n_users']} test users (strong generalisation, seed 0), "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, OMP_NUM_THREADS={args.threads}, "
          f"load average {os.getloadavg()[0]:.2f}\n")
    print("| model | " + " | ".join(k.upper() for k in ks) + " |")
    print("|---|" + "---|" * len(ks))
    for name in order:
        cells = " | ".join(f"{rows_out[name][k]['mean']:.4f} ± {rows_out[name][k]['se']:.4f}" for k in ks)
        print(f"| {name} | {cells} |")
    ll = vae["log_likelihood_nats"]
    print(f"\nMult-VAE test log p(x) (k = {args.k}): {ll:.2f} ± {vae['log_likelihood_se']:.2f} nats per user "
          f"(naive {vae['naive_log_likelihood_nats']:.2f}); ELBO {vae['elbo_nats']:.2f}")
    print(f"timings: cap selection {t_sel:.1f} s; Mult-VAE train {t_train:.1f} s + eval {t_eval:.1f} s = "
          f"{t_train + t_eval:.1f} s; Mult-DAE train {t_dae:.1f} s + eval {t_dae_eval:.1f} s; whole script "
          f"{total:.1f} s")
    if args.json:
        args.json.write_text(json.dumps({
            "cap": cap, "cap_selection": {"steps": steps, "best_epoch": best["epoch"],
                                          "best_val_ndcg": best["val_ndcg@100"]},
            "rows": rows_out, "n_users": vae["ranking"]["n_users"], "ease_l2": vae["ranking"].get("ease_l2"),
            "log_likelihood_nats": ll, "elbo_nats": vae["elbo_nats"],
            "seconds": {"selection": t_sel, "train": t_train, "eval": t_eval, "end_to_end": t_train + t_eval,
                        "dae_train": t_dae, "dae_eval": t_dae_eval, "total": total},
            "threads": args.threads, "epochs": args.epochs, "batch_size": args.batch_size,
            "finite": all(math.isfinite(v) for v in (ll, vae["elbo_nats"]))}, indent=2) + "\n")


if __name__ == "__main__":
    main()
