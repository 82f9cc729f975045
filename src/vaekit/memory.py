"""glibc's malloc and torch's large CPU temporaries.

torch allocates CPU tensors with ``malloc``. glibc serves a block above its mmap threshold (128 KiB at first, raised
on its own towards the largest block freed so far) as a fresh memory mapping, and gives the top of its heap back to
the operating system once more than twice that threshold lies free there. The importance-sampled log p(x) frees and
allocates blocks of a few MB (one chunk's logits: 250 x 8 x 784 float32 = 6.3 MB) hundreds of times a second, so
those blocks kept coming back as fresh pages, each one faulted in and zeroed by the kernel: 3.07 million page faults
and 14.6 s for 400 MNIST points at k = 5000 in a fresh process, against 6,600 faults and 10.0 s with the limits below
and the same estimate to the last bit (2-core EPYC, 2026-12-07, issue #15).

Importing vaekit therefore sets, through ``mallopt`` (glibc only; elsewhere nothing changes):

* ``M_MMAP_THRESHOLD`` to 32 MiB, glibc's largest (a fixed value also ends the automatic adjustment): blocks up to
  that size come from the heap and are reused;
* ``M_TRIM_THRESHOLD`` to 128 MiB: at most that much freed memory stays with the process at the top of its heap.

It leaves malloc alone when the user chose its settings (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``,
``GLIBC_TUNABLES``) or set ``VAEKIT_MALLOC=keep``.
"""

from __future__ import annotations

import os
import sys

ENV_KEEP = "VAEKIT_MALLOC"
#: the user's own choices, which vaekit never overrides
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 128 << 20


def reuse_large_blocks() -> bool:
    """Set the two limits above unless the user chose; returns whether both were set here."""
    if (os.environ.get(ENV_KEEP) == "keep" or any(k in os.environ for k in USER_SETTINGS)
            or not sys.platform.startswith("linux")):
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's C library; musl has no mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
