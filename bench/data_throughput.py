"""Throughput of Split.batch on MNIST: images/s served with shuffled indices.

Usage: python bench/data_throughput.py [--dir ../shared/data] [--seconds 2]

Rows: static / dynamic binarisation of the in-memory float32 tensors at batch 128 and 512, plus the
same from a memory-mapped uint8 .npy copy (per-batch scaling and binarisation). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vaekit.data import DataConfig, Split, load_data


def rate(split: Split, batch: int, seconds: float) -> float:
    """Images/s served by ``split.batch`` over shuffled epochs for about ``seconds`` seconds."""
    g = torch.Generator().manual_seed(0)
    n, served, start = len(split), 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        perm = torch.randperm(n, generator=g)
        for i in range(0, n - batch + 1, batch):
            split.batch(perm[i:i + batch], g)
            served += batch
            if time.perf_counter() - start >= seconds:
                break
    return served / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dir", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    rows = []
    for mode in ("static", "dynamic"):
        b = load_data(DataConfig(name="mnist", dir=args.dir, download=False, binarize=mode), "bernoulli")
        for batch in (128, 512):
            rows.append(("in-memory float32", mode, batch, rate(b.train, batch, args.seconds)))
    with tempfile.TemporaryDirectory() as tmp:
        from vaekit.data.named import load_named

        raw = load_named("mnist", args.dir, download=False)
        np.save(Path(tmp) / "mnist_train.npy", raw.x[raw.fixed["pool"]])
        for mode in ("static", "dynamic"):
            b = load_data(DataConfig(path=str(Path(tmp) / "mnist_train.npy"), mmap=True, binarize=mode,
                                     test_fraction=0.0), "bernoulli")
            for batch in (128, 512):
                rows.append(("memmap uint8 .npy", mode, batch, rate(b.train, batch, args.seconds)))
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs "
          f"({platform.machine()}), load average during run {load}")
    print()
    print("| storage | binarize | batch | images/s |")
    print("|---|---|---:|---:|")
    for storage, mode, batch, r in rows:
        print(f"| {storage} | {mode} | {batch} | {r:,.0f} |")


if __name__ == "__main__":
    main()
