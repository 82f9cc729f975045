"""Convolutional VAE against the MLP VAE on dynamically binarised MNIST at equal wall-clock training time.

Both models: 32 Gaussian latents, Bernoulli decoder, ReLU, Adam lr 1e-3, batch 128, fp32, the standard
MNIST test set and a validation split of 10% of the training file (``vaekit.train.fit`` on
``--data.name mnist --data.binarize dynamic``). MLP: hidden widths 512, 256 (decoder mirrored).
Conv: ``--model.channels 32,64`` (two stride-2 3x3 blocks, 28 -> 14 -> 7) and a linear layer each side.

Training budget: each run gets the same compute, ``--minutes`` x ``--threads`` minutes of process CPU
time, training on ``--threads`` torch threads (default 1: equal wall-clock time on an idle machine,
and still equal work when other jobs share the cores, which multi-threaded CPU time is not: idle
OpenMP threads spin and are billed); a callback stops a run at the last epoch end that keeps it inside
the budget (when the CPU time so far plus the last epoch's would pass it), so both finish within one
epoch of it; CPU and wall times are recorded. The best
checkpoint (validation ELBO) is then scored with ``vaekit.evaluate.log_likelihood`` (k importance
samples) on the SAME seeded subset of ``--n-test`` test images for both models (the conv decoder costs
~25x the MLP's per sample on 2 CPU cores, so the full 10,000 images at k = 5000 do not fit the time
box); means with standard errors, and the paired difference with its standard error. The single-sample
test ELBO on all 10,000 test images is printed as well.

Usage::

    .venv/bin/python bench/conv_vs_mlp.py --minutes 3 --n-test 200 --k 5000
    .venv/bin/python bench/conv_vs_mlp.py --minutes 0.3 --n-test 20 --k 100 --limit 2000  # smoke
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from vaekit.checkpoint import load_model
from vaekit.config import Config, ModelConfig, TrainConfig
from vaekit.data import DataConfig, load_data
from vaekit.evaluate import log_likelihood
from vaekit.train import Callback, Trainer, evaluate_split, fit

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


class Budget(Callback):
    """Stops at the last epoch end that keeps training within ``cpu_seconds`` of this process's CPU time
    (user + system, all threads), predicting the next epoch's cost by the last one's. CPU time, not wall
    time, is budgeted because other jobs may share the machine's cores; both are recorded."""

    def __init__(self, cpu_seconds: float) -> None:
        self.cpu_seconds = cpu_seconds
        self.t0 = time.perf_counter()
        self.c0 = self.c_last = time.process_time()
        self.wall = self.cpu = 0.0

    def on_train_start(self, trainer: Trainer) -> None:
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        self.c_last = self.c0

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        now = time.process_time()
        epoch_cpu, self.cpu = now - self.c_last, now - self.c0
        self.c_last = now
        self.wall = time.perf_counter() - self.t0
        print(f"  epoch {metrics['epoch']}: val ELBO {metrics['val_elbo']:.2f} nats, {epoch_cpu:.1f} CPU s, "
              f"{self.cpu / 60:.2f} CPU min, {self.wall / 60:.2f} wall min", flush=True)
        if self.cpu + epoch_cpu > self.cpu_seconds:
            trainer.request_stop(f"CPU-time budget of {self.cpu_seconds / 60:g} CPU minutes")

    def on_train_end(self, trainer: Trainer) -> None:
        self.wall, self.cpu = time.perf_counter() - self.t0, time.process_time() - self.c0


