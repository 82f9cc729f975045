"""Atomic file writes: a reader sees the old file or the new one, never half of either.

Every file vaekit writes goes through here (or through :func:`write_errors` where a library writes it):

* a failed write (disk full, read-only file system, permissions) is a one-line :class:`VaekitError`
  naming the file and the fix; the temporary file is removed and the old file, if any, is untouched;
* new files get the mode an ordinary ``open(path, "w")`` would give them (0666 minus the umask, e.g.
  0644 under umask 022), and a rewritten file keeps its mode;
* :func:`check_writable` probes an output location for real (by creating and removing a temporary file)
  before a long computation, since ``os.access`` says yes to root on a read-only folder.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from vaekit.errors import VaekitError

_FIXES = {
    errno.ENOSPC: "free space on that disk or write elsewhere",
    errno.EDQUOT: "free space within your quota or write elsewhere",
    errno.EROFS: "the file system is read-only; write elsewhere",
    errno.EACCES: "check the permissions or write elsewhere",
    errno.EPERM: "check the permissions or write elsewhere",
}


def umask() -> int:
    """The process's current umask (read without changing it where /proc allows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):  # pragma: no cover - not Linux
        pass
    old = os.umask(0o022)  # pragma: no cover - not Linux
    os.umask(old)  # pragma: no cover
    return old  # pragma: no cover


def file_mode(existing: Path | None = None) -> int:
    """The permission bits an ordinary write gives a file: those of ``existing`` when it is a file that
    exists (a rewrite keeps its mode), else 0o666 minus the umask."""
    if existing is not None:
        with contextlib.suppress(OSError):
            st = existing.stat()
            if stat.S_ISREG(st.st_mode):
                return stat.S_IMODE(st.st_mode)
    return 0o666 & ~umask()


def error_message(path: str | Path, err: BaseException, fix: str | None = None) -> str:
    """One line for a failed write of ``path``: what the system said, then the fix."""
    code = getattr(err, "errno", None)
    reason = getattr(err, "strerror", None) or str(err)
    if code is None and "os error 28" in str(err):  # safetensors wraps ENOSPC as text
        code, reason = errno.ENOSPC, os.strerror(errno.ENOSPC)
    hint = fix or _FIXES.get(code or 0, "check that the folder exists, is writable and its disk has space")
    return f"cannot write {path}: {reason}; {hint}"


def is_write_error(err: BaseException) -> bool:
    """An OSError, or a library error wrapping one (safetensors reports I/O errors as SafetensorError)."""
    if isinstance(err, OSError):
        return True
    return type(err).__name__ == "SafetensorError" and ("I/O error" in str(err) or "os error" in str(err))


@contextlib.contextmanager
def write_errors(path: str | Path, fix: str | None = None) -> Iterator[None]:
    """Turn a failed write inside the block into a one-line :class:`VaekitError` naming ``path``."""
    try:
        yield
    except Exception as err:
        if not is_write_error(err):
            raise
        raise VaekitError(error_message(path, err, fix)) from None


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes | Sequence[bytes | memoryview], fix: str | None = None) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder, fsync, then rename. ``data`` may be
    pieces written one after the other (a header and a large array's buffer, without copying the array).

    The file gets :func:`file_mode`; on any failure the temporary file is removed, ``path`` keeps its old
    content, and an OSError becomes a one-line :class:`VaekitError` naming ``path`` (``fix`` overrides
    the suggested fix)."""
    path = Path(path)
    with write_errors(path, fix):
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = file_mode(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), mode)  # mkstemp makes 0600; give what open(path, "w") would
                for piece in [data] if isinstance(data, bytes) else data:
                    f.write(piece)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str, fix: str | None = None) -> Path:
    """:func:`atomic_write_bytes` of ``text`` encoded as UTF-8."""
    return atomic_write_bytes(path, text.encode("utf-8"), fix)


def probe_folder(folder: str | Path, fix: str) -> Path:
    """Create and remove a temporary file in ``folder``: the only test of writability that holds for root
    and for read-only mounts. Raises a one-line :class:`VaekitError` (ending with ``fix``) otherwise."""
    folder = Path(folder)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".vaekit-probe.", suffix=".tmp", dir=folder)
    except OSError as err:
        raise VaekitError(f"cannot write in {folder}: {err.strerror}; {fix}") from None
    os.close(fd)
    Path(tmp).unlink(missing_ok=True)
    return folder


def check_writable(path: str | Path, option: str = "--out FILE (out= in Python)") -> Path:
    """Fail early, before any long computation, when the file ``path`` could not be written.

    ``option`` names how the user chooses another output in the message's fix."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise VaekitError(f"output path {path} is a directory; give a file name such as {path}/out.png")
    if not parent.exists():
        raise VaekitError(f"output folder {parent} does not exist; create it or choose another {option}")
    if not parent.is_dir():
        raise VaekitError(f"output folder {parent} is a file, not a folder; choose another {option}")
    probe_folder(parent, f"choose another {option} in a writable folder")
    return path
