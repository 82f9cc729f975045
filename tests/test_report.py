"""The HTML report and the comparison page: sections, embedded PNGs, vector data, errors.

Runs are trained through real `vaekit` subprocesses on tiny settings; pages are parsed as text."""

from __future__ import annotations

import base64
import io
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_vaekit
from PIL import Image

from vaekit.report import COMPARE_SECTION_IDS, SECTION_IDS, parse_variants

TINY = ["--train.epochs", "2", "--model.hidden", "32", "--data.limit", "400", "--no-progress"]
IMG = re.compile(r'<img alt="([^"]*)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def vaekit(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run_vaekit(*args, cwd=cwd, check=check)


def section_ids(html: str) -> list[str]:
    return re.findall(r'<section id="([^"]+)"', html)


def decoded_images(html: str) -> list[tuple[str, Image.Image]]:
    """Every embedded image, decoded and fully loaded by Pillow (fails on a corrupt PNG)."""
    out = []
    for alt, data in IMG.findall(html):
        raw = base64.b64decode(data, validate=True)
        assert raw[:8] == b"\x89PNG\r\n\x1a\n", alt
        image = Image.open(io.BytesIO(raw))
        image.load()
        out.append((alt, image))
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Three digits runs with d = 3: a VAE trained by the CLI (which writes its report), an AE and a
    beta-VAE (beta = 4) trained in-process with the library (faster) and no report."""
    from vaekit.config import Config, apply_overrides
    from vaekit.data import load_data
    from vaekit.train import fit

    cwd = tmp_path_factory.mktemp("report")
    proc = vaekit("train", "--name", "vae", "--model.latent_dim", "3", *TINY, cwd=cwd)
    assert "report.html" in proc.stdout
    base = apply_overrides(Config(), {"model.latent_dim": "3", "model.hidden": "32", "data.limit": "400",
                                      "train.epochs": "2"})
    data = load_data(base.data, base.model.likelihood)
    for name, over in (("ae", {"model.kind": "ae"}), ("b4", {"train.beta": "4"})):
        fit(apply_overrides(base, {**over, "name": name}), runs_root=cwd / "runs", data=data)
    return cwd / "runs"


def test_train_writes_a_report_with_every_section_and_valid_pngs(runs):
    html = (runs / "vae" / "report.html").read_text()
    assert section_ids(html) == list(SECTION_IDS)
    images = decoded_images(html)
    alts = [alt for alt, _ in images]
    for alt in ("training curves", "reconstructions", "samples from the prior", "latent space",
                "latent traversals", "interpolations", "KL per dimension"):
        assert alt in alts
    for alt, image in images:
        assert image.width >= 300 and image.height >= 150, (alt, image.size)
        assert np.asarray(image.convert("L")).std() > 5, f"{alt} is blank"
    assert "http://" not in html and "https://" not in html  # self-contained, opens offline
    assert "<script" not in html
    assert "t-SNE" in html and "PCA" in html  # d = 3: both projections
    assert 'latent_dim = 3' in html  # the resolved config
    assert "No eval.json yet" in html


def test_no_report_flag_skips_it_and_report_command_renders_eval_json(runs):
    from vaekit.evaluate import evaluate_run

    assert not (runs / "ae" / "report.html").exists()
    evaluate_run(runs / "ae", k=5, naive_k=5)
    out = runs / "ae-report.html"
    proc = vaekit("report", str(runs / "ae"), "--out", str(out), cwd=runs)
    assert proc.stdout.strip() == f"wrote {out}"
    html = out.read_text()
    assert section_ids(html) == list(SECTION_IDS)
    assert "From eval.json" in html and "active_units" in html
    assert "no KL term" in html  # the AE's KL section explains itself
    assert len(decoded_images(html)) == 6  # no KL bar chart for an AE


def test_compare_of_three_runs_has_every_panel_and_the_rate_distortion_plot(runs):
    out = runs / "cmp.html"
    vaekit("compare", str(runs / "vae"), str(runs / "ae"), str(runs / "b4"), "--out", str(out), "--k", "5",
           cwd=runs)
    html = out.read_text()
    ids = section_ids(html)
    assert set(COMPARE_SECTION_IDS) <= set(ids)
    assert "rate-distortion" in ids  # betas 1 and 4
    assert "computed now (k = 5)" in html  # vae and b4 have no eval.json
    assert re.search(r"<tr><td>ae</td><td>AE</td><td class=\"num\">3</td><td>—</td><td>—</td>", html)  # no ELBO
    rows = re.findall(r"<tr><td>(vae|ae|b4)</td>", html)
    assert rows == ["vae", "ae", "b4"]
    assert len(decoded_images(html)) == 5


def test_compare_names_each_runs_learned_prior(runs):
    """Beside a learned-prior run the compare report no longer says every sample comes from N(0, I): the sample
    and latent sections name each run's own prior, and the learned one is drawn from its own draws."""
    from vaekit.config import Config, apply_overrides
    from vaekit.report import write_comparison
    from vaekit.train import fit

    cfg = apply_overrides(Config(), {"model.latent_dim": "3", "model.hidden": "32", "data.limit": "400",
                                     "train.epochs": "2", "model.prior": "mog", "model.prior_components": "3",
                                     "name": "mog"})
    fit(cfg, runs_root=runs)
    html = write_comparison([runs / "vae", runs / "mog"], out=runs / "cmp-prior.html", k=5).read_text()
    assert "Each run draws from its own prior: vae: N(0, I); mog: learned mog." in html
    assert "Contours instead of circles for a learned prior" in html and "mog: learned mog" in html
    assert "Samples from N(0, I)" not in html


def test_compare_default_output_sits_next_to_the_runs(runs):
    from vaekit.report import write_comparison

    out = write_comparison([runs / "vae", runs / "b4"], k=3)
    assert out == (runs / "compare-vae-vs-b4.html").resolve()
    assert section_ids(out.read_text())[:2] == ["metrics", "rate-distortion"]


def test_vector_data_report(tmp_path):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(300, 2))
    x = np.concatenate([z, z @ rng.normal(size=(2, 3)) + 0.1 * rng.normal(size=(300, 3))], 1).astype(np.float32)
    np.save(tmp_path / "gauss.npy", x)
    from vaekit.config import Config, apply_overrides
    from vaekit.report import write_report
    from vaekit.train import fit

    config = apply_overrides(Config(), {"name": "vec", "data.path": str(tmp_path / "gauss.npy"),
                                        "model.likelihood": "gaussian", "model.latent_dim": "2",
                                        "model.hidden": "16", "train.epochs": "2", "train.batch_size": "32"})
    run_dir, _ = fit(config, runs_root=tmp_path / "runs")
    assert write_report(run_dir) == run_dir / "report.html"
    html = (tmp_path / "runs" / "vec" / "report.html").read_text()
    assert section_ids(html) == list(SECTION_IDS)
    alts = [alt for alt, _ in decoded_images(html)]
    assert "reconstruction scatter" in alts and "sample histograms" in alts
    assert "no labels in this data set" in html
    assert "first 5 of 5 features" in html  # every feature shown (at most 8 are)


