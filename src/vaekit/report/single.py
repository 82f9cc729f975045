"""The report of one run: ``write_report(run)`` -> ``runs/<name>/report.html``.

Sections (HTML ids): curves, reconstructions, samples, latent, traversals, interpolations, kl-per-dim,
evaluation, config, provenance, timings. Images (event shape (H, W) or (C, H, W)) are shown as grids;
vector data (event shape (D,)) as per-feature scatters, histograms and line plots.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit import probes
from vaekit.data.rundata import display_range
from vaekit.fileio import atomic_write_text, check_writable
from vaekit.images import is_image_shape
from vaekit.report import html as H
from vaekit.report import latent as L
from vaekit.report import plots as P
from vaekit.report.runinfo import RunInfo, load_run_info
from vaekit.runload import example_condition

SECTION_IDS = ("curves", "reconstructions", "samples", "latent", "traversals", "interpolations", "kl-per-dim",
               "evaluation", "config", "provenance", "timings")
#: The section of a label-conditional run only (after "samples"): one row of samples per class.
CLASS_SAMPLES_ID = "class-samples"
MAX_FEATURES = 8
TRAVERSAL_STEPS = 11
MAX_TRAVERSED = 8
INTERP_STEPS = 9


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().float().numpy()


def _features(dim: int) -> list[int]:
    return list(range(min(dim, MAX_FEATURES)))


def _test_condition(info: RunInfo, n: int) -> dict[str, torch.Tensor]:
    """The condition of the first n held-out rows as ``VAE`` keyword arguments (``y=`` labels or ``c=``
    covariates) for a conditional model; {} for an unconditional one."""
    model, split = info.model, info.test
    if not model.conditional:
        return {}
    if model.schema.condition == "label" and split.y is not None:
        return {"y": split.y[:n]}
    return {} if split.c is None else {"c": split.c[:n]}


def _test_x(info: RunInfo, n: int, seed: int) -> torch.Tensor:
    """The first n held-out inputs, (n, *event_shape). Dynamically binarised data are shown (and encoded) as
    their grey levels, the expectation of the binarisation, rather than one noisy draw."""
    split = info.test
    idx = torch.arange(min(n, len(split)))
    return split.levels(idx) if split.dynamic else split.batch(idx, generator=torch.Generator().manual_seed(seed))


def shown_range(info: RunInfo) -> tuple[float, float]:
    """File-unit values drawn as black..white in the run's image grids (the same range as ``vaekit sample``
    and ``vaekit reconstruct`` PNGs: :func:`vaekit.data.rundata.display_range`), so a standardised or
    Gaussian run's grey levels and colours are mapped, not clipped to [0, 1]."""
    return display_range(info.meta)


# ------------------------------------------------------------------------------------ sections
def curves_section(info: RunInfo) -> H.Section:
    if not info.metrics:
        return H.Section("curves", "Training curves", H.para("metrics.jsonl is empty: no finished epoch yet."))
    tc = info.config.train
    note = (f"Per epoch; training terms are averages over the epoch's minibatches, validation terms are "
            f"computed at the end of the epoch with beta = 1. KL weight: beta = {tc.beta:g}, linear warm-up "
            f"over {tc.warmup_steps} steps.")
    png = P.training_curves(info.metrics, has_kl=info.model.posterior.has_density)
    return H.Section("curves", "Training curves", H.para(note) + H.image(png, "training curves"))


