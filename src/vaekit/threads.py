"""CPU threads on a machine vaekit may share with other work.

torch's CPU kernels run on an OpenMP thread pool (one thread per core) whose idle threads spin at every barrier
before they sleep. When another CPU-bound process holds a core, a descheduled pool thread makes its partners spin
through hundreds of barriers per training step: on 2 cores beside one busy process, a 1.3 s MNIST epoch took
40-63 s with torch's defaults (bench/contention.py). What vaekit does about it, each measured there:

* **a bounded spin**: importing vaekit sets ``GOMP_SPINCOUNT=5000`` (libgomp's spin before a waiting thread
  sleeps: more than 100 us here; its default is 300,000) unless the user set ``GOMP_SPINCOUNT`` or
  ``OMP_WAIT_POLICY``, or ``VAEKIT_OMP_POLICY=keep``, and only while torch is not loaded yet (OpenMP reads it
  once, when torch loads it). Busy machine: 2 threads beside one busy process took 3.3 s instead of 40 s for that
  epoch at 1000, and 5-6x the quiet epoch at 5000; the free-core choice below keeps a run off the taken core, so
  only a fixed count pays that. Quiet machine: at 1000 (the bound until 2026-12-07) the pool thread slept through
  any serial stretch longer than about 25 us, and waking it cost the next parallel op 25-35 us: about 10% of a
  quiet epoch, and batch 128 at 0.93-0.94 of a tight loop's speed against 0.96 at 5000
  (``bench/spin_sweep.py``). A fully passive wait (``OMP_WAIT_POLICY=PASSIVE``) cost 80%.
* **threads for the CPU that is free**, by default (``train.threads = -1``): the CPU time other processes used
  while vaekit started (imports, data loading; :func:`busy_elsewhere`) says how many cores are taken; training
  then uses the others (at least one). Beside one busy process on 2 cores: one thread, 1.38x the best quiet
  epoch time, within the 2x a half share of the machine allows, where torch's own count took 2.57x. The count at
  the start is decided once per process (every later run in it starts with the same) and written into the run's
  saved config, so a resume starts with the count the run started with.
* **and while the run trains**: a process that starts computing after the run chose its threads found it on every
  core, and 2 threads waiting for each other beside it took 3.1x the quiet epoch (6.0x at a spin of 5000). So at
  the trainer's log points, 2 s or more apart, a :class:`ThreadGovernor` measures the CPU other processes used since
  its last look and sets the count to the cores they left, up to torch's own count: 1.51-1.82x in seven runs, as
  close to 2x as one fixed thread (``bench/contention.py --late``). A resumed run goes on doing so, unless its
  resume fixes the count. Float sums split over a different number of threads can round differently (a conv VAE's
  weights did; the MLP models' were bit-identical with 1 and 2 threads). For runs whose last bits must not depend
  on the machine's load, fix the count with ``train.threads = N``; ``0`` keeps torch's count (one per core).
* **and while it evaluates**: ``vaekit eval`` chooses its count the same way (``eval.threads``) and follows the load
  through :func:`following_load`, whose governor its loops poll (:func:`poll_load`): beside a busy loop, 1.83x the
  best quiet time where torch's defaults took 3.30x (``bench/eval_contention.py``).
* **vaekit's own background work does not count as load**: the report a finished ``vaekit train`` leaves to a
  detached process registers itself (:func:`register_background`) and gives way to other work (the lowest
  priority of its scheduling group), so the next run of a sweep, started while that report is still being
  written, still trains on every core.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ENV_KEEP = "VAEKIT_OMP_POLICY"
SPINCOUNT = "5000"
#: Set by ``vaekit train`` in the environment of the report process it leaves running (:func:`register_background`).
ENV_BACKGROUND = "VAEKIT_BACKGROUND"


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


def background_dir() -> Path:
    """Where vaekit's background processes of this user register (one empty file per pid)."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"vaekit-background-{uid}"


def register_background() -> None:
    """Mark this process as vaekit's own background work (the report ``vaekit train`` leaves to a detached
    process): it yields the CPU to everything else, and a training that starts meanwhile does not count its CPU
    as taken (:func:`busy_elsewhere`). At exit the mark keeps the process's final CPU seconds, so a report that
    ends while a training measures its start-up window is still counted as background."""
    with contextlib.suppress(OSError, AttributeError):
        if os.getsid(0) == os.getpid():  # a session of its own (the detached report): its scheduling group is
            Path("/proc/self/autogroup").write_text("19")  # its alone, so the group's share may be the lowest
    with contextlib.suppress(OSError):
        os.nice(19)
    folder = background_dir()
    mark = folder / str(os.getpid())
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        mark.write_text("")  # empty: alive (a pid reused from an exited mark starts afresh)
    except OSError:
        return
    atexit.register(_write_final, mark)


