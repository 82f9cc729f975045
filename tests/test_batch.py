"""The Batch type: plain tensors keep working, and masked entries never enter a likelihood, not even as NaN * 0."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from vaekit.batch import Batch, as_batch
from vaekit.bounds import elbo_terms
from vaekit.config import ModelConfig
from vaekit.model import VAE


def test_as_batch_wraps_tensors_and_keeps_batches():
    x = torch.rand(3, 4)
    b = as_batch(x)
    assert isinstance(b, Batch) and b.x is x and b.y is None and b.c is None and b.mask is None
    assert as_batch(b) is b
    y = torch.tensor([0, 1, 2])
    assert torch.equal(as_batch(b, y=y).y, y)
    with pytest.raises(ValueError, match="batch field y has 2 rows for 3 examples"):
        Batch(x, y=y[:2])


def test_to_returns_the_batch_itself_when_nothing_moves():
    b = Batch(torch.rand(3, 4), y=torch.tensor([0, 1, 2]))
    assert b.to("cpu") is b and b.to(torch.device("cpu"), non_blocking=True) is b
    moved = b.to("meta")  # another device: every tensor moved, a new batch
    assert moved is not b and moved.x.device.type == moved.y.device.type == "meta" and moved.c is None


def test_encode_takes_a_tensor_or_a_batch_with_the_same_result():
    model = VAE(ModelConfig(latent_dim=2, hidden=(8,), likelihood="gaussian"), (4,)).eval()
    x = torch.randn(5, 4)
    torch.testing.assert_close(model.encode(x).mean, model.encode(Batch(x)).mean)


def test_masked_log_likelihood_counts_observed_entries_only_and_ignores_nan():
    torch.manual_seed(0)
    model = VAE(ModelConfig(latent_dim=2, hidden=(8,), likelihood="gaussian", sigma=0.5), (4,))
    x = torch.randn(6, 4)
    mask = torch.rand(6, 4) > 0.3
    holes = torch.where(mask, x, torch.full_like(x, float("nan")))  # missing entries are NaN in the data
    z = torch.randn(6, 2)
    p_x = model.decode(z)
    got = model.log_px(p_x, Batch(holes, mask=mask))
    mean = p_x.mean.detach().numpy()
    elementwise = stats.norm.logpdf(x.numpy(), mean, 0.5 * np.ones_like(mean))
    ref = np.where(mask.numpy(), elementwise, 0.0).sum(-1)
    assert torch.isfinite(got).all()
    np.testing.assert_allclose(got.detach().numpy(), ref, rtol=1e-5)


def test_masked_elbo_is_finite_with_nan_holes_and_its_gradients_too():
    torch.manual_seed(1)
    model = VAE(ModelConfig(latent_dim=2, hidden=(8,), likelihood="gaussian"), (4,))
    x = torch.randn(6, 4)
    mask = torch.ones(6, 4, dtype=torch.bool)
    mask[:, 0] = False
    out = elbo_terms(model, Batch(torch.where(mask, x, torch.nan), mask=mask))
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    # the missing column carries no information: changing what is written there changes nothing
    other = elbo_terms(model, Batch(torch.where(mask, x, 1e6), mask=mask))
    torch.manual_seed(2)
    a = elbo_terms(model, Batch(torch.where(mask, x, torch.nan), mask=mask)).recon
    torch.manual_seed(2)
    b = elbo_terms(model, Batch(torch.where(mask, x, 1e6), mask=mask)).recon
    torch.testing.assert_close(a, b)
    assert torch.isfinite(other.loss)


def test_label_condition_on_unlabelled_data_is_one_line_through_the_cli(tmp_path):
    from cli_helpers import run_vaekit

    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((40, 6)).astype(np.float32))
    proc = run_vaekit("train", "--name", "c", "--runs", str(tmp_path / "runs"), "--data.path", str(tmp_path / "x.npy"),
                      "--model.condition", "label", "--train.epochs", "1", "--train.batch_size", "8")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1
    assert "the training data have no labels" in lines[0] and "--model.condition none" in lines[0]
    assert not (tmp_path / "runs" / "c").exists()
