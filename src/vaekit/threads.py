"""CPU threads on a machine vaekit may share with other work.

torch's CPU kernels run on an OpenMP thread pool, one thread per core by default, whose threads by default
*spin* at every barrier waiting for the others. When another CPU-bound process holds a core, one of the pool's
threads is descheduled and its partner spins for the whole time slice at every one of the hundreds of
barriers of a training step: measured on 2 cores beside one busy process, a 1.2 s MNIST epoch took 45-63 s
(bench/contention.py). With passive waiting (``OMP_WAIT_POLICY=PASSIVE``: a waiting thread sleeps) the same
epoch took 2.1-2.6 s, in proportion to the CPU left; on a quiet machine the cost is small (bench/RESULTS.md).

So importing vaekit sets ``OMP_WAIT_POLICY=PASSIVE`` unless the user set ``OMP_WAIT_POLICY`` (respected) or
``VAEKIT_OMP_POLICY=keep``, and only while torch is not loaded yet: OpenMP reads the variable once, when
torch first loads it (a program that imports torch before vaekit keeps its policy; set the variable
yourself there). The thread count is ``train.threads`` (0 = torch's own count).
"""

from __future__ import annotations

import os
import sys

ENV_KEEP = "VAEKIT_OMP_POLICY"


def prefer_passive_wait() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` for this process and its children when it can still take effect and
    the user did not choose; returns whether it was set here."""
    if os.environ.get(ENV_KEEP) == "keep" or "OMP_WAIT_POLICY" in os.environ or "torch" in sys.modules:
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


def use_threads(threads: int) -> None:
    """torch's intra-op thread count for this process: ``threads`` (>= 1), or left as it is for 0."""
    if threads > 0:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