def reconstructions_section(info: RunInfo, seed: int) -> H.Section:
    model, shape = info.model, info.model.event_shape
    if is_image_shape(shape):
        ncol = 12
        x = _test_x(info, 2 * ncol, seed)
        x_hat = model.reconstruct(x, **_test_condition(info, len(x)))
        n = len(x) // ncol * ncol or len(x)
        ncol = min(ncol, n)
        rows = []
        labels = []
        for i in range(0, n, ncol):
            rows += [_np(x[i:i + ncol]), _np(x_hat[i:i + ncol])]
            labels += ["input", "reconstruction"]
        imgs = np.stack(rows)
        png = P.image_table(imgs, labels, "test inputs (above) and decoder means at the posterior mean (below)",
                            shown_range(info))
        return H.Section("reconstructions", "Reconstructions", H.image(png, "reconstructions"))
    x = _test_x(info, 500, seed)
    x_hat = model.reconstruct(x, **_test_condition(info, len(x)))
    xs, xh = _np(x).reshape(len(x), -1), _np(x_hat).reshape(len(x), -1)
    png = P.recon_scatter(xs, xh, _features(xs.shape[1]))
    note = (f"True against reconstructed value per feature for {len(x)} test examples (first "
            f"{len(_features(xs.shape[1]))} of {xs.shape[1]} features); dashed: perfect reconstruction.")
    return H.Section("reconstructions", "Reconstructions", H.para(note) + H.image(png, "reconstruction scatter"))


def samples_section(info: RunInfo, seed: int) -> H.Section:
    model, shape = info.model, info.model.event_shape
    g = torch.Generator().manual_seed(seed)
    if is_image_shape(shape):
        n_side = 8
        y, c = example_condition(model, info.data, n_side * n_side)
        x = _np(model.sample(n_side * n_side, generator=g, y=y, c=c))
        imgs = x.reshape(n_side, n_side, *shape)
        png = P.image_table(imgs, [""] * n_side, f"decoder means p(x|z) for z ~ {L.prior_name(model)}",
                            shown_range(info))
        return H.Section("samples", "Samples from the prior", H.image(png, "samples from the prior"))
    x_data = _np(_test_x(info, 2000, seed)).reshape(-1, model.data_dim)
    y, c = example_condition(model, info.data, 2000)
    x_s = _np(model.sample(2000, mean=False, generator=g, y=y, c=c)).reshape(-1, model.data_dim)
    png = P.sample_histograms(x_data, x_s, _features(model.data_dim))
    note = (f"Histograms of draws x ~ p(x|z), z ~ {L.prior_name(model)} (decoder noise included) against the test "
            "data, per feature (first features shown).")
    return H.Section("samples", "Samples from the prior", H.para(note) + H.image(png, "sample histograms"))


def class_samples_section(info: RunInfo, seed: int, per_class: int = 10) -> H.Section | None:
    """A label-conditional model's samples by class: images, one row per class with the same prior draws
    z in every row (so a column shows one style across classes); vectors, a table of the mean of
    ``per_class`` x 50 draws x ~ p(x|z, y) per class beside the held-out data's class mean (first
    features). None for other models."""
    model = info.model
    if not (model.conditional and model.schema.condition == "label"):
        return None
    k = model.schema.n_classes
    if is_image_shape(model.event_shape):
        z = model.latent_prior.sample(per_class, torch.Generator().manual_seed(seed))
        with torch.no_grad():
            grids = [_np(model.decode(z, y=torch.full((per_class,), j)).mean) for j in range(k)]
        png = P.image_table(np.stack(grids), [f"y = {j}" for j in range(k)],
                            "decoder means p(x|z, y): the same z ~ p(z) in every row",
                            shown_range(info))
        note = (f"One row per class y (labels 0..{k - 1}); column j decodes the same prior draw z_j under each "
                "label, so a column shows one style across classes.")
        return H.Section(CLASS_SAMPLES_ID, "Samples by class", H.para(note) + H.image(png, "samples by class"))
    n, feats = per_class * 50, _features(model.data_dim)[:4]
    g = torch.Generator().manual_seed(seed)
    split = info.test
    x_test = _np(split.all()).reshape(len(split), -1)
    y_test = split.y.numpy() if split.y is not None and len(split.y) else None
    rows: list[list[Any]] = []
    for j in range(k):
        xs = _np(model.sample(n, mean=False, generator=g, y=j)).reshape(n, -1)
        have = y_test is not None and bool((y_test == j).any())
        data_mean = x_test[y_test == j].mean(0) if have and y_test is not None else None
        rows.append([j, int((y_test == j).sum()) if y_test is not None else 0,
                     *[f"{xs[:, f].mean():.3g} / {data_mean[f]:.3g}" if data_mean is not None else
                       f"{xs[:, f].mean():.3g} / -" for f in feats]])
    header = ["class y", "held-out rows", *[f"feature {f}: samples / data" for f in feats]]
    note = (f"Mean of {n} draws x ~ p(x|z, y), z ~ p(z), per class, against the mean of the held-out rows of that "
            "class (first features).")
    return H.Section(CLASS_SAMPLES_ID, "Samples by class", H.para(note) + H.table(header, rows))


