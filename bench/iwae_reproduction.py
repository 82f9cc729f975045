"""Reproduce the IWAE paper's one-stochastic-layer MNIST numbers (Burda, Grosse & Salakhutdinov, 2016, table 1).

Model: 784-200-200-50 (two tanh hidden layers in encoder and decoder, 50 Gaussian latents, Bernoulli
decoder), dynamically binarised MNIST with the paper's split (``--data.split iwae``: 59,600 train /
400 validation / the standard 10,000 test images), batch size 20, Adam. Objective ``elbo`` (VAE, k = 1)
or ``iwae`` (k = 50 in the bound). Training runs through ``vaekit.train.fit`` with a wall-clock budget
(``--minutes``; checked at epoch ends, so a run may overrun by up to one epoch), then the best
checkpoint (by validation ELBO) is evaluated with ``vaekit.evaluate.evaluate_run`` (k = 5000 importance
samples by default) and one row is appended to ``--out``.

Paper (3,280 epochs, learning rate 1e-3 * 10^(-i/7) for 3^i epochs, i = 0..7): test NLL 86.76 nats (VAE,
k = 1) and 84.78 nats (IWAE, k = 50). This script uses a constant learning rate (``--lr``) unless
``--lr-schedule`` is given; short budgets land well above those numbers.

Usage::

    .venv/bin/python bench/iwae_reproduction.py --objective iwae --minutes 600 --device cuda
    .venv/bin/python bench/iwae_reproduction.py --objective elbo --minutes 1.5 --limit 2000 --eval-k 500  # smoke
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

from vaekit.config import Config, ModelConfig, TrainConfig
from vaekit.data import DataConfig
from vaekit.evaluate import evaluate_run
from vaekit.train import Callback, Trainer, fit

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PAPER_NLL = {"elbo": 86.76, "iwae": 84.78}


class WallClockBudget(Callback):
    """Stops training at the first epoch end after ``seconds`` of wall time."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.t0 = time.perf_counter()

    def on_train_start(self, trainer: Trainer) -> None:
        self.t0 = time.perf_counter()

    def on_epoch_end(self, trainer: Trainer, metrics: dict) -> None:
        elapsed = time.perf_counter() - self.t0
        print(f"epoch {metrics['epoch']}: train loss {metrics['train_loss']:.2f}, val ELBO {metrics['val_elbo']:.2f}"
              f" nats, {elapsed / 60:.1f} min", flush=True)
        if elapsed >= self.seconds:
            trainer.request_stop(f"wall-clock budget of {self.seconds / 60:g} minutes")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--objective", choices=("elbo", "iwae"), default="iwae")
    p.add_argument("--k-train", type=int, default=50, help="samples in the IWAE bound (objective iwae)")
    p.add_argument("--minutes", type=float, default=10.0, help="wall-clock training budget")
    p.add_argument("--epochs", type=int, default=3280, help="upper bound on epochs (paper: 3280)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-schedule", default="constant", choices=("constant", "cosine", "step"))
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--device", default="cpu")
    p.add_argument("--limit", type=int, default=0, help="keep at most this many examples per split (smoke runs)")
    p.add_argument("--eval-k", type=int, default=5000)
    p.add_argument("--naive-k", type=int, default=1000)
    p.add_argument("--eval-chunk", type=int, help="default: 500 on cpu, 5000 on cuda")
    p.add_argument("--eval-batch", type=int, help="default: 40 on cpu, 200 on cuda")
    p.add_argument("--data-dir", default=str(SHARED))
    p.add_argument("--runs", type=Path, help="runs folder (default: a temporary folder)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("EVAL_RESULTS.md"))
    args = p.parse_args(argv)

    k_train = args.k_train if args.objective == "iwae" else 1
    name = f"iwae-repro-{args.objective}-k{k_train}-{time.strftime('%Y%m%d-%H%M%S')}"
    config = Config(
        name=name,
        data=DataConfig(name="mnist", dir=args.data_dir, binarize="dynamic", split="iwae", download=False,
                        limit=args.limit),
        model=ModelConfig(latent_dim=50, hidden=(200, 200), activation="tanh", likelihood="bernoulli"),
        train=TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lr_schedule=args.lr_schedule,
                          objective=args.objective, iwae_k=k_train if args.objective == "iwae" else 0,
                          device=args.device, seed=args.seed,
                          keep_last=1),
    )
    runs = args.runs or Path(tempfile.mkdtemp(prefix="vaekit-iwae-"))
    t0 = time.perf_counter()
    run_dir, trainer = fit(config, runs, callbacks=[WallClockBudget(args.minutes * 60)])
    train_s = time.perf_counter() - t0
    cuda = args.device.startswith("cuda")
    result = evaluate_run(run_dir, k=args.eval_k, chunk=args.eval_chunk or (5000 if cuda else 500),
                          batch_size=args.eval_batch or (200 if cuda else 40), naive_k=args.naive_k,
                          device=args.device, seed=args.seed)
    eval_s = time.perf_counter() - t0 - train_s
    nll, se = -result["log_likelihood_nats"], result["log_likelihood_se"]
    device = args.device
    if cuda:
        import torch

        device += f" ({torch.cuda.get_device_name()})"
    command = "`.venv/bin/python bench/iwae_reproduction.py " + " ".join(sys.argv[1:]) + "`"
    row = (f"| {time.strftime('%Y-%m-%d')} | {args.objective} | {k_train} | {trainer.state.epoch} | "
           f"{train_s / 60:.1f} | {device}, {platform.node()} | {result['n_examples']} | {args.eval_k} | "
           f"{nll:.2f} ± {se:.2f} | {-result['elbo_nats']:.2f} | {result['active_units']} | "
           f"{PAPER_NLL[args.objective]} | {eval_s:.0f} | {command} |")
    print("| date | objective | k (train) | epochs | train min | device | test pts | k (eval) | NLL nats "
          "| -ELBO nats | active units | paper NLL | eval s | command |")
    print(row)
    with open(args.out, "a") as f:
        f.write(row + "\n")
    print(f"appended to {args.out}; run kept in {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
