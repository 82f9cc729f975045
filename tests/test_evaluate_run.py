"""``evaluate_run`` and ``vaekit eval`` on real (tiny) runs: keys, units, eval.json, AE runs, overrides, errors."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_vaekit

from vaekit import api
from vaekit.config import Config, DataConfig, ModelConfig, TrainConfig
from vaekit.errors import VaekitError
from vaekit.evaluate import evaluate_run
from vaekit.train import fit

KEYS = {"elbo_nats", "log_likelihood_nats", "k", "recon_nats", "kl_nats", "bits_per_dim", "n_examples", "compiled",
        "log_likelihood_se", "log_likelihood_mc_se", "nats_per_dim", "kl_per_dim", "active_units", "probe_accuracy",
        "naive_log_likelihood_nats", "naive_log_likelihood_se", "warnings"}
FAST = {"k": 40, "naive_k": 40}


def _train(root: Path, name: str, **model) -> Path:
    config = Config(name=name, data=DataConfig(name="digits"),
                    model=ModelConfig(latent_dim=4, hidden=(32,), **model),
                    train=TrainConfig(epochs=1, batch_size=64, device="cpu"))
    return fit(config, root)[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    return {"vae": _train(root, "vae"), "ae": _train(root, "ae", kind="ae")}


def test_vae_report_keys_units_and_eval_json(runs):
    result = evaluate_run(runs["vae"], **FAST, seed=1)
    assert result.keys() >= KEYS
    assert result["k"] == 40 and result["n_examples"] == 180 and result["dims"] == 64
    ll = result["log_likelihood_nats"]
    assert result["nats_per_dim"] == pytest.approx(-ll / 64)
    assert result["bits_per_dim"] == pytest.approx(-ll / (64 * math.log(2)))
    assert result["elbo_nats"] == pytest.approx(result["recon_nats"] - result["kl_nats"])
    assert len(result["kl_per_dim"]) == 4
    assert sum(result["kl_per_dim"]) == pytest.approx(result["kl_nats"], abs=1e-4)  # both closed form
    assert ll > result["elbo_nats"] - 3 * result["log_likelihood_se"]
    assert ll > result["naive_log_likelihood_nats"] - 3 * result["naive_log_likelihood_se"]
    assert 0 <= result["active_units"] <= 4 and 0.0 <= result["probe_accuracy"] <= 1.0
    assert result["log_likelihood_mc_se"] is None
    saved = json.loads((runs["vae"] / "eval.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert not list(runs["vae"].glob(".eval.json*"))  # no temporary file left behind


def test_repeats_give_a_monte_carlo_error_and_the_average_estimate(runs):
    one = [evaluate_run(runs["vae"], **FAST, seed=0, repeats=1, write=False)["log_likelihood_nats"]]
    three = evaluate_run(runs["vae"], **FAST, seed=0, repeats=3, write=False)
    assert three["repeats"] == 3 and three["log_likelihood_mc_se"] > 0
    assert three["log_likelihood_nats"] == pytest.approx(one[0], abs=10 * three["log_likelihood_mc_se"] + 0.05)


def test_autoencoder_has_null_likelihood_keys_and_the_rest_works(runs):
    result = evaluate_run(runs["ae"], **FAST, write=False)
    for key in ("log_likelihood_nats", "log_likelihood_se", "bits_per_dim", "nats_per_dim",
                "naive_log_likelihood_nats", "elbo_nats", "kl_nats", "kl_per_dim"):
        assert result[key] is None, key
    assert math.isfinite(result["recon_nats"]) and isinstance(result["active_units"], int)
    assert 0.0 <= result["probe_accuracy"] <= 1.0
    assert any("autoencoder" in w for w in result["warnings"])


def test_data_overrides_change_the_test_draw_and_bad_overrides_fail(runs, tmp_path):
    a = evaluate_run(runs["vae"], **FAST, write=False)
    b = evaluate_run(runs["vae"], **FAST, write=False, overrides={"data.binarize_seed": "7"})
    assert a["n_examples"] == b["n_examples"] and a["elbo_nats"] != b["elbo_nats"]
    with pytest.raises(VaekitError, match="only --data"):
        evaluate_run(runs["vae"], **FAST, overrides={"model.latent_dim": "3"})
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.random.default_rng(0).random((50, 10)).astype(np.float32))
    with pytest.raises(VaekitError, match="shape"):
        evaluate_run(runs["vae"], **FAST, overrides={"data.path": str(wrong)})  # (data.binarize: refused now)
    for bad in ({"k": 0}, {"k": -5}, {"naive_k": 0}, {"repeats": 0}, {"chunk": 0}):
        with pytest.raises(VaekitError, match="must be >= 1"):
            evaluate_run(runs["vae"], **{**FAST, **bad})


def test_collapsed_posterior_is_reported(tmp_path):
    config = Config(name="collapsed", data=DataConfig(name="digits"), model=ModelConfig(latent_dim=4, hidden=(32,)),
                    train=TrainConfig(epochs=1, batch_size=64, beta=200.0, device="cpu"))
    run_dir = fit(config, tmp_path)[0]
    result = evaluate_run(run_dir, **FAST, write=False)
    assert result["active_units"] == 0
    assert any("posterior collapse: 0 of 4" in w for w in result["warnings"])


def test_api_reexport_is_the_same_function():
    assert api.evaluate_run is evaluate_run


def _cli(*args: str) -> subprocess.CompletedProcess:
    return run_vaekit(*args)


def test_cli_eval_json_and_errors(runs):
    out = _cli("eval", str(runs["vae"]), "--k", "20", "--naive-k", "20", "--repeats", "2", "--json",
               "--data.binarize_seed", "3")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result.keys() >= KEYS and result["k"] == 20 and result["log_likelihood_mc_se"] > 0
    for warning in result["warnings"]:
        assert f"vaekit: warning: {warning}" in out.stderr
    bad = _cli("eval", str(runs["vae"]), "--k", "-3")  # 0 and other bad counts: see the library test above
    assert bad.returncode == 2
    assert bad.stderr.startswith("vaekit: error: --k must be >= 1") and bad.stderr.count("\n") == 1