def latent_panels_for(enc: L.Encoded, name: str = "", tsne: bool = True) -> list[dict[str, Any]]:
    """Scatter panels of posterior means: the codes themselves when d <= 2, else PCA (+ t-SNE)."""
    z, y, d = enc.z, enc.y, enc.z.shape[1]
    prefix = f"{name}: " if name else ""
    if d == 1:
        jitter = np.random.default_rng(0).uniform(-0.3, 0.3, len(z))
        pts = np.stack([z[:, 0], (y if y is not None else np.zeros(len(z))) + jitter], 1)
        return [{"points": pts, "y": y, "title": f"{prefix}posterior means (d = 1)", "xlabel": "z0",
                 "ylabel": "label (jittered)", "equal": False}]
    if d == 2:
        return [{"points": z, "y": y, "title": f"{prefix}posterior means E[z|x]", "xlabel": "z0",
                 "ylabel": "z1", "prior_centre": np.zeros(2)}]
    if len(z) < 3:  # too few points to project: the first two coordinates
        return [{"points": z[:, :2], "y": y, "title": f"{prefix}posterior means, first two of d = {d}",
                 "xlabel": "z0", "ylabel": "z1", "prior_centre": np.zeros(2)}]
    pts, comps, centre, ratio = L.pca_2d(z)
    panels = [{"points": pts, "y": y, "title": f"{prefix}PCA of posterior means (d = {d})",
               "xlabel": f"PC1 ({100 * ratio[0]:.0f}% of variance)",
               "ylabel": f"PC2 ({100 * ratio[1]:.0f}% of variance)", "prior_centre": -comps @ centre}]
    if tsne and len(z) >= 8:
        n = min(len(z), L.MAX_TSNE_POINTS)
        panels.append({"points": L.tsne_2d(z[:n]), "y": None if y is None else y[:n],
                       "title": f"t-SNE of {n} posterior means", "xlabel": "t-SNE 1", "ylabel": "t-SNE 2",
                       "equal": False})
    return panels


def show_learned_prior(panels: list[dict[str, Any]], model: Any, codes: np.ndarray) -> bool:
    """Swap the N(0, I) circles of ``panels`` (those drawn in the codes' own coordinates) for the density of
    ``model``'s learned prior, drawn from its samples projected like ``codes`` (n, d); True where it did. A
    standard-normal prior or a plain AE keeps its panels as they are."""
    if not model.posterior.has_density or L.is_standard_prior(model):
        return False
    shown = [panel for panel in panels if panel.get("prior_centre") is not None]
    if shown:
        points = L.prior_points_2d(model, codes)
        for panel in shown:
            panel.update(prior_centre=None, prior_points=points)
    return bool(shown)


def latent_section(info: RunInfo, enc: L.Encoded, what: str = "") -> H.Section:
    d = info.model.latent_dim
    kind = "codes (posterior means)" if info.model.posterior.has_density else "deterministic codes"
    how = ("shown directly" if d <= 2 else
           "projected by PCA (the prior's 1-2-3 sd circles projected with it) and embedded by t-SNE (no prior "
           "contours: t-SNE is not linear)")
    label = "coloured by label" if enc.y is not None else "no labels in this data set"
    note = f"{len(enc.z)} test {kind}, {label}; d = {d}, {how}." + (f" {what}" if what else "")
    panels = latent_panels_for(enc)
    if show_learned_prior(panels, info.model, enc.z):
        note += f" Contours: the prior {L.prior_name(info.model)}, from {L.PRIOR_DRAWS} of its draws."
    png = P.latent_panels(panels)
    return H.Section("latent", "Latent space", H.para(note) + H.image(png, "latent space"))


