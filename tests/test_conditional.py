"""The conditional VAE: label- and covariate-conditional runs through the real CLI, log p(x|c) against a closed
form, class-conditional samples that follow their label, and the split statistics shared by eval and the report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cli_helpers import run_vaekit
from model_helpers import only_linear
from PIL import Image
from torch.distributions import MultivariateNormal

from vaekit import api, probes
from vaekit.checkpoint import load_model, model_meta, save_checkpoint
from vaekit.config import Config, ModelConfig, apply_overrides
from vaekit.data import DataConfig, load_data
from vaekit.data.files import load_csv
from vaekit.data.preprocess import split_rows
from vaekit.errors import VaekitError
from vaekit.evaluate import evaluate_run, log_likelihood
from vaekit.model import VAE
from vaekit.report.runinfo import load_run_info
from vaekit.report.single import CLASS_SAMPLES_ID, build_report, split_stats
from vaekit.schema import DataSchema
from vaekit.train import fit

D, LATENT, K, SIGMA = 5, 2, 3, 0.6
CVAE_FLAGS = ("--model.condition", "label", "--train.epochs", "5", "--train.lr", "1e-2", "--train.batch_size", "64",
              "--model.latent_dim", "4", "--model.hidden", "128", "--no-progress")


@pytest.fixture(scope="module")
def cvae_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A label-conditional VAE on digits trained through the real CLI (5 short epochs)."""
    root = tmp_path_factory.mktemp("cvae")
    run_vaekit("train", "--name", "cvae", "--runs", str(root), *CVAE_FLAGS, check=True)
    return root / "cvae"


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An unconditional VAE on digits (one epoch, no artifacts), trained from Python."""
    root = tmp_path_factory.mktemp("plain")
    config = apply_overrides(Config(), {"name": "plain", "train.epochs": "1", "model.latent_dim": "3",
                                        "model.hidden": "32"})
    return fit(config, runs_root=root)[0]


# ------------------------------------------------------------------------------- label condition, CLI
def test_cli_run_records_the_condition_and_samples_a_label(cvae_run: Path, tmp_path: Path) -> None:
    meta = json.loads(next((cvae_run / "checkpoints").glob("step-*/meta.json")).read_text())
    assert meta["schema"]["condition"] == "label" and meta["schema"]["n_classes"] == 10
    assert meta["schema"]["cond_dim"] == 10
    out = tmp_path / "threes.png"
    proc = run_vaekit("sample", str(cvae_run), "--label", "3", "-n", "16", "--out", str(out), check=True)
    assert f"wrote {out}" in proc.stdout
    with Image.open(out) as im:  # a grid of 16 8x8 digits
        assert im.size[0] > 8 and im.size[1] > 8
    npy = tmp_path / "threes.npy"
    run_vaekit("sample", str(cvae_run), "--label", "3", "-n", "16", "--out", str(npy), check=True)
    assert np.load(npy).shape == (16, 8, 8)
    assert "class-samples" in (cvae_run / "report.html").read_text()


def test_cli_refuses_a_missing_or_unwanted_condition(cvae_run: Path, plain_run: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "s.png")
    missing = run_vaekit("sample", str(cvae_run), "-n", "4", "--out", out)
    assert missing.returncode != 0
    assert missing.stderr.strip().splitlines() == [
        "vaekit: error: this run's model is label-conditional (10 classes): give --label K with K in 0..9 "
        "(label= in Python)"]
    bad = run_vaekit("sample", str(cvae_run), "--label", "10", "--out", out)
    assert bad.returncode != 0 and "labels must be in 0..9" in bad.stderr
    wrong_kind = run_vaekit("sample", str(cvae_run), "--condition", "0.5,1", "--out", out)
    assert wrong_kind.returncode != 0 and "conditioned on labels" in wrong_kind.stderr
    unwanted = run_vaekit("sample", str(plain_run), "--label", "3", "--out", out)
    assert unwanted.returncode != 0 and "not conditional" in unwanted.stderr and "drop --label" in unwanted.stderr
    assert len(unwanted.stderr.strip().splitlines()) == 1
    assert not Path(out).exists()


def test_encode_and_reconstruct_use_the_splits_labels(cvae_run: Path, tmp_path: Path) -> None:
    model, _, _, data = api.load_run(cvae_run)
    z = np.load(api.encode(cvae_run, tmp_path / "z.npy"))
    expected = model.encode(data.test.x, y=data.test.y).mean.detach().numpy()
    np.testing.assert_allclose(z, expected, rtol=1e-5, atol=1e-6)
    wrong = model.encode(data.test.x, y=(data.test.y + 1) % 10).mean.detach().numpy()
    assert np.abs(z - wrong).max() > 1e-3  # the labels really reach the encoder
    pairs = np.load(api.reconstruct(cvae_run, tmp_path / "r.npy", n=5))
    np.testing.assert_allclose(pairs[1], model.reconstruct(data.test.x[:5], y=data.test.y[:5]).numpy(), atol=1e-6)
    # an input file needs its labels: one for all rows, or one per row
    np.save(tmp_path / "x.npy", data.test.x[:6].numpy())
    with pytest.raises(VaekitError, match="label-conditional"):
        api.encode(cvae_run, tmp_path / "z2.npy", input=tmp_path / "x.npy")
    np.save(tmp_path / "y.npy", data.test.y[:6].numpy())
    z6 = np.load(api.encode(cvae_run, tmp_path / "z2.npy", input=tmp_path / "x.npy", label=tmp_path / "y.npy"))
    np.testing.assert_allclose(z6, expected[:6], rtol=1e-5, atol=1e-6)


def test_class_conditional_samples_follow_their_label(cvae_run: Path) -> None:
    """Decoder means for label k sit nearest to the training mean of class k (measured after 5 epochs: 10 of
    10 classes, 99.6% of samples; asserted with a wide margin)."""
    model, _, _, data = api.load_run(cvae_run)
    x = data.train.all(torch.Generator().manual_seed(0)).reshape(len(data.train), -1)
    centres = torch.stack([x[data.train.y == k].mean(0) for k in range(10)])
    hits = []
    for k in range(10):
        s = model.sample(50, y=k, generator=torch.Generator().manual_seed(k)).reshape(50, -1)
        hits.append((torch.cdist(s, centres).argmin(1) == k).float().mean().item())
    assert np.mean(hits) >= 0.7, hits
    assert sum(h > 0.5 for h in hits) >= 8, hits


def test_eval_reports_log_p_x_given_y(cvae_run: Path) -> None:
    result = evaluate_run(cvae_run, k=50, naive_k=10, write=False)
    assert result["conditional"] == "label" and result["log_likelihood_of"] == "log p(x | y)"
    ll, elbo = result["log_likelihood_nats"], result["elbo_nats"]
    assert math.isfinite(ll) and math.isfinite(result["naive_log_likelihood_nats"])
    assert ll >= elbo  # the IS estimate is a tighter bound than the ELBO on average
    assert elbo == pytest.approx(result["recon_nats"] - result["kl_nats"], abs=1e-6)
    model, _, _, data = api.load_run(cvae_run)
    x, y = data.test.x[:60], data.test.y[:60]
    right = log_likelihood(model, x, k=100, seed=0, y=y)
    wrong = log_likelihood(model, x, k=100, seed=0, y=(y + 5) % 10)
    assert right.mean() > wrong.mean() + 1.0  # the label carries information about x


@pytest.mark.parametrize("which", ["cvae", "plain"])
def test_report_shows_the_numbers_eval_reports(which: str, cvae_run: Path, plain_run: Path) -> None:
    run = cvae_run if which == "cvae" else plain_run
    result = evaluate_run(run, k=1, naive_k=1, write=False)
    info = load_run_info(run)
    stats = split_stats(info, seed=0)
    assert stats.n_active == result["active_units"]
    assert stats.probe == result["probe_accuracy"]
    assert stats.kl_per_dim is not None and stats.kl_per_dim.tolist() == result["kl_per_dim"]
    assert stats.n_points == result["n_examples"]
    html = build_report(info, seed=0)
    d = info.model.latent_dim
    assert f"{stats.n_active} of {d} units active" in html
    assert (CLASS_SAMPLES_ID in html) == (which == "cvae")


def test_split_stats_encode_with_each_rows_condition(cvae_run: Path) -> None:
    model, _, _, data = api.load_run(cvae_run)
    stats = probes.split_stats(model, data, "test", probe=False)
    q = model.encode(data.test.x, y=data.test.y)
    torch.testing.assert_close(stats.means, q.mean.detach())
    kl = model.latent_prior.analytic_kl_per_dim(q).double().mean(0)
    torch.testing.assert_close(stats.kl_per_dim, kl.detach())
    assert stats.cond is not None
    torch.testing.assert_close(stats.cond, F.one_hot(data.test.y, 10).float())


# ------------------------------------------------------------------------------- covariates
def _write_covariate_csv(path: Path, n: int = 400, missing: bool = False) -> np.ndarray:
    """A table x (3 features) = W z + B c + noise with covariates age, dose; returns c (n, 2)."""
    rng = np.random.default_rng(0)
    c = np.stack([rng.normal(40, 10, n), rng.normal(1.0, 0.5, n)], 1)
    z = rng.normal(size=(n, 1))
    x = z @ rng.normal(size=(1, 3)) + ((c - [40, 1.0]) / [10, 0.5]) @ rng.normal(size=(2, 3)) + \
        0.1 * rng.normal(size=(n, 3))
    lines = ["a,age,b,dose,c"] + [f"{x[i, 0]},{c[i, 0]},{x[i, 1]},{c[i, 1]},{x[i, 2]}" for i in range(n)]
    if missing:
        lines[5] = lines[5].replace(f",{c[4, 1]},", ",,")  # file line 6 = row index 4
    path.write_text("\n".join(lines) + "\n")
    return c


def test_covariates_csv_run_through_the_cli(tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    c = _write_covariate_csv(csv)
    run_vaekit("train", "--name", "cov", "--runs", str(tmp_path / "runs"), "--data.path", str(csv),
               "--data.condition_columns", "age,dose", "--model.condition", "covariates", "--train.epochs", "2",
               "--model.latent_dim", "2", "--model.hidden", "16", "--no-progress", "--no-report", check=True)
    run = tmp_path / "runs" / "cov"
    model, config, meta, data = api.load_run(run)
    assert data.event_shape == (3,) and data.info["columns"] == ["a", "b", "c"]
    assert model.schema.condition == "covariates" and model.schema.cond_dim == 2
    # the recorded statistics are the training split's, and every split is standardised with them
    rows, _ = split_rows(load_csv(csv, "", ("age", "dose")), config.data)
    record = meta["data"]["prep"]["covariates"]
    assert record["columns"] == ["age", "dose"]
    np.testing.assert_allclose(record["loc"], c[rows["train"]].mean(0), rtol=1e-9)
    np.testing.assert_allclose(record["scale"], c[rows["train"]].std(0), rtol=1e-9)
    np.testing.assert_allclose(data.test.c.numpy(), (c[rows["test"]] - record["loc"]) / record["scale"], atol=1e-5)
    ev = json.loads(run_vaekit("eval", str(run), "--k", "20", "--naive-k", "20", "--json", check=True).stdout)
    assert ev["conditional"] == "covariates" and ev["log_likelihood_of"] == "log p(x | c)"
    assert math.isfinite(ev["log_likelihood_nats"])
    out = tmp_path / "s.npy"
    run_vaekit("sample", str(run), "--condition", "45,1.2", "-n", "7", "--out", str(out), check=True)
    assert np.load(out).shape == (7, 3)
    np.save(tmp_path / "cov.npy", c[:5])
    run_vaekit("sample", str(run), "--condition", str(tmp_path / "cov.npy"), "--out", str(out), check=True)
    assert np.load(out).shape == (5, 3)
    # the API standardises covariates given in the data's units exactly as the data were
    x = api.sample(run, 5, tmp_path / "p.npy", c=c[:5], mean=True)
    expect = model.sample(5, c=torch.from_numpy(((c[:5] - record["loc"]) / record["scale"]).astype(np.float32)),
                          generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(np.load(x), expect.numpy(), atol=1e-6)
    short = run_vaekit("sample", str(run), "--condition", "45", "--out", str(out))
    assert short.returncode != 0 and "takes 2 (age, dose)" in short.stderr


def test_covariate_errors_are_one_line(tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    _write_covariate_csv(csv, missing=True)
    with pytest.raises(VaekitError, match=r"missing covariate at row 6, column 4 \('dose'\)"):
        load_data(DataConfig(path=str(csv), condition_columns=("age", "dose")))
    with pytest.raises(VaekitError, match="covariate column 'weight' not in the header"):
        load_data(DataConfig(path=str(csv), condition_columns=("weight",)))
    with pytest.raises(VaekitError, match="named datasets have labels only"):
        load_data(DataConfig(condition_columns=("age",)))
    with pytest.raises(VaekitError, match="add --model.condition covariates"):
        apply_overrides(Config(), {"data.condition_columns": "age"})
    _write_covariate_csv(csv)
    proc = run_vaekit("train", "--data.path", str(csv), "--model.condition", "covariates", "--runs",
                      str(tmp_path / "runs"), "--no-progress")
    assert proc.returncode != 0 and "the data have no covariates" in proc.stderr


def test_npz_covariates_are_read_by_key(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x, c = rng.normal(size=(50, 4)), rng.normal(3.0, 2.0, size=50)
    np.savez(tmp_path / "d.npz", x=x, c=c)
    data = load_data(DataConfig(path=str(tmp_path / "d.npz"), condition_columns=("c",)))
    assert data.train.c is not None and data.train.c.shape == (len(data.train), 1)
    assert data.train.c.mean().abs() < 1e-5 and (data.train.c.std(correction=0) - 1).abs() < 1e-5
    c[7] = np.nan
    np.savez(tmp_path / "bad.npz", x=x, c=c)
    with pytest.raises(VaekitError, match="missing or non-finite covariate in 'c' at row 7"):
        load_data(DataConfig(path=str(tmp_path / "bad.npz"), condition_columns=("c",)))


# ------------------------------------------------------------------------------- exact log p(x|c)
def conditional_ppca(condition: str, seed: int = 0) -> tuple[VAE, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(model, W, B, b): x = W z + B c + b + sigma * noise, z ~ N(0, I), with the exact posterior q(z|x, c):
    mean A (x - B c - b), A = (W'W + sigma^2 I)^-1 W', covariance sigma^2 (W'W + sigma^2 I)^-1."""
    g = torch.Generator().manual_seed(seed)
    schema = DataSchema.for_shape((D,), condition=condition, cond_dim=K, n_classes=K if condition == "label" else 0)
    model = VAE(ModelConfig(likelihood="gaussian", hidden=(), latent_dim=LATENT, sigma=SIGMA, posterior="full",
                            condition=condition), schema=schema)
    W, B, b = torch.randn(D, LATENT, generator=g), torch.randn(D, K, generator=g), 0.5 * torch.randn(D, generator=g)
    M = W.T @ W + SIGMA**2 * torch.eye(LATENT)
    A = torch.linalg.solve(M, W.T)
    L = torch.linalg.cholesky(SIGMA**2 * torch.linalg.inv(M))
    enc, dec = only_linear(model.encoder), only_linear(model.decoder)
    with torch.no_grad():
        dec.weight.copy_(torch.cat([W, B], 1))  # decoder input [z, c]
        dec.bias.copy_(b)
        enc.weight.zero_()  # encoder input [x, c]
        enc.weight[:LATENT, :D] = A
        enc.weight[:LATENT, D:] = -A @ B
        enc.bias[:LATENT] = -A @ b
        rows, cols = torch.tril_indices(LATENT, LATENT)
        raw = L[rows, cols].clone()
        raw[rows == cols] = torch.log(L[rows, cols][rows == cols])
        enc.bias[LATENT:] = raw
    return model.eval(), W, B, b


