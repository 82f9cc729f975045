"""A trainer as a checkpoint and back: what :class:`~vaekit.train.Trainer` saves and restores.

A snapshot holds the model's weights, the optimiser state (keyed by parameter name, see
:func:`vaekit.checkpoint.optimizer_tensors`), every RNG stream, the counters (:class:`TrainState`) and,
mid-epoch, the epoch's position. :func:`restore` reads and checks everything before it changes anything.
In a distributed run (:mod:`vaekit.train.dist`) a snapshot holds every process's RNG streams and the
epoch's sums over all processes; each process restores its own streams.
"""

from __future__ import annotations

import copy
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaekit import checkpoint as ckpt
from vaekit.errors import VaekitError
from vaekit.train import dist, faults
from vaekit.train.rng import KEYS as RNG_KEYS
from vaekit.train.rng import RngStreams
from vaekit.train.state import POSITION_KEYS, EpochPosition, TrainState
from vaekit.train.stores import Snapshot

if TYPE_CHECKING:
    from vaekit.train.loop import Trainer


def capture(trainer: Trainer, position: EpochPosition | None = None, seconds: float = 0.0) -> Snapshot:
    """The trainer as it stands (the live tensors, not copies: the store copies or writes them). A
    mid-epoch ``position`` saves the epoch's partial sums, ``seconds`` spent on it so far, and the shuffle
    stream as it was at the epoch's start (a resume redraws the same order). Every process of a distributed
    run calls it at the same point: it gathers their RNG states and sums."""
    state: dict[str, Any] = {**vars(trainer.state), "batch_in_epoch": position.batch if position else 0}
    tensors = trainer.group.all_rng(trainer.rng.state_tensors(trainer.epoch_shuffle_state if position else None))
    if position is not None:
        faults.settle(position)
        tensors.update(position.to_tensors(seconds, trainer.group.reduce_sums(position.sums_tensor(trainer.device))))
    tensors.update(ckpt.optimizer_tensors(trainer.model, trainer.optimizer))
    meta = {**ckpt.model_meta(trainer.model), "data": trainer.data.info, "step": trainer.state.step,
            "epoch": trainer.state.epoch}
    return Snapshot(f"step-{trainer.state.step:09d}", trainer.model.state_dict(), tensors, state, meta)


def restore(trainer: Trainer, snapshot: Snapshot) -> None:
    """Load weights, optimiser, RNG streams, counters and any mid-epoch position from ``snapshot``.
    Everything is read and checked before anything is changed; a damaged or foreign trainer state is one
    line naming the snapshot's source.

    A checkpoint written on another device type (CUDA <-> CPU) restores too: RNG states that fit this
    device are restored, those that cannot (a CUDA generator's 16-byte Philox state into a CPU
    generator, or back) are re-seeded deterministically from the step, and the run's history notes
    that the continuation is not bit-identical to an uninterrupted run. So does a checkpoint written by
    another number of processes (:func:`vaekit.train.dist.world_note`): a process the checkpoint has no
    streams for seeds fresh ones from the step."""
    where, tensors, raw_state, weights = snapshot.source, snapshot.tensors, snapshot.state, snapshot.weights
    known = {f.name for f in fields(TrainState)}
    try:
        if not set(raw_state) <= known:
            raise TypeError(f"unknown fields {sorted(set(raw_state) - known)}")
        state = TrainState(**raw_state)
        if not 0 <= state.batch_in_epoch < trainer.steps_per_epoch:
            raise ValueError(f"batch_in_epoch {state.batch_in_epoch} outside 0..{trainer.steps_per_epoch - 1}")
        needed = [*RNG_KEYS, *(POSITION_KEYS if state.batch_in_epoch else ())]
        missing = [k for k in needed if k not in tensors]
        if missing:
            raise KeyError(f"missing tensors {missing}")
        opt_state = ckpt.optimizer_state(trainer.model, tensors)
        group, seed = trainer.group, trainer.config.train.seed + state.step
        own = dist.rank_rng_tensors(tensors, group.rank, state.world_size, lambda: RngStreams(
            seed, trainer.device, trainer.data_device, group.rank).state_tensors())
        rng_states, reseed, note = trainer.rng.plan(own, state.step)
    except (TypeError, ValueError, KeyError) as err:
        raise VaekitError(f"{where} has an invalid trainer state ({err}); it is tampered or from another "
                          "run, resume from another checkpoint") from None
    current = trainer.model.state_dict()
    if set(weights) != set(current) or any(weights[k].shape != v.shape for k, v in current.items()):
        ckpt.load_weights(copy.deepcopy(trainer.model), Path(where), weights)  # its one-line error, on a copy
    # ---- checked: from here on, state changes
    ckpt.load_weights(trainer.model, Path(where), weights)
    sd = trainer.optimizer.state_dict()
    sd["state"] = opt_state
    trainer.optimizer.load_state_dict(sd)  # every tensor on its parameter's device, 'step' too (as fused Adam keeps it)
    trainer.rng.load(rng_states, reseed, trainer.config.train.seed + state.step)
    notes = [n for n in (note, dist.world_note(state.step, state.world_size, group.world_size)) if n]
    if notes:
        state.history.extend(notes)
        trainer.resume_note = "\n".join(notes)
    state.world_size = group.world_size
    trainer.state = state
    trainer.position = EpochPosition.from_tensors(state.batch_in_epoch, tensors) if state.batch_in_epoch else None
    if trainer.position is not None and not group.is_main:  # the saved sums are all processes': rank 0's share
        trainer.position.sums[:3] = [0.0, 0.0, 0.0]
    trainer.metrics = trainer.store.truncate_metrics(state.epoch)
