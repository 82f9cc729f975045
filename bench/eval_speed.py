"""Speed of the importance-sampled log p(x): vaekit's batched + chunked estimator vs a per-example loop.

Model: the 784-400-20 MLP VAE (hidden=(400,), latent_dim=20, Bernoulli), briefly trained (``--train-steps``
Adam steps on dynamically binarised MNIST) so that the weights are realistic; data: the 10,000 MNIST
test images (one fixed binarisation). Steps:

1. tune: time a few (chunk, batch_size) pairs on ``--tune-points`` points and keep the fastest;
2. vaekit: ``evaluate.log_likelihood`` with k samples on ``--points`` points (all 10,000 by default), float32;
3. loop: the common per-example implementation (for each x: draw k z's, compute the weights,
   logsumexp) timed on ``--loop-points`` points and extrapolated linearly to ``--points`` (stated in
   the table);
4. ``--bf16``: the same estimate under bfloat16 autocast, and its difference from float32 in nats.

Usage::

    .venv/bin/python bench/eval_speed.py                     # full: k = 5000 on 10,000 test images
    .venv/bin/python bench/eval_speed.py --points 1000 --bf16 --out bench/EVAL_RESULTS.md

Prints a markdown table (and appends it to ``--out``).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

from vaekit.config import ModelConfig
from vaekit.data import DataConfig, load_data
from vaekit.evaluate import log_likelihood
from vaekit.model import VAE
from vaekit.objectives import elbo_terms

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def per_example_loop(model: VAE, x: torch.Tensor, k: int) -> torch.Tensor:
    """The usual implementation elsewhere: one point at a time, all k samples at once."""
    out = []
    with torch.inference_mode():
        prior = model.prior()
        for i in range(x.shape[0]):
            xi = x[i:i + 1]
            q = model.encode(xi)
            z = q.rsample((k,))  # (k, 1, d)
            lw = model.decode(z).log_prob(xi) + prior.log_prob(z) - q.log_prob(z)
            out.append(torch.logsumexp(lw, 0) - math.log(k))
    return torch.cat(out)


def timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, default=5000)
    p.add_argument("--points", type=int, default=10_000, help="test images evaluated (quick runs: e.g. 1000)")
    p.add_argument("--loop-points", type=int, default=20, help="points timed in the per-example loop")
    p.add_argument("--tune-points", type=int, default=100)
    p.add_argument("--tune-k", type=int, help="samples per point while tuning (default: --k)")
    p.add_argument("--grid", default="250x40,500x40,1000x20,500x100,100x500",
                   help="chunk x batch_size pairs tried when tuning")
    p.add_argument("--train-steps", type=int, default=300)
    p.add_argument("--device", default="cpu")
    p.add_argument("--bf16", action="store_true", help="also measure bf16 autocast and its error")
    p.add_argument("--data-dir", default=str(SHARED))
    p.add_argument("--out", type=Path, help="append the markdown table to this file")
    args = p.parse_args(argv)
    device = torch.device(args.device)

    data = load_data(DataConfig(name="mnist", dir=args.data_dir, split="iwae", binarize="dynamic",
                                download=False), "bernoulli")
    x_test = data.test.all()[:args.points]
    torch.manual_seed(0)
    model = VAE(ModelConfig(latent_dim=20, hidden=(400,)), (28, 28)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    t_train = time.perf_counter()
    for _ in range(args.train_steps):
        xb = data.train.batch(torch.randint(len(data.train), (128,), generator=g), g).to(device)
        loss = elbo_terms(model, xb).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    t_train = time.perf_counter() - t_train
    model.eval()
    x_dev = x_test.to(device)

    tune, tune_k = [], args.tune_k or args.k
    for pair in args.grid.split(","):
        chunk, batch = (int(v) for v in pair.split("x"))
        _, s = timed(lambda c=chunk, b=batch: log_likelihood(model, x_dev[:args.tune_points], tune_k, c, b, seed=0))
        tune.append((s, chunk, batch))
    _, chunk, batch = min(tune)

    ll, t_vec = timed(lambda: log_likelihood(model, x_dev, args.k, chunk, batch, seed=0))
    n_loop = min(args.loop_points, len(x_test))
    loop_ll, t_loop = timed(lambda: per_example_loop(model, x_dev[:n_loop], args.k))
    t_loop_full = t_loop / n_loop * len(x_test)
    same_points = ll[:n_loop].mean() - loop_ll.double().cpu().mean()

    threads = torch.get_num_threads()
    rows = [
        ("machine", f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs visible, torch "
                    f"{torch.__version__}, {threads} threads, device {device})"),
        ("date", time.strftime("%Y-%m-%d %H:%M %Z")),
        ("command", "`.venv/bin/python bench/eval_speed.py " + " ".join(sys.argv[1:]) + "`"),
        ("model", f"784-400-20 MLP, Bernoulli, {args.train_steps} Adam steps ({t_train:.1f} s)"),
        (f"tuning (chunk x batch: s on {min(args.tune_points, len(x_test))} pts, k={tune_k})",
         ", ".join(f"{c}x{b}: {s:.2f}" for s, c, b in tune) + f" -> {chunk}x{batch}"),
        (f"vaekit log_likelihood, k={args.k}, {len(x_test)} pts, fp32",
         f"{t_vec:.1f} s ({len(x_test) / t_vec:.1f} pts/s); mean log p(x) {float(ll.mean()):.3f} nats"),
        (f"per-example loop, k={args.k}", f"{t_loop:.1f} s on {n_loop} pts -> extrapolated {t_loop_full:.1f} s "
                                          f"for {len(x_test)} pts"),
        ("speed-up (loop / vaekit)", f"{t_loop_full / t_vec:.2f}x"),
        ("estimate difference on the loop's points (different draws)", f"{float(same_points):+.3f} nats"),
    ]
    if len(x_test) < 10_000:
        rows.append(("extrapolated vaekit time for 10,000 pts", f"{t_vec / len(x_test) * 10_000:.1f} s"))
    if args.bf16:
        ll16, t16 = timed(lambda: log_likelihood(model, x_dev, args.k, chunk, batch, seed=0, precision="bf16"))
        diff = ll16 - ll
        rows.append((f"bf16 autocast, k={args.k}, {len(x_test)} pts",
                     f"{t16:.1f} s; mean log p(x) {float(ll16.mean()):.3f} nats; mean difference vs fp32 "
                     f"{float(diff.mean()):+.4f} nats (per-point max |diff| {float(diff.abs().max()):.3f})"))
    table = "| quantity | value |\n|---|---|\n" + "".join(f"| {a} | {b} |\n" for a, b in rows)
    print(table)
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
