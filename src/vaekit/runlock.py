"""One writer per run directory: an exclusive ``flock`` on ``runs/<name>/.lock``.

``vaekit train`` and ``vaekit train --resume`` hold the lock from before they change any file of the run
until they return. The lock file holds the holder's pid, host, start time and command line, so a second
writer is refused with one line naming the holder. The kernel releases a ``flock`` when its holder dies
(even by SIGKILL), so a lock file left behind is stale by construction and is simply taken over; a clean
exit removes the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from vaekit.errors import VaekitError
from vaekit.fileio import write_errors

LOCK_NAME = ".lock"


def _holder(path: Path) -> dict[str, str]:
    """The ``key=value`` lines a holder wrote into the lock file (empty while it is being written)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _refusal(run_dir: Path, path: Path) -> VaekitError:
    info = _holder(path)
    pid = info.get("pid", "unknown")
    where = f" on {info['host']}" if info.get("host") and info["host"] != socket.gethostname() else ""
    since = f", started {info['started']}" if info.get("started") else ""
    return VaekitError(f"run {run_dir} is in use by another vaekit process (pid {pid}{where}{since}); wait for "
                       f"it to finish or stop it (kill {pid}), then run the command again")


def acquire(run_dir: str | Path) -> int:
    """Take the run's lock or raise a one-line :class:`VaekitError` naming the holder; returns the locked
    file descriptor for :func:`release`. Never blocks."""
    run_dir = Path(run_dir)
    path = run_dir / LOCK_NAME
    while True:
        with write_errors(path):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _refusal(run_dir, path) from None
        except OSError:  # pragma: no cover - a file system without flock
            os.close(fd)
            raise
        # The previous holder may have removed the file between our open and our flock: then we hold a lock
        # on a file nobody else can see. Only a lock on the file at ``path`` counts; try again otherwise.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    text = (f"pid={os.getpid()}\nhost={socket.gethostname()}\nstarted={stamp}\n"
            f"command={' '.join(sys.argv)}\n").encode("utf-8", errors="replace")
    try:
        with write_errors(path):
            os.ftruncate(fd, 0)
            os.pwrite(fd, text, 0)
    except BaseException:
        release(fd, run_dir)
        raise
    return fd


def release(fd: int, run_dir: str | Path) -> None:
    """Remove the lock file, then drop the lock (in this order, so no one locks a file about to vanish
    without noticing: :func:`acquire` re-checks the inode)."""
    with contextlib.suppress(OSError):
        path = Path(run_dir) / LOCK_NAME
        if os.stat(path).st_ino == os.fstat(fd).st_ino:
            path.unlink()
    os.close(fd)


@contextlib.contextmanager
def run_lock(run_dir: str | Path) -> Iterator[Path]:
    """Hold the exclusive lock of ``run_dir`` for the block; yields the lock file's path."""
    fd = acquire(run_dir)
    try:
        yield Path(run_dir) / LOCK_NAME
    finally:
        release(fd, run_dir)
