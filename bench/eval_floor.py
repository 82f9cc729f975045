"""The importance-sampled log p(x) against the machine's GEMM floor, in one run.

Model: the 784-400-20 MLP VAE (Bernoulli, dynamically binarised MNIST), trained ``--train-steps`` Adam steps so
that its weights are realistic. For ``--points`` test images and k samples each, measured in the same process:

* ``GEMM floor``: the decoder's matrix products alone (per chunk of m samples for b points: (m*b, 20) x (20, 400)
  and (m*b, 400) x (400, 784), as bare ``torch.mm`` into preallocated outputs), the time no implementation of
  the estimator can beat on this machine;
* ``vaekit``: :func:`vaekit.evaluate.log_likelihood` (each (chunk, batch_size) of ``--grid`` timed
  ``--tune-repeats`` times, interleaved, on at least ``--tune-points`` points (whole batches) first; the block
  with the fastest time per point is used);
* ``elementwise Bernoulli``: the same estimator and draws with torch's elementwise Bernoulli log-probability
  (``torch.distributions.Bernoulli``), the kernel vaekit used before 2026-11-24;
* ``compiled``: the same estimator and draws with ``compile=True`` (``eval.compile``: each whole block through
  ``torch.compile``), after one batch that compiles it (its time is printed; the 10,000-image figure adds it
  once).

Prints the floor's fraction of each (floor time / estimator time), the estimates and their paired difference.
The times are extrapolated to the 10,000 MNIST test images (linear in points).

Usage::

    .venv/bin/python bench/eval_floor.py --points 1000
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import vaekit  # noqa: F401  before torch: vaekit's OpenMP spin bound applies, as in `vaekit train`

# isort: split
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="log p(x) against the GEMM floor")
    p.add_argument("--k", type=int, default=5000)
    p.add_argument("--points", type=int, default=1000)
    p.add_argument("--tune-points", type=int, default=40)
    p.add_argument("--tune-repeats", type=int, default=3, help="interleaved timings of each block (the fastest counts)")
    p.add_argument("--grid", default="250x8,500x8,250x20,1000x4,100x50")
    p.add_argument("--train-steps", type=int, default=300)
    p.add_argument("--data-dir", default=str(HERE.parents[1] / "shared" / "data" / "mnist"))
    args = p.parse_args(argv)
    grid = [tuple(int(v) for v in pair.split("x")) for pair in args.grid.split(",")]
    chunk_max, batch_max = max(c for c, _ in grid), max(b for _, b in grid)
    if args.points < batch_max or args.k < chunk_max:  # else a block has no whole (chunk x batch) block to compile
        p.error(f"--points {args.points} and --k {args.k} must be at least the grid's largest batch ({batch_max}) "
                f"and chunk ({chunk_max}): only whole blocks compile, so a smaller run would time eager blocks as "
                f"'compiled'; raise them or pass a smaller --grid")
    from machine import cpu_name

    from vaekit import distributions as D
    from vaekit.bounds import elbo_terms
    from vaekit.config import ModelConfig
    from vaekit.data import DataConfig, load_data
    from vaekit.evaluate import compile_failure, log_likelihood
    from vaekit.model import build_model
    from vaekit.schema import DataSchema
    from vaekit.train.adam import FusedAdam

    flags = [f for f in ("avx512f", "avx2", "fma", "amx_bf16", "avx512_bf16")
             if f in Path("/proc/cpuinfo").read_text().split()]
    print(f"{cpu_name()} ({' '.join(flags)}), {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, load average "
          f"{os.getloadavg()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    data = load_data(DataConfig(name="mnist", dir=args.data_dir, split="iwae", binarize="dynamic", download=False),
                     "bernoulli")
    x = data.test.all()[:args.points].reshape(-1, 784)
    torch.manual_seed(0)
    model = build_model(ModelConfig(latent_dim=20, hidden=(400,)), DataSchema(event_shape=(784,)))
    opt = FusedAdam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(args.train_steps):
        xb = data.train.batch(torch.randint(len(data.train), (128,), generator=g), g).reshape(-1, 784)
        opt.zero_grad()
        elbo_terms(model, xb).loss.backward()
        opt.step()
    model.eval()

    def timed(fn):
        t0 = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - t0

    best = dict.fromkeys(grid, math.inf)
    # interleaved repeats, the fastest of each counts: one slow moment of a shared host does not pick the block;
    # each block is timed on whole batches of points (a multiple of its batch size), as in the full run, and
    # compared per point
    for _ in range(args.tune_repeats):
        for chunk, batch in grid:
            pts = min(batch * math.ceil(args.tune_points / batch), len(x))  # no more points than the run has
            _, s = timed(lambda c=chunk, b=batch, n=pts: log_likelihood(model, x[:n], args.k, c, b, seed=0))
            best[(chunk, batch)] = min(best[(chunk, batch)], s / pts)
    tune = [(s, c, b) for (c, b), s in best.items()]
    _, chunk, batch = min(tune)

    # the floor: the decoder's two matrix products for every chunk of every batch of points
    w1, w2 = torch.randn(20, 400), torch.randn(400, 784)
    n_blocks = math.ceil(len(x) / batch) * math.ceil(args.k / chunk)
    a = torch.randn(chunk * batch, 20)
    h, out = torch.empty(chunk * batch, 400), torch.empty(chunk * batch, 784)
    hin = torch.randn(chunk * batch, 400)
    torch.mm(a, w1, out=h)
    _, t_floor = timed(lambda: [(torch.mm(a, w1, out=h), torch.mm(hin, w2, out=out)) for _ in range(n_blocks)])

    ll, t_new = timed(lambda: log_likelihood(model, x, args.k, chunk, batch, seed=0))
    fast = D.bernoulli
    D.bernoulli = lambda logits, nd: D.Independent(D.Bernoulli(logits=logits, validate_args=False), nd,  # type: ignore
                                                   validate_args=False)
    try:
        ll_old, t_old = timed(lambda: log_likelihood(model, x, args.k, chunk, batch, seed=0))
    finally:
        D.bernoulli = fast
    _, t_compile = timed(lambda: log_likelihood(model, x[:batch], args.k, chunk, batch, seed=0, compile=True))
    ll_c, t_c = timed(lambda: log_likelihood(model, x, args.k, chunk, batch, seed=0, compile=True))
    scale = 10_000 / len(x)
    diff = ll - ll_old
    print(f"k = {args.k}, {len(x)} test images; tuning (ms per point, fastest of {args.tune_repeats}): "
          + ", ".join(f"{c}x{b} {s * 1e3:.1f}" for s, c, b in tune) + f" -> chunk {chunk}, batch_size {batch}")
    print("| computation | s for these points | min for 10,000 images | GEMM floor / time |\n|---|---|---|---|")
    for name, t in (("GEMM floor (decoder matmuls only)", t_floor), ("vaekit log_likelihood", t_new),
                    ("same, elementwise Bernoulli (before)", t_old)):
        print(f"| {name} | {t:.1f} | {t * scale / 60:.2f} | {t_floor / t:.0%} |")
    with_compile = t_c * scale + t_compile  # seconds for 10,000 images, compiling once
    print(f"| compiled (eval.compile), one batch compiling first: {t_compile:.1f} s | {t_c:.1f} | "
          f"{with_compile / 60:.2f} with the compile | {t_floor / t_c:.0%} ({t_floor * scale / with_compile:.0%} "
          f"with the compile) |")
    se = float(ll.std() / math.sqrt(len(ll)))
    print(f"mean log p(x): vaekit {float(ll.mean()):.4f} nats, elementwise {float(ll_old.mean()):.4f} nats (same "
          f"draws); paired difference mean {float(diff.mean()):+.2e}, max |diff| {float(diff.abs().max()):.2e}; "
          f"standard error of the mean {se:.3f}")
    dc = ll_c - ll
    print(f"compiled: mean {float(ll_c.mean()):.4f} nats, paired difference to eager mean {float(dc.mean()):+.2e}, "
          f"max |diff| {float(dc.abs().max()):.2e}; compile failure: {compile_failure()}")


if __name__ == "__main__":
    main()