def test_parse_variants():
    assert parse_variants("ae,vae,beta-vae:4") == [
        ("ae", {"model.kind": "ae"}), ("vae", {"model.kind": "vae", "train.beta": "1"}),
        ("beta-vae-4", {"model.kind": "vae", "train.beta": "4.0"})]
    assert parse_variants("vae, beta-vae:0.5")[1] == ("beta-vae-0.5", {"model.kind": "vae", "train.beta": "0.5"})


@pytest.mark.parametrize(("spec", "needle"), [("ae,vea", "unknown variant 'vea'"), ("vae,vae", "twice"),
                                              ("vae", "at least two"), ("ae,beta-vae:x", "unknown variant")])
def test_bad_variant_lists_are_errors(spec, needle):
    from vaekit.errors import VaekitError

    with pytest.raises(VaekitError, match=needle):
        parse_variants(spec)


def test_cli_errors_are_one_line_and_exit_2(runs, tmp_path, capsys):
    from vaekit.cli import main

    bad = vaekit("compare", "--train", "ae,vea", "--train.epochs", "1", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("vaekit: error: unknown variant 'vea'")
    assert len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()
    for argv, needle in ((["compare", str(runs / "vae")], "at least two runs"),
                         (["compare", str(runs / "vae"), "--train", "ae,vae"], "not both"),
                         (["report", str(tmp_path / "nope")], "does not exist")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("vaekit: error: ") and needle in err and len(err.strip().splitlines()) == 1


def test_compare_refuses_runs_on_different_data(runs, tmp_path):
    from vaekit.config import Config, apply_overrides
    from vaekit.errors import VaekitError
    from vaekit.report import write_comparison
    from vaekit.train import fit

    other = apply_overrides(Config(), {"name": "other", "model.latent_dim": "3", "model.hidden": "32",
                                       "data.limit": "300", "train.epochs": "1"})
    run_dir, _ = fit(other, runs_root=tmp_path)
    with pytest.raises(VaekitError, match="differ in data.limit"):
        write_comparison([runs / "vae", run_dir])


def test_train_writes_its_report_in_the_background_by_default(tmp_path):
    """Without VAEKIT_REPORT=now, `vaekit train` returns once training, checkpoints and grids are done and a
    detached `vaekit report` writes report.html (atomically) afterwards: the same sections as the report
    written in-process."""
    import os
    import time

    env = {k: v for k, v in os.environ.items() if k != "VAEKIT_REPORT"}
    proc = run_vaekit("train", "--name", "bg", "--model.latent_dim", "2", *TINY, cwd=tmp_path, env=env, check=True)
    run = tmp_path / "runs" / "bg"
    line = next(ln for ln in proc.stdout.splitlines() if "report.html" in ln)
    found = re.search(r"pid (\d+)", line)
    assert found is not None, proc.stdout
    pid = int(found.group(1))
    assert line.startswith(f"writing {Path('runs') / 'bg'}/report.html in the background")
    deadline = time.monotonic() + 300
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{pid}").exists(), "the report process did not finish"
    assert f"wrote {Path('runs') / 'bg' / 'report.html'}" in (run / "report.log").read_text()
    html = (run / "report.html").read_text()
    assert section_ids(html) == list(SECTION_IDS) and html.rstrip().endswith("</html>")
    assert not [p.name for p in run.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]
