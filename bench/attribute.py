"""Where each loop's step time goes, by kind of work, measured in one process with Linux ``perf``.

bench/gap.py measures what removing a piece of vaekit's step changes; this measures where the time of a step
goes. Three contestants train short epochs on the first ``rows`` MNIST rows, alternated in one process as in
bench/gap.py: vaekit's epoch; ``both``, the same epoch with the tight loop's forward and no non-finite guard
(bench/gap.py's); and bench/tight_loop.py's epoch. The process runs under ``perf record`` (a CPU-clock sample
of each thread every 1/``freq`` s). Each sample goes to the epoch that was running at its time (both sides read
CLOCK_MONOTONIC) and to a kind of work by its symbol and library (:data:`KINDS`).

Printed per contestant: microseconds per step on the main thread, by kind, and the differences from the tight
loop. The main thread's samples add up to the step's wall time, because when it is not computing it waits in
OpenMP. The pool thread's total is printed too. Sampling slows every contestant alike by a few percent.
Needs Linux ``perf`` allowed to sample this user's processes (``kernel.perf_event_paranoid`` <= 2)::

    .venv/bin/python bench/attribute.py --rows 2560 --rounds 60 --batch 128
"""

from __future__ import annotations

import argparse
import bisect
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

#: (kind, test on "symbol (library)"), first match wins: the order matters (a guard kernel is also elementwise).
KINDS: list[tuple[str, re.Pattern[str]]] = [
    ("matrix products (MKL)", re.compile(r"^mkl_")),
    ("Adam kernel", re.compile(r"adam", re.I)),
    ("non-finite guard kernel", re.compile(r"_amp_foreach_non_finite")),
    ("uniform draws (binarisation)", re.compile(r"uniform_kernel|CPUGeneratorImpl::random")),
    ("normal draws (reparameterisation)", re.compile(r"normal_kernel|normal_fill")),
    ("other elementwise/reduction kernels",
     re.compile(r"callback_fn|VectorizedLoop|loop_2d|binary_kernel_reduce|Sleef_|reduce_kernel|_kernel_impl")),
    ("OpenMP (work sharing, waiting)", re.compile(r"\(.*libgomp[^/]*\)$")),
    ("Python interpreter", re.compile(r"\(.*libpython[^/]*\)$|\(.*/python3?[.\d]*\)$")),
    ("torch's Python bindings", re.compile(r"\(.*libtorch_python[^/]*\)$")),
    ("malloc/free", re.compile(r"^(_int_)?(malloc|free|malloc_consolidate|cfree|unlink_chunk)\W.*libc")),
    ("torch dispatch, autograd, allocator (C++)", re.compile(r"\(.*(libtorch_cpu|libc10)[^/]*\)$")),
    ("OS kernel", re.compile(r"\[kernel")),
]
LINE = re.compile(r"\s*(\d+)\s+([\d.]+):\s+(\d+)\s+\S+\s+(.*)$")  # tid, time: period (ns), ip, symbol (library)


def kind_of(symbol_and_library: str) -> str:
    """The kind of work of one sample, from ``perf script``'s "symbol (library)"."""
    for kind, test in KINDS:
        if test.search(symbol_and_library):
            return kind
    return "other"