def _traversal_values(info: RunInfo, enc: L.Encoded, dims: np.ndarray) -> tuple[np.ndarray, list[str], str]:
    k = np.linspace(-3, 3, TRAVERSAL_STEPS)
    labels = [f"{v:+.1f}" for v in k]
    if info.model.posterior.has_density:
        return k, labels, "value of the traversed dimension (prior standard deviations)"
    mean, sd = enc.z.mean(0)[dims], enc.z.std(0)[dims]
    return mean[:, None] + sd[:, None] * k[None, :], labels, "code mean + k code standard deviations (k shown)"


def traversals_section(info: RunInfo, enc: L.Encoded) -> H.Section:
    model = info.model
    order = L.dimension_order(enc)
    dims = order[:MAX_TRAVERSED]
    values, col_labels, xlabel = _traversal_values(info, enc, dims)
    base = enc.z[0]
    codes = L.traversal_codes(base, dims, values)  # (len(dims), steps, d)
    cond = None if enc.cond is None else torch.from_numpy(enc.cond[:1]).expand(codes.shape[1], -1)
    with torch.no_grad():
        decoded = _np(model.decode(codes, cond).mean)  # (len(dims), steps, *event); the input's own condition
    score = enc.kl if enc.kl is not None else enc.z.var(0)
    unit = "KL {:.2f} nats" if enc.kl is not None else "var {:.2g}"
    row_labels = [f"z{j} ({unit.format(score[j])})" for j in dims]
    note = (f"Each row varies one latent dimension of the first test input's code, the others held fixed; the "
            f"{len(dims)} most-used of {model.latent_dim} dimensions, ordered by "
            f"{'mean KL per dimension' if enc.kl is not None else 'code variance (no KL in a plain AE)'}.")
    if is_image_shape(model.event_shape):
        png = P.image_table(decoded, row_labels, "latent traversals (decoder means)",
                            shown_range(info), col_labels=col_labels, xlabel=xlabel)
    else:
        t = values if values.ndim == 1 else np.arange(TRAVERSAL_STEPS) - TRAVERSAL_STEPS // 2
        flat = decoded.reshape(len(dims), TRAVERSAL_STEPS, -1)
        panels = [(row_labels[i], t if values.ndim == 1 else values[i], flat[i]) for i in range(len(dims))]
        png = P.feature_lines(panels, "value of the traversed dimension", _features(model.data_dim)[:6])
    return H.Section("traversals", "Latent traversals", H.para(note) + H.image(png, "latent traversals"))


def _interpolation_pairs(y: np.ndarray | None, n: int, pairs: int) -> list[tuple[int, int]]:
    """Pairs of test rows, preferring different labels so the path crosses classes."""
    out: list[tuple[int, int]] = []
    used: set[int] = set()
    for a in range(n):
        if a in used:
            continue
        for b in range(a + 1, n):
            if b not in used and (y is None or y[a] != y[b]):
                out.append((a, b))
                used |= {a, b}
                break
        if len(out) == pairs:
            break
    return out


