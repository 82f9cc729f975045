"""One readable training loop: schedule, step, evaluate, checkpoint, callbacks.

Read ``Trainer.fit`` top to bottom. The learning rate and the KL weight are pure functions of the step
(``objectives.lr_factor``, ``objectives.kl_weight``). A step never waits for the device: the loss sums,
the non-finite check and the skip decision stay on the device (fused Adam skips an update when its
``found_inf`` flag is set) and the host reads them every ``LOG_EVERY`` steps and at epoch end.
"""

from __future__ import annotations

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
from vaekit.config import Config, config_to_toml
from vaekit.data import DataBundle, Split, load_data, load_run_data
from vaekit.errors import VaekitError
from vaekit.fileio import atomic_write_text
from vaekit.model import VAE
from vaekit.objectives import LossOutput, elbo_terms, iwae_terms, kl_weight, lr_factor

LOG_EVERY = 25
VAL_SEED_OFFSET = 1_000_003


def pick_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu. Asking for cuda without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VaekitError("train.device is 'cuda' but no CUDA device is available; use --train.device cpu")
    return torch.device(name)


def objective(model: VAE, x: torch.Tensor, config: Config, weight: float) -> LossOutput:
    """The training objective for one minibatch (ELBO with V samples and KL weight, or IWAE)."""
    if config.train.objective == "iwae" and model.config.kind == "vae":
        return iwae_terms(model, x, config.train.n_samples)
    return elbo_terms(model, x, n_samples=config.train.n_samples, beta=weight)


@torch.no_grad()
def evaluate_split(model: VAE, split: Split, batch_size: int, seed: int, n_samples: int = 1) -> dict[str, float]:
    """Mean per-example ELBO, reconstruction and KL (nats) over a split, with fixed noise ``seed`` and
    ``n_samples`` Monte-Carlo samples per point for the reconstruction term."""
    device = next(model.parameters()).device
    n = len(split)
    totals = torch.zeros(3, dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, n, batch_size):
            x = split.batch(torch.arange(start, min(start + batch_size, n))).to(device)
            out = elbo_terms(model, x, n_samples=n_samples)
            totals += torch.stack([out.elbo.sum(), out.recon.sum(), out.kl.sum()]).double()
    model.train(was_training)
    elbo, recon, kl = (totals / max(n, 1)).tolist()
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