def child(args: argparse.Namespace) -> None:
    """Train the contestants' epochs in alternation; write their CLOCK_MONOTONIC intervals to ``args.log``."""
    import vaekit  # noqa: F401, I001  before torch: vaekit's OpenMP spin bound applies, as in `vaekit train`
    import torch
    from gap import variants
    from throughput import load_mnist, make_trainer
    from tight_loop import TightLoop

    data = load_mnist(args.dir, args.rows)
    trainer = make_trainer(data, args.batch, "fp32", "cpu")
    tight = TightLoop(data.train.x, args.batch, scale=data.train.affine[0])
    epochs = variants(trainer)
    runs = {"vaekit": epochs["vaekit"], "both": epochs["both"], "tight": tight.train_epoch}
    for run in runs.values():  # warm up
        run()
        run()
    names, log = list(runs), []
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.clock_gettime(time.CLOCK_MONOTONIC)
            runs[name]()
            log.append((name, start, time.clock_gettime(time.CLOCK_MONOTONIC)))
    Path(args.log).write_text(json.dumps({"main_tid": threading.get_native_id(), "threads": torch.get_num_threads(),
                                          "steps": args.rows // args.batch, "epochs": log}))


def attribute(script_lines: list[str], record: dict) -> dict[str, dict[str, Counter[str]]]:
    """Microseconds per step by contestant, thread ('main' or 'pool') and kind, from ``perf script`` lines (each
    sample weighs its own period: perf may lower its rate)."""
    epochs = record["epochs"]
    starts = [start for _, start, _ in epochs]
    counts = Counter(name for name, _, _ in epochs)
    out: dict[str, dict[str, Counter[str]]] = {n: {"main": Counter(), "pool": Counter()} for n in counts}
    for line in script_lines:
        m = LINE.match(line)
        if m is None:
            continue
        t = float(m.group(2))
        i = bisect.bisect_right(starts, t) - 1
        if i < 0 or t > epochs[i][2]:
            continue  # start-up, warm-up, or between epochs
        name = epochs[i][0]
        thread = "main" if int(m.group(1)) == record["main_tid"] else "pool"
        out[name][thread][kind_of(m.group(4))] += int(m.group(3)) / 1e3 / (record["steps"] * counts[name])
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="where each loop's step time goes, by kind of work (Linux perf)")
    p.add_argument("--rows", type=int, default=2560, help="training rows per epoch")
    p.add_argument("--rounds", type=int, default=60)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--freq", type=int, default=4000, help="CPU-clock samples per second per thread")
    p.add_argument("--dir", default=str(HERE.parents[1] / "shared" / "data"), help="data root holding mnist/")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--log", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args)
        return
    perf = shutil.which("perf")
    if perf is None:
        sys.exit("bench/attribute.py needs Linux perf (Debian: apt install linux-perf); it was not found on PATH")
    from machine import cpu_name

    with tempfile.TemporaryDirectory(prefix="vaekit-attribute-") as tmp:
        log, data = Path(tmp) / "epochs.json", Path(tmp) / "perf.data"
        cmd = [perf, "record", "-q", "-k", "CLOCK_MONOTONIC", "-e", "cpu-clock", "-F", str(args.freq), "-o",
               str(data), "--", sys.executable, __file__, "--child", "--log", str(log), "--rows", str(args.rows),
               "--rounds", str(args.rounds), "--batch", str(args.batch), "--dir", args.dir]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0 or not log.exists():
            sys.exit(f"perf record failed (exit {done.returncode}): {done.stderr.strip()[-400:]}; check that "
                     f"kernel.perf_event_paranoid is 2 or less")
        record = json.loads(log.read_text())
        script = subprocess.run([perf, "script", "-i", str(data), "-F", "tid,time,period,ip,sym,dso"],
                                capture_output=True, text=True, check=True).stdout.splitlines()
    table = attribute(script, record)
    names = ["vaekit", "both", "tight"]
    wall = {n: 1e3 * statistics.median(b - a for m, a, b in record["epochs"] if m == n) / record["steps"]
            for n in names}
    print(f"{cpu_name()}, {record['threads']} threads, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"batch {args.batch}, {args.rows} rows, {args.rounds} rounds, {args.freq} samples/s per thread")
    print("median ms per step under perf: " + ", ".join(f"{n} {wall[n]:.3f}" for n in names))
    print("\nus per step on the main thread (both = vaekit's epoch with the tight forward and no guard):")
    print(f"| kind of work | {' | '.join(names)} | vaekit - tight | both - tight |")
    print("|---|" + "---:|" * (len(names) + 2))
    kinds = [k for k, _ in KINDS] + ["other"]
    rows = {n: table[n]["main"] for n in names}
    for kind in sorted(kinds, key=lambda k: -rows["tight"][k] - rows["vaekit"][k]):
        v, b, t = rows["vaekit"][kind], rows["both"][kind], rows["tight"][kind]
        print(f"| {kind} | {v:.1f} | {b:.1f} | {t:.1f} | {v - t:+.1f} | {b - t:+.1f} |")
    totals = {n: sum(rows[n].values()) for n in names}
    print(f"| **main thread** | {totals['vaekit']:.1f} | {totals['both']:.1f} | {totals['tight']:.1f} | "
          f"{totals['vaekit'] - totals['tight']:+.1f} | {totals['both'] - totals['tight']:+.1f} |")
    pool = {n: sum(table[n]["pool"].values()) for n in names}
    print(f"| pool thread (all kinds) | {pool['vaekit']:.1f} | {pool['both']:.1f} | {pool['tight']:.1f} | "
          f"{pool['vaekit'] - pool['tight']:+.1f} | {pool['both'] - pool['tight']:+.1f} |")


if __name__ == "__main__":
    main()
