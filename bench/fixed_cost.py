"""The fixed cost of a run: where the wall time of ``vaekit train ... --train.epochs 1`` goes besides the epoch.

Each repeat runs the real command line in a fresh process (``vaekit.cli.main``) with wall-clock timers
wrapped around the parts of a run, found by name (a part missing from the code under test prints ``-``),
so the same script measures any version of vaekit (``--src`` picks the tree)::

    .venv/bin/python bench/fixed_cost.py --repeats 3                      # this tree
    .venv/bin/python bench/fixed_cost.py --repeats 3 --src /path/to/old/src --label before

Parts (exclusive wall seconds; nested parts are not counted twice):

* start-up: process start to the CLI's ``main`` (interpreter, ``import vaekit.cli``);
* data: ``load_data`` for training (decoding the files, preprocessing);
* model build: the trainer's constructor (model, optimizer, checkpoint store);
* epochs: ``Trainer.train_epoch``; validation: the validation ELBO after each epoch;
* checkpoint: ``Trainer.save_checkpoint``; collapse check: the active-units warning;
* samples: the sample and reconstruction grids; report: ``write_report`` (report.html);
* other: everything else inside ``main`` (imports on first use, argument parsing, printing).

A report written in the background (vaekit's default since issue #15) is waited for before the next run, and
the time from the start to its appearance is printed; it is not part of the wall time. Peak RSS is the child
process's ``ru_maxrss`` in MB (10^6 bytes, the unit of the issue's target: MNIST's training images as float32
are 188 MB), also printed in MiB; ``data loads`` counts how often the data files were read
(``load_data`` + ``load_run_data``). Default data: MNIST from ``../shared/data/mnist`` (``VAEKIT_DATA``).
"""

from __future__ import annotations

import argparse
import builtins
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
#: part name -> (module, attribute path) wrapped with a timer in the child; first match wins.
PARTS: dict[str, list[tuple[str, str]]] = {
    "data": [("vaekit.train.runs", "load_data")],
    "model build": [("vaekit.train.loop", "Trainer.__init__")],
    "epochs": [("vaekit.train.loop", "Trainer.train_epoch")],
    "validation": [("vaekit.train.dist", "SingleProcess.evaluate")],
    "checkpoint": [("vaekit.train.loop", "Trainer.save_checkpoint")],
    "collapse check": [("vaekit.api", "collapse_warning")],
    "samples": [("vaekit.api", "write_artifacts")],
    "report": [("vaekit.report", "write_report")],
}
COUNTED = [("vaekit.data", "load_data"), ("vaekit.data.rundata", "load_run_data")]
ORDER = ["start-up", *PARTS, "other"]


def _wrap(owner: Any, attr: str, fn: Any) -> None:
    setattr(owner, attr, fn)


def _resolve(module: str, path: str) -> tuple[Any, str, Any] | None:
    """The (owner, attribute, function) at ``path`` of ``module`` once the run itself has imported it, else None:
    the harness imports nothing the run would not (``vaekit.report`` alone, which a run with a background report
    never imports, is about 30 MB of resident memory)."""
    owner: Any = sys.modules.get(module)
    if owner is None:
        return None
    *parents, attr = path.split(".")
    for p in parents:
        owner = getattr(owner, p, None)
        if owner is None:
            return None
    fn = getattr(owner, attr, None)
    return None if fn is None else (owner, attr, fn)


def child(out: str, argv: list[str], t_start: float) -> None:
    """Run ``vaekit.cli.main(argv)`` with the parts timed; write {part: seconds, ...} to ``out``."""
    t_main = time.perf_counter()
    startup = time.time() - t_start
    import resource

    import vaekit.cli

    totals = dict.fromkeys(PARTS, 0.0)
    peak_after: dict[str, float] = {}  # the process's peak RSS (MB = 10^6 bytes) when each part first ended
    counts = {f"{m}.{a}": 0 for m, a in COUNTED}
    stack: list[str] = []  # exclusive timing: an inner part's time is taken out of the outer one

    def timed(name: str, fn: Any) -> Any:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            if stack and stack[-1] == name:  # recursion into the same part: time it once
                return fn(*args, **kwargs)
            stack.append(name)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                stack.pop()
                totals[name] += dt
                peak_after.setdefault(name, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6)
                if stack:
                    totals[stack[-1]] -= dt
        return inner

    def counted(key: str, fn: Any) -> Any:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            counts[key] += 1
            return fn(*args, **kwargs)
        return inner

    found: dict[str, bool] = {}
    to_count = list(COUNTED)
    to_time = {name: list(candidates) for name, candidates in PARTS.items()}

    def wrap_imported() -> None:
        """Wrap the functions of the modules imported so far (called after every import statement)."""
        for module, attr in list(to_count):
            hit = _resolve(module, attr)
            if hit is not None:
                to_count.remove((module, attr))
                _wrap(hit[0], hit[1], counted(f"{module}.{attr}", hit[2]))
                for mod in list(sys.modules.values()):  # modules that imported the name already
                    if mod is not None and getattr(mod, attr, None) is hit[2]:
                        setattr(mod, attr, getattr(hit[0], attr))
        for name, candidates in list(to_time.items()):
            for module, path in candidates:
                hit = _resolve(module, path)
                if hit is not None:
                    _wrap(hit[0], hit[1], timed(name, hit[2]))
                    found[name] = True
                    del to_time[name]
                    break

    real_import = builtins.__import__

    def hooked_import(*args: Any, **kwargs: Any) -> Any:
        module = real_import(*args, **kwargs)
        if to_count or to_time:  # before the importer reads the names it asked for (``from m import f``)
            wrap_imported()
        return module

    wrap_imported()
    builtins.__import__ = hooked_import
    rc = vaekit.cli.main(argv)
    in_main = time.perf_counter() - t_main
    result: dict[str, Any] = {"start-up": startup, "rc": rc, "in_main": in_main}
    result.update({f"peak MB after {k}": v for k, v in peak_after.items()})
    for name in PARTS:
        result[name] = totals[name] if found.get(name) else None
    result["other"] = in_main - sum(v for v in totals.values())
    result["data loads"] = sum(counts.values())
    Path(out).write_text(json.dumps(result))
    if hasattr(vaekit.cli, "run"):  # the console command of this version exits without the interpreter's teardown
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    sys.exit(rc)