def interpolations_section(info: RunInfo, seed: int) -> H.Section:
    model = info.model
    x = _test_x(info, 40, seed)
    y = info.test.y[: len(x)].numpy() if info.test.y is not None and len(info.test.y) else None
    pairs = _interpolation_pairs(y, len(x), 5)
    if not pairs:
        return H.Section("interpolations", "Interpolations", H.para("Not enough test inputs to interpolate."))
    ia, ib = [p[0] for p in pairs], [p[1] for p in pairs]
    cond = _test_condition(info, len(x))
    with torch.no_grad():
        z = _np(model.encode(x, **cond).mean)
        codes = L.interpolation_codes(z[ia], z[ib], INTERP_STEPS)  # (p, steps, d)
        # decoded with input A's condition: (steps, p, d) so the condition (p, c_dim) follows the pair
        cond_a = {k: v[ia] for k, v in cond.items()}
        decoded = np.swapaxes(_np(model.decode(codes.transpose(0, 1), **cond_a).mean), 0, 1)
    note = ("Decoder means along straight lines between the posterior means of two test inputs "
            "(input A left, input B right)" + (", decoded with input A's condition." if cond else "."))
    if is_image_shape(model.event_shape):
        xa, xb = _np(x[ia])[:, None], _np(x[ib])[:, None]
        imgs = np.concatenate([xa, decoded, xb], axis=1)
        cols = ["A"] + [f"{t:.2f}" for t in np.linspace(0, 1, INTERP_STEPS)] + ["B"]
        labels = [f"{a}→{b}" if y is None else f"{y[a]}→{y[b]}" for a, b in pairs]
        png = P.image_table(imgs, labels, "interpolations between test inputs", shown_range(info),
                            col_labels=cols, xlabel="position t along the line from z_A to z_B")
    else:
        t = np.linspace(0, 1, INTERP_STEPS)
        flat = decoded.reshape(len(pairs), INTERP_STEPS, -1)
        panels = [(f"test {a} → test {b}", t, flat[i]) for i, (a, b) in enumerate(pairs)]
        png = P.feature_lines(panels, "position t from z_A to z_B", _features(model.data_dim)[:6])
    return H.Section("interpolations", "Interpolations", H.para(note) + H.image(png, "interpolations"))


def split_stats(info: RunInfo, seed: int) -> probes.SplitStats:
    """Posterior means, KL per dimension, active units and probe accuracy of the held-out split by
    :func:`vaekit.probes.split_stats`, the function behind ``vaekit eval``, on the same split; with
    eval.json's seed when it has one, so the numbers are eval's."""
    seed = info.eval.get("seed", seed) if isinstance(info.eval.get("seed"), int) else seed
    split = "test" if len(info.data.test) else "val"
    return probes.split_stats(info.model, info.data, split, seed=seed)


def kl_section(info: RunInfo, enc: L.Encoded, summary: probes.SplitStats) -> H.Section:
    if enc.kl is None:
        var = enc.z.var(0)
        order = np.argsort(-var)
        rows = [[f"z{j}", float(var[j])] for j in order]
        body = H.para("A plain autoencoder has a deterministic code and no KL term; its dimensions are ranked "
                      "by the variance of their codes instead.") + H.table(["dimension", "code variance"], rows)
        return H.Section("kl-per-dim", "KL per dimension", body)
    order = L.dimension_order(enc)
    png = P.kl_bars(enc.kl, order)
    note = (f"Mean KL(q(z_j|x) || p(z_j)) over all {summary.n_points} held-out inputs; {summary.n_active} of "
            f"{len(enc.kl)} units active (variance of the posterior mean over all {summary.n_points} held-out "
            f"inputs > {probes.ACTIVE_THRESHOLD}, as in vaekit eval).")
    return H.Section("kl-per-dim", "KL per dimension", H.para(note) + H.image(png, "KL per dimension"))


def flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts to dotted keys (one level of lists kept as values)."""
    out: list[tuple[str, Any]] = []
    for key, value in d.items():
        if isinstance(value, dict):
            out += flatten(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out


def evaluation_section(info: RunInfo, summary: probes.SplitStats) -> H.Section:
    if info.eval:
        body = H.para("From eval.json (vaekit eval):") + H.table(["metric", "value"], flatten(info.eval))
    else:
        body = H.para(f"No eval.json yet: run `vaekit eval {info.run_dir}` for the test ELBO and the "
                      "importance-sampled log-likelihood, then `vaekit report` again.")
    rows: list[list[Any]] = [[f"active units (Var_x E[z_j|x] > {probes.ACTIVE_THRESHOLD})", summary.n_active],
                             ["latent dimensions", info.model.latent_dim]]
    if summary.probe is not None:
        rows.append([f"linear probe accuracy on posterior means (fitted on {summary.n_probe_train} training "
                     "rows)", summary.probe])
    body += H.para(f"Computed for this report on all {summary.n_points} held-out inputs by the same function as "
                   f"vaekit eval (seed {summary.seed}):") + H.table(["metric", "value"], rows)
    return H.Section("evaluation", "Evaluation", body)


def config_section(info: RunInfo) -> H.Section:
    return H.Section("config", "Resolved config", H.para("config.toml of the run:") + H.pre(info.config_text))


def provenance_section(info: RunInfo) -> H.Section:
    from vaekit.checkpoint import resolve_checkpoint

    ckpt = resolve_checkpoint(info.run_dir)
    head = H.table(["checkpoint", "epoch", "step", "event shape"],
                   [[ckpt.name, info.meta.get("epoch"), info.meta.get("step"), str(tuple(info.model.event_shape))]])
    data = info.meta.get("data")
    text = json.dumps(data, indent=2, sort_keys=True, default=str) if data else "(no data provenance recorded)"
    return H.Section("provenance", "Data provenance", head + H.para("checkpoint meta.json \"data\":") + H.pre(text))


def timings_section(info: RunInfo) -> H.Section:
    times = [m["epoch_time_s"] for m in info.metrics if isinstance(m.get("epoch_time_s"), (int, float))]
    rates = [m["samples_per_s"] for m in info.metrics if isinstance(m.get("samples_per_s"), (int, float))]
    if not times:
        return H.Section("timings", "Timings", H.para("No epoch timings logged."))
    rows: list[list[Any]] = [["epochs", len(times)], ["total training time (s)", float(np.sum(times))],
            ["median epoch time (s)", float(np.median(times))],
            ["median throughput (examples / s)", float(np.median(rates)) if rates else None],
            ["steps", info.metrics[-1].get("step")],
            ["skipped (non-finite) steps", info.metrics[-1].get("skipped_steps")]]
    return H.Section("timings", "Timings", H.para("From metrics.jsonl (epoch_time_s, samples_per_s); validation "
                                                  "and checkpointing time not included.") +
                     H.table(["quantity", "value"], rows))


# ------------------------------------------------------------------------------------ the page
def build_report(info: RunInfo, seed: int = 0) -> str:
    """The full HTML text of a run's report."""
    summary = split_stats(info, seed)  # every number shown is eval's; the plots draw a subsample
    enc = L.encoded_from(summary, limit=2000, seed=seed)
    if info.data.rec is not None:  # a recommender: ranking metrics and users' top items instead of image grids
        from vaekit.report import recommender as R

        sections = [curves_section(info), R.ranking_section(info), R.validation_section(info), R.users_section(info),
                    latent_section(info, enc, R.latent_note(info)), kl_section(info, enc, summary),
                    evaluation_section(info, summary), config_section(info), provenance_section(info),
                    timings_section(info)]
    else:
        sections = [curves_section(info), reconstructions_section(info, seed), samples_section(info, seed),
                    latent_section(info, enc), traversals_section(info, enc), interpolations_section(info, seed),
                    kl_section(info, enc, summary), evaluation_section(info, summary), config_section(info),
                    provenance_section(info), timings_section(info)]
    if (per_class := class_samples_section(info, seed)) is not None:
        sections.insert(3, per_class)
    mc = info.config.model
    data = info.config.data.path or info.config.data.name
    subtitle = (f"{info.variant} · d = {mc.latent_dim} · {mc.likelihood} likelihood · data {data} "
                f"{tuple(info.model.event_shape)} · {len(info.metrics)} epochs · written "
                f"{time.strftime('%Y-%m-%d %H:%M')}")
    return H.page(f"vaekit report: {info.name}", subtitle, sections)


def write_report(run: str | Path, out: str | Path | None = None, seed: int = 0) -> Path:
    """Write ``report.html`` (or ``out``) for the run at ``run``; returns the path written. The output's
    folder is probed for writability before the run is loaded."""
    from vaekit.checkpoint import run_dir_of

    path = Path(out) if out is not None else run_dir_of(run) / "report.html"
    check_writable(path)
    info = load_run_info(run)
    return atomic_write_text(path, build_report(info, seed))
