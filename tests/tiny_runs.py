"""The tiny digits run the trainer and checkpoint tests share: 2 latents, one hidden layer of 16, batch 64
(23 steps per epoch), CPU, a short bad-step streak."""

from __future__ import annotations

from vaekit.config import Config, apply_overrides

STEPS = 23  # digits: 1437 training examples / batch 64
TINY = {"name": "t", "model.hidden": "16", "model.latent_dim": "2", "train.epochs": "2", "train.batch_size": "64",
        "train.device": "cpu", "train.max_bad_steps": "3"}


def tiny_config(**overrides: str) -> Config:
    """:data:`TINY` with dotted ``overrides`` on top."""
    return apply_overrides(Config(), {**TINY, **overrides})