@pytest.mark.parametrize("condition", ["covariates", "label"])
def test_log_p_x_given_c_matches_the_closed_form(condition: str, float64: None) -> None:
    model, W, B, b = conditional_ppca(condition)
    g = torch.Generator().manual_seed(1)
    n = 40
    if condition == "label":
        y = torch.randint(0, K, (n,), generator=g)
        c, kwargs = F.one_hot(y, K).double(), {"y": y}
    else:
        c = torch.randn(n, K, generator=g)
        kwargs = {"c": c}
    x = torch.randn(n, LATENT, generator=g) @ W.T + c @ B.T + b + SIGMA * torch.randn(n, D, generator=g)
    exact = MultivariateNormal(c @ B.T + b, covariance_matrix=W @ W.T + SIGMA**2 * torch.eye(D)).log_prob(x)
    for k, chunk in ((1, 1), (64, 7)):
        got = log_likelihood(model, x, k=k, chunk=chunk, batch_size=9, seed=0, **kwargs)
        torch.testing.assert_close(got, exact, rtol=0, atol=1e-9)
    # a conditional model without its condition is a one-line error
    with pytest.raises(VaekitError, match="conditional model"):
        log_likelihood(model, x, k=2)


def test_conditional_checkpoint_round_trip_gives_identical_log_p(tmp_path: Path) -> None:
    model, *_ = conditional_ppca("label", seed=3)
    config = Config(model=model.config)
    path = save_checkpoint(tmp_path / "step-000000001", model, config, model_meta(model))
    loaded, _, meta = load_model(path)
    assert meta["schema"]["condition"] == "label" and meta["schema"]["n_classes"] == K
    assert loaded.schema == model.schema
    x = torch.randn(12, D, generator=torch.Generator().manual_seed(0))
    y = torch.arange(12) % K
    eps = torch.randn(30, 12, LATENT, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(log_likelihood(loaded, x, k=30, eps=eps, y=y),
                               log_likelihood(model, x, k=30, eps=eps, y=y), rtol=0, atol=0)


def test_eval_on_data_with_classes_the_run_lacks_is_one_line(cvae_run: Path, tmp_path: Path) -> None:
    """Another file given to eval with a label the model was not conditioned on: one line, exit 2, no
    traceback (the model's one-hot would fail deep inside the networks)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    y = digits.target[:40].copy()
    y[7] = 10  # the run knows classes 0..9
    np.savez(tmp_path / "other.npz", x=digits.images[:40].astype(np.float32), y=y)
    proc = run_vaekit("eval", str(cvae_run), "--k", "5", "--naive-k", "5", "--out", str(tmp_path / "e.json"),
                      "--data.path", str(tmp_path / "other.npz"), "--data.split", "all")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "vaekit: error: the test rows have labels 0..10, but the run's model is conditioned on classes 0..9; give "
        "data with the run's classes"]
    assert not (tmp_path / "e.json").exists()
