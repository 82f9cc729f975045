"""Golden runs: run directories written by OLD vaekit code keep loading, evaluating and resuming.

tests/fixtures/golden-v1/ was written by commit 70e21d2 (checkpoint format_version 1) and golden-v2/ by
7dde596 (format_version 2, the code before the "model parts" redesign), both with
tests/fixtures/make_golden.py (run by hand against those commits, never by the tests). Their numbers,
as the old code computed them, are pinned in tests/fixtures/golden/golden-<tag>.pinned.json.

Each run is a 2-epoch digits run stopped after epoch 1; resuming it must give exactly what the old code
gave for an uninterrupted 2-epoch run. Only public API is used here (vaekit.load / load_config /
load_data / evaluate_run / resume, model.encode / decode, the CLI): the internals may be redesigned, the
run directories already on users' disks may not be broken.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from cli_helpers import run_vaekit
from fixtures.make_golden import final_state  # the same record the fixtures were made with

import vaekit

FIXTURES = Path(__file__).parent / "fixtures"
TAGS = ["v1", "v2"]
NATS_TOL = 1e-4  # seeded IS / ELBO estimates: only float noise may move them
# a resume replays the same steps; the Bernoulli log-likelihood's summed logits form (sum x*l - softplus(l),
# 2026-11-24) rounds differently from torch's elementwise cross-entropy: 1.4e-6 nats on a -41.6 nat ELBO after
# two epochs, float32 rounding (3e-8 relative). A changed step would move these numbers by orders more.
EXACT_TOL = 1e-5


def pinned(tag: str) -> dict[str, Any]:
    return json.loads((FIXTURES / "golden" / f"golden-{tag}.pinned.json").read_text(encoding="utf-8"))


@pytest.fixture(params=TAGS)
def golden(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A copy of one golden run (tests may write into it) and its pinned numbers."""
    run = tmp_path / f"golden-{request.param}"
    shutil.copytree(FIXTURES / f"golden-{request.param}", run)
    return run, pinned(request.param)


def test_golden_fixture_is_as_made(golden):
    """The committed run is still the one stopped after epoch 1 (guards against a fixture edited by hand)."""
    run, pins = golden
    assert final_state(run) == pytest.approx(pins["at_stop"], abs=EXACT_TOL)


def test_golden_model_numbers(golden):
    run, pins = golden
    model = vaekit.load(run)
    config = vaekit.load_config(run / "config.toml")
    data = vaekit.load_data(config.data, config.model.likelihood)
    n = len(pins["model"]["decode_log_prob"])
    x = data.test.batch(torch.arange(n))
    assert float(x.double().sum()) == pins["model"]["x_sum"]  # the same rows as the old code's
    with torch.no_grad():
        z = model.encode(x).mean
        log_px = model.decode(z).log_prob(x)
    torch.testing.assert_close(z.double(), torch.tensor(pins["model"]["encode_mean"], dtype=torch.float64),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(log_px.double(), torch.tensor(pins["model"]["decode_log_prob"], dtype=torch.float64),
                               atol=NATS_TOL, rtol=0)


def test_golden_evaluate_run(golden):
    run, pins = golden
    want = pins["evaluate_run"]
    got = vaekit.evaluate_run(run, write=False, **want["args"])
    for key in ("elbo_nats", "log_likelihood_nats", "naive_log_likelihood_nats", "recon_nats", "kl_nats",
                "probe_accuracy"):
        assert got[key] == pytest.approx(want[key], abs=NATS_TOL), key
    assert got["active_units"] == want["active_units"]
    assert not (run / "eval.json").exists()


def test_golden_resume_reproduces_uninterrupted_run(golden):
    run, pins = golden
    assert pins["old_resume_reproduces_uninterrupted"]  # the old code itself resumed it exactly
    vaekit.resume(run, device="cpu")  # the saved config says device 'auto': a GPU would change the numbers
    assert final_state(run) == pytest.approx(pins["uninterrupted"], abs=EXACT_TOL)


def test_golden_cli_eval(golden):
    run, _ = golden
    proc = run_vaekit("eval", str(run), "--json", "--k", "50", "--device", "cpu", cwd=run.parent, check=True)
    result = json.loads(proc.stdout)
    assert result["k"] == 50
    assert result["log_likelihood_nats"] < 0
