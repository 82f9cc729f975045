"""Training callbacks: the live progress bar."""

from __future__ import annotations

from typing import Any

from vaekit.train import Callback, Trainer


class ProgressBar(Callback):
    """A tqdm bar per run (one tick per epoch) showing loss, reconstruction, KL and samples/s."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def on_train_start(self, trainer: Trainer) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=trainer.config.train.epochs, initial=trainer.state.epoch, unit="epoch",
                        disable=not self.enabled, dynamic_ncols=True, desc=trainer.config.name)

    def on_log(self, trainer: Trainer, stats: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{stats['train_loss']:.2f}", recon=f"{stats['train_recon']:.2f}",
                                 kl=f"{stats['train_kl']:.2f}", sps=f"{stats['samples_per_s']:.0f}",
                                 refresh=True)

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        if self.bar is not None:
            val = metrics.get("val_elbo")  # None without a validation split
            self.bar.set_postfix(loss=f"{metrics['train_loss']:.2f}", val_elbo="-" if val is None else f"{val:.2f}",
                                 kl=f"{metrics['train_kl']:.2f}", sps=f"{metrics['samples_per_s']:.0f}")
            self.bar.update(1)

    def on_train_end(self, trainer: Trainer) -> None:
        if self.bar is not None:
            self.bar.close()
