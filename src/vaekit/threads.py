"""CPU threads on a machine vaekit may share with other work.

torch's CPU kernels run on an OpenMP thread pool (one thread per core) whose idle threads spin at every barrier
before they sleep. When another CPU-bound process holds a core, a descheduled pool thread makes its partners spin
through hundreds of barriers per training step: on 2 cores beside one busy process, a 1.3 s MNIST epoch took
40-63 s with torch's defaults (bench/contention.py). Two measures, both measured there:

* **a short spin**: importing vaekit sets ``GOMP_SPINCOUNT=1000`` (libgomp's spin before a waiting thread
  sleeps; its default is 300,000) unless the user set ``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY``, or
  ``VAEKIT_OMP_POLICY=keep``, and only while torch is not loaded yet (OpenMP reads it once, when torch loads it).
  Quiet machine: within noise of the default (a fully passive wait, ``OMP_WAIT_POLICY=PASSIVE``, cost 80%
  there); busy machine: 3.3 s instead of 40 s for that epoch.
* **threads for the CPU that is free**, on request (``train.threads = -1``): the CPU time other processes used
  while vaekit started (imports, data loading; :func:`busy_elsewhere`) says how many cores are taken; training
  then uses the others (at least one). Beside one busy process on 2 cores: one thread, 1.9 s for that epoch,
  within the 2x a half share of the machine allows. Not the default: float sums split over threads round
  differently, so a run's numbers would depend on the load at its start (a resume would no longer reproduce an
  uninterrupted run bit for bit). ``train.threads = 0`` (default) keeps torch's count; ``N`` fixes it.
"""

from __future__ import annotations

import os
import sys
import time

ENV_KEEP = "VAEKIT_OMP_POLICY"
SPINCOUNT = "1000"


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat (None where there is none)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


_START = (time.monotonic(), _cpu_jiffies(), _own_cpu())


def bound_spinning() -> bool:
    """Set ``GOMP_SPINCOUNT`` for this process and its children when it can still take effect and the user did
    not choose; returns whether it was set here."""
    if (os.environ.get(ENV_KEEP) == "keep" or "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ
            or "torch" in sys.modules):
        return False
    os.environ["GOMP_SPINCOUNT"] = SPINCOUNT
    return True


def busy_elsewhere(min_window: float = 0.3) -> float | None:
    """Cores' worth of CPU that other processes used since vaekit was imported (all CPUs' busy time minus this
    process's own), or None when the window is shorter than ``min_window`` seconds or /proc/stat is missing."""
    t0, j0, own0 = _START
    j1 = _cpu_jiffies()
    wall = time.monotonic() - t0
    if j0 is None or j1 is None or wall < min_window or j1[1] == j0[1]:
        return None
    cores = os.cpu_count() or 1
    busy_cores = (j1[0] - j0[0]) / (j1[1] - j0[1]) * cores  # all processes, in cores
    return max(0.0, busy_cores - (_own_cpu() - own0) / wall)


def choose_threads(requested: int) -> int:
    """The intra-op thread count for training: ``requested`` when >= 1, torch's count for 0, and for -1 torch's
    count less the cores other processes kept busy while vaekit started (at least 1)."""
    import torch

    if requested > 0:
        return requested
    default = torch.get_num_threads()
    if requested == 0:
        return default
    others = busy_elsewhere()
    if others is None or others < 0.5:
        return default
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(default, round(usable - others)))


def use_threads(requested: int) -> int:
    """Set torch's intra-op thread count to :func:`choose_threads` ``(requested)``; returns it."""
    import torch

    n = choose_threads(requested)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
