"""Training with the importance-weighted bound shares the evaluation's log_weights path, and the
trainer's stop hook (used by wall-clock budgets)."""

from __future__ import annotations

import json
import math

import torch

from vaekit.config import Config, DataConfig, ModelConfig, TrainConfig
from vaekit.evaluate import log_likelihood
from vaekit.model import VAE
from vaekit.objectives import elbo_terms, iwae_bound, iwae_terms, log_weights
from vaekit.train import Callback, fit


def small_vae(seed: int = 0) -> tuple[VAE, torch.Tensor]:
    torch.manual_seed(seed)
    model = VAE(ModelConfig(latent_dim=3, hidden=(16,)), (10,)).eval()
    x = torch.bernoulli(torch.full((40, 10), 0.3), generator=torch.Generator().manual_seed(seed))
    return model, x


def test_iwae_terms_use_the_same_draws_and_weights_as_log_weights():
    model, x = small_vae()
    k = 6
    torch.manual_seed(5)
    out = iwae_terms(model, x, k)
    torch.manual_seed(5)
    lw = log_weights(model, x, k)
    torch.testing.assert_close(out.bound, torch.logsumexp(lw, 0) - math.log(k))
    torch.testing.assert_close(out.loss, -out.bound.mean())
    torch.manual_seed(5)
    q = model.encode(x)
    z = q.rsample((k,))
    torch.testing.assert_close(out.recon, model.decode(z).log_prob(x).mean(0))
    torch.manual_seed(5)
    torch.testing.assert_close(iwae_bound(model, x, k), out.bound)


def test_iwae_training_bound_equals_the_evaluation_estimate_on_the_same_noise():
    model, x = small_vae(1)
    k = 9
    torch.manual_seed(2)
    q = model.encode(x)
    eps = torch.randn(k, x.shape[0], 3)
    torch.manual_seed(2)
    with torch.no_grad():
        bound = iwae_terms(model, x, k).bound.double()
    torch.testing.assert_close(log_likelihood(model, x, k=k, chunk=4, batch_size=7, eps=eps), bound,
                               atol=1e-5, rtol=0)
    assert q.batch_shape == (40,)


def test_iwae_bound_is_above_the_elbo_in_expectation_and_k1_matches():
    model, x = small_vae(2)
    x = x.repeat(50, 1)  # 2000 rows: averages over points and draws
    with torch.no_grad():
        torch.manual_seed(0)
        elbo = elbo_terms(model, x).elbo.double()
        iw1 = iwae_terms(model, x, 1).bound.double()
        iw20 = iwae_terms(model, x, 20).bound.double()
    se = float((iw1 - elbo).std() / math.sqrt(len(x)))
    assert abs(float((iw1 - elbo).mean())) < 3 * se + 1e-3
    assert float(iw20.mean()) > float(elbo.mean()) + 0.01


class StopAfter(Callback):
    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_epoch_end(self, trainer, metrics) -> None:
        if metrics["epoch"] >= self.epochs:
            trainer.request_stop(f"budget of {self.epochs} epochs")


def test_fit_with_the_iwae_objective_and_a_stop_request(tmp_path):
    config = Config(name="iw", data=DataConfig(name="digits"),
                    model=ModelConfig(latent_dim=4, hidden=(32,)),
                    train=TrainConfig(epochs=50, batch_size=128, objective="iwae", n_samples=5, device="cpu"))
    run_dir, trainer = fit(config, tmp_path, callbacks=[StopAfter(2)])
    lines = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2]
    assert trainer.state.epoch == 2
    assert trainer.state.history[-1] == "stopped at epoch 2: budget of 2 epochs"
    assert all(math.isfinite(m["train_loss"]) and math.isfinite(m["val_elbo"]) for m in lines)
    assert (run_dir / "checkpoints" / "last").is_file()
