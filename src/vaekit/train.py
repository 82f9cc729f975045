"""One readable training loop: schedule, step, evaluate, checkpoint, callbacks.

Read ``Trainer.fit`` top to bottom. The learning rate and the KL weight are pure functions of the step
(``objectives.lr_factor``, ``objectives.kl_weight``). A step never waits for the device: the loss sums,
the non-finite check and the skip decision stay on the device (fused Adam skips an update when its
``found_inf`` flag is set) and the host reads them every ``LOG_EVERY`` steps and at epoch end.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from vaekit import checkpoint as ckpt
from vaekit.batch import Batch
from vaekit.bounds import elbo_terms
from vaekit.config import Config, config_to_toml
from vaekit.data import DataBundle, Split, load_data, load_run_data
from vaekit.errors import VaekitError
from vaekit.fileio import atomic_write_text, write_errors
from vaekit.inputs import spec_from_meta, trusted
from vaekit.model import VAE, build_model
from vaekit.objectives import LossOutput, Objective, kl_weight, lr_factor
from vaekit.runlock import run_lock
from vaekit.schema import DataSchema

LOG_EVERY = 25
VAL_SEED_OFFSET = 1_000_003
# A run that skipped at least this fraction of its steps (non-finite loss or gradients) learned nothing.
SKIPPED_FRACTION_LIMIT = 0.9
FIX_DIVERGENCE = "lower --train.lr or set --train.grad_clip, and check the data for NaN/inf"
# Test hook: seconds to sleep between writing the ``last`` and the ``best`` pointers, so a test can kill
# the process in between (the torn state that the trainer state's ``best_checkpoint`` repairs).
PAUSE_BEFORE_BEST_ENV = "VAEKIT_TEST_PAUSE_BEFORE_BEST"


def pick_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu. Asking for cuda without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VaekitError("train.device is 'cuda' but no CUDA device is available; use --train.device cpu")
    return torch.device(name)


@torch.no_grad()
def evaluate_split(model: VAE, split: Split, batch_size: int, seed: int, n_samples: int = 1) -> dict[str, float]:
    """Mean per-example ELBO, reconstruction and KL (nats) over a split, with fixed noise ``seed`` and
    ``n_samples`` Monte-Carlo samples per point for the reconstruction term. An empty split has no mean:
    that is an error, never an ELBO of 0."""
    device = next(model.parameters()).device
    n = len(split)
    if n == 0:
        raise VaekitError("cannot evaluate a split with no examples; give the data a validation or test split "
                          "(data.val_fraction / data.test_fraction, e.g. --data.val_fraction 0.1)")
    totals = torch.zeros(3, dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), trusted(model):
        torch.manual_seed(seed)
        for start in range(0, n, batch_size):
            batch = split.batch_of(torch.arange(start, min(start + batch_size, n))).to(device)
            out = elbo_terms(model, batch, n_samples=n_samples)
            totals += torch.stack([out.elbo.sum(), out.recon.sum(), out.kl.sum()]).double()
    model.train(was_training)
    elbo, recon, kl = (totals / n).tolist()
    return {"elbo": elbo, "recon": recon, "kl": kl}


class Callback:
    """Hooks the loop calls; override what you need. ``metrics`` are the epoch's logged numbers."""

    def on_train_start(self, trainer: Trainer) -> None: ...
    def on_log(self, trainer: Trainer, stats: dict[str, float]) -> None: ...
    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None: ...
    def on_train_end(self, trainer: Trainer) -> None: ...


@dataclass
class TrainState:
    """Everything besides tensors that a resumed run needs (saved as trainer.json)."""

    step: int = 0
    epoch: int = 0
    best_val_elbo: float = -math.inf
    best_epoch: int = -1
    epochs_without_improvement: int = 0
    skipped_steps: int = 0
    rollbacks: int = 0
    lr_scale: float = 1.0
    history: list[str] = field(default_factory=list)
    batch_in_epoch: int = 0  # > 0 in a mid-epoch checkpoint: the batches of ``epoch`` already done
    bad_streak: int = 0  # non-finite steps in a row at the end of epoch ``epoch``: the streak goes on
    best_checkpoint: str | None = None  # the best checkpoint's name; the copy in ``last``'s state is the truth
    selected_on: str = "val_elbo"  # what picks ``best``: "val_elbo", or "last" without a validation split


