"""Evaluating on a busy machine: ``vaekit eval`` of an MNIST run, quiet and beside a CPU-bound busy loop.

Trains one MNIST run (2 epochs) once, then times ``vaekit eval RUN --k K --naive-k K`` (the 10,000 test images;
the time is eval.json's ``seconds``) in a fresh process per setting, three ways: on the quiet machine, with a busy
loop running from before the evaluation starts, and with one that starts ``--late`` seconds after it (the case
the thread count chosen at the start cannot see). One busy loop on n cores leaves vaekit (n - 1) / n of the
machine at best, so "proportional" means at most n / (n - 1) times the best quiet time.

Settings: torch's defaults (``VAEKIT_OMP_POLICY=keep``, ``--eval.threads 0``), torch's thread count with vaekit's
spin bound (``--eval.threads 0``), one thread, and vaekit's default (``--eval.threads -1``: the free cores,
followed while it evaluates); ``--spincounts 3000,5000`` adds the default with those ``GOMP_SPINCOUNT`` values.

Usage::

    .venv/bin/python bench/eval_contention.py                       # k = 200, late loop after 6 s
    .venv/bin/python bench/eval_contention.py --spincounts 1000,5000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from contention import BUSY, child_env  # noqa: E402  (the same busy loop and child environment)

SETTINGS = {
    "torch's defaults (2 threads, long spin)": (["--eval.threads", "0"], {"VAEKIT_OMP_POLICY": "keep"}),
    "torch's thread count, vaekit's spin bound": (["--eval.threads", "0"], {}),
    "--eval.threads 1": (["--eval.threads", "1"], {}),
    "vaekit default (--eval.threads -1)": ([], {}),
}


def evaluate(run: Path, k: int, extra: list[str], env_extra: dict[str, str], data_dir: str,
             late: float | None = None) -> tuple[float, int]:
    """(eval.json ``seconds``, its ``threads``) of one ``vaekit eval`` in a fresh process; with ``late``, a busy
    loop starts that many seconds after it and is killed when it ends."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "eval.json"
        proc = subprocess.Popen([sys.executable, "-m", "vaekit", "eval", str(run), "--k", str(k), "--naive-k",
                                 str(k), "--out", str(out), *extra], env=child_env(data_dir, env_extra),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        loop = None
        try:
            if late is not None:
                try:
                    proc.wait(timeout=late)
                except subprocess.TimeoutExpired:
                    loop = subprocess.Popen([sys.executable, "-c", BUSY])
            if proc.wait() != 0:
                raise RuntimeError(f"vaekit eval {' '.join(extra)} failed")
        finally:
            if loop is not None:
                loop.kill()
                loop.wait()
            if proc.poll() is None:
                proc.kill()
        result = json.loads(out.read_text())
    return float(result["seconds"]), int(result["threads"])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="vaekit eval on a busy machine")
    p.add_argument("--k", type=int, default=200, help="importance (and naive) samples per test image")
    p.add_argument("--late", type=float, default=6.0, help="seconds before the late busy loop starts")
    p.add_argument("--spincounts", default="", help="also the default with these GOMP_SPINCOUNT values, e.g. 5000")
    p.add_argument("--data-dir", default=str(HERE.parents[1] / "shared" / "data" / "mnist"))
    args = p.parse_args(argv)
    settings = dict(SETTINGS)
    for count in filter(None, args.spincounts.split(",")):
        settings[f"vaekit default, GOMP_SPINCOUNT={int(count)}"] = ([], {"GOMP_SPINCOUNT": str(int(count))})
    from machine import cpu_name

    cores = len(os.sched_getaffinity(0))
    print(f"{cpu_name()}, {cores} cores, load average {os.getloadavg()}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; vaekit eval --k {args.k} --naive-k {args.k}")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "vaekit", "train", "--data.name", "mnist", "--train.epochs", "2",
                        "--runs", tmp, "--name", "m", "--no-progress", "--no-report", "--no-artifacts"],
                       env=child_env(args.data_dir), check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        run = Path(tmp) / "m"
        quiet = {name: evaluate(run, args.k, extra, env, args.data_dir) for name, (extra, env) in settings.items()}
        late = {name: evaluate(run, args.k, extra, env, args.data_dir, late=args.late)
                for name, (extra, env) in settings.items()}
        loop = subprocess.Popen([sys.executable, "-c", BUSY])
        try:
            time.sleep(2.0)  # the loop is up and computing
            busy = {name: evaluate(run, args.k, extra, env, args.data_dir) for name, (extra, env) in settings.items()}
        finally:
            loop.kill()
            loop.wait()
    best = min(s for s, _ in quiet.values())
    bound = cores / max(cores - 1, 1)
    print(f"eval seconds (eval.json); proportional bound = {bound:.1f} x the best quiet time ({best:.2f} s) = "
          f"{best * bound:.2f} s; threads = eval.json's count at the start")
    print(f"| setting | quiet s | busy loop from the start s (x best quiet) | busy loop after {args.late:g} s "
          "(x best quiet) | threads quiet / busy |")
    print("|---|---|---|---|---|")
    for name in settings:
        (q, tq), (b, tb), (lt, _) = quiet[name], busy[name], late[name]
        print(f"| {name} | {q:.2f} | {b:.2f} ({b / best:.2f}) | {lt:.2f} ({lt / best:.2f}) | {tq} / {tb} |")
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