def _write_final(mark: Path) -> None:
    """Replace this process's (empty) background ``mark`` by its CPU seconds so far, atomically."""
    t = os.times()
    tmp = mark.with_name(mark.name + ".tmp")
    with contextlib.suppress(OSError):
        tmp.write_text(repr(t.user + t.system))
        os.replace(tmp, mark)


#: A start-up window older than this (seconds) no longer says what the machine does now (a notebook, a test
#: session): :func:`busy_elsewhere` then samples the load afresh for ``min_window`` seconds.
STALE_S = 60.0
#: A final mark (an exited background process's CPU seconds) older than this is removed by the next reader: a
#: window reaching further back is never measured (it is stale after :data:`STALE_S`), so the mark can no longer
#: be part of one.
FINAL_MARK_TTL_S = 2 * STALE_S


def _background_cpu() -> dict[str, float]:
    """CPU seconds used so far by each registered background process, by pid: a live one's from /proc, an exited
    one's from the final figure its mark holds (a window's share is the difference of two readings,
    :func:`cpu_window`). Marks of processes killed before they wrote one, and old final marks, are removed."""
    folder = background_dir()
    try:
        names = [n for n in os.listdir(folder) if n.isdigit()]
    except OSError:
        return {}
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for name in names:
        mark = folder / name
        try:
            final = mark.read_text().strip()
            if final:  # the process has exited: its last CPU figure, until the mark is old
                if time.time() - mark.stat().st_mtime > FINAL_MARK_TTL_S:
                    mark.unlink(missing_ok=True)
                else:
                    out[name] = float(final)
                continue
            if b"vaekit" not in Path(f"/proc/{name}/cmdline").read_bytes():  # a reused pid: not ours
                raise FileNotFoundError(name)
            fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
            out[name] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        except FileNotFoundError:
            mark.unlink(missing_ok=True)  # its process is gone (killed before its atexit ran)
        except (OSError, ValueError, IndexError):
            continue
    return out


def _background_delta(before: dict[str, float], after: dict[str, float]) -> float:
    """CPU seconds the registered background processes used between two :func:`_background_cpu` readings (a
    process registered in between counts whole; one whose mark was removed in between counts nothing)."""
    return sum(max(0.0, cpu - before.get(pid, 0.0)) for pid, cpu in after.items())


def bound_spinning() -> bool:
    """Set ``GOMP_SPINCOUNT`` for this process and its children when it can still take effect and the user did
    not choose; returns whether it was set here."""
    if (os.environ.get(ENV_KEEP) == "keep" or "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ
            or "torch" in sys.modules):
        return False
    os.environ["GOMP_SPINCOUNT"] = SPINCOUNT
    return True


#: The free-core count of ``train.threads = -1``, decided by the first run of this process (:func:`choose_threads`).
_AUTO: int | None = None


def cpu_window(min_window: float = 0.3) -> tuple[float, float, float] | None:
    """CPU used since vaekit was imported, in cores (CPU seconds per second): (all processes, this process,
    vaekit's registered background processes), or None when the window is shorter than ``min_window`` seconds
    or /proc/stat is missing. A process that imported vaekit more than :data:`STALE_S` seconds ago waits
    ``min_window`` seconds and measures that window instead."""
    start = _START
    if time.monotonic() - start[0] > STALE_S:
        start = _reading()
        time.sleep(min_window)
    end = _reading()
    if end[0] - start[0] < min_window:
        return None
    return _window(start, end)


#: (monotonic seconds, /proc/stat (busy, total) jiffies or None, own CPU seconds, background CPU by pid)
Reading = tuple[float, tuple[int, int] | None, float, dict[str, float]]


def _reading() -> Reading:
    """(monotonic seconds, /proc/stat jiffies, this process's CPU seconds, background CPU seconds by pid) now."""
    return time.monotonic(), _cpu_jiffies(), _own_cpu(), _background_cpu()


def _window(start: Reading, end: Reading) -> tuple[float, float, float] | None:
    """CPU used between two readings, in cores: (all processes, this process, vaekit's registered background
    processes); None when /proc/stat is missing or no time passed."""
    (t0, j0, own0, bg0), (t1, j1, own1, bg1) = start, end
    wall = t1 - t0
    if j0 is None or j1 is None or wall <= 0 or j1[1] == j0[1]:
        return None
    busy_cores = (j1[0] - j0[0]) / (j1[1] - j0[1]) * (os.cpu_count() or 1)  # all processes, in cores
    return busy_cores, (own1 - own0) / wall, _background_delta(bg0, bg1) / wall


_START = _reading()


def busy_elsewhere(min_window: float = 0.3) -> float | None:
    """Cores' worth of CPU that other processes used since vaekit was imported (:func:`cpu_window`: all
    processes' less this process's own and vaekit's registered background processes'), or None."""
    window = cpu_window(min_window)
    return None if window is None else _elsewhere(window)


