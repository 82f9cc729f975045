"""Content fingerprints of user data, so a run can tell its own data from a look-alike.

* a file up to :data:`FULL_LIMIT` bytes: ``{"kind": "sha256", "size": bytes, "sha256": hex}`` over all
  its bytes;
* a larger file: ``kind = "sha256-head-tail"``: sha256 over the first and the last :data:`PART`
  bytes (64 MiB each) plus the size (a cheap fingerprint: an edit in the middle of a huge file is not
  seen; the kind is recorded with the run so this is never mistaken for a full hash);
* a folder of images: ``kind = "folder-sha256"``: sha256 over the sorted relative names of its image
  files, each followed by its size and its own sha256 (sizes summed in ``size``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from vaekit.data.download import sha256_file
from vaekit.errors import VaekitError

FULL_LIMIT = 1 << 30
PART = 64 << 20
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _head_tail(path: Path, size: int) -> str:
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(PART))
        f.seek(max(size - PART, 0))
        h.update(f.read(PART))
    return h.hexdigest()


def fingerprint(path: str | Path) -> dict[str, Any]:
    """The fingerprint of a data file or image folder (see the module doc)."""
    path = Path(path)
    if path.is_dir():
        h = hashlib.sha256()
        total = 0
        for p in sorted(q for q in path.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES):
            size = p.stat().st_size
            total += size
            h.update(f"{p.relative_to(path).as_posix()}\0{size}\0{sha256_file(p)}\n".encode())
        return {"kind": "folder-sha256", "size": total, "sha256": h.hexdigest()}
    size = path.stat().st_size
    if size > FULL_LIMIT:
        return {"kind": "sha256-head-tail", "size": size, "sha256": _head_tail(path, size),
                "note": f"sha256 of the size and the first and last {PART >> 20} MiB (file above "
                        f"{FULL_LIMIT >> 30} GiB)"}
    return {"kind": "sha256", "size": size, "sha256": sha256_file(path)}


def check_fingerprint(path: str | Path, recorded: dict[str, Any] | None) -> None:
    """Refuse (one line naming the file) when ``path``'s content differs from ``recorded``.

    ``recorded`` None (a run from before fingerprints) checks nothing."""
    if not recorded:
        return
    path = Path(path)
    if not path.exists():
        raise VaekitError(f"the run's data {path} no longer exist; restore the file the run was trained on, "
                          "or evaluate other data of the same kind with data.path (--data.path FILE)")
    now = fingerprint(path)
    if now.get("kind") != recorded.get("kind") or now["size"] != recorded.get("size") or \
            now["sha256"] != recorded.get("sha256"):
        raise VaekitError(f"the content of {path} differs from the data the run was trained on (size "
                          f"{now['size']} vs {recorded.get('size')}, sha256 {now['sha256'][:12]}... vs "
                          f"{str(recorded.get('sha256'))[:12]}...); restore the original file, or evaluate "
                          "this file as other data with data.path (--data.path FILE)")
