"""What libgomp's spin bound costs a quiet machine: vaekit's and the tight loop's step at several GOMP_SPINCOUNT.

OpenMP reads ``GOMP_SPINCOUNT`` once, when torch loads it, so every value needs a fresh process. For each
repeat and each value (interleaved, so the host's drift falls on all values alike), a child process trains
vaekit's epoch and bench/tight_loop.py's on the first ``rows`` MNIST rows at batch ``batch``, ``rounds``
alternated short epochs each, 2 threads. Printed per value: the median ms per step of each loop over the
repeats, and the median of the children's tight/vaekit ratios (1.0 = as fast as the tight loop). vaekit's own
default is 5000 (:mod:`vaekit.threads`; 1000 until 2026-12-07); ``default`` runs libgomp's (300,000). The
other side of the trade, a busy machine, is ``bench/contention.py --spincounts``::

    .venv/bin/python bench/spin_sweep.py --spincounts 1000,3000,5000,default --repeats 6
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(rows: int, batch: int, rounds: int, data_dir: str) -> None:
    """Alternate the two loops' short epochs; print 'vaekit_ms tight_ms ratio'."""
    sys.path.insert(0, str(HERE))
    from alternate import alternated, ratios_to
    from throughput import load_mnist, make_trainer
    from tight_loop import TightLoop

    data = load_mnist(data_dir, rows)
    trainer = make_trainer(data, batch, "fp32", "cpu")
    tight = TightLoop(data.train.x, batch, scale=data.train.affine[0])
    runs = [("vaekit", trainer.train_epoch), ("tight", tight.train_epoch)]
    for _, run in runs:  # a first warm-up each; alternated() runs a second
        run()
    times = alternated(runs, rounds)  # the order swapped every round
    steps = rows // batch
    ratio = statistics.median(ratios_to(times, "tight")["vaekit"])
    print(f"{1e3 * statistics.median(times['vaekit']) / steps:.4f} "
          f"{1e3 * statistics.median(times['tight']) / steps:.4f} {ratio:.4f}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="vaekit's and the tight loop's step at several GOMP_SPINCOUNT values")
    p.add_argument("--spincounts", default="1000,3000,5000,default", help="comma-separated; 'default' = libgomp's")
    p.add_argument("--repeats", type=int, default=6)
    p.add_argument("--rows", type=int, default=2560)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rounds", type=int, default=24, help="alternated epochs of each loop per child")
    p.add_argument("--dir", default=str(HERE.parents[1] / "shared" / "data"), help="data root holding mnist/")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.rows, args.batch, args.rounds, args.dir)
        return
    sys.path.insert(0, str(HERE))
    from machine import cpu_name

    values = [v.strip() for v in args.spincounts.split(",") if v.strip()]
    print(f"{cpu_name()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {os.getloadavg()}; "
          f"batch {args.batch}, {args.rows} rows, {args.rounds} rounds per child, {args.repeats} repeats")
    results: dict[str, list[tuple[float, float, float]]] = {v: [] for v in values}
    for _ in range(args.repeats):
        for value in values:
            env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
            if value == "default":
                env["VAEKIT_OMP_POLICY"] = "keep"  # vaekit sets nothing: libgomp's own spin
            else:
                env["GOMP_SPINCOUNT"] = str(int(value))
            cmd = [sys.executable, __file__, "--child", "--rows", str(args.rows), "--batch", str(args.batch),
                   "--rounds", str(args.rounds), "--dir", args.dir]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout.split()
            results[value].append((float(out[0]), float(out[1]), float(out[2])))
    print("| GOMP_SPINCOUNT | vaekit ms/step | tight ms/step | tight/vaekit (median) | min-max |")
    print("|---|---:|---:|---:|---|")
    for value, rows in results.items():
        ratios = [r[2] for r in rows]
        print(f"| {value} | {statistics.median(r[0] for r in rows):.3f} | {statistics.median(r[1] for r in rows):.3f} "
              f"| {statistics.median(ratios):.3f} | {min(ratios):.3f}-{max(ratios):.3f} |")


if __name__ == "__main__":
    main()
