"""The export folder: written whole or not at all.

Files are written into a hidden temporary folder beside ``out`` (same file system), each atomically
(:mod:`vaekit.fileio`); only when every file is there is the folder renamed to ``out``. A failure at
any point removes the temporary folder and leaves ``out`` as it was. An existing non-empty ``out`` is
refused unless ``force``; even then only a folder holding nothing but a previous export's files is
replaced (so ``--force`` cannot delete a run or other data by a typo in ``--out``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from vaekit.errors import VaekitError
from vaekit.fileio import fsync_dir, umask, write_errors


def check_out(out: Path, force: bool, ours: Iterable[str]) -> None:
    """Refuse ``out`` before any work: a file, a non-empty folder without ``force``, or (with ``force``) a
    folder holding anything but the file names ``ours``; a missing parent folder."""
    if out.exists() and not out.is_dir():
        raise VaekitError(f"--out {out} is a file; give a folder name (it is created) such as {out}-onnx")
    if out.is_dir():
        present = sorted(p.name for p in out.iterdir())
        if present and not force:
            raise VaekitError(f"--out {out} exists and is not empty; give a new folder, or --force to replace a "
                              "previous export there")
        foreign = [name for name in present if name not in set(ours)]
        if foreign:
            raise VaekitError(f"--out {out} holds files an export does not write ({', '.join(foreign[:3])}); "
                              "--force replaces only a previous export, give another folder")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise VaekitError(f"the folder {parent} of --out {out} does not exist; create it or give another --out")


@contextlib.contextmanager
def staged(out: Path, force: bool, ours: Iterable[str]) -> Iterator[Path]:
    """A temporary folder to write the export into; on a clean exit it becomes ``out`` (replacing a
    previous export there when ``force``), on an exception it is removed and ``out`` is untouched."""
    ours = tuple(ours)
    check_out(out, force, ours)
    parent = out.parent if str(out.parent) else Path(".")
    with write_errors(parent):
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes 0700; give what mkdir would
        check_out(out, force, ours)  # again: nothing appeared meanwhile
        with write_errors(out):
            if out.is_dir() and any(out.iterdir()):
                old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=parent))
                os.replace(out, old)  # out -> aside (atomic), then the new export in its place
                os.replace(tmp, out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, out)  # rename(2) replaces an empty folder
            fsync_dir(parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

