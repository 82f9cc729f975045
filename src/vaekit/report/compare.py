"""Side-by-side comparison of runs on the same data (the classic AE vs VAE vs beta-VAE lecture panels).

``write_comparison(runs)`` -> one HTML page with sections (ids): metrics, reconstructions, latent, samples,
curves, and rate-distortion when the VAE runs span more than one beta. ``train_and_compare('ae,vae,beta-vae:4',
overrides)`` trains the variants with everything else equal, evaluates them quickly and writes the page.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.errors import VaekitError
from vaekit.fileio import atomic_write_text, check_writable
from vaekit.images import is_image_shape
from vaekit.report import html as H
from vaekit.report import latent as L
from vaekit.report import plots as P
from vaekit.report.runinfo import RunInfo, load_run_info
from vaekit.report.single import (
    _np,
    _test_condition,
    _test_x,
    latent_panels_for,
    show_learned_prior,
    shown_range,
    split_stats,
)
from vaekit.runload import example_condition

COMPARE_SECTION_IDS = ("metrics", "reconstructions", "latent", "samples", "curves")
RATE_DISTORTION_ID = "rate-distortion"
QUICK_K = 100
DATA_KEYS = ("name", "path", "val_path", "test_path", "split", "seed", "val_fraction", "test_fraction", "limit",
             "image_size")
PREP_KEYS = ("likelihood", "scale", "affine", "model_affine", "binarize", "threshold", "dequantize", "sigma_units")


# ------------------------------------------------------------------------------------ variants
def parse_variants(spec: str) -> list[tuple[str, dict[str, str]]]:
    """'ae,vae,beta-vae:4' -> [(run name, config overrides)]: ae = model.kind ae; vae = beta 1;
    beta-vae:B = a VAE with train.beta B."""
    out: list[tuple[str, dict[str, str]]] = []
    for token in (t.strip() for t in spec.split(",")):
        if token == "ae":
            out.append(("ae", {"model.kind": "ae"}))
        elif token == "vae":
            out.append(("vae", {"model.kind": "vae", "train.beta": "1"}))
        elif m := re.fullmatch(r"beta-vae:([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)", token):
            beta = float(m.group(1))
            out.append((f"beta-vae-{beta:g}", {"model.kind": "vae", "train.beta": repr(beta)}))
        else:
            raise VaekitError(f"unknown variant '{token}' in --train '{spec}'; use ae, vae or beta-vae:B, "
                              "e.g. --train ae,vae,beta-vae:4")
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise VaekitError(f"--train '{spec}' lists a variant twice; list each of ae, vae, beta-vae:B once")
    if len(out) < 2:
        raise VaekitError(f"--train '{spec}' names one variant; compare at least two, e.g. --train ae,vae")
    return out


def train_and_compare(spec: str, overrides: dict[str, str], runs_root: str | Path = "runs",
                      name: str | None = None, out: str | Path | None = None, base_config: Any = None,
                      k: int = QUICK_K, callbacks_factory: Any = None, log: Any = print) -> Path:
    """Train each variant of ``spec`` into ``runs_root/<name>/<variant>`` with the same seed, data and
    architecture, evaluate each with ``k`` importance samples (eval.json), then write the comparison
    (default ``runs_root/<name>/compare.html``). Returns the page's path."""
    from vaekit.config import Config, apply_overrides
    from vaekit.data import load_data
    from vaekit.evaluate import evaluate_run
    from vaekit.train import fit

    variants = parse_variants(spec)
    for key in ("model.kind", "train.beta", "name"):
        if key in overrides:
            raise VaekitError(f"--{key} is set by each variant of --train; drop it from the shared options")
    base = apply_overrides(base_config or Config(), overrides)
    group = name or time.strftime("compare-%Y%m%d-%H%M%S")
    group_dir = Path(runs_root) / group
    if group_dir.exists():
        raise VaekitError(f"{group_dir} already exists; choose another --name for this comparison")
    if out is not None:
        check_writable(out)  # before training the variants, not after
    data = load_data(base.data, base.model.likelihood)
    run_dirs = []
    for vname, vover in variants:
        config = apply_overrides(base, {**vover, "name": vname})
        log(f"training {vname} ({config.train.epochs} epochs) into {group_dir / vname}")
        callbacks = callbacks_factory() if callbacks_factory else None
        run_dir, _ = fit(config, runs_root=group_dir, callbacks=callbacks, data=data)
        evaluate_run(run_dir, k=k, naive_k=k)
        run_dirs.append(run_dir)
    return write_comparison(run_dirs, out or group_dir / "compare.html", k=k)


