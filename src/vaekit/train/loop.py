"""One readable training loop: schedule, step, evaluate, checkpoint, callbacks.

Read :meth:`Trainer.fit` top to bottom. The learning rate and the KL weight are pure functions of the step
(``objectives.lr_factor``, ``objectives.kl_weight``). A step never waits for the device: the loss sums,
the non-finite check and the skip decision stay on the device (fused Adam skips an update when its
``found_inf`` flag is set) and the host reads them every ``LOG_EVERY`` steps and at epoch end. Faults
(skipped steps, rollback) are :mod:`vaekit.train.faults`; where checkpoints go, :mod:`vaekit.train.stores`;
training on several processes (torchrun), :mod:`vaekit.train.dist`: the loop asks its ``group`` for its
share of each batch and for the agreements between processes, which one process answers itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vaekit.batch import Batch
from vaekit.config import Config
from vaekit.data import DataBundle
from vaekit.devices import pick_device, to_device
from vaekit.errors import VaekitError
from vaekit.inputs import spec_from_meta
from vaekit.model import VAE, build_model
from vaekit.objectives import LossOutput, Objective, kl_weight_of, lr_factor
from vaekit.schema import DataSchema
from vaekit.threads import ThreadGovernor, default_threads, use_threads
from vaekit.train import dist, faults, snapshot
from vaekit.train.adam import FusedAdam
from vaekit.train.callbacks import Callback
from vaekit.train.rng import RngStreams, own_rng
from vaekit.train.selection import Selection, selection_for
from vaekit.train.state import EpochPosition, TrainState
from vaekit.train.stores import CheckpointStore, FollowerStore, MemoryStore, RunDirStore, read_snapshot

LOG_EVERY = 25
VAL_SEED_OFFSET = 1_000_003


class Trainer:
    """Trains ``config``'s model on ``data``, into ``run_dir`` (which must exist) or, with ``run_dir=None``,
    in memory: then nothing is written, ``metrics`` holds every epoch's row, a rollback restores the
    in-memory copy of the last good checkpoint, and :meth:`best_state_dict` gives the best weights.
    ``model`` holds the last weights in both cases. Building or running a trainer never changes torch's
    global RNG: the trainer seeds and keeps its own streams (``rng``). ``selection``: what picks the best
    checkpoint besides the validation ELBO (:mod:`vaekit.train.selection`; by default the data's own:
    validation NDCG@100 for interaction data, else none). Under torch.distributed (e.g. launched by
    torchrun) the trainer is one of ``group.world_size`` processes (:mod:`vaekit.train.dist`): rank 0
    writes into ``run_dir``, the others only read its checkpoints."""

    def __init__(self, config: Config, run_dir: str | Path | None, data: DataBundle,
                 callbacks: list[Callback] | None = None, selection: Selection | None = None) -> None:
        self.config, self.callbacks, tc = config, callbacks or [], config.train
        self.selection = selection if selection is not None else selection_for(data)
        if tc.batch_size > len(data.train):
            raise VaekitError(f"train.batch_size {tc.batch_size} is larger than the {len(data.train)} training "
                              f"examples; use --train.batch_size {max(1, len(data.train) // 4)} or fewer")
        if tc.patience and len(data.val) == 0:
            raise VaekitError("train.patience needs a validation split to watch, but data.val_fraction leaves "
                              "none; set --data.val_fraction 0.1 or --train.patience 0")
        auto_threads = tc.threads < 0  # the free cores: re-decided while the run trains (_thread_governor)
        self.threads = use_threads(tc.threads)  # intra-op threads of this process at the start (vaekit.threads)
        if tc.threads < 0:  # the count chosen for the free cores is what the run saves: its resume starts from it
            tc = dataclasses.replace(tc, threads=self.threads)
            self.config = config = config.replace(train=tc)
        self.group = dist.current()
        dist.check_batches(len(data.train), tc.batch_size, self.group.world_size)
        self.device = self.group.device(pick_device(tc.device))
        self.data = to_device(data, self.device) if self.device.type == "cuda" else data  # batches stay there
        x = self.data.train.x
        self.data_device = x.device if isinstance(x, torch.Tensor) else torch.device("cpu")
        self.rng = RngStreams(tc.seed, self.device, self.data_device, self.group.rank)
        self.shuffle_rng, self.binarize_rng = self.rng.shuffle, self.rng.binarize
        with self.rng.active():  # the initial weights come from the run's seed, not the caller's stream
            schema = DataSchema.from_data(data, config.model)
            self.model: VAE = build_model(config.model, schema, data.loc, data.scale).to(self.device)
        # the loss is the forward of the (DDP-wrapped, with several processes) objective: gradients all-reduced
        self.objective = self.group.wrap(Objective.of(self.model, tc))
        self.model.input_spec = spec_from_meta({"data": data.info}, config.model.likelihood)  # as when loaded
        self.params = list(self.model.parameters())  # fixed for the run (a restore loads into these tensors)
        self.optimizer = FusedAdam(self.params, lr=tc.lr, weight_decay=tc.weight_decay)
        self._unit = torch.ones((), device=self.device)  # the non-finite check's scale: gradients kept as they are
        # bf16 steps run under autocast; float32 steps enter no context at all (it costs a step a few ops)
        self._autocast = functools.partial(torch.autocast, self.device.type, dtype=torch.bfloat16) \
            if tc.precision == "bf16" else contextlib.nullcontext
        # labels reach a step only for a model that reads them (a label-conditional VAE)
        self._labels = self.model.schema.condition == "label"
        self.steps_per_epoch = math.ceil(len(data.train) / tc.batch_size)
        self.total_steps = self.steps_per_epoch * tc.epochs
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.store: CheckpointStore = MemoryStore() if self.run_dir is None else RunDirStore(self.run_dir,
                                                                                             tc.keep_last)
        if isinstance(self.store, RunDirStore) and not self.group.is_main:
            self.store = FollowerStore(self.store)  # rank 0 writes the run
        self.ckpt_dir = self.store.ckpt_dir if isinstance(self.store, RunDirStore) else None
        self.state = TrainState(world_size=self.group.world_size, threads_auto=auto_threads)
        self._governor: ThreadGovernor | None = None
        self.metrics: list[dict[str, Any]] = []  # the run's epoch rows (after a resume: those on disk)
        self.stop_reason: str | None = None
        self.resumed_at_step: int | None = None  # set by resume(): the step of the checkpoint it continued
        self.resume_note: str | None = None  # set by resume() when it did not continue a checkpoint exactly
        self.epoch_shuffle_state = self.shuffle_rng.get_state()  # the shuffle stream at this epoch's start
        self.position: EpochPosition | None = None  # a restored mid-epoch position

    def request_stop(self, reason: str) -> None:
        """Ask the loop to stop after the current epoch (its checkpoint is written first), e.g. from a
        callback enforcing a wall-clock budget."""
        self.stop_reason = reason

    # --------------------------------------------------------------------------------- the loop
    @own_rng
    def fit(self) -> TrainState:
        """Train until ``train.epochs`` (or an early stop). ``best`` is the epoch with the highest finite
        validation ELBO, or with the highest value of the trainer's :class:`~vaekit.train.selection.Selection`
        (recorded in the metrics rows under its name), or the last epoch when there is no validation split
        (``state.selected_on``). Raises a VaekitError for a run that learned nothing
        (:func:`vaekit.train.faults.check_learned`)."""
        tc, s = self.config.train, self.state
        has_val = len(self.data.val) > 0
        select = self.selection if has_val else None
        s.selected_on = select.name if select is not None else ("val_elbo" if has_val else "last")
        for cb in self.callbacks:
            cb.on_train_start(self)
        while self.state.epoch < tc.epochs:
            metrics = self.train_epoch()
            if metrics is None:  # rolled back after non-finite steps: redo from the restored state
                continue
            val: dict[str, float | None] = dict.fromkeys(("elbo", "recon", "kl"))
            val_elbo = score = None
            if has_val:
                scores = self.group.evaluate(self.model, self.data.val, tc.batch_size, tc.seed + VAL_SEED_OFFSET)
                val_elbo = scores["elbo"]
                if not math.isfinite(val_elbo):  # a model that cannot score data is never checkpointed
                    self.rollback(reason=f"the validation ELBO is not finite ({val_elbo}) after epoch "
                                         f"{self.state.epoch + 1}")
                    continue
                val.update(scores)
            metrics.update({f"val_{k}": v for k, v in val.items()})
            if select is not None:
                score = self.group.from_main(functools.partial(self._selection_score, select))
                if not math.isfinite(score):
                    self.rollback(reason=f"the validation {select.name} is not finite ({score}) after epoch "
                                         f"{self.state.epoch + 1}")
                    continue
                metrics[select.name] = score
            s = self.state  # a rollback replaced it
            # no validation split: best = last
            improved = (score > s.best_val_score if score is not None
                        else val_elbo is None or val_elbo > s.best_val_elbo)
            if improved:
                if score is not None:
                    s.best_val_score = score
                elif val_elbo is not None:
                    s.best_val_elbo = val_elbo
                s.best_epoch, s.epochs_without_improvement = s.epoch, 0
            else:
                s.epochs_without_improvement += 1
            s.epoch += 1
            self.metrics.append(metrics)
            self.store.append_metrics(metrics)  # first: a resume truncates rows newer than its checkpoint
            early = bool(tc.patience) and s.epochs_without_improvement >= tc.patience
            # checkpointed: every N epochs, the final one, an early stop, and an improvement (so ``best``
            # names the best epoch's exact weights)
            due = ((improved and has_val) or early or s.epoch >= tc.epochs
                   or s.epoch % tc.checkpoint_every_epochs == 0)
            if due:
                self.save_checkpoint(best=improved)
            for cb in self.callbacks:
                cb.on_epoch_end(self, metrics)
            self.stop_reason = self.group.agree_stop(self.stop_reason)
            if self.stop_reason is not None:
                if not due:  # a requested stop: its epoch is the run's last, so it is checkpointed
                    self.save_checkpoint(best=not has_val)
                self.state.history.append(f"stopped at epoch {self.state.epoch}: {self.stop_reason}")
                break
            if early:
                self.state.history.append(f"early stop at epoch {self.state.epoch}")
                break
        for cb in self.callbacks:
            cb.on_train_end(self)
        faults.check_learned(self.state, self.store.label)
        return self.state

    def _selection_score(self, select: Selection) -> float:
        """``select``'s score of the model in eval mode (no dropout), the model's mode restored after."""
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                return float(select.score(self.model))
        finally:
            self.model.train(was_training)

    @own_rng
    def train_epoch(self) -> dict[str, Any] | None:
        """One pass over the training split; returns the epoch's metrics, or None after a rollback."""
        tc, split = self.config.train, self.data.train
        pos, self.position = self.position, None  # a restored mid-epoch position, or the epoch's start
        if pos is None:
            pos = EpochPosition.start(self.state.bad_streak)
        self.epoch_shuffle_state = self.shuffle_rng.get_state()  # a restored position: rewound to its start
        perm = torch.randperm(len(split), generator=self.shuffle_rng).to(self.data_device)
        t0, seen0 = time.perf_counter(), pos.seen  # this process's clock covers the samples after seen0 only
        governor = self._thread_governor()
        self.model.train()
        for b in range(pos.batch, self.steps_per_epoch):
            idx = perm[b * tc.batch_size:(b + 1) * tc.batch_size]
            rows, share = self.group.shard(idx)  # one process: all of them, share 1
            batch = split.batch_of(rows, self.binarize_rng, labels=self._labels).to(self.device, non_blocking=True)
            out, skipped = self.step(batch, share)
            faults.count_step(pos, out.loss, out.recon, out.kl, skipped, len(batch), len(idx))
            pos.batch = b + 1
            log_due = pos.batch % LOG_EVERY == 0 or pos.batch == self.steps_per_epoch
            save_due = bool(tc.checkpoint_every) and pos.batch % tc.checkpoint_every == 0 \
                and pos.batch < self.steps_per_epoch
            if (log_due or save_due) and faults.diverged(pos, tc.max_bad_steps):
                self.rollback(skipped=int(pos.sums[3]))
                return None
            if log_due:
                if governor is not None:  # another process took a core, or gave it back
                    governor.poll()
                stats = self._stats(pos, pos.seen - seen0, time.perf_counter() - t0)
                for cb in self.callbacks:
                    cb.on_log(self, stats)
            if save_due and pos.run == 0:  # never checkpoint inside a run of non-finite steps
                self.save_checkpoint(best=False, position=pos, seconds=pos.seconds + time.perf_counter() - t0)
        stats = self._stats(pos, pos.seen - seen0, time.perf_counter() - t0)
        self.state.skipped_steps += int(stats.pop("skipped"))
        self.state.bad_streak = pos.run  # carried into the next epoch (and saved with the checkpoint)
        return {"epoch": self.state.epoch + 1, "step": self.state.step, **stats,
                "kl_weight": kl_weight_of(tc, self.state.step, self.total_steps),
                "lr": self.optimizer.param_groups[0]["lr"], "skipped_steps": self.state.skipped_steps}

    def _thread_governor(self) -> ThreadGovernor | None:
        """The run's :class:`~vaekit.threads.ThreadGovernor` when it trains on the free cores (``train.threads =
        -1``, ``state.threads_auto``) in one process, else None (a distributed run keeps its count)."""
        if not self.state.threads_auto or self.group.world_size > 1:
            self._governor = None
        elif self._governor is None:
            self._governor = ThreadGovernor(default_threads())
        return self._governor

    @own_rng
    def step(self, batch: Batch, share: float = 1.0) -> tuple[LossOutput, Tensor]:
        """One optimiser step on ``batch``; returns the loss record and the on-device 'skipped' flag (0-d
        float32, 1.0 when the loss or a gradient was not finite: the update was skipped on every process).
        ``share``: the loss weight of this process's part of a distributed batch (:func:`dist.shard_rows`)."""
        tc = self.config.train
        weight = kl_weight_of(tc, self.state.step, self.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = tc.lr * self.state.lr_scale * lr_factor(self.state.step, self.total_steps, tc.lr_schedule)
        with self._autocast():
            out = self.objective(batch, weight)
        self.optimizer.zero_grad(set_to_none=True)
        (out.loss if share == 1.0 else out.loss * share).backward()
        loss = out.loss.detach()
        if tc.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.params, tc.grad_clip, foreach=True)
            bad = (~torch.isfinite(grad_norm + loss)).float()
        else:  # clipping off: one pass flags any non-finite gradient element or loss (its scaling by exactly 1
            # leaves them bit for bit as they were)
            bad = torch.zeros((), device=self.device)
            checked = [p.grad for p in self.params if p.grad is not None]
            checked.append(loss if loss.dtype == torch.float32 else loss.float())
            torch._amp_foreach_non_finite_check_and_unscale_(checked, bad, self._unit)
        bad = self.group.agree_bad(bad)  # skipped on every process
        self.optimizer.found_inf = bad  # fused Adam leaves weights and moments untouched when it is 1
        self.optimizer.step()
        self.state.step += 1
        return out, bad

    def _stats(self, pos: EpochPosition, new: int, seconds: float) -> dict[str, float]:
        """The epoch's means so far (over every process of a distributed run). ``samples_per_s`` is the
        rate of this process's clock (``new`` samples of the global batches in ``seconds``); ``epoch_time_s``
        adds the seconds spent before a mid-epoch resume."""
        faults.settle(pos)
        loss, recon, kl, bad = self.group.reduce_sums(pos.sums_tensor(self.device)).tolist()
        good = max(pos.seen - bad * self.config.train.batch_size, 1)
        return {"train_loss": loss / good, "train_recon": recon / good, "train_kl": kl / good,
                "samples_per_s": new / max(seconds, 1e-9), "epoch_time_s": pos.seconds + seconds, "skipped": bad}

    # --------------------------------------------------------------------- faults and checkpoints
    def rollback(self, skipped: int = 0, reason: str | None = None) -> None:
        """Too many non-finite steps in a row (or a non-finite validation ELBO, the ``reason``): restore
        the last good checkpoint with half the learning rate; a second time, or with no checkpoint yet,
        stop with an error. ``skipped`` (this stretch's skipped steps) stays counted. Checkpoints are never
        rewritten, so the good one is left byte-for-byte as it was."""
        reason = reason or f"{self.config.train.max_bad_steps}+ non-finite steps in a row"
        self.state.skipped_steps += skipped
        last = self.store.last_name()
        faults.check_rollback(self.state, reason, last)
        before = self.state
        snapshot.restore(self, self.store.read_last())
        faults.rolled_back(before, self.state, str(last), reason)

    def save_checkpoint(self, best: bool, position: EpochPosition | None = None, seconds: float = 0.0) -> str:
        """Keep the trainer as checkpoint ``step-<step>`` (``position``: mid-epoch, ``seconds`` into the
        epoch), as the run's ``last`` and, when ``best``, its ``best``; returns its name."""
        previous_best = self.state.best_checkpoint
        taken = snapshot.capture(self, position, seconds)
        if best:
            self.state.best_checkpoint = taken.state["best_checkpoint"] = taken.name
        try:
            self.store.save(taken, self.config, best)
        except BaseException:
            self.state.best_checkpoint = previous_best
            raise
        return taken.name

    def restore(self, path: str | Path) -> None:
        """Continue from the training checkpoint at ``path`` (see :func:`vaekit.train.snapshot.restore`)."""
        snapshot.restore(self, read_snapshot(Path(path)))

    def best_state_dict(self) -> dict[str, Tensor]:
        """The weights of the run's best checkpoint (``state.best_checkpoint``: the best validation ELBO,
        or the last epoch without a validation split), as ``model.load_state_dict`` takes them."""
        weights = self.store.best_weights()
        if weights is None:
            raise VaekitError(f"{self.store.label} has no checkpoint yet; call fit() first")
        return weights