def model_config(kind: str) -> ModelConfig:
    if kind == "mlp":
        return ModelConfig(latent_dim=32, hidden=(512, 256), likelihood="bernoulli")
    return ModelConfig(latent_dim=32, encoder="conv", decoder="conv", channels=(32, 64), kernel_size=3,
                       likelihood="bernoulli")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=3.0,
                   help="training budget per model: minutes x threads CPU minutes")
    p.add_argument("--n-test", type=int, default=200, help="seeded subset of test images scored by both")
    p.add_argument("--k", type=int, default=5000, help="importance samples per test image")
    p.add_argument("--limit", type=int, default=0, help="keep at most this many examples per split (smoke)")
    p.add_argument("--data-dir", default=str(SHARED))
    p.add_argument("--runs", type=Path, help="runs folder (default: a temporary folder)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads while training")
    p.add_argument("--eval-threads", type=int, default=2, help="torch threads while scoring")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)  # one thread: CPU time measures work even when other jobs share the cores
    runs = args.runs or Path(tempfile.mkdtemp(prefix="vaekit-conv-bench-"))
    data_cfg = DataConfig(name="mnist", dir=args.data_dir, binarize="dynamic", download=False, limit=args.limit)
    data = load_data(data_cfg, "bernoulli")
    print(f"MNIST train split in memory: {tuple(data.train.x.shape)} {data.train.x.dtype}, "
          f"{data.train.x.nbytes / 2**20:.1f} MiB", flush=True)
    results: dict[str, dict[str, Any]] = {}
    for kind in ("conv", "mlp"):
        config = Config(name=f"bench-{kind}", data=data_cfg, model=model_config(kind),
                        train=TrainConfig(epochs=10_000, batch_size=128, lr=1e-3, device="cpu", seed=args.seed,
                                          keep_last=1))
        budget = Budget(args.minutes * 60 * torch.get_num_threads())
        print(f"training {kind} ({args.minutes:g} min x {torch.get_num_threads()} threads of CPU time)", flush=True)
        run_dir, trainer = fit(config, runs, callbacks=[budget], data=data)
        n_params = sum(p.numel() for p in trainer.model.parameters())
        results[kind] = {"run": str(run_dir), "epochs": trainer.state.epoch, "train_s": budget.wall,
                         "train_cpu_s": budget.cpu,
                         "params": n_params, "best_epoch": trainer.state.best_epoch + 1}
    torch.set_num_threads(args.eval_threads)
    test = data.test
    idx = torch.randperm(len(test), generator=torch.Generator().manual_seed(args.seed))[:args.n_test].sort().values
    x = test.batch(idx)
    lls = {}
    for kind, r in results.items():
        model, _, _ = load_model(r["run"], "cpu")
        t0 = time.perf_counter()
        ll = log_likelihood(model, x, k=args.k, chunk=250, batch_size=8, seed=args.seed)
        r["eval_s"] = time.perf_counter() - t0
        lls[kind] = ll
        r["log_px"] = float(ll.mean())
        r["log_px_se"] = float(ll.std() / math.sqrt(len(ll)))
        r["test_elbo_all"] = evaluate_split(model, test, 500, args.seed)["elbo"]
        print(f"{kind}: log p(x) {r['log_px']:.2f} ± {r['log_px_se']:.2f} nats on {len(ll)} test images "
              f"(k = {args.k}, {r['eval_s']:.0f} s); test ELBO (all {len(test)}) {r['test_elbo_all']:.2f}",
              flush=True)
    diff = lls["conv"] - lls["mlp"]
    summary = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.machine(), "node": platform.node(),
               "torch": torch.__version__, "threads": args.threads, "eval_threads": args.eval_threads,
               "minutes": args.minutes,
               "n_test": len(idx), "k": args.k, "command": " ".join(["bench/conv_vs_mlp.py", *sys.argv[1:]]),
               "conv_minus_mlp": float(diff.mean()), "conv_minus_mlp_se": float(diff.std() / math.sqrt(len(diff))),
               "models": results}
    print(json.dumps(summary, indent=2))
    print("| model | params | epochs | train CPU s | train wall s | best epoch | log p(x) nats (subset) | "
          "test ELBO nats (all) |")
    for kind, r in results.items():
        print(f"| {kind} | {r['params']:,} | {r['epochs']} | {r['train_cpu_s']:.0f} | {r['train_s']:.0f} | "
              f"{r['best_epoch']} | "
              f"{r['log_px']:.2f} ± {r['log_px_se']:.2f} | {r['test_elbo_all']:.2f} |")
    print(f"conv - mlp (paired, same images): {summary['conv_minus_mlp']:.2f} ± "
          f"{summary['conv_minus_mlp_se']:.2f} nats")
    return 0


if __name__ == "__main__":
    sys.exit(main())