# ------------------------------------------------------------------------------------ metrics
def _numeric(d: dict[str, Any], *needles: str) -> float | None:
    """The first numeric value whose key contains all ``needles`` (eval.json is extended by others)."""
    for key, value in d.items():
        if all(n in key for n in needles) and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def run_metrics(info: RunInfo, k: int, seed: int = 0) -> dict[str, Any]:
    """Test ELBO, log-likelihood, recon, KL (nats per example), active units and probe accuracy.
    From eval.json when present; otherwise evaluated now with ``k`` importance samples (not written)."""
    from vaekit.evaluate import evaluate_run

    if info.eval:
        ev, source = info.eval, f"eval.json (k = {info.eval.get('k', '?')})"
    else:
        ev, source = evaluate_run(info.run_dir, k=k, naive_k=k, write=False), f"computed now (k = {k})"
    summary = split_stats(info, seed)  # the same function as vaekit eval
    enc = L.encoded_from(summary, limit=2000, seed=seed)
    active = _numeric(ev, "active")
    probe = _numeric(ev, "probe")
    active = summary.n_active if active is None else active  # an eval.json without them
    probe = summary.probe if probe is None else probe
    return {"elbo": ev.get("elbo_nats"), "log_likelihood": ev.get("log_likelihood_nats"),
            "recon": ev.get("recon_nats"), "kl": ev.get("kl_nats"), "active": active, "probe": probe,
            "source": source, "enc": enc}


def metrics_section(infos: list[RunInfo], names: list[str], results: list[dict[str, Any]]) -> H.Section:
    header = ["run", "model", "d", "test ELBO (nats)", "log p(x) (nats, IS)", "E_q log p(x|z) (nats)",
              "KL (nats)", "active units", "probe accuracy", "source"]
    rows = [[n, i.variant, i.model.latent_dim, r["elbo"], r["log_likelihood"], r["recon"], r["kl"],
             int(r["active"]) if r["active"] is not None else None, r["probe"], r["source"]]
            for n, i, r in zip(names, infos, results, strict=True)]
    note = ("Test split, nats per example (higher is better for ELBO and log p(x)). An AE has no ELBO or "
            "likelihood. Active units: Var_x E[z_j|x] > 0.01. Probe: logistic regression on posterior means.")
    return H.Section("metrics", "Metrics", H.para(note) + H.table(header, rows))


# ------------------------------------------------------------------------------------ panels
def reconstructions_section(infos: list[RunInfo], names: list[str], seed: int) -> H.Section:
    x = _test_x(infos[0], 12, seed)
    shape = infos[0].model.event_shape
    if is_image_shape(shape):
        rows = [_np(x)] + [_np(i.model.reconstruct(x, **_test_condition(i, len(x)))) for i in infos]
        png = P.image_table(np.stack(rows), ["input", *names], "the same test inputs reconstructed by each run",
                            shown_range(infos[0]))
        return H.Section("reconstructions", "Reconstructions", H.image(png, "reconstructions"))
    x = _test_x(infos[0], 500, seed)
    xs = _np(x).reshape(len(x), -1)
    feats = list(range(min(4, xs.shape[1])))
    figs = [H.image(P.recon_scatter(xs, _np(i.model.reconstruct(x, **_test_condition(i, len(x)))).reshape(len(x), -1),
                                    feats),
                    f"reconstructions {n}", caption=n) for n, i in zip(names, infos, strict=True)]
    return H.Section("reconstructions", "Reconstructions",
                     H.para("True against reconstructed value per feature, same test inputs.") + H.row(*figs))


