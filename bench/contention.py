"""Training on a busy machine: one epoch of MNIST with and without a competing CPU-bound process.

For each thread setting, ``vaekit train --data.name mnist --train.epochs 1`` runs in a fresh process, first on the
quiet machine, then while a competitor runs: ``busy`` = one pure-Python busy loop per ``--busy`` (one core's worth
of load each), ``train`` = a second vaekit training with torch's defaults (the issue's "a second training"; its 2
threads spin at libgomp's default and take more than a core), ``vaekit`` = a second training with vaekit's defaults
(the free cores, followed while it trains). The epoch time is the trainer's own clock (metrics.jsonl
``epoch_time_s``). A competitor that takes c of the n cores leaves vaekit a share (n - c) / n of the machine at
best, so "proportional" means at most n / (n - c) times the quiet time of the best setting.

Settings: torch's defaults (``VAEKIT_OMP_POLICY=keep``, ``--train.threads 0``), a passive OpenMP wait, torch's
thread count with libgomp's spin bounded as vaekit bounds it (:mod:`vaekit.threads`; vaekit's default before
issue #15 chose the free cores), one thread, and vaekit's default ``--train.threads -1`` (the cores other
processes left free); ``--spincounts 1000,3000`` adds torch's thread count with those spin bounds (what a fixed
count pays for the bound; bench/spin_sweep.py measures what it buys a quiet machine).

``--late E`` measures the other case. The load arrives after the run has chosen its threads: each setting
trains E epochs, and the competitor starts when the first epoch's metrics row appears. Printed per setting:
that first, quiet epoch, and the median of epochs 3..E, which ran wholly beside the competitor; with
``--repeats R``, R runs of each setting, interleaved. ``--only`` keeps the settings whose names contain a word.

Usage::

    .venv/bin/python bench/contention.py                # all settings, busy-loop competitor
    .venv/bin/python bench/contention.py --competitor train
    .venv/bin/python bench/contention.py --late 5 --spincounts 5000
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
BUSY = "import time\nend = time.time() + 3600\nwhile time.time() < end:\n    pass\n"


def child_env(data_dir: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a measured ``vaekit`` process: this source tree, the data folder, ``extra``, and no
    ``OMP_NUM_THREADS`` (the thread count is the setting measured)."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "VAEKIT_DATA": data_dir, **(extra or {})}
    env.pop("OMP_NUM_THREADS", None)
    return env


def vaekit_spincount() -> str:
    """vaekit's GOMP_SPINCOUNT, read from the measured source's vaekit/threads.py alone: importing the package
    would set it in this process's environment, which every child (torch's defaults too) would then inherit."""
    spec = importlib.util.spec_from_file_location("_vaekit_threads", SRC / "vaekit" / "threads.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.SPINCOUNT)


SPINCOUNT = vaekit_spincount()
SETTINGS = {
    "torch's defaults (2 threads, long spin)": (["--train.threads", "0"], {"VAEKIT_OMP_POLICY": "keep"}),
    "passive wait (OMP_WAIT_POLICY=PASSIVE)": (["--train.threads", "0"], {"OMP_WAIT_POLICY": "PASSIVE"}),
    f"torch's thread count, GOMP_SPINCOUNT={SPINCOUNT}": (["--train.threads", "0"], {}),
    "--train.threads 1": (["--train.threads", "1"], {}),
    "vaekit default (--train.threads -1: the free cores)": ([], {}),
}


def epoch_time(extra: list[str], env_extra: dict[str, str], data_dir: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        env = child_env(data_dir, env_extra)
        subprocess.run([sys.executable, "-m", "vaekit", "train", "--data.name", "mnist", "--train.epochs", "1",
                        "--runs", tmp, "--name", "c", "--no-progress", "--no-report", "--no-artifacts", *extra],
                       env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rows = [json.loads(line) for line in (Path(tmp) / "c" / "metrics.jsonl").open()]
    return float(rows[-1]["epoch_time_s"])


def late_epochs(extra: list[str], env_extra: dict[str, str], data_dir: str, kind: str, n: int,
                epochs: int) -> tuple[float, float]:
    """(first epoch, median of epochs 3..``epochs``) seconds of one ``vaekit train`` run whose competitor starts
    when its first epoch's metrics row appears (trainer's clock)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = child_env(data_dir, env_extra)
        run = subprocess.Popen([sys.executable, "-m", "vaekit", "train", "--data.name", "mnist", "--train.epochs",
                                str(epochs), "--runs", tmp, "--name", "c", "--no-progress", "--no-report",
                                "--no-artifacts", *extra], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        metrics = Path(tmp) / "c" / "metrics.jsonl"
        procs: list[subprocess.Popen[bytes]] = []
        try:
            while run.poll() is None and not (metrics.exists() and metrics.read_text().strip()):
                time.sleep(0.02)
            procs = start_competitor(kind, n, data_dir, tmp)
            if run.wait() != 0:
                raise RuntimeError(f"vaekit train {' '.join(extra)} failed beside the late competitor")
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()
            if run.poll() is None:
                run.kill()
        rows = [json.loads(line) for line in metrics.open()]
    times = [float(r["epoch_time_s"]) for r in rows]
    return times[0], sorted(times[2:])[(len(times) - 2) // 2]


def start_competitor(kind: str, n: int, data_dir: str, tmp: str) -> list[subprocess.Popen[bytes]]:
    env = child_env(data_dir)
    if kind == "busy":
        return [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(n)]
    # 'train': torch's defaults (2 threads, libgomp's spin); 'vaekit': vaekit's own defaults (the free cores)
    threads = ["--train.threads", "0"] if kind == "train" else []
    if kind == "train":
        env["VAEKIT_OMP_POLICY"] = "keep"
    return [subprocess.Popen([sys.executable, "-m", "vaekit", "train", "--data.name", "mnist", "--train.epochs", "50",
                              "--runs", tmp, "--name", f"load{i}", "--no-progress", *threads, "--no-report",
                              "--no-artifacts"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(n)]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="vaekit on a busy machine")
    p.add_argument("--competitor", choices=["busy", "train", "vaekit"], default="busy")
    p.add_argument("--busy", type=int, default=1, help="competing processes")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--data-dir", default=str(HERE.parents[1] / "shared" / "data" / "mnist"))
    p.add_argument("--spincounts", default="",
                   help="also 2 threads with these GOMP_SPINCOUNT values (comma-separated), e.g. 1000,3000")
    p.add_argument("--late", type=int, default=0, metavar="E",
                   help="instead: E-epoch runs whose competitor starts after their first epoch (E >= 3)")
    p.add_argument("--only", default="", help="only the settings whose names contain one of these (comma-separated), "
                   "e.g. 'threads 1,free cores'")
    args = p.parse_args(argv)
    if args.late and args.late < 3:
        p.error("--late needs at least 3 epochs (the first is quiet, the second partly so)")
    settings = dict(SETTINGS)
    for count in filter(None, args.spincounts.split(",")):
        settings[f"2 threads, GOMP_SPINCOUNT={int(count)}"] = (["--train.threads", "0"],
                                                                {"GOMP_SPINCOUNT": str(int(count))})
    if args.only:
        settings = {name: v for name, v in settings.items() if any(w in name for w in args.only.split(","))}
    sys.path.insert(0, str(HERE))
    from machine import cpu_name

    cores = len(os.sched_getaffinity(0))
    print(f"{cpu_name()}, {cores} cores, load average {os.getloadavg()}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; competitor: {args.busy} x {args.competitor}")
    if args.late:
        late = {f"{name}{f' #{r + 1}' if args.repeats > 1 else ''}":
                late_epochs(extra, env, args.data_dir, args.competitor, args.busy, args.late)
                for r in range(args.repeats) for name, (extra, env) in settings.items()}
        best = min(first for first, _ in late.values())
        bound = cores / max(cores - args.busy, 1)
        print(f"competitor from the end of epoch 1; epoch seconds (trainer's clock); proportional bound = "
              f"{bound:.1f} x the best first epoch ({best:.2f} s) = {best * bound:.2f} s")
        print(f"| threads | epoch 1 (quiet) s | epochs 3-{args.late} (median) s | x best quiet | within bound? |")
        print("|---|---|---|---|---|")
        for name, (first, later) in late.items():
            print(f"| {name} | {first:.2f} | {later:.2f} | {later / best:.2f} | "
                  f"{'yes' if later / best <= bound else 'no'} |")
        print(f"load average at the end {os.getloadavg()}")
        return
    quiet: dict[str, float] = {}
    busy: dict[str, float] = {}
    for name, (extra, env) in settings.items():
        quiet[name] = min(epoch_time(extra, env, args.data_dir) for _ in range(args.repeats))
    with tempfile.TemporaryDirectory() as tmp:
        procs = start_competitor(args.competitor, args.busy, args.data_dir, tmp)
        try:
            time.sleep(3.0)  # the competitor is up and computing
            for name, (extra, env) in settings.items():
                busy[name] = min(epoch_time(extra, env, args.data_dir) for _ in range(args.repeats))
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()
    best = min(quiet.values())
    bound = cores / max(cores - args.busy, 1)
    print(f"epoch seconds (trainer's clock; min of {args.repeats}); proportional bound = {bound:.1f} x the best "
          f"quiet time ({best:.2f} s) = {best * bound:.2f} s")
    print("| threads | quiet s | with competitor s | slowdown (x own quiet) | x best quiet | within bound? |")
    print("|---|---|---|---|---|---|")
    for name in settings:
        ratio = busy[name] / best
        print(f"| {name} | {quiet[name]:.2f} | {busy[name]:.2f} | {busy[name] / quiet[name]:.1f} | {ratio:.2f} | "
              f"{'yes' if ratio <= bound else 'no'} |")
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
