"""The compiled importance-sampling block (``eval.compile``): the eager estimate from the same draws, a failed
compile that warns once and falls back, and the policy that decides when compiling pays."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from vaekit import evaluate
from vaekit.config import EvalConfig, ModelConfig
from vaekit.errors import VaekitError
from vaekit.evaluate import COMPILE_FROM, compile_failure, log_likelihood, use_compile
from vaekit.model import VAE

NEEDS_COMPILER = pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None,
                                    reason="torch.compile needs a C++ compiler on the CPU (none found)")


def model_and_data(seed: int = 0) -> tuple[VAE, torch.Tensor]:
    torch.manual_seed(seed)
    model = VAE(ModelConfig(hidden=(16,), latent_dim=3, likelihood="bernoulli"), (12,))
    return model, (torch.rand(10, 12) < 0.4).float()


@NEEDS_COMPILER
def test_compiled_blocks_give_the_eager_estimate_from_the_same_draws():
    """10 points in blocks of 4: two whole blocks compiled, the tail of 2 eager; 3 chunks of 20 samples each.
    The same seed draws the same z; the compiled log-weights differ from the eager ones by float32 rounding."""
    import torch._dynamo.utils as dynamo_utils

    model, x = model_and_data()
    eager = log_likelihood(model, x, k=60, chunk=20, batch_size=4, seed=3)
    graphs = dynamo_utils.counters["stats"]["unique_graphs"]
    compiled = log_likelihood(model, x, k=60, chunk=20, batch_size=4, seed=3, compile=True)
    assert compile_failure() is None
    assert dynamo_utils.counters["stats"]["unique_graphs"] == graphs + 1  # one graph: the whole block
    assert compiled.shape == eager.shape == (10,) and compiled.dtype == torch.float64
    torch.testing.assert_close(compiled, eager, rtol=0, atol=1e-4)
    assert compiled[8:].tolist() == eager[8:].tolist()  # the tail block ran eagerly: bit for bit
    again = log_likelihood(model, x, k=60, chunk=20, batch_size=4, seed=3, compile=True)
    assert again.tolist() == compiled.tolist()
    assert dynamo_utils.counters["stats"]["unique_graphs"] == graphs + 1  # no recompile for the same shapes


def test_a_failed_compile_warns_once_and_gives_the_eager_estimate(tmp_path):
    """No working C++ compiler (CXX names none, and an empty inductor cache): one RuntimeWarning naming the
    failure and the way to skip the attempt, then every block eagerly, the same numbers as compile=False."""
    script = textwrap.dedent("""
        import warnings, torch
        from test_evaluate_compiled import model_and_data
        from vaekit.evaluate import log_likelihood, compile_failure
        model, x = model_and_data()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            a = log_likelihood(model, x, k=60, chunk=20, batch_size=4, seed=3, compile=True)
            b = log_likelihood(model, x, k=60, chunk=20, batch_size=4, seed=3, compile=True)
        eager = log_likelihood(model, x, k=60, chunk=20, batch_size=4, seed=3)
        mine = [str(w.message) for w in caught if "evaluation block" in str(w.message)]
        print(len(mine), mine[0] if mine else "", compile_failure() is not None,
              a.tolist() == eager.tolist() == b.tolist())
    """)
    env = {**os.environ, "CXX": str(tmp_path / "no-such-compiler"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "ind"),
           "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    line = out.stdout.strip()
    assert line.split()[0] == "1", line  # one warning for two calls
    assert "compiling the evaluation block failed" in line and "--eval.compile off" in line
    assert line.endswith("True True"), line


@NEEDS_COMPILER
def test_past_the_recompile_limit_the_blocks_run_eagerly_and_say_so(tmp_path):
    """torch runs a function eagerly, without a word, once it holds ``recompile_limit`` graphs (new shapes or
    architectures in one process). With the limit at 1, a second architecture's blocks: one RuntimeWarning
    naming the limit, ``compile_failure()`` set (so eval.json says compiled false), the eager numbers."""
    script = textwrap.dedent("""
        import warnings, torch, torch._dynamo.config
        from vaekit.config import ModelConfig
        from vaekit.evaluate import log_likelihood, compile_failure
        from vaekit.model import VAE
        torch._dynamo.config.recompile_limit = 1
        x = (torch.rand(10, 12, generator=torch.Generator().manual_seed(0)) < 0.4).float()
        first = VAE(ModelConfig(hidden=(16,), latent_dim=3, likelihood="bernoulli"), (12,))
        log_likelihood(first, x, k=40, chunk=20, batch_size=4, seed=3, compile=True)
        ok = compile_failure() is None
        second = VAE(ModelConfig(hidden=(17,), latent_dim=3, likelihood="bernoulli"), (12,))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            asked = log_likelihood(second, x, k=40, chunk=20, batch_size=4, seed=3, compile=True)
        eager = log_likelihood(second, x, k=40, chunk=20, batch_size=4, seed=3)
        mine = [str(w.message) for w in caught if "evaluation block" in str(w.message)]
        print(ok, len(mine), asked.tolist() == eager.tolist(), compile_failure())
    """)
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "ind")}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    ok, warned, same, failure = out.stdout.strip().split(" ", 3)
    assert (ok, warned, same) == ("True", "1", "True"), out.stdout
    assert "limit of 1 compiled graphs per function" in failure, failure


def test_compile_policy():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert use_compile("auto", 10_000, 5000, cpu)  # the test set of MNIST at k = 5000: compiled
    assert not use_compile("auto", COMPILE_FROM // 5000 - 1, 5000, cpu)  # fewer points: the compile does not pay
    assert not use_compile("auto", 10_000, 5000, cuda) and not use_compile("auto", 10_000, 5000, cpu, "bf16")
    assert use_compile("on", 1, 1, cpu) and not use_compile("off", 10_000, 5000, cpu)
    assert EvalConfig().compile == "auto"
    with pytest.raises(VaekitError, match="eval.compile"):
        EvalConfig(compile="yes")
    assert evaluate._log_w.__doc__ and "log_terms" in evaluate._log_w.__doc__


def test_a_hierarchy_and_bf16_are_evaluated_eagerly_whatever_compile_says():
    """A two-level posterior caches its last draw by identity (a compiled block would recompile for every new
    draw), and bf16 runs under autocast: both ignore compile=True, the eager numbers bit for bit, no graph."""
    import torch._dynamo.utils as dynamo_utils

    from vaekit.model import build_model
    from vaekit.schema import DataSchema

    torch.manual_seed(0)
    hvae = build_model(ModelConfig(levels=2, latent_dim=2, hidden=(8,), likelihood="bernoulli"),
                       DataSchema.for_shape((12,)))
    flat, x = model_and_data()
    graphs = dynamo_utils.counters["stats"]["unique_graphs"]
    for model, precision in ((hvae, "fp32"), (flat, "bf16")):
        eager = log_likelihood(model, x, k=40, chunk=20, batch_size=4, seed=1, precision=precision)
        asked = log_likelihood(model, x, k=40, chunk=20, batch_size=4, seed=1, precision=precision, compile=True)
        assert asked.tolist() == eager.tolist()
    assert dynamo_utils.counters["stats"]["unique_graphs"] == graphs


@NEEDS_COMPILER
def test_eval_json_says_compiled_only_where_the_blocks_were(tmp_path):
    """``--eval.compile on`` through evaluate_run: a one-level run's blocks compile (``compiled`` true, the eager
    estimate up to rounding); a two-level run's run eagerly whatever was asked, and so do blocks that are never
    whole (k below the chunk): eval.json says false for both."""
    import torch._dynamo.utils as dynamo_utils

    from vaekit.config import Config, DataConfig, TrainConfig
    from vaekit.evaluate import evaluate_run
    from vaekit.train import fit

    def run(name: str, **model) -> Path:
        config = Config(name=name, data=DataConfig(name="digits"),
                        model=ModelConfig(latent_dim=2, hidden=(16,), **model),
                        train=TrainConfig(epochs=1, batch_size=64, device="cpu"))
        return fit(config, tmp_path)[0]

    fast = {"k": 40, "chunk": 20, "naive_k": 20, "write": False}  # two whole 20-sample chunks per point
    flat, two = run("flat"), run("two", levels=2)
    graphs = dynamo_utils.counters["stats"]["unique_graphs"]
    on = evaluate_run(flat, **fast, overrides={"eval.compile": "on"})
    assert dynamo_utils.counters["stats"]["unique_graphs"] > graphs  # a block really compiled
    off = evaluate_run(flat, **fast, overrides={"eval.compile": "off"})
    assert on["compiled"] is True and off["compiled"] is False
    assert on["log_likelihood_nats"] == pytest.approx(off["log_likelihood_nats"], abs=1e-4)
    assert evaluate_run(two, **fast, overrides={"eval.compile": "on"})["compiled"] is False
    no_whole_block = {**fast, "chunk": 250}  # k = 40 < chunk: every block is a tail block, run eagerly
    assert evaluate_run(flat, **no_whole_block, overrides={"eval.compile": "on"})["compiled"] is False