def latent_section(infos: list[RunInfo], names: list[str], results: list[dict[str, Any]]) -> H.Section:
    panels = [latent_panels_for(r["enc"], name=n, tsne=False)[0] for n, r in zip(names, results, strict=True)]
    learned = []
    for p, r, i, n in zip(panels, results, infos, names, strict=True):
        p["y"] = r["enc"].y
        if show_learned_prior([p], i.model, r["enc"].z):  # its own density instead of N(0, I)'s circles
            learned.append(f"{n}: {L.prior_name(i.model)}")
    png = P.latent_panels(panels, width=max(12.0, 4.2 * len(panels)))
    note = ("Posterior means (AE: codes) of the same test inputs; d = 2 shown directly, larger d by PCA. "
            "Circles: the prior N(0, I) at 1, 2, 3 sd. An AE's codes need not sit under the prior, so sampling "
            "N(0, I) decodes poorly.")
    if learned:
        note += (f" Contours instead of circles for a learned prior, from {L.PRIOR_DRAWS} of its draws ("
                 + "; ".join(learned) + ").")
    return H.Section("latent", "Latent spaces", H.para(note) + H.image(png, "latent spaces"))


def samples_section(infos: list[RunInfo], names: list[str], seed: int) -> H.Section:
    shape = infos[0].model.event_shape
    if is_image_shape(shape):
        rows = []
        for i in infos:
            y, c = example_condition(i.model, i.data, 12)
            rows.append(_np(i.model.sample(12, generator=torch.Generator().manual_seed(seed), y=y, c=c)))
        png = P.image_table(np.stack(rows), names, f"z ~ {_priors_said(infos)} decoded by each run",
                            shown_range(infos[0]))
        return H.Section("samples", "Samples from the priors", H.para(_priors_note(infos, names))
                         + H.image(png, "samples"))
    x_data = _np(_test_x(infos[0], 2000, seed)).reshape(-1, infos[0].model.data_dim)
    feats = list(range(min(4, x_data.shape[1])))
    figs = []
    for n, i in zip(names, infos, strict=True):
        y, c = example_condition(i.model, i.data, 2000)
        xs = _np(i.model.sample(2000, mean=False, generator=torch.Generator().manual_seed(seed), y=y, c=c))
        figs.append(H.image(P.sample_histograms(x_data, xs.reshape(len(xs), -1), feats), f"samples {n}", caption=n))
    return H.Section("samples", "Samples from the priors", H.para("Histograms of decoded prior draws against the "
                                                                   "test data, per feature. "
                                                                   + _priors_note(infos, names)) + H.row(*figs))


def _priors_said(infos: list[RunInfo]) -> str:
    """The prior the sample grid's title names: N(0, I) when every run has it, else each run's own p(z)."""
    return "N(0, I)" if all(L.is_standard_prior(i.model) for i in infos) else "each run's own prior p(z)"


def _priors_note(infos: list[RunInfo], names: list[str]) -> str:
    """Which prior each run's samples come from, and whether the runs share their draws."""
    priors = [L.prior_name(i.model) for i in infos]
    if all(L.is_standard_prior(i.model) for i in infos):
        return "Every run draws z ~ N(0, I) (the same draws where the latent sizes agree)."
    each = "; ".join(f"{n}: {p}" for n, p in zip(names, priors, strict=True))
    return f"Each run draws from its own prior: {each}."


def rate_distortion_section(infos: list[RunInfo], names: list[str],
                            results: list[dict[str, Any]]) -> H.Section | None:
    pts = []
    for i, r in zip(infos, results, strict=True):
        kl, recon = r["kl"], r["recon"]
        if i.model.posterior.has_density and isinstance(kl, (int, float)) and isinstance(recon, (int, float)) \
                and math.isfinite(kl) and math.isfinite(recon):
            pts.append((f"beta = {i.config.train.beta:g}", float(kl), -float(recon)))
    if len({p[0] for p in pts}) < 2:
        return None
    note = ("Each VAE run's test rate (KL) and distortion (negative expected log-likelihood of the reconstruction); "
            "a larger beta buys a lower rate at a higher distortion. ELBO = -(rate + distortion).")
    return H.Section(RATE_DISTORTION_ID, "Rate / distortion", H.para(note) +
                     H.image(P.rate_distortion(pts), "rate distortion"))


# ------------------------------------------------------------------------------------ the page
def _names(infos: list[RunInfo]) -> list[str]:
    names = [i.name for i in infos]
    if len(set(names)) < len(names):
        names = [f"{i.run_dir.parent.name}/{i.run_dir.name}" for i in infos]
    if len(set(names)) < len(names):
        names = [f"{n} #{k + 1}" for k, n in enumerate(names)]
    return names


