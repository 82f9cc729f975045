"""Training: one readable loop (:mod:`.loop`), its state (:mod:`.state`), fault handling (:mod:`.faults`),
its random streams (:mod:`.rng`), checkpoints in a run directory or in memory (:mod:`.snapshot`,
:mod:`.stores`), runs on disk (:mod:`.runs`: ``fit``, ``resume``) and training on several processes
(:mod:`.dist`: torch.distributed, launched by torchrun).

``fit(config)`` trains into ``runs/<name>/``; ``fit(config, runs_root=None)`` or
``Trainer(config, None, data).fit()`` trains in memory and writes nothing.
"""

from __future__ import annotations

from vaekit.devices import pick_device
from vaekit.scoring import evaluate_split
from vaekit.train import dist
from vaekit.train.callbacks import Callback
from vaekit.train.faults import FIX_DIVERGENCE, SKIPPED_FRACTION_LIMIT
from vaekit.train.loop import LOG_EVERY, VAL_SEED_OFFSET, Trainer
from vaekit.train.runs import continued_config, create_run_dir, fit, resume
from vaekit.train.state import EpochPosition, TrainState
from vaekit.train.stores import (
    PAUSE_BEFORE_BEST_ENV,
    CheckpointStore,
    FollowerStore,
    MemoryStore,
    RunDirStore,
    Snapshot,
)

__all__ = ["FIX_DIVERGENCE", "LOG_EVERY", "PAUSE_BEFORE_BEST_ENV", "SKIPPED_FRACTION_LIMIT", "VAL_SEED_OFFSET",
           "Callback", "CheckpointStore", "EpochPosition", "FollowerStore", "MemoryStore", "RunDirStore", "Snapshot",
           "TrainState", "Trainer", "continued_config", "create_run_dir", "dist", "evaluate_split", "fit",
           "pick_device", "resume"]
