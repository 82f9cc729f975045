"""Training samples/s of 1 process against 2 processes (torch.distributed, gloo on loopback) on this machine.

Usage:
    python bench/distributed.py [--dir /work/shared/data] [--rounds 2] [--epochs 2] [--batches 128 512]
                                [--limit 0] [--json out.json]

Each contestant is a real ``vaekit train`` run in a fresh process (what a user runs), on MNIST with the
784-400-20 Bernoulli VAE of bench/throughput.py (ReLU, Adam 1e-3, dynamic binarisation), ``--epochs``
epochs with the same global batch:

* ``1 process, 2 threads``: ``vaekit train`` (torch's default threads on this 2-core machine),
* ``1 process, 1 thread``: the same with ``OMP_NUM_THREADS=1``,
* ``2 processes, 1 thread each``: ``vaekit train --train.nproc 2`` (torchrun sets one thread per process;
  every step all-reduces the gradients over gloo).

The figure is the ``samples_per_s`` of the last epoch's metrics row (the training steps of the epoch,
validation and start-up excluded: the global batches' rows over rank 0's clock). The contestants run in
alternating order each round, so load from other processes hits them alike; reported: the median over
rounds, min-max, and the ratio to ``1 process, 2 threads`` (median of per-round ratios).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_name

ROOT = Path(__file__).resolve().parents[1]
MODEL = ["--model.hidden", "400", "--model.latent_dim", "20", "--model.likelihood", "bernoulli",
         "--model.activation", "relu"]
CONTESTANTS = {  # name: (extra vaekit arguments, extra environment)
    "1 process, 2 threads": ([], {}),
    "1 process, 1 thread": ([], {"OMP_NUM_THREADS": "1"}),
    "2 processes, 1 thread each": (["--train.nproc", "2"], {"OMP_NUM_THREADS": "1"}),
}


def run_once(name: str, batch: int, args: argparse.Namespace, root: Path, tag: str) -> float:
    """One ``vaekit train`` run of contestant ``name``; its last epoch's samples/s."""
    extra, env = CONTESTANTS[name]
    run = f"{tag}-b{batch}-c{list(CONTESTANTS).index(name)}"
    cmd = [sys.executable, "-m", "vaekit", "train", "--data.name", "mnist", "--data.dir", args.dir,
           "--data.download", "false", "--data.limit", str(args.limit), *MODEL, "--train.batch_size", str(batch),
           "--train.epochs", str(args.epochs), "--train.device", "cpu", "--name", run, "--runs", str(root),
           "--no-progress", "--no-artifacts", "--no-report", *extra]
    environ = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **env}
    proc = subprocess.run(cmd, env=environ, capture_output=True, text=True, cwd=root)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    rows = [json.loads(line) for line in (root / run / "metrics.jsonl").read_text().splitlines()]
    return float(rows[-1]["samples_per_s"])




def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", default="/work/shared/data", help="data root holding mnist/")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2, help="epochs per run; the last one is timed")
    p.add_argument("--batches", type=int, nargs="+", default=[128, 512])
    p.add_argument("--limit", type=int, default=0, help="rows of MNIST to use (0 = all 70,000)")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    import torch

    header = {"cpu": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__,
              "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "loadavg_start": os.getloadavg()}
    print(json.dumps(header))
    results: dict[str, dict[str, list[float]]] = {}
    names = list(CONTESTANTS)
    with tempfile.TemporaryDirectory() as tmp:
        for batch in args.batches:
            rates: dict[str, list[float]] = {n: [] for n in names}
            for r in range(args.rounds):
                order = names if r % 2 == 0 else names[::-1]
                for name in order:
                    rates[name].append(run_once(name, batch, args, Path(tmp), f"r{r}"))
            results[str(batch)] = rates
            base = rates[names[0]]
            print(f"\nbatch {batch} (global), {args.rounds} rounds, last of {args.epochs} epochs timed:")
            print("| contestant | median samples/s | min-max | x 1 process, 2 threads |")
            print("|---|---|---|---|")
            for name in names:
                ratio = statistics.median(a / b for a, b in zip(rates[name], base, strict=True))
                print(f"| {name} | {statistics.median(rates[name]):,.0f} | {min(rates[name]):,.0f}-"
                      f"{max(rates[name]):,.0f} | {ratio:.2f} |")
    print(f"load average end {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps({**header, "results": results}, indent=1))


if __name__ == "__main__":
    main()