def _data_identity(info: RunInfo) -> list[tuple[str, Any]]:
    """What must agree for two runs' numbers to be comparable: the data (name, path, fingerprint or
    files, split), the preprocessing record and the likelihood, as (label, value) pairs in that order."""
    data = info.meta.get("data") or {}
    prep = data.get("prep") or {}
    files = {k: v.get("sha256") for k, v in (data.get("files") or {}).items() if isinstance(v, dict)}
    cfg = info.config.data
    # a path wins over a name (runs before issue #16 saved the default name 'digits' beside a path)
    out: list[tuple[str, Any]] = [(f"data.{key}", "" if key == "name" and cfg.path else getattr(cfg, key))
                                  for key in DATA_KEYS]
    split_files = {k: (v.get("fingerprint") or {}).get("sha256") for k, v in (data.get("split_files") or {}).items()
                   if isinstance(v, dict) and k != "train"}
    out += [("data fingerprint", (data.get("fingerprint") or {}).get("sha256")), ("data files", files or None),
            ("split files", split_files or None),
            ("model.likelihood", info.config.model.likelihood)]
    out += [(f"preprocessing '{key}'", prep.get(key)) for key in PREP_KEYS]
    return out


def _check_same_data(infos: list[RunInfo]) -> None:
    """Refuse runs whose data, preprocessing or likelihood differ, naming the first difference."""
    first = infos[0]
    for other in infos[1:]:
        if tuple(other.model.event_shape) != tuple(first.model.event_shape):
            raise VaekitError(f"{other.run_dir} has data of shape {other.model.event_shape} but {first.run_dir} "
                              f"{first.model.event_shape}; compare runs trained on the same data")
        for (label, a), (_, b) in zip(_data_identity(first), _data_identity(other), strict=True):
            if a != b:
                raise VaekitError(f"{first.run_dir} and {other.run_dir} differ in {label} ({a!r} vs {b!r}); their "
                                  "numbers are not comparable: compare runs trained on the same data, "
                                  "preprocessing and likelihood")


def default_out(runs: list[Path]) -> Path:
    """``<parent of the first run>/compare-<run names>.html`` (names shortened to keep it a sane filename)."""
    stem = "-vs-".join(Path(r).name for r in runs)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem)[:100]
    return Path(runs[0]).resolve().parent / f"compare-{stem}.html"


def build_comparison(infos: list[RunInfo], k: int = QUICK_K, seed: int = 0) -> str:
    """The comparison page's HTML for loaded runs."""
    names = _names(infos)
    results = [run_metrics(i, k, seed) for i in infos]
    sections = [metrics_section(infos, names, results), reconstructions_section(infos, names, seed),
                latent_section(infos, names, results), samples_section(infos, names, seed),
                H.Section("curves", "Training curves", H.para("Validation terms per epoch (beta = 1), nats per "
                                                             "example; a plain AE has no KL, so no ELBO.") +
                          H.image(P.overlaid_curves([(n, i.metrics, i.model.posterior.has_density)
                                                     for n, i in zip(names, infos, strict=True)]),
                                  "training curves"))]
    rd = rate_distortion_section(infos, names, results)
    if rd is not None:
        sections.insert(1, rd)
    data = infos[0].config.data.path or infos[0].config.data.name
    subtitle = (f"{len(infos)} runs on {data} {tuple(infos[0].model.event_shape)}: {', '.join(names)} · written "
                f"{time.strftime('%Y-%m-%d %H:%M')}")
    return H.page("vaekit comparison", subtitle, sections)


def write_comparison(runs: Sequence[str | Path], out: str | Path | None = None, k: int = QUICK_K,
                     seed: int = 0) -> Path:
    """Write the comparison page of ``runs`` (run directories) to ``out`` (default: :func:`default_out`)."""
    if len(runs) < 2:
        raise VaekitError("compare needs at least two runs, e.g. vaekit compare runs/ae runs/vae")
    if k < 1:
        raise VaekitError(f"--k must be >= 1, got {k}")
    path = check_writable(Path(out) if out is not None else default_out([Path(r) for r in runs]))
    infos = [load_run_info(r) for r in runs]
    _check_same_data(infos)
    return atomic_write_text(path, build_comparison(infos, k, seed))