class Trainer:
    """Trains ``config``'s model on ``data`` into ``run_dir`` (which must exist)."""

    def __init__(self, config: Config, run_dir: Path, data: DataBundle, callbacks: list[Callback] | None = None):
        self.config, self.run_dir, self.data = config, Path(run_dir), data
        self.callbacks = callbacks or []
        tc = config.train
        if tc.batch_size > len(data.train):
            raise VaekitError(f"train.batch_size {tc.batch_size} is larger than the {len(data.train)} training "
                              f"examples; use --train.batch_size {max(1, len(data.train) // 4)} or fewer")
        self.device = pick_device(tc.device)
        torch.manual_seed(tc.seed)
        self.model = VAE(config.model, data.event_shape, data.loc, data.scale).to(self.device)
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
        self.epoch_shuffle_state = self.shuffle_rng.get_state()  # the shuffle stream at this epoch's start
        self._position: dict[str, torch.Tensor] | None = None  # a restored mid-epoch position

    def request_stop(self, reason: str) -> None:
        """Ask the loop to stop after the current epoch (its checkpoint is written first), e.g. from a
        callback enforcing a wall-clock budget."""
        self.stop_reason = reason

    # --------------------------------------------------------------------------------- the loop
    def fit(self) -> TrainState:
        tc = self.config.train
        for cb in self.callbacks:
            cb.on_train_start(self)
        while self.state.epoch < tc.epochs:
            metrics = self.train_epoch()
            if metrics is None:  # rolled back after non-finite steps: redo from the restored state
                continue
            val = evaluate_split(self.model, self.data.val, tc.batch_size, tc.seed + VAL_SEED_OFFSET)
            metrics.update({f"val_{k}": v for k, v in val.items()})
            improved = val["elbo"] > self.state.best_val_elbo
            if improved:
                self.state.best_val_elbo, self.state.best_epoch = val["elbo"], self.state.epoch
                self.state.epochs_without_improvement = 0
            else:
                self.state.epochs_without_improvement += 1
            self.state.epoch += 1
            self._append_metrics(metrics)  # first: a resume truncates lines newer than its checkpoint
            self.save_checkpoint(best=improved)
            for cb in self.callbacks:
                cb.on_epoch_end(self, metrics)
            if self.stop_reason is not None:
                self.state.history.append(f"stopped at epoch {self.state.epoch}: {self.stop_reason}")
                break
            if tc.patience and self.state.epochs_without_improvement >= tc.patience:
                self.state.history.append(f"early stop at epoch {self.state.epoch}")
                break
        for cb in self.callbacks:
            cb.on_train_end(self)
        return self.state

    def train_epoch(self) -> dict[str, Any] | None:
        """One pass over the training split; returns the epoch's metrics, or None after a rollback."""
        tc, split = self.config.train, self.data.train
        n = len(split)
        start, sums, run, worst_run, seen = self._epoch_position()
        self.epoch_shuffle_state = self.shuffle_rng.get_state()
        perm = torch.randperm(n, generator=self.shuffle_rng).to(self.data_device)
        t0 = time.perf_counter()
        self.model.train()
        for b in range(start, self.steps_per_epoch):
            idx = perm[b * tc.batch_size:(b + 1) * tc.batch_size]
            x = split.batch(idx, self.binarize_rng).to(self.device, non_blocking=True)
            out, bad = self.step(x)
            m = x.shape[0]
            terms = torch.stack([out.loss.detach() * m, out.recon.detach().sum(), out.kl.detach().sum()]).double()
            sums += torch.cat([torch.where(bad, torch.zeros_like(terms), terms), bad.double()[None]])
            run = torch.where(bad, run + 1, torch.zeros_like(run))
            worst_run = torch.maximum(worst_run, run)
            seen += m
            if (b + 1) % LOG_EVERY == 0 or b + 1 == self.steps_per_epoch:
                if int(worst_run.item()) >= tc.max_bad_steps:
                    self.rollback(skipped=int(sums[3].item()))
                    return None
                stats = self._stats(sums, seen, time.perf_counter() - t0)
                for cb in self.callbacks:
                    cb.on_log(self, stats)
            if tc.checkpoint_every and (b + 1) % tc.checkpoint_every == 0 and b + 1 < self.steps_per_epoch:
                if int(worst_run.item()) >= tc.max_bad_steps:
                    self.rollback(skipped=int(sums[3].item()))
                    return None
                if int(run.item()) == 0:  # never checkpoint inside a run of non-finite steps
                    self.save_checkpoint(best=False, position=(b + 1, sums, run, worst_run, seen))
        stats = self._stats(sums, seen, time.perf_counter() - t0)
        self.state.skipped_steps += int(stats.pop("skipped"))
        return {"epoch": self.state.epoch + 1, "step": self.state.step, **stats,
                "kl_weight": kl_weight(self.state.step, tc.warmup_steps, tc.beta),
                "lr": self.optimizer.param_groups[0]["lr"], "skipped_steps": self.state.skipped_steps}

    def step(self, x: torch.Tensor) -> tuple[LossOutput, torch.Tensor]:
        """One optimiser step on the batch x; returns the loss record and the on-device 'skipped' flag."""
        tc = self.config.train
        weight = kl_weight(self.state.step, tc.warmup_steps, tc.beta)
        for group in self.optimizer.param_groups:
            group["lr"] = tc.lr * self.state.lr_scale * lr_factor(self.state.step, self.total_steps, tc.lr_schedule)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=tc.precision == "bf16"):
            out = objective(self.model, x, self.config, weight)
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        if tc.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip, foreach=True)
        else:  # clipping off: only the norm for the non-finite check, no pass multiplying every gradient by 1
            grads = [p.grad for p in self.model.parameters() if p.grad is not None]
            grad_norm = torch.nn.utils.get_total_norm(grads, foreach=True)
        bad = ~(torch.isfinite(out.loss) & torch.isfinite(grad_norm))
        self.optimizer.found_inf = bad.float()  # fused Adam leaves weights and moments untouched when set
        self.optimizer.step()
        self.state.step += 1
        return out, bad

    def _epoch_position(self) -> tuple[int, torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """Where this epoch starts: batch 0 with zero sums, or a restored mid-epoch position (whose
        shuffle generator ``restore`` already rewound to the epoch's start, so the order is the same)."""
        pos, self._position = self._position, None
        zero = torch.zeros((), device=self.device)
        if pos is None:
            return 0, torch.zeros(4, dtype=torch.float64, device=self.device), zero, zero.clone(), 0
        return (self.state.batch_in_epoch, pos["epoch.sums"].to(self.device), pos["epoch.run"].to(self.device),
                pos["epoch.worst_run"].to(self.device), int(pos["epoch.seen"]))

    def _stats(self, sums: torch.Tensor, seen: int, seconds: float) -> dict[str, float]:
        loss, recon, kl, bad = sums.tolist()
        good = max(seen - bad * self.config.train.batch_size, 1)
        return {"train_loss": loss / good, "train_recon": recon / good, "train_kl": kl / good,
                "samples_per_s": seen / max(seconds, 1e-9), "epoch_time_s": seconds, "skipped": bad}

    # ------------------------------------------------------------------------- numerical faults
    def rollback(self, skipped: int = 0) -> None:
        """Too many non-finite steps in a row: restore the last good checkpoint with half the learning
        rate; a second time, stop with an error. ``skipped`` (this stretch's skipped steps) stays counted.
        Checkpoints are never rewritten, so the good one is left byte-for-byte as it was."""
        tc = self.config.train
        self.state.skipped_steps += skipped
        if self.state.rollbacks >= 1:
            raise VaekitError(f"training diverged again: {tc.max_bad_steps} non-finite steps in a row after a "
                              "rollback; lower --train.lr or set --train.grad_clip, and check the data")
        last = ckpt.read_pointer(self.ckpt_dir, "last")
        if last is None:
            raise VaekitError(f"training diverged before the first checkpoint ({tc.max_bad_steps} non-finite "
                              "steps in a row) with nothing to roll back to; lower --train.lr or check the data")
        skipped_total, lr_scale = self.state.skipped_steps, self.state.lr_scale * 0.5
        history = [*self.state.history, f"rolled back to {last.name} after {tc.max_bad_steps}+ non-finite "
                   f"steps in a row at step {self.state.step}; lr x{lr_scale}"]
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
        if mid_epoch:
            _, sums, run, worst_run, seen = position
            out.update({"epoch.sums": sums.detach().cpu(), "epoch.run": run.detach().cpu(),
                        "epoch.worst_run": worst_run.detach().cpu(), "epoch.seen": torch.tensor(seen)})
        for i, p in enumerate(self.model.parameters()):
            for key, value in self.optimizer.state.get(p, {}).items():
                out[f"opt.{i}.{key}"] = value.detach().cpu()
        return out

    def save_checkpoint(self, best: bool, position: tuple | None = None) -> Path:
        """Write ``checkpoints/step-<step>/`` atomically, then point ``last`` (and ``best``) at it and
        prune. ``position`` = (next batch, sums, run, worst_run, seen) for a mid-epoch checkpoint."""
        self.state.batch_in_epoch = position[0] if position is not None else 0
        name = f"step-{self.state.step:09d}"
        try:
            path = ckpt.save_checkpoint(
                self.ckpt_dir / name, self.model, self.config, self.meta(),
                trainer_tensors=self.trainer_tensors(position), trainer_state=vars(self.state))
        finally:
            self.state.batch_in_epoch = 0
        atomic_write_text(self.ckpt_dir / "last", name)
        if best:
            atomic_write_text(self.ckpt_dir / "best", name)
        self._prune()
        return path

    def meta(self) -> dict[str, Any]:
        return {"event_shape": list(self.data.event_shape), "standardised": self.data.loc is not None,
                "data": self.data.info, "step": self.state.step, "epoch": self.state.epoch}

    def _prune(self) -> None:
        """Keep the newest ``train.keep_last`` checkpoints plus those ``last`` and ``best`` name."""
        keep = {p.name for p in (ckpt.read_pointer(self.ckpt_dir, "best"), ckpt.read_pointer(self.ckpt_dir, "last"))
                if p is not None}
        steps = sorted(p for p in self.ckpt_dir.glob("step-*") if p.is_dir())
        keep |= {p.name for p in steps[-self.config.train.keep_last:]}
        for p in steps:
            if p.name not in keep:
                shutil.rmtree(p, ignore_errors=True)

    def restore(self, path: Path) -> None:
        """Load weights, optimiser, RNG streams, counters and any mid-epoch position from a training
        checkpoint. Everything is read and checked before anything is changed."""
        ckpt.read_meta(path)
        tensors = ckpt.load_tensors(path / ckpt.TRAINER_TENSORS)
        raw_state = ckpt.read_json(path / ckpt.TRAINER_JSON)
        weights = ckpt.load_tensors(path / ckpt.MODEL_FILE)
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
        except (TypeError, ValueError, KeyError) as err:
            raise VaekitError(f"{path} has an invalid trainer state ({err}); it is tampered or from another "
                              "run, resume from another checkpoint") from None
        ckpt.load_weights(self.model, path, weights)
        sd = self.optimizer.state_dict()
        sd["state"] = opt_state
        self.optimizer.load_state_dict(sd)
        for p in self.model.parameters():  # fused Adam keeps 'step' on the parameter's device
            for k, v in self.optimizer.state.get(p, {}).items():
                self.optimizer.state[p][k] = v.to(p.device)
        torch.set_rng_state(tensors["rng.torch"])
        self.shuffle_rng.set_state(tensors["rng.shuffle"])
        self.binarize_rng.set_state(tensors["rng.binarize"])
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        self.state = state
        self._position = {k: v for k, v in tensors.items() if k.startswith("epoch.")} if state.batch_in_epoch \
            else None
        self._truncate_metrics(self.state.epoch)

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
        """One JSON line per finished epoch, written with one call and fsynced."""
        with open(self.run_dir / "metrics.jsonl", "a") as f:
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
        raise VaekitError(f"run name '{name}' must be a plain folder name; use e.g. --name digits-vae")
    run_dir = Path(runs_root) / name
    if run_dir.exists():
        raise VaekitError(f"run directory {run_dir} already exists; choose another --name, or continue it "
                          f"with --resume {run_dir}")
    try:
        run_dir.mkdir(parents=True)
    except OSError as err:
        raise VaekitError(f"cannot create {run_dir}: {err.strerror}; choose a writable --runs folder") from None
    return run_dir


def fit(config: Config, runs_root: str | Path = "runs", callbacks: list[Callback] | None = None,
        data: DataBundle | None = None, notify: Callable[[str, str], None] | None = None) -> tuple[Path, Trainer]:
    """Load the data, create ``runs/<name>/``, save the resolved config and train. Returns the run
    directory and the trainer (its ``model`` holds the last weights). ``notify(kind, message)`` receives
    the data loader's decisions (kind 'note') and warnings (kind 'warning'); the CLI prints them."""
    data = data if data is not None else load_data(config.data, config.model.likelihood)
    config = config.replace(name=config.name or time.strftime("run-%Y%m%d-%H%M%S"))
    config = _with_resolved_data(config, data)
    run_dir = create_run_dir(config, runs_root)
    try:
        trainer = Trainer(config, run_dir, data, callbacks)  # checks the config against the data first
    except VaekitError:
        shutil.rmtree(run_dir, ignore_errors=True)  # nothing was trained: leave no half-made run behind
        raise
    atomic_write_text(run_dir / "config.toml", config_to_toml(config))
    if notify is not None:  # once the run is accepted, so a refused run still prints one error line only
        for kind in ("note", "warning"):
            for message in data.info.get(f"{kind}s", []):
                notify(kind, message)
    trainer.fit()
    return run_dir, trainer


def resume(run_dir: str | Path, callbacks: list[Callback] | None = None) -> Trainer:
    """Continue ``run_dir`` from its last checkpoint with its saved config, exactly where it stopped
    (mid-epoch when the checkpoint is). Leftovers of a killed writer are removed first: temporary
    files and checkpoints newer than ``last`` (written but never pointed to)."""
    from vaekit.config import load_config

    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").is_file():
        raise VaekitError(f"{run_dir} is not a run directory (no config.toml); pass --resume runs/<name>")
    config = load_config(run_dir / "config.toml")
    ckpts = run_dir / "checkpoints"
    ckpt.clean_temporaries(ckpts)
    last = ckpt.read_pointer(ckpts, "last")
    if last is None:
        raise VaekitError(f"{run_dir} has no checkpoint to resume from; start it again with a new --name")
    for orphan in ckpts.glob("step-*"):
        if orphan.is_dir() and orphan.name > last.name:
            shutil.rmtree(orphan)
    meta = ckpt.read_meta(last)
    if meta.get("upgraded_from") and config.model.likelihood != "bernoulli":
        raise VaekitError(f"{run_dir} is a format-{meta['upgraded_from']} Gaussian run, whose data scaling this "
                          "vaekit defines differently; evaluate it as it is, or train it again")
    data = load_run_data(config, meta)[1]
    trainer = Trainer(config, run_dir, data, callbacks)
    trainer.restore(last)
    trainer.resumed_at_step = trainer.state.step
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
