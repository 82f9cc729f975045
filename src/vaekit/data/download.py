"""Atomic, verified downloads with urllib (no extra dependencies).

A file is streamed to a temporary file in the destination folder, fsync'ed, verified (byte length
against ``Content-Length``, sha256 and/or a content check), and only then moved into place with
``os.replace``. On any error the temporary file is deleted: a partial or corrupted file never
survives under the final name.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from vaekit.errors import VaekitError
from vaekit.fileio import error_message, file_mode, write_errors

CHUNK = 1 << 20
#: Errors of writing the local file (another mirror would not help): a one-line VaekitError naming it.
LOCAL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


def user_cache() -> Path:
    """vaekit's folder in the user cache: ``$XDG_CACHE_HOME/vaekit`` (default ``~/.cache/vaekit``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")).expanduser() / "vaekit"


def sha256_file(path: Path) -> str:
    """Hex sha256 of the bytes of ``path``."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def fetch(url: str, dest: Path, sha256: str | None = None,
          verify: Callable[[Path], None] | None = None, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically.

    ``sha256``: expected hex digest of the file bytes (checked when given). ``verify``: an extra check
    on the downloaded temporary file that raises :class:`VaekitError` (e.g. a content hash of a parsed
    array). Network errors propagate as ``urllib.error.URLError`` / ``OSError`` so the caller can try
    another mirror; a checksum or truncation failure raises :class:`VaekitError`, and so does a failure to
    write the local file (disk full, read-only: one line naming ``dest``). The file gets the mode an
    ordinary write would give it (the umask).
    """
    with write_errors(dest):
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        os.fchmod(fd, file_mode(dest))  # mkstemp makes 0600; give what an ordinary write would
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                length = resp.headers.get("Content-Length")
                received = 0
                while True:
                    block = resp.read(CHUNK)
                    if not block:
                        break
                    out.write(block)
                    received += len(block)
            if length is not None and received != int(length):
                raise VaekitError(f"download of {url} was cut off after {received} of {length} bytes; "
                                  "nothing was kept, run again to retry")
            out.flush()
            os.fsync(out.fileno())
        if sha256 is not None:
            got = sha256_file(tmp)
            if got != sha256:
                raise VaekitError(f"checksum mismatch for {url}: sha256 {got}, expected {sha256}; "
                                  "nothing was kept, retry or use another mirror (VAEKIT_MIRROR)")
        if verify is not None:
            verify(tmp)
        os.replace(tmp, dest)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(err, (urllib.error.HTTPError)):
            raise VaekitError(f"download of {url} failed: HTTP {err.code} {err.reason}; "
                              "check the mirror (VAEKIT_MIRROR) or place the file by hand") from None
        if isinstance(err, OSError) and err.errno in LOCAL_ERRNOS:  # our disk, not the mirror: say which file
            raise VaekitError(error_message(dest, err)) from None
        if isinstance(err, VaekitError | urllib.error.URLError | OSError) or not isinstance(err, Exception):
            raise
        # http.client.IncompleteRead and friends: the connection dropped midway
        raise VaekitError(f"download of {url} failed ({type(err).__name__}: {err}); "
                          "nothing was kept, run again to retry") from None
    return dest
