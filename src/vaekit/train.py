"""One readable training loop: schedule, step, evaluate, checkpoint, callbacks.

Read ``Trainer.fit`` top to bottom. The learning rate and the KL weight are pure functions of the step
(``objectives.lr_factor``, ``objectives.kl_weight``). A step never waits for the device: the loss sums,
the non-finite check and the skip decision stay on the device (fused Adam skips an update when its
``found_inf`` flag is set) and the host reads them every ``LOG_EVERY`` steps and at epoch end.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vaekit import checkpoint as ckpt
from vaekit.config import Config, config_to_toml
from vaekit.data import DataBundle, Split, load_data
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
def evaluate_split(model: VAE, split: Split, batch_size: int, seed: int) -> dict[str, float]:
    """Mean per-example ELBO, reconstruction and KL (nats) over a split, with fixed noise ``seed``."""
    device = next(model.parameters()).device
    n = len(split)
    totals = torch.zeros(3, dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, n, batch_size):
            x = split.batch(torch.arange(start, min(start + batch_size, n))).to(device)
            out = elbo_terms(model, x)
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
        self.shuffle_rng = torch.Generator().manual_seed(tc.seed)
        self.binarize_rng = torch.Generator().manual_seed(tc.seed + 1)
        self.steps_per_epoch = math.ceil(len(data.train) / tc.batch_size)
        self.total_steps = self.steps_per_epoch * tc.epochs
        self.state = TrainState()
        self.ckpt_dir = self.run_dir / "checkpoints"

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
            self.save_checkpoint(best=improved)
            self._append_metrics(metrics)
            for cb in self.callbacks:
                cb.on_epoch_end(self, metrics)
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
        perm = torch.randperm(n, generator=self.shuffle_rng)
        sums = torch.zeros(4, dtype=torch.float64, device=self.device)  # loss, recon, kl (x batch), bad
        run = torch.zeros((), device=self.device)  # consecutive non-finite steps, kept on the device
        worst_run = torch.zeros((), device=self.device)
        t0, seen = time.perf_counter(), 0
        self.model.train()
        for b in range(self.steps_per_epoch):
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
                    self.rollback()
                    return None
                stats = self._stats(sums, seen, time.perf_counter() - t0)
                for cb in self.callbacks:
                    cb.on_log(self, stats)
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
        max_norm = tc.grad_clip if tc.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm, foreach=True)
        bad = ~(torch.isfinite(out.loss) & torch.isfinite(grad_norm))
        self.optimizer.found_inf = bad.float()  # fused Adam leaves weights and moments untouched when set
        self.optimizer.step()
        self.state.step += 1
        return out, bad

    def _stats(self, sums: torch.Tensor, seen: int, seconds: float) -> dict[str, float]:
        loss, recon, kl, bad = sums.tolist()
        good = max(seen - bad * self.config.train.batch_size, 1)
        return {"train_loss": loss / good, "train_recon": recon / good, "train_kl": kl / good,
                "samples_per_s": seen / max(seconds, 1e-9), "epoch_time_s": seconds, "skipped": bad}

    # ------------------------------------------------------------------------- numerical faults
    def rollback(self) -> None:
        """Too many non-finite steps in a row: restore the last good checkpoint with half the learning
        rate; a second time, stop with an error. The good checkpoint is never overwritten."""
        tc = self.config.train
        if self.state.rollbacks >= 1:
            raise VaekitError(f"training diverged again: {tc.max_bad_steps} non-finite steps in a row after a "
                              "rollback; lower --train.lr or set --train.grad_clip, and check the data")
        last = ckpt.read_pointer(self.ckpt_dir, "last")
        rollbacks, lr_scale = self.state.rollbacks + 1, self.state.lr_scale * 0.5
        if last is not None:
            self.restore(last)
        else:
            raise VaekitError(f"training diverged in the first epoch ({tc.max_bad_steps} non-finite steps in a "
                              "row) with no checkpoint to roll back to; lower --train.lr")
        self.state.rollbacks, self.state.lr_scale = rollbacks, lr_scale
        self.state.history.append(f"rolled back to {last.name} at lr x{lr_scale}")

    # ------------------------------------------------------------------------------ checkpoints
    def trainer_tensors(self) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {"rng.torch": torch.get_rng_state(),
                                        "rng.shuffle": self.shuffle_rng.get_state(),
                                        "rng.binarize": self.binarize_rng.get_state()}
        if self.device.type == "cuda":
            out["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        params = list(self.model.parameters())
        for i, p in enumerate(params):
            for key, value in self.optimizer.state.get(p, {}).items():
                out[f"opt.{i}.{key}"] = value.detach().cpu()
        return out

    def save_checkpoint(self, best: bool) -> Path:
        name = f"step-{self.state.step:09d}"
        path = ckpt.save_checkpoint(
            self.ckpt_dir / name, self.model, self.config, self.meta(),
            trainer_tensors=self.trainer_tensors(), trainer_state=vars(self.state))
        atomic_write_text(self.ckpt_dir / "last", name)
        if best:
            atomic_write_text(self.ckpt_dir / "best", name)
        self._prune()
        return path

    def meta(self) -> dict[str, Any]:
        return {"event_shape": list(self.data.event_shape), "standardised": self.data.loc is not None,
                "data": self.data.info, "step": self.state.step, "epoch": self.state.epoch}

    def _prune(self) -> None:
        keep = {p.name for p in (ckpt.read_pointer(self.ckpt_dir, "best"), ckpt.read_pointer(self.ckpt_dir, "last"))
                if p is not None}
        steps = sorted(p for p in self.ckpt_dir.glob("step-*") if p.is_dir())
        keep |= {p.name for p in steps[-self.config.train.keep_last:]}
        for p in steps:
            if p.name not in keep:
                shutil.rmtree(p, ignore_errors=True)

    def restore(self, path: Path) -> None:
        """Load weights, optimiser, RNG streams and counters from a training checkpoint."""
        tensors = ckpt.load_tensors(path / ckpt.TRAINER_TENSORS)
        state = json.loads((path / ckpt.TRAINER_JSON).read_text())
        weights = ckpt.load_tensors(path / ckpt.MODEL_FILE)
        self.model.load_state_dict(weights)
        params = list(self.model.parameters())
        opt_state = {}
        for key, value in tensors.items():
            if key.startswith("opt."):
                _, i, name = key.split(".", 2)
                opt_state.setdefault(int(i), {})[name] = value
        sd = self.optimizer.state_dict()
        sd["state"] = opt_state
        self.optimizer.load_state_dict(sd)
        for p in params:  # fused Adam keeps 'step' on the parameter's device
            for k, v in self.optimizer.state.get(p, {}).items():
                self.optimizer.state[p][k] = v.to(p.device)
        torch.set_rng_state(tensors["rng.torch"])
        self.shuffle_rng.set_state(tensors["rng.shuffle"])
        self.binarize_rng.set_state(tensors["rng.binarize"])
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        self.state = TrainState(**state)
        self._truncate_metrics(self.state.epoch)

    def _append_metrics(self, metrics: dict[str, Any]) -> None:
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(metrics) + "\n")

    def _truncate_metrics(self, epochs: int) -> None:
        path = self.run_dir / "metrics.jsonl"
        if path.exists():
            lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
            kept = [ln for ln in lines if json.loads(ln).get("epoch", 0) <= epochs]
            atomic_write_text(path, "".join(ln + "\n" for ln in kept))


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
        data: DataBundle | None = None) -> tuple[Path, Trainer]:
    """Load the data, create ``runs/<name>/``, save the resolved config and train. Returns the run
    directory and the trainer (its ``model`` holds the last weights)."""
    data = data if data is not None else load_data(config.data, config.model.likelihood)
    config = config.replace(name=config.name or time.strftime("run-%Y%m%d-%H%M%S"))
    config = _with_resolved_data(config, data)
    run_dir = create_run_dir(config, runs_root)
    atomic_write_text(run_dir / "config.toml", config_to_toml(config))
    trainer = Trainer(config, run_dir, data, callbacks)
    trainer.fit()
    return run_dir, trainer


def resume(run_dir: str | Path, callbacks: list[Callback] | None = None) -> Trainer:
    """Continue ``run_dir`` from its last checkpoint with its saved config."""
    from vaekit.config import load_config

    run_dir = Path(run_dir)
    config = load_config(run_dir / "config.toml")
    data = load_data(config.data, config.model.likelihood)
    trainer = Trainer(config, run_dir, data, callbacks)
    last = ckpt.read_pointer(trainer.ckpt_dir, "last")
    if last is None:
        raise VaekitError(f"{run_dir} has no checkpoint to resume from; start it again with a new --name")
    trainer.restore(last)
    trainer.fit()
    return trainer


def _with_resolved_data(config: Config, data: DataBundle) -> Config:
    """Record the resolved binarisation so the saved config reproduces the run exactly."""
    import dataclasses

    mode = data.info.get("binarize")
    if mode and mode != config.data.binarize:
        return config.replace(data=dataclasses.replace(config.data, binarize=mode))
    return config