def one_run(src: Path, vaekit_args: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "parts.json"
        argv = [*vaekit_args, "--runs", str(Path(tmp) / "runs"), "--name", "fixed-cost", "--no-progress"]
        code = ("import sys, time; t=float(sys.argv[1]); sys.path.insert(0, sys.argv[2]); "
                "sys.path.insert(0, sys.argv[3]); import fixed_cost; "
                "fixed_cost.child(sys.argv[4], sys.argv[5:], t)")
        env = {**os.environ, "PYTHONPATH": str(src)}
        t0 = time.time()
        proc = subprocess.Popen([sys.executable, "-c", code, repr(t0), str(src), str(HERE), str(out), *argv], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.time() - t0
        err = proc.stderr.read().decode() if proc.stderr else ""
        if os.waitstatus_to_exitcode(status) != 0 or not out.exists():
            raise SystemExit(f"vaekit train failed: {err.strip()[-2000:]}")
        parts = json.loads(out.read_text())
        run = Path(tmp) / "runs" / "fixed-cost"
        metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        if (run / "report.log").exists():  # a background report: let it finish before the next run starts
            deadline = time.time() + 300
            while not (run / "report.html").exists() and time.time() < deadline:
                time.sleep(0.05)
            parts["report done after (s)"] = time.time() - t0
    parts.update(wall=wall, peak_rss_mb=usage.ru_maxrss * 1024 / 1e6,
                 epoch_time_s=sum(m["epoch_time_s"] for m in metrics))
    return parts


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description="fixed cost of a vaekit run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--src", type=Path, default=HERE.parent / "src", help="the vaekit source tree to measure")
    p.add_argument("--label", default="this tree")
    p.add_argument("--data-dir", default=str(HERE.parents[1] / "shared" / "data" / "mnist"))
    p.add_argument("--json", type=Path, help="also write the medians here")
    p.add_argument("vaekit_args", nargs="*", help="default: train --data.name mnist --train.epochs 1")
    args = p.parse_args(argv)
    os.environ.setdefault("VAEKIT_DATA", args.data_dir)
    vaekit_args = args.vaekit_args or ["train", "--data.name", "mnist", "--train.epochs", "1"]
    sys.path.insert(0, str(HERE))
    from machine import cpu_name

    print(f"# {args.label}: vaekit {' '.join(vaekit_args)} ({args.src})")
    print(f"{cpu_name()}, {os.cpu_count()} cores, load average {os.getloadavg()}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    one_run(args.src, vaekit_args)  # warm the page cache and any decoded-data cache: a user's second run
    runs = [one_run(args.src, vaekit_args) for _ in range(args.repeats)]
    keys = [k for k in runs[0] if all(isinstance(r.get(k), (int, float)) for r in runs)]
    med = {k: statistics.median(r[k] for r in runs) for k in keys}
    print(f"median of {args.repeats} runs (after one warm-up run):\n| part | seconds |\n|---|---|")
    for name in ORDER:
        print(f"| {name} | {'-' if name not in med else f'{med[name]:.3f}'} |")
    outside = med["wall"] - med["epochs"]
    print(f"| **wall** | **{med['wall']:.3f}** |")
    print("peak RSS (MB) when a part first ended: " + ", ".join(
        f"{k[len('peak MB after '):]} {v:.0f}" for k, v in med.items() if k.startswith("peak MB after ")))
    if "report done after (s)" in med:
        print(f"report.html (written in the background) appeared {med['report done after (s)']:.2f} s after the start")
    print(f"outside the epochs: {outside:.3f} s; epoch time (trainer's clock) {med['epoch_time_s']:.3f} s; "
          f"peak RSS {med['peak_rss_mb']:.0f} MB ({med['peak_rss_mb'] * 1e6 / 2**20:.0f} MiB); data loads per run "
          f"{med['data loads']:.0f}")
    if args.json:
        args.json.write_text(json.dumps({"label": args.label, "median": med, "runs": runs}, indent=1))
    return med


if __name__ == "__main__":
    main()
