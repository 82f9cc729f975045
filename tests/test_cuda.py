"""The CUDA path (runs only where a GPU is present; CI has none, the GPU machine runs it)."""

from __future__ import annotations

import pytest
import torch

from vaekit.config import Config, ModelConfig, TrainConfig
from vaekit.data import DataConfig, load_data
from vaekit.evaluate import log_likelihood
from vaekit.train import Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def cuda_trainer(tmp_path, **train) -> Trainer:
    config = Config(name="cuda", model=ModelConfig(latent_dim=4, hidden=(64,)),
                    train=TrainConfig(device="cuda", epochs=2, batch_size=64, **train))
    return Trainer(config, tmp_path, load_data(DataConfig(), "bernoulli"))


@pytest.mark.filterwarnings("ignore:Synchronization debug mode is a prototype feature:UserWarning")
def test_training_step_makes_no_host_sync(tmp_path):
    trainer = cuda_trainer(tmp_path)
    assert trainer.data.train.x.device.type == "cuda"
    idx = torch.arange(64, device="cuda")
    x = trainer.data.train.batch(idx, trainer.binarize_rng)
    trainer.step(x)  # first step allocates the optimiser state
    torch.cuda.synchronize()
    try:  # inside the try: if enabling the mode raises, the finally still turns it off for later tests
        torch.cuda.set_sync_debug_mode("error")
        for _ in range(5):
            x = trainer.data.train.batch(idx, trainer.binarize_rng)
            out, bad = trainer.step(x)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert not bad.item() and torch.isfinite(out.loss).item()


def test_cuda_training_and_evaluation_run_end_to_end(tmp_path):
    trainer = cuda_trainer(tmp_path)
    state = trainer.fit()
    assert state.epoch == 2 and state.best_val_elbo > -60
    x = trainer.data.test.all()
    ll = log_likelihood(trainer.model, x, k=100, chunk=25)
    assert ll.shape == (len(x),) and torch.isfinite(ll).all()
