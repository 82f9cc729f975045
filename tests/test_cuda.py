"""The CUDA path (runs only where a GPU is present; CI has none, the GPU machine runs it)."""

from __future__ import annotations

import pytest
import torch

from vaekit.checkpoint import load_model
from vaekit.config import Config, ModelConfig, TrainConfig
from vaekit.data import DataConfig, load_data
from vaekit.evaluate import log_likelihood
from vaekit.train import Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


#: The two-level model with a VampPrior on its top level: the learned-prior and hierarchy code on the GPU.
HVAE_VAMP = {"prior": "vamp", "prior_components": 10, "levels": 2}


def cuda_trainer(tmp_path, model: dict | None = None, **train) -> Trainer:
    config = Config(name="cuda", model=ModelConfig(latent_dim=4, hidden=(64,), **(model or {})),
                    train=TrainConfig(device="cuda", epochs=2, batch_size=64, **train))
    return Trainer(config, tmp_path, load_data(DataConfig(), "bernoulli"))


@pytest.mark.filterwarnings("ignore:Synchronization debug mode is a prototype feature:UserWarning")
@pytest.mark.parametrize("model", [None, HVAE_VAMP], ids=["vae", "hvae-vamp"])
def test_training_step_makes_no_host_sync(tmp_path, model):
    trainer = cuda_trainer(tmp_path, model)
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


def test_hierarchy_with_vampprior_scores_the_same_on_cuda_and_cpu(tmp_path):
    """The importance-sampled log p(x) of one trained HVAE + VampPrior, on the GPU and (reloaded from its
    checkpoint) on the CPU: independent draws, so the per-example differences must average to zero within
    their standard error."""
    trainer = cuda_trainer(tmp_path, HVAE_VAMP)
    trainer.fit()
    x = trainer.data.test.all()[:300]
    on_gpu = log_likelihood(trainer.model, x, k=1000, chunk=250, seed=0)
    cpu_model, _, _ = load_model(tmp_path, device="cpu")
    on_cpu = log_likelihood(cpu_model, x.cpu(), k=1000, chunk=250, seed=1)
    diff = on_gpu - on_cpu
    se = float(diff.std()) / len(diff) ** 0.5
    assert torch.isfinite(on_gpu).all() and float(on_gpu.mean()) < 0
    assert abs(float(diff.mean())) < 4 * se + 1e-3, (float(diff.mean()), se)


@pytest.mark.parametrize("extra", [[], ["--model.condition", "label"]], ids=["vae", "cvae"])
def test_cli_run_on_the_gpu_writes_its_grids_and_scores(tmp_path, extra):
    """`vaekit train` with the default device on a GPU machine: the trainer's data live on the GPU, the
    grids and the collapse probe load the model on the CPU; both must work (they once mixed devices)."""
    from cli_helpers import run_vaekit

    run_vaekit("train", "--name", "g", "--train.epochs", "1", "--model.hidden", "32", "--data.limit", "400",
               "--no-progress", "--no-report", *extra, cwd=tmp_path, check=True)
    run = tmp_path / "runs" / "g"
    assert (run / "samples.png").stat().st_size > 0 and (run / "reconstructions.png").stat().st_size > 0


@pytest.mark.skipif(torch.cuda.is_available() and torch.cuda.device_count() >= 2, reason="needs fewer than 2 GPUs")
def test_more_processes_than_gpus_is_a_one_line_error_for_cuda(tmp_path):
    from cli_helpers import run_vaekit

    proc = run_vaekit("train", "--name", "p", "--train.nproc", "2", "--train.device", "cuda", "--train.epochs", "1",
                      "--model.hidden", "8", "--data.limit", "400", "--no-progress", "--no-report", "--no-artifacts",
                      cwd=tmp_path)
    assert proc.returncode != 0
    assert "one per process is needed" in proc.stderr and "--train.nproc 1" in proc.stderr, proc.stderr


def test_a_gpu_index_the_machine_lacks_is_a_one_line_error():
    from vaekit.devices import pick_device
    from vaekit.errors import VaekitError

    n = torch.cuda.device_count()
    assert pick_device(f"cuda:{n - 1}") == torch.device("cuda", n - 1)
    with pytest.raises(VaekitError, match=f"names a GPU this machine lacks: it has {n}"):
        pick_device(f"cuda:{n}")
