"""Peak memory of training from a memory-mapped ``.npy`` stays flat as the dataset grows.

Usage: python bench/mmap_memory.py [--dir /work/shared/data] [--base 60000] [--sizes 1 2 4] [--steps 200]
                                   [--work /tmp/vaekit-mmap-bench] [--keep]

Writes float32 ``.npy`` files of ``base * size`` rows (28x28 MNIST training images tiled, in [0, 1]:
235 MB per 60,000 rows), then for each file runs, in a fresh subprocess, the 784-400-20 Bernoulli VAE
with ``data.mmap = true`` (dynamic binarisation) for a fixed number of training steps at batch 128, and
reads that process's peak resident set (``VmHWM``) and its anonymous (heap) part at the end
(``RssAnon``). File-backed pages of the map count in the peak but are the page cache's to drop; what must
not grow with the file is the heap. Compare with ``size x 235 MB`` for a loader that reads the file.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHILD = r"""
import json, sys, tempfile, time
from pathlib import Path
import torch
from vaekit.config import Config, ModelConfig, TrainConfig
from vaekit.data import DataConfig, load_data
from vaekit.train import Trainer

path, steps = sys.argv[1], int(sys.argv[2])
cfg = Config(name="mmap", data=DataConfig(path=path, mmap=True, binarize="dynamic"),
             model=ModelConfig(hidden=(400,), latent_dim=20, likelihood="bernoulli", activation="relu"),
             train=TrainConfig(batch_size=128, device="cpu"))
t0 = time.perf_counter()
data = load_data(cfg.data, cfg.model.likelihood)
load_s = time.perf_counter() - t0
def status_kb():
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {k: int(status[k].split()[0]) for k in ("VmHWM", "VmRSS", "RssAnon", "RssFile")}
after_load = status_kb()
trainer = Trainer(cfg, Path(tempfile.mkdtemp()), data)
perm = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))
t0 = time.perf_counter()
for b in range(steps):
    idx = perm[(b * 128) % (len(perm) - 128):][:128]
    trainer.step(data.train.batch(idx, trainer.binarize_rng))
train_s = time.perf_counter() - t0
print(json.dumps({"rows": len(data.train) + len(data.val) + len(data.test), "mmap": data.info.get("mmap"),
                  "load_s": load_s, "train_s": train_s, **status_kb(),
                  "RssFile_after_load": after_load["RssFile"], "VmHWM_after_load": after_load["VmHWM"]}))
"""


def write_tiled(path: Path, source: np.ndarray, rows: int) -> None:
    """A float32 .npy of ``rows`` images, ``source`` (uint8) tiled and scaled to [0, 1], written in chunks."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, *source.shape[1:]))
    for start in range(0, rows, len(source)):
        stop = min(start + len(source), rows)
        out[start:stop] = source[: stop - start].astype(np.float32) / 255.0
    out.flush()
    del out


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    p = argparse.ArgumentParser(description="peak RSS of mmap training vs dataset size")
    p.add_argument("--dir", default="/work/shared/data", help="data root holding mnist/")
    p.add_argument("--base", type=int, default=60000, help="rows of the 1x file")
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--work", type=Path, default=None, help="folder for the .npy files (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the .npy files")
    args = p.parse_args(argv)
    from vaekit.data.named import load_named

    images = load_named("mnist", args.dir, download=False).x[:60000]  # uint8 (60000, 28, 28)
    work = args.work or Path(tempfile.mkdtemp(prefix="vaekit-mmap-"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    print("| dataset | rows | file MB | peak RSS MB (VmHWM) | heap MB at end (RssAnon) | file pages MB (RssFile) "
          "| of which after load |\n|---|---|---|---|---|---|---|")
    try:
        for size in args.sizes:
            path = work / f"mnist-x{size}.npy"
            write_tiled(path, images, args.base * size)
            out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(args.steps)], capture_output=True,
                                 text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row.update(size=size, file_mb=path.stat().st_size / 2**20)
            results.append(row)
            print(f"| {size}x | {row['rows']:,} | {row['file_mb']:.0f} | {row['VmHWM'] / 1024:.0f} "
                  f"| {row['RssAnon'] / 1024:.0f} | {row['RssFile'] / 1024:.0f} "
                  f"| {row['RssFile_after_load'] / 1024:.0f} |",
                  flush=True)
            if not args.keep:
                path.unlink()
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return results


if __name__ == "__main__":
    main()