def _elsewhere(window: tuple[float, float, float]) -> float:
    """Cores' worth of CPU other processes used in a window (:func:`_window`): all processes' less this
    process's own and vaekit's registered background processes'."""
    everyone, mine, background = window
    return max(0.0, everyone - mine - background)


def choose_threads(requested: int) -> int:
    """The intra-op thread count for training: ``requested`` when >= 1, torch's count for 0, and for -1 torch's
    count less the cores other processes kept busy while vaekit started (at least 1), decided once per process."""
    global _AUTO
    import torch

    default = default_threads()
    if requested > 0:
        return requested
    if requested == 0:
        return torch.get_num_threads()
    if _AUTO is None:
        _AUTO = free_count(default, busy_elsewhere())
    return _AUTO


#: torch's intra-op thread count before vaekit first chose one (:func:`default_threads`).
_DEFAULT: int | None = None


def default_threads() -> int:
    """torch's thread count as this process had it when vaekit first chose one (one per core unless the user
    set it): the most a run with ``train.threads = -1`` uses."""
    global _DEFAULT
    if _DEFAULT is None:
        import torch

        _DEFAULT = torch.get_num_threads()
    return _DEFAULT


def free_count(default: int, others: float | None) -> int:
    """``default`` threads less the ``others`` cores' worth of CPU other processes use (at least 1); ``default``
    when they use less than half a core or the load is unknown (None)."""
    if others is None or others < 0.5:
        return default
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(default, round(usable - others)))


#: How often (seconds) a run with ``train.threads = -1`` looks at the load again (:class:`ThreadGovernor`).
GOVERN_PERIOD_S = 2.0


class ThreadGovernor:
    """The free cores of ``train.threads = -1`` kept up to date while a run trains.

    Called at least ``period_s`` seconds after its last look (the trainer calls it at its log points, every 25
    steps), :meth:`poll` measures the CPU that other processes used since then (as :func:`busy_elsewhere` does at
    the start) and sets torch's thread count to the cores they left free, at most ``ceiling``. A process that
    starts computing beside the run so takes its core within ``period_s`` and one log interval. Otherwise 2 threads
    on 2 cores wait for each other at every barrier of a step, because the other process holds one of the cores:
    3-6x the quiet epoch, where half the machine explains 2x (bench/contention.py ``--late``). When it stops, the run
    takes the cores back. ``period_s`` defaults to :data:`GOVERN_PERIOD_S`. ``others``: the cores' worth of CPU
    other processes used in the last window measured (None before one). ``changes``: (seconds since the governor
    started, new count) of each change."""

    def __init__(self, ceiling: int, period_s: float | None = None) -> None:
        self.ceiling = ceiling
        self.period_s = GOVERN_PERIOD_S if period_s is None else period_s
        self._last = _reading()
        self._t0 = self._last[0]
        self.others: float | None = None
        self.changes: list[tuple[float, int]] = []

    def poll(self) -> int | None:
        """Look at the load when ``period_s`` has passed since the last look; returns the new thread count when
        it changed, else None. Cheap when not due (one clock read): call it as often as convenient."""
        if time.monotonic() - self._last[0] < self.period_s:
            return None
        now = _reading()
        window, self._last = _window(self._last, now), now
        if window is None:
            return None
        self.others = _elsewhere(window)
        n = free_count(self.ceiling, self.others)
        import torch

        if n == torch.get_num_threads():
            return None
        torch.set_num_threads(n)
        self.changes.append((now[0] - self._t0, n))
        return n


def use_threads(requested: int) -> int:
    """Set torch's intra-op thread count to :func:`choose_threads` ``(requested)``; returns it."""
    import torch

    n = choose_threads(requested)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


#: The governor of the job that runs now in this process outside training (:func:`following_load`).
_ACTIVE: ThreadGovernor | None = None


@contextlib.contextmanager
def following_load(requested: int) -> Iterator[int]:
    """Run a long CPU job other than training (``vaekit eval``) on :func:`choose_threads` ``(requested)``
    threads, as a run with ``train.threads = requested`` trains. With -1 (the free cores), the job also
    follows the load while it runs: its loops call :func:`poll_load`, and a :class:`ThreadGovernor` sets the
    count to the cores other processes leave free. At exit, torch's count and the outer job's governor come
    back. Yields the count at the start."""
    global _ACTIVE
    import torch

    before, outer = torch.get_num_threads(), _ACTIVE
    n = use_threads(requested)
    _ACTIVE = ThreadGovernor(default_threads()) if requested < 0 else None
    try:
        yield n
    finally:
        _ACTIVE = outer
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def poll_load() -> None:
    """Let the governor of the job running now (:func:`following_load`) look at the load when it is due; a
    no-op outside such a job. Cheap (one clock read when not due), so loops call it once per block."""
    if _ACTIVE is not None:
        _ACTIVE.poll()
