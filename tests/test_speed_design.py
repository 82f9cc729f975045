"""Structural guarantees behind vaekit's speed (no timings here: speed figures live in bench/).

* the optimiser is fused Adam, and a non-finite step is skipped on the device;
* a training epoch reads the device a constant number of times, not once per step;
* the Bernoulli likelihood stays in logits form (no sigmoid probabilities in the loss);
* clipping off means no clipping pass; the command line starts without importing torch.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from vaekit import train
from vaekit.config import Config, ModelConfig, TrainConfig
from vaekit.data import DataConfig, load_data
from vaekit.model import VAE


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one intra-op thread avoids thread hand-offs (and stalls on a loaded machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _trainer(tmp_path: Path, batch_size: int = 64, limit: int = 0, **train_kwargs) -> train.Trainer:
    cfg = Config(name="speed", data=DataConfig(name="digits", limit=limit),
                 model=ModelConfig(hidden=(32,), latent_dim=4),
                 train=TrainConfig(batch_size=batch_size, epochs=1, device="cpu", **train_kwargs))
    return train.Trainer(cfg, tmp_path, load_data(cfg.data, cfg.model.likelihood))


def test_optimizer_is_fused_adam(tmp_path: Path) -> None:
    from vaekit.train.adam import FusedAdam

    trainer = _trainer(tmp_path)
    assert isinstance(trainer.optimizer, FusedAdam)
    assert trainer.optimizer.param_groups[0]["fused"] is True


def test_training_never_imports_the_compiler(tmp_path: Path) -> None:
    """A run (train, validation, checkpoint) in a fresh process never imports torch._dynamo: torch.optim's
    optimisers would, 0.7 s of every run's start-up. Nor SciPy's sparse module on array data (8 MB, 0.1 s;
    only interaction data need it)."""
    data = tmp_path / "x.npy"  # array data from a file (scikit-learn's bundled digits would import SciPy itself)
    np.save(data, np.random.default_rng(0).integers(0, 256, size=(300, 8, 8), dtype=np.uint8))
    code = ("import sys; from vaekit.cli import main; "
            f"rc = main(['train', '--data.path', '{data}', '--train.epochs', '1', '--model.hidden', '16', "
            "'--runs', sys.argv[1], '--name', 'r', '--no-progress', '--no-report', '--no-artifacts']); "
            "print(rc, 'torch._dynamo' in sys.modules, 'scipy.sparse' in sys.modules)")
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, env=env,
                         check=True).stdout.split()
    assert out[-3:] == ["0", "False", "False"]


def test_in_memory_split_is_one_preloaded_tensor(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path)
    assert isinstance(trainer.data.train.x, torch.Tensor)
    assert trainer.data.train.x.dtype == torch.float32
    assert trainer.data.train.x.shape[0] == len(trainer.data.train)


def _count_host_reads(monkeypatch: pytest.MonkeyPatch, trainer: train.Trainer) -> tuple[Counter, int]:
    """Run one epoch with every Python-level device->host read counted; returns (counts, steps)."""
    counts: Counter = Counter()

    def counting(name: str):
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, **kwargs):
            counts[name] += 1
            return original(self, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(train.loop, "LOG_EVERY", 10**9)  # logging cadence beyond the epoch: only the epoch end
    for name in ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__"):
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    metrics = trainer.train_epoch()
    monkeypatch.undo()
    assert metrics is not None
    return counts, trainer.steps_per_epoch


def test_epoch_reads_the_device_a_constant_number_of_times(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    few, steps_few = _count_host_reads(monkeypatch, _trainer(tmp_path / "a", batch_size=64, limit=400))
    many, steps_many = _count_host_reads(monkeypatch, _trainer(tmp_path / "b", batch_size=8, limit=400))
    assert steps_many >= 4 * steps_few >= 4 * 4  # 320 training rows: 5 vs 40 steps
    assert sum(many.values()) == sum(few.values()), (few, many)  # independent of the number of steps
    assert sum(many.values()) <= 4, many


def test_non_finite_step_is_skipped_on_device(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path)
    x = trainer.data.train.batch(torch.arange(64))
    trainer.step(x)  # creates the optimiser state
    before = [p.detach().clone() for p in trainer.model.parameters()]
    moments = [s["exp_avg"].clone() for s in trainer.optimizer.state.values()]
    x_bad = x.clone()
    x_bad[0, 0, 0] = float("nan")
    _, bad = trainer.step(x_bad)
    assert isinstance(bad, torch.Tensor) and bad.device == trainer.device and bool(bad)
    for p, p0 in zip(trainer.model.parameters(), before, strict=True):
        assert torch.equal(p.detach(), p0)
    for s, m0 in zip(trainer.optimizer.state.values(), moments, strict=True):
        assert torch.equal(s["exp_avg"], m0)
    _, bad = trainer.step(x)
    assert not bool(bad)
    assert any(not torch.equal(p.detach(), p0) for p, p0 in zip(trainer.model.parameters(), before, strict=True))


def test_no_clipping_pass_when_clipping_is_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("clip_grad_norm_ called with grad_clip = 0")

    trainer = _trainer(tmp_path)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", forbidden)
    _, bad = trainer.step(trainer.data.train.batch(torch.arange(64)))
    assert not bool(bad)
    monkeypatch.undo()

    clipped = _trainer(tmp_path / "clip", grad_clip=1.0)
    calls = []
    original = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: calls.append(a) or original(*a, **k))
    clipped.step(clipped.data.train.batch(torch.arange(64)))
    assert len(calls) == 1


def test_bernoulli_likelihood_stays_in_logits_form() -> None:
    model = VAE(ModelConfig(hidden=(16,), latent_dim=3), (4, 4))
    x = torch.bernoulli(torch.full((5, 4, 4), 0.5))
    p_x = model.decode(model.encode(x).rsample((2,)))
    log_px = p_x.log_prob(x)
    assert log_px.shape == (2, 5)
    bern = p_x.base_dist
    assert "logits" in bern.__dict__ and "probs" not in bern.__dict__  # probabilities never materialised
    logits = bern.logits
    expected = (x * logits - torch.nn.functional.softplus(logits)).sum((-2, -1))
    torch.testing.assert_close(log_px, expected)


def test_cli_import_does_not_import_torch() -> None:
    code = ("import sys, contextlib, io\n"
            "import vaekit.cli\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            "    vaekit.cli.main(['--help'])\n"
            "print(sorted(m for m in ('torch', 'numpy', 'matplotlib') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