class Trainer:
    """Trains ``config``'s model on ``data`` into ``run_dir`` (which must exist)."""

    def __init__(self, config: Config, run_dir: Path, data: DataBundle, callbacks: list[Callback] | None = None):
        self.config, self.run_dir, self.data = config, Path(run_dir), data
        self.callbacks = callbacks or []
        tc = config.train
        if tc.batch_size > len(data.train):
            raise VaekitError(f"train.batch_size {tc.batch_size} is larger than the {len(data.train)} training "
                              f"examples; use --train.batch_size {max(1, len(data.train) // 4)} or fewer")
        if tc.patience and len(data.val) == 0:
            raise VaekitError("train.patience needs a validation split to watch, but data.val_fraction leaves "
                              "none; set --data.val_fraction 0.1 or --train.patience 0")
        self.device = pick_device(tc.device)
        torch.manual_seed(tc.seed)
        schema = DataSchema.from_data(data, config.model)
        self.model: VAE = build_model(config.model, schema, data.loc, data.scale).to(self.device)
        self.objective = Objective(self.model, tc.objective, tc.n_samples)
        self.model.input_spec = spec_from_meta({"data": data.info}, config.model.likelihood)  # as when loaded
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay,
                                          fused=True)
        if self.device.type == "cuda":  # in-memory splits live on the GPU: batches never cross the bus
            self.data = data = _to_device(data, self.device)
        self.data_device = data.train.x.device if isinstance(data.train.x, torch.Tensor) else torch.device("cpu")
        self.shuffle_rng = torch.Generator().manual_seed(tc.seed)
        self.binarize_rng = torch.Generator(device=self.data_device).manual_seed(tc.seed + 1)
        self.steps_per_epoch = math.ceil(len(data.train) / tc.batch_size)
        self.total_steps = self.steps_per_epoch * tc.epochs
        self.state = TrainState()
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.stop_reason: str | None = None
        self.resumed_at_step: int | None = None  # set by resume(): the step of the checkpoint it continued
        self.resume_note: str | None = None  # set by resume() when it did not continue a checkpoint exactly
        self.epoch_shuffle_state = self.shuffle_rng.get_state()  # the shuffle stream at this epoch's start
        self._position: dict[str, torch.Tensor] | None = None  # a restored mid-epoch position

    def request_stop(self, reason: str) -> None:
        """Ask the loop to stop after the current epoch (its checkpoint is written first), e.g. from a
        callback enforcing a wall-clock budget."""
        self.stop_reason = reason

    # --------------------------------------------------------------------------------- the loop
    def fit(self) -> TrainState:
        """Train until ``train.epochs`` (or an early stop). ``best`` is the epoch with the highest finite
        validation ELBO, or the last epoch when there is no validation split (``state.selected_on``). Raises
        a VaekitError for a run that learned nothing (see :meth:`check_learned`)."""
        tc = self.config.train
        has_val = len(self.data.val) > 0
        self.state.selected_on = "val_elbo" if has_val else "last"
        for cb in self.callbacks:
            cb.on_train_start(self)
        while self.state.epoch < tc.epochs:
            metrics = self.train_epoch()
            if metrics is None:  # rolled back after non-finite steps: redo from the restored state
                continue
            val: dict[str, float | None] = dict.fromkeys(("elbo", "recon", "kl"))
            val_elbo = None
            if has_val:
                scores = evaluate_split(self.model, self.data.val, tc.batch_size, tc.seed + VAL_SEED_OFFSET)
                val_elbo = scores["elbo"]
                if not math.isfinite(val_elbo):  # a model that cannot score data is never checkpointed
                    self.rollback(reason=f"the validation ELBO is not finite ({val_elbo}) after epoch "
                                         f"{self.state.epoch + 1}")
                    continue
                val.update(scores)
            metrics.update({f"val_{k}": v for k, v in val.items()})
            improved = val_elbo is None or val_elbo > self.state.best_val_elbo  # no validation split: best = last
            if improved:
                if val_elbo is not None:
                    self.state.best_val_elbo = val_elbo
                self.state.best_epoch = self.state.epoch
                self.state.epochs_without_improvement = 0
            else:
                self.state.epochs_without_improvement += 1
            self.state.epoch += 1
            self._append_metrics(metrics)  # first: a resume truncates lines newer than its checkpoint
            early = bool(tc.patience) and self.state.epochs_without_improvement >= tc.patience
            due = self._checkpoint_due(improved and has_val, early)
            if due:
                self.save_checkpoint(best=improved)
            for cb in self.callbacks:
                cb.on_epoch_end(self, metrics)
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
        self.check_learned()
        return self.state

    def _checkpoint_due(self, improved: bool, early_stop: bool) -> bool:
        """Whether the epoch just finished gets its checkpoint (``train.checkpoint_every_epochs`` = N): at
        epochs that are a multiple of N, at the final epoch, at an early stop, and whenever the validation
        ELBO improved (so ``best`` names the best epoch's exact weights). A requested stop is checkpointed
        by :meth:`fit` too. With N = 1 every epoch is."""
        tc = self.config.train
        epoch = self.state.epoch
        return improved or early_stop or epoch % tc.checkpoint_every_epochs == 0 or epoch >= tc.epochs

    def check_learned(self) -> None:
        """A run that skipped nearly all its steps, or never reached a finite validation ELBO, learned
        nothing: it is an error, never a success."""
        s = self.state
        if s.step and s.skipped_steps >= SKIPPED_FRACTION_LIMIT * s.step:
            raise VaekitError(f"{self.run_dir} skipped {s.skipped_steps} of {s.step} steps (non-finite loss or "
                              f"gradients): the run learned nothing; {FIX_DIVERGENCE}")
        if s.selected_on == "val_elbo" and not math.isfinite(s.best_val_elbo):
            raise VaekitError(f"{self.run_dir} never reached a finite validation ELBO: the run learned nothing; "
                              f"{FIX_DIVERGENCE}")

    def train_epoch(self) -> dict[str, Any] | None:
        """One pass over the training split; returns the epoch's metrics, or None after a rollback."""
        tc, split = self.config.train, self.data.train
        n = len(split)
        start, sums, run, worst_run, seen, carried = self._epoch_position()
        self.epoch_shuffle_state = self.shuffle_rng.get_state()
        perm = torch.randperm(n, generator=self.shuffle_rng).to(self.data_device)
        t0, seen0 = time.perf_counter(), seen  # this process's clock covers the samples after seen0 only
        self.model.train()
        for b in range(start, self.steps_per_epoch):
            idx = perm[b * tc.batch_size:(b + 1) * tc.batch_size]
            batch = split.batch_of(idx, self.binarize_rng).to(self.device, non_blocking=True)
            out, bad = self.step(batch)
            m = len(batch)
            terms = torch.stack([out.loss.detach() * m, out.recon.detach().sum(), out.kl.detach().sum()]).double()
            sums += torch.cat([torch.where(bad, torch.zeros_like(terms), terms), bad.double()[None]])
            run = torch.where(bad, run + 1, torch.zeros_like(run))
            worst_run = torch.maximum(worst_run, run)
            seen += m
            if (b + 1) % LOG_EVERY == 0 or b + 1 == self.steps_per_epoch:
                if int(worst_run.item()) >= tc.max_bad_steps:
                    self.rollback(skipped=int(sums[3].item()))
                    return None
                stats = self._stats(sums, seen, seen - seen0, time.perf_counter() - t0, carried)
                for cb in self.callbacks:
                    cb.on_log(self, stats)
            if tc.checkpoint_every and (b + 1) % tc.checkpoint_every == 0 and b + 1 < self.steps_per_epoch:
                if int(worst_run.item()) >= tc.max_bad_steps:
                    self.rollback(skipped=int(sums[3].item()))
                    return None
                if int(run.item()) == 0:  # never checkpoint inside a run of non-finite steps
                    position = (b + 1, sums, run, worst_run, seen, carried + time.perf_counter() - t0)
                    self.save_checkpoint(best=False, position=position)
        stats = self._stats(sums, seen, seen - seen0, time.perf_counter() - t0, carried)
        self.state.skipped_steps += int(stats.pop("skipped"))
        self.state.bad_streak = int(run.item())  # carried into the next epoch (and saved with the checkpoint)
        return {"epoch": self.state.epoch + 1, "step": self.state.step, **stats,
                "kl_weight": kl_weight(self.state.step, tc.warmup_steps, tc.beta),
                "lr": self.optimizer.param_groups[0]["lr"], "skipped_steps": self.state.skipped_steps}

    def step(self, batch: Batch) -> tuple[LossOutput, torch.Tensor]:
        """One optimiser step on ``batch``; returns the loss record and the on-device 'skipped' flag."""
        tc = self.config.train
        weight = kl_weight(self.state.step, tc.warmup_steps, tc.beta)
        for group in self.optimizer.param_groups:
            group["lr"] = tc.lr * self.state.lr_scale * lr_factor(self.state.step, self.total_steps, tc.lr_schedule)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=tc.precision == "bf16"):
            out = self.objective(batch, weight)
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        if tc.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip, foreach=True)
        else:  # clipping off: only the norm for the non-finite check, no pass multiplying every gradient by 1
            grads = [p.grad for p in self.model.parameters() if p.grad is not None]
            grad_norm = torch.nn.utils.get_total_norm(grads, foreach=True)
        bad = ~(torch.isfinite(out.loss) & torch.isfinite(grad_norm))
        # fused Adam leaves weights and moments untouched when found_inf is set (an attribute torch reads
        # but does not declare)
        self.optimizer.found_inf = bad.float()  # type: ignore[attr-defined]
        self.optimizer.step()
        self.state.step += 1
        return out, bad

    def _epoch_position(self) -> tuple[int, torch.Tensor, torch.Tensor, torch.Tensor, int, float]:
        """Where this epoch starts: (batch, sums, bad-step streak, worst streak, samples seen, seconds
        already spent). At batch 0 the sums are zero and the streak is the one the last epoch ended with
        (a streak does not stop at an epoch boundary); a restored mid-epoch position has its own (its
        shuffle generator ``restore`` already rewound to the epoch's start, so the order is the same)."""
        pos, self._position = self._position, None
        if pos is None:
            streak = torch.tensor(float(self.state.bad_streak), device=self.device)
            return 0, torch.zeros(4, dtype=torch.float64, device=self.device), streak, streak.clone(), 0, 0.0
        seconds = float(pos["epoch.seconds"]) if "epoch.seconds" in pos else 0.0  # older checkpoints: unknown
        return (self.state.batch_in_epoch, pos["epoch.sums"].to(self.device), pos["epoch.run"].to(self.device),
                pos["epoch.worst_run"].to(self.device), int(pos["epoch.seen"]), seconds)

    def _stats(self, sums: torch.Tensor, seen: int, new: int, seconds: float, carried: float) -> dict[str, float]:
        """The epoch's means so far. ``samples_per_s`` is this process's rate (``new`` samples in
        ``seconds``); ``epoch_time_s`` adds the ``carried`` seconds spent before a mid-epoch resume."""
        loss, recon, kl, bad = sums.tolist()
        good = max(seen - bad * self.config.train.batch_size, 1)
        return {"train_loss": loss / good, "train_recon": recon / good, "train_kl": kl / good,
                "samples_per_s": new / max(seconds, 1e-9), "epoch_time_s": carried + seconds, "skipped": bad}

    # ------------------------------------------------------------------------- numerical faults
    def rollback(self, skipped: int = 0, reason: str | None = None) -> None:
        """Too many non-finite steps in a row (or a non-finite validation ELBO, the ``reason``): restore
        the last good checkpoint with half the learning rate; a second time, or with no checkpoint yet,
        stop with an error. ``skipped`` (this stretch's skipped steps) stays counted. Checkpoints are never
        rewritten, so the good one is left byte-for-byte as it was."""
        tc = self.config.train
        reason = reason or f"{tc.max_bad_steps}+ non-finite steps in a row"
        self.state.skipped_steps += skipped
        if self.state.rollbacks >= 1:
            raise VaekitError(f"training diverged again after a rollback: {reason}; {FIX_DIVERGENCE}")
        last = ckpt.read_pointer(self.ckpt_dir, "last")
        if last is None:
            raise VaekitError(f"training learned nothing: {reason} (step {self.state.step}, {self.state.skipped_steps} "
                              f"steps skipped) before the first checkpoint, with nothing to roll back to; "
                              f"{FIX_DIVERGENCE}")
        skipped_total, lr_scale = self.state.skipped_steps, self.state.lr_scale * 0.5
        history = [*self.state.history, f"rolled back to {last.name} after {reason} at step {self.state.step}; "
                   f"lr x{lr_scale}"]
        self.restore(last)
        self.state.rollbacks, self.state.lr_scale = self.state.rollbacks + 1, lr_scale
        self.state.skipped_steps, self.state.history = skipped_total, history

    # ------------------------------------------------------------------------------ checkpoints
    def trainer_tensors(self, position: tuple | None = None) -> dict[str, torch.Tensor]:
        """Optimiser moments, every RNG stream and, mid-epoch, the epoch's position and partial sums."""
        mid_epoch = position is not None
        out: dict[str, torch.Tensor] = {
            "rng.torch": torch.get_rng_state(),
            # mid-epoch: the shuffle stream at the epoch's start, so a resume redraws the same order
            "rng.shuffle": self.epoch_shuffle_state if mid_epoch else self.shuffle_rng.get_state(),
            "rng.binarize": self.binarize_rng.get_state()}
        if self.device.type == "cuda":
            out["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        if position is not None:
            _, sums, run, worst_run, seen, seconds = position
            out.update({"epoch.sums": sums.detach().cpu(), "epoch.run": run.detach().cpu(),
                        "epoch.worst_run": worst_run.detach().cpu(), "epoch.seen": torch.tensor(seen),
                        "epoch.seconds": torch.tensor(seconds, dtype=torch.float64)})
        for i, p in enumerate(self.model.parameters()):
            for key, value in self.optimizer.state.get(p, {}).items():
                out[f"opt.{i}.{key}"] = value.detach().cpu()
        return out

    def save_checkpoint(self, best: bool, position: tuple | None = None) -> Path:
        """Write ``checkpoints/step-<step>/`` atomically, then point ``last`` (and ``best``) at it and
        prune. ``position`` = (next batch, sums, run, worst_run, seen, seconds) for a mid-epoch checkpoint.

        The ``last`` pointer is the commit point: the checkpoint's own trainer state already names the
        best checkpoint, so a kill before the ``best`` pointer is written leaves a ``best`` file that
        readers (``checkpoint.choose_checkpoint``, ``_prune``, ``resume``) overrule and resume repairs."""
        self.state.batch_in_epoch = position[0] if position is not None else 0
        name = f"step-{self.state.step:09d}"
        previous_best = self.state.best_checkpoint
        if best:
            self.state.best_checkpoint = name
        try:
            path = ckpt.save_checkpoint(
                self.ckpt_dir / name, self.model, self.config, self.meta(),
                trainer_tensors=self.trainer_tensors(position), trainer_state=vars(self.state),
                fix=self._write_fix())
        except BaseException:
            self.state.best_checkpoint = previous_best
            raise
        finally:
            self.state.batch_in_epoch = 0
        atomic_write_text(self.ckpt_dir / "last", name, self._write_fix())
        if best:
            if os.environ.get(PAUSE_BEFORE_BEST_ENV):
                time.sleep(float(os.environ[PAUSE_BEFORE_BEST_ENV]))
            atomic_write_text(self.ckpt_dir / "best", name, self._write_fix())
        self._prune()
        return path

    def _write_fix(self) -> str:
        """The fix for a failed write during training: free space, then resume from the last checkpoint
        (which is whole), or start again when none was written yet."""
        if ckpt.read_pointer(self.ckpt_dir, "last") is None:
            return (f"no checkpoint was written yet: free space (or make the folder writable), then train again "
                    f"(remove {self.run_dir} first or choose another name, --name)")
        return (f"the last checkpoint is intact: free space (or make the folder writable), then continue with "
                f"`vaekit train --resume {self.run_dir}` (vaekit.train.resume in Python)")

    def meta(self) -> dict[str, Any]:
        return {**ckpt.model_meta(self.model), "data": self.data.info, "step": self.state.step,
                "epoch": self.state.epoch}

    def _prune(self) -> None:
        """Keep the newest ``train.keep_last`` checkpoints plus those ``last`` and ``best`` name (the best
        one as the trainer state records it, and the ``best`` file's too)."""
        keep = {n for n in (self.state.best_checkpoint, ckpt.pointer_name(self.ckpt_dir, "best"),
                            ckpt.pointer_name(self.ckpt_dir, "last")) if n is not None}
        steps = sorted(p for p in self.ckpt_dir.glob("step-*") if p.is_dir())
        keep |= {p.name for p in steps[-self.config.train.keep_last:]}
        for p in steps:
            if p.name not in keep:
                shutil.rmtree(p, ignore_errors=True)

    def restore(self, path: Path) -> None:
        """Load weights, optimiser, RNG streams, counters and any mid-epoch position from a training
        checkpoint. Everything is read and checked before anything is changed.

        A checkpoint written on another device type (CUDA <-> CPU) resumes too: RNG states that fit this
        device are restored, those that cannot (a CUDA generator's 16-byte Philox state into a CPU
        generator, or back) are re-seeded deterministically from the step, and the run's history notes
        that the continuation is not bit-identical to an uninterrupted run."""
        meta = ckpt.read_meta(path)
        tensors = ckpt.load_tensors(path / ckpt.TRAINER_TENSORS)
        raw_state = ckpt.read_json(path / ckpt.TRAINER_JSON)
        weights = ckpt.upgrade_state(meta, ckpt.load_tensors(path / ckpt.MODEL_FILE))
        known = {f.name for f in fields(TrainState)}
        try:
            if not set(raw_state) <= known:
                raise TypeError(f"unknown fields {sorted(set(raw_state) - known)}")
            state = TrainState(**raw_state)
            if not 0 <= state.batch_in_epoch < self.steps_per_epoch:
                raise ValueError(f"batch_in_epoch {state.batch_in_epoch} outside 0..{self.steps_per_epoch - 1}")
            needed = ["rng.torch", "rng.shuffle", "rng.binarize"]
            if state.batch_in_epoch:
                needed += ["epoch.sums", "epoch.run", "epoch.worst_run", "epoch.seen"]
            missing = [k for k in needed if k not in tensors]
            if missing:
                raise KeyError(f"missing tensors {missing}")
            opt_state = self._optimizer_state(tensors)
            rng_states, reseed, note = self._rng_plan(tensors, state)
        except (TypeError, ValueError, KeyError) as err:
            raise VaekitError(f"{path} has an invalid trainer state ({err}); it is tampered or from another "
                              "run, resume from another checkpoint") from None
        current = self.model.state_dict()
        if set(weights) != set(current) or any(weights[k].shape != v.shape for k, v in current.items()):
            ckpt.load_weights(copy.deepcopy(self.model), path, weights)  # its one-line error, on a copy
        if "best_checkpoint" not in raw_state:  # a checkpoint older than the field: the pointer file's
            state.best_checkpoint = ckpt.pointer_name(self.ckpt_dir, "best")
        # ---- checked: from here on, state changes
        ckpt.load_weights(self.model, path, weights)
        sd = self.optimizer.state_dict()
        sd["state"] = opt_state
        self.optimizer.load_state_dict(sd)
        for p in self.model.parameters():  # fused Adam keeps 'step' on the parameter's device
            for k, v in self.optimizer.state.get(p, {}).items():
                self.optimizer.state[p][k] = v.to(p.device)
        torch.set_rng_state(rng_states["rng.torch"])
        self.shuffle_rng.set_state(rng_states["rng.shuffle"])
        seed = self.config.train.seed + state.step  # deterministic re-seeding of what cannot transfer
        if "rng.binarize" in rng_states:
            self.binarize_rng.set_state(rng_states["rng.binarize"])
        else:
            self.binarize_rng.manual_seed(seed + 1)
        if "rng.cuda" in rng_states:
            torch.cuda.set_rng_state(rng_states["rng.cuda"], self.device)
        elif "the CUDA stream" in reseed:
            torch.cuda.manual_seed_all(seed)
        if note is not None:
            state.history.append(note)
            self.resume_note = note
        self.state = state
        self._position = {k: v for k, v in tensors.items() if k.startswith("epoch.")} if state.batch_in_epoch \
            else None
        self._truncate_metrics(self.state.epoch)

    def _rng_plan(self, tensors: dict[str, torch.Tensor], state: TrainState
                  ) -> tuple[dict[str, torch.Tensor], list[str], str | None]:
        """The saved RNG states that fit this trainer's generators, the streams to re-seed instead and,
        for a checkpoint written on another device type, the history note. Changes nothing."""
        def fits(key: str, current: torch.Tensor) -> bool:
            saved = tensors[key]
            return saved.dtype == current.dtype and saved.shape == current.shape

        def wrong(key: str, current: torch.Tensor) -> ValueError:
            return ValueError(f"{key} holds {tuple(tensors[key].shape)} {tensors[key].dtype}, expected "
                              f"{tuple(current.shape)} {current.dtype}")

        here, written_on = self.device.type, "cuda" if "rng.cuda" in tensors else "cpu"
        states: dict[str, torch.Tensor] = {}
        for key, current in (("rng.torch", torch.get_rng_state()), ("rng.shuffle", self.shuffle_rng.get_state())):
            if not fits(key, current):  # CPU generators on every device: a mismatch is damage
                raise wrong(key, current)
            states[key] = tensors[key]
        reseed: list[str] = []
        current = self.binarize_rng.get_state()
        if fits("rng.binarize", current):
            states["rng.binarize"] = tensors["rng.binarize"]
        elif written_on != here:  # the binarisation generator lives on the data's device
            reseed.append("the binarisation stream")
        else:
            raise wrong("rng.binarize", current)
        if here == "cuda":
            current = torch.cuda.get_rng_state(self.device)
            if written_on == "cuda" and not fits("rng.cuda", current):
                raise wrong("rng.cuda", current)
            if written_on == "cuda":
                states["rng.cuda"] = tensors["rng.cuda"]
            else:
                reseed.append("the CUDA stream")
        if written_on == here:
            return states, reseed, None
        what = f"{' and '.join(reseed)} re-seeded from the step" if reseed else "every RNG state restored"
        return states, reseed, (f"resumed at step {state.step} on {here} from a checkpoint written on {written_on} "
                                f"({what}): the continuation is not bit-identical to an uninterrupted run")

    def _optimizer_state(self, tensors: dict[str, torch.Tensor]) -> dict[int, dict[str, torch.Tensor]]:
        """The Adam state saved as ``opt.<param index>.<name>``, with every moment's shape checked."""
        params = list(self.model.parameters())
        opt_state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("opt."):
                _, i, name = key.split(".", 2)
                if not i.isdigit() or int(i) >= len(params):
                    raise KeyError(f"optimizer tensor {key} names no parameter")
                if name in ("exp_avg", "exp_avg_sq") and value.shape != params[int(i)].shape:
                    raise ValueError(f"optimizer tensor {key} has shape {tuple(value.shape)}, "
                                     f"expected {tuple(params[int(i)].shape)}")
                opt_state.setdefault(int(i), {})[name] = value
        return opt_state

    def _append_metrics(self, metrics: dict[str, Any]) -> None:
        """One JSON line per finished epoch, written with one call and fsynced. A torn line left by a full
        disk is dropped by the next resume's :meth:`_truncate_metrics`."""
        path = self.run_dir / "metrics.jsonl"
        with write_errors(path, self._write_fix()), open(path, "a") as f:
            f.write(json.dumps(metrics) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _truncate_metrics(self, epochs: int) -> None:
        """Keep the lines of epochs 1..``epochs`` (once each); drop later epochs and torn lines."""
        path = self.run_dir / "metrics.jsonl"
        if not path.exists():
            return
        kept: dict[int, str] = {}
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                epoch = json.loads(line).get("epoch")
            except (json.JSONDecodeError, AttributeError):
                continue  # a line torn by a kill
            if isinstance(epoch, int) and 1 <= epoch <= epochs:
                kept.setdefault(epoch, line)
        atomic_write_text(path, "".join(kept[e] + "\n" for e in sorted(kept)))


def create_run_dir(config: Config, runs_root: str | Path = "runs") -> Path:
    """Make ``runs/<name>/``; an existing run is never overwritten."""
    name = config.name or time.strftime("run-%Y%m%d-%H%M%S")
    if "/" in name or name in (".", ".."):
        raise VaekitError(f"run name '{name}' (config.name, --name) must be a plain folder name; use e.g. "
                          "--name digits-vae")
    run_dir = Path(runs_root) / name
    if run_dir.exists():
        raise VaekitError(f"run directory {run_dir} already exists; choose another --name (config.name in "
                          f"Python), or continue it with --resume {run_dir} (vaekit.resume('{run_dir}'))")
    try:
        run_dir.mkdir(parents=True)
    except OSError as err:
        raise VaekitError(f"cannot create {run_dir}: {err.strerror}; choose a writable --runs folder (runs_root in "
                          "Python)") from None
    return run_dir


def fit(config: Config, runs_root: str | Path = "runs", callbacks: list[Callback] | None = None,
        data: DataBundle | None = None, notify: Callable[[str, str], None] | None = None) -> tuple[Path, Trainer]:
    """Load the data, create ``runs/<name>/``, save the resolved config and train. Returns the run
    directory and the trainer (its ``model`` holds the last weights). ``notify(kind, message)`` receives
    the data loader's decisions (kind 'note') and warnings (kind 'warning'); the CLI prints them. The
    run's lock (:mod:`vaekit.runlock`) is held from its creation until training ends."""
    data = data if data is not None else load_data(config.data, config.model.likelihood)
    config = config.replace(name=config.name or time.strftime("run-%Y%m%d-%H%M%S"))
    config = _with_resolved_data(config, data)
    run_dir = create_run_dir(config, runs_root)
    with run_lock(run_dir):
        try:
            trainer = Trainer(config, run_dir, data, callbacks)  # checks the config against the data first
            atomic_write_text(run_dir / "config.toml", config_to_toml(config))
        except VaekitError:
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing was trained: leave no half-made run behind
            raise
        if notify is not None:  # once the run is accepted, so a refused run still prints one error line only
            for kind in ("note", "warning"):
                for message in data.info.get(f"{kind}s", []):
                    notify(kind, message)
        try:
            trainer.fit()
        except VaekitError as err:
            if ckpt.pointer_name(trainer.ckpt_dir, "last") is None:  # failed before its first checkpoint
                shutil.rmtree(run_dir, ignore_errors=True)  # nothing of value: free the name for the next try
                raise VaekitError(f"{err} ({run_dir} held no checkpoint and was removed)") from None
            raise
    return run_dir, trainer


def resume(run_dir: str | Path, callbacks: list[Callback] | None = None, device: str | None = None) -> Trainer:
    """Continue ``run_dir`` from its last checkpoint with its saved config, exactly where it stopped
    (mid-epoch when the checkpoint is). Leftovers of a killed writer are removed first: temporary
    files and checkpoints newer than ``last`` (written but never pointed to). A run killed before its
    first checkpoint (a config but no ``last`` pointer) starts again from step 0 with its saved config.
    ``device`` overrides ``train.device`` (e.g. 'cpu' to continue a GPU run on a machine without one);
    a ``best`` pointer left stale by a kill is rewritten from the checkpoint's own record. The run's lock
    (:mod:`vaekit.runlock`) is taken before any file is touched: a run another process is still writing
    is refused with one line naming that process."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").is_file():
        raise VaekitError(f"{run_dir} is not a run directory (no config.toml); pass a run such as runs/<name> "
                          "(--resume runs/<name>, vaekit.resume('runs/<name>'))")
    with run_lock(run_dir):
        return _resume(run_dir, callbacks, device)


def _resume(run_dir: Path, callbacks: list[Callback] | None, device: str | None) -> Trainer:
    """:func:`resume` once the run's lock is held."""
    import dataclasses

    from vaekit.config import load_config

    config = load_config(run_dir / "config.toml")
    if device is not None:
        config = config.replace(train=dataclasses.replace(config.train, device=device))
    ckpts = run_dir / "checkpoints"
    ckpt.clean_temporaries(ckpts)
    last_name = ckpt.pointer_name(ckpts, "last")
    last = None if last_name is None else ckpt.read_pointer(ckpts, "last")
    if last_name is not None and last is None:
        raise VaekitError(f"{ckpts / 'last'} names {last_name}, which is missing or incomplete; the run is "
                          "damaged: train it again under a new name (--name, config.name in Python)")
    for orphan in ckpts.glob("step-*"):  # never pointed to: a killed writer's, not a checkpoint of the run
        if orphan.is_dir() and (last is None or orphan.name > last.name):
            shutil.rmtree(orphan)
    if last is None:  # nothing recorded yet: decide the preprocessing again from the saved (resolved) config
        data = load_data(config.data, config.model.likelihood)
    else:
        meta = ckpt.read_meta(last)
        if meta.get("upgraded_from") == 1 and config.model.likelihood != "bernoulli":
            raise VaekitError(f"{run_dir} is a format-{meta['upgraded_from']} Gaussian run, whose data scaling this "
                              "vaekit defines differently; evaluate it as it is, or train it again")
        data = load_run_data(config, meta)[1]
    trainer = Trainer(config, run_dir, data, callbacks)
    if last is None:
        trainer.resume_note = f"{run_dir} had no checkpoint: started again from step 0 with its saved config"
        trainer.state.history.append(trainer.resume_note)
        trainer._truncate_metrics(0)
        trainer.resumed_at_step = 0
    else:
        trainer.restore(last)
        trainer.resumed_at_step = trainer.state.step
        best = trainer.state.best_checkpoint
        if best is not None and ckpt.pointer_name(ckpts, "best") != best and (ckpts / best).is_dir():
            atomic_write_text(ckpts / "best", best)  # torn by a kill between the `last` and `best` writes
    trainer.fit()
    return trainer


def _to_device(data: DataBundle, device: torch.device) -> DataBundle:
    """Copy in-memory splits (not memory-mapped ones) to ``device`` once."""
    import dataclasses

    def move(split: Split) -> Split:
        if not isinstance(split.x, torch.Tensor):
            return split
        return dataclasses.replace(split, x=split.x.to(device))

    return dataclasses.replace(data, train=move(data.train), val=move(data.val), test=move(data.test))


def _with_resolved_data(config: Config, data: DataBundle) -> Config:
    """Record what the data loader decided (likelihood, scale, binarisation, dequantisation, absolute
    paths) so the saved config reproduces the run exactly."""
    import dataclasses

    from vaekit.data.rundata import resolved_data_config

    lik = data.info.get("likelihood") or config.model.likelihood
    if config.model.likelihood not in ("auto", lik):
        raise VaekitError(f"the data were prepared for model.likelihood {lik} but the config says "
                          f"{config.model.likelihood}; load them with the same likelihood")
    return config.replace(data=resolved_data_config(config.data, data.info),
                          model=dataclasses.replace(config.model, likelihood=lik))
