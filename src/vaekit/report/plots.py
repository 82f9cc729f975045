"""Matplotlib figures for reports, returned as PNG bytes.

Figures are built with ``matplotlib.figure.Figure`` directly (the Agg canvas, no pyplot state), so this
module works headless and in threads; it is imported only when a report is written. One style for all:
labelled axes with units (nats per example), light grid, tight layout, 110 dpi.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from vaekit.images import grid_array

DPI = 110
STYLE = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
         "xtick.labelsize": 9, "ytick.labelsize": 9, "axes.spines.top": False, "axes.spines.right": False,
         "axes.grid": True, "grid.alpha": 0.3, "figure.dpi": DPI, "savefig.dpi": DPI}
NATS = "nats per example"


def _figure(width: float, height: float) -> Figure:
    import matplotlib

    matplotlib.rcParams.update(STYLE)  # type: ignore[arg-type]  # rcParams' keys are typed as literals
    return Figure(figsize=(width, height), layout="constrained")


def to_png(fig: Figure) -> bytes:
    """Render a figure to PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white")
    return buf.getvalue()


# ------------------------------------------------------------------------------------ curves
CURVES = (  # (metrics key, label, y-axis label)
    ("train_loss", "training loss", f"loss ({NATS})"),
    ("train_recon", "reconstruction log p(x|z)", f"E_q log p(x|z) ({NATS})"),
    ("train_kl", "KL(q(z|x) || p(z))", f"KL ({NATS})"),
    ("val_elbo", "validation ELBO", f"ELBO ({NATS})"),
    ("kl_weight", "KL weight (warm-up, beta)", "weight on KL"),
    ("lr", "learning rate", "learning rate"),
)
VAL_TWIN = {"train_recon": "val_recon", "train_kl": "val_kl", "train_loss": None}


def _series(metrics: Sequence[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(m.get("epoch", i + 1), m[key]) for i, m in enumerate(metrics)
           if isinstance(m.get(key), (int, float)) and math.isfinite(m[key])]
    if not pts:
        return np.zeros(0), np.zeros(0)
    e, v = zip(*pts, strict=True)
    return np.asarray(e, float), np.asarray(v, float)


AE_TITLES = {"train_kl": "KL (none: plain autoencoder)", "val_elbo": "validation log p(x|z=f(x)) (AE: no ELBO)",
             "kl_weight": "KL weight (unused by an AE)"}


def training_curves(metrics: Sequence[dict[str, Any]], has_kl: bool = True) -> bytes:
    """2x3 panels per epoch: loss, reconstruction, KL, validation ELBO, KL weight, learning rate.
    ``has_kl=False`` (a plain AE) retitles the panels that have no meaning without a KL."""
    fig = _figure(12, 6.4)
    axes = fig.subplots(2, 3).ravel()
    for ax, (key, title, ylabel) in zip(axes, CURVES, strict=True):
        title = title if has_kl else AE_TITLES.get(key, title)
        if not has_kl and key == "val_elbo":
            ylabel = f"log p(x|z) ({NATS})"
        e, v = _series(metrics, key)
        ax.plot(e, v, marker="o" if len(e) < 15 else None, ms=3, label="training" if key in VAL_TWIN else None)
        twin = VAL_TWIN.get(key)
        if twin:
            e2, v2 = _series(metrics, twin)
            ax.plot(e2, v2, marker="o" if len(e2) < 15 else None, ms=3, label="validation")
            ax.legend(loc="best")
        if key == "val_elbo" and len(v):
            best = int(np.argmax(v))
            ax.plot([e[best]], [v[best]], "*", ms=12, color="C3", label=f"best {v[best]:.2f}")
            ax.legend(loc="lower right")
        if not len(e):
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, color="0.4")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
    return to_png(fig)


def overlaid_curves(runs: Sequence[tuple[str, Sequence[dict[str, Any]], bool]]) -> bytes:
    """Several runs' validation ELBO, reconstruction and KL per epoch on shared axes (1x3 panels); each run
    is (name, metrics, has_kl). Runs without a KL (plain AEs) are left out of the ELBO and KL panels."""
    fig = _figure(13, 4.0)
    axes = fig.subplots(1, 3)
    panels = (("val_elbo", "validation ELBO", f"ELBO ({NATS})"),
              ("val_recon", "validation reconstruction", f"E_q log p(x|z) ({NATS})"),
              ("val_kl", "validation KL", f"KL ({NATS})"))
    for ax, (key, title, ylabel) in zip(axes, panels, strict=True):
        for i, (name, metrics, has_kl) in enumerate(runs):
            e, v = _series(metrics, key)
            if len(e) and (has_kl or key == "val_recon"):
                ax.plot(e, v, color=f"C{i}", label=name)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best")
    return to_png(fig)


# ------------------------------------------------------------------------------------ images
def image_table(images: np.ndarray, row_labels: Sequence[str], title: str, value_range: tuple[float, float],
                col_labels: Sequence[str] | None = None, cell_inches: float = 0.6,
                xlabel: str | None = None) -> bytes:
    """A labelled table of images: ``images`` (R, C, *event_shape) with event (H, W), (1, H, W) or (3, H, W)
    (colour, drawn as RGB); ``value_range`` (lo, hi) in the images' units is drawn as black..white (each
    colour channel 0..255), values outside it saturate."""
    n_rows, n_cols = images.shape[:2]
    lo, hi = value_range
    flat = (images.reshape(n_rows * n_cols, *images.shape[2:]) - lo) / max(hi - lo, 1e-12)
    h, w = images.shape[-2:]
    scale = max(1, 32 // max(h, 1))
    mosaic = grid_array(flat, ncol=n_cols, pad=1, upscale=scale)
    label_w = 0.12 * max(len(s) for s in row_labels) + 0.3
    extra = 0.6 + (0.3 if col_labels is not None else 0.0) + (0.3 if xlabel else 0.0)
    fig = _figure(min(n_cols * cell_inches + label_w + 0.3, 13), n_rows * cell_inches * h / w + extra)
    ax = fig.add_subplot()
    ax.imshow(mosaic, cmap="gray" if mosaic.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
    ax.grid(False)
    step_y, step_x = (h + 1) * scale, (w + 1) * scale
    ax.set_yticks([scale + step_y * (r + 0.5) - scale / 2 for r in range(n_rows)], list(row_labels))
    if col_labels is not None:
        ax.set_xticks([scale + step_x * (c + 0.5) - scale / 2 for c in range(n_cols)], list(col_labels))
    else:
        ax.set_xticks([])
    ax.tick_params(length=0)
    for side in ("left", "bottom", "top", "right"):
        ax.spines[side].set_visible(False)
    if xlabel:
        ax.set_xlabel(xlabel)
    ax.set_title(title)
    return to_png(fig)


# ------------------------------------------------------------------------------------ latent space
def _scatter(ax: Any, pts: np.ndarray, y: np.ndarray | None, alpha: float = 0.75) -> Any:
    size = 6 if len(pts) > 1000 else 14
    if y is None:
        return ax.scatter(pts[:, 0], pts[:, 1], s=size, alpha=alpha, color="C0", linewidths=0)
    classes = np.unique(y)
    cmap = "tab10" if len(classes) <= 10 else "tab20"
    return ax.scatter(pts[:, 0], pts[:, 1], c=y, s=size, alpha=alpha, cmap=cmap, linewidths=0,
                      vmin=classes.min() - 0.5, vmax=classes.max() + 0.5)


def _prior_contours(ax: Any, centre: np.ndarray) -> None:
    """Circles at 1, 2 and 3 standard deviations of the 2-D standard normal centred at ``centre``."""
    t = np.linspace(0, 2 * np.pi, 200)
    for r in (1, 2, 3):
        ax.plot(centre[0] + r * np.cos(t), centre[1] + r * np.sin(t), color="0.25", lw=0.9,
                ls="--" if r > 1 else "-", label="prior N(0, I): 1, 2, 3 sd" if r == 1 else None)


def _prior_density(ax: Any, pts: np.ndarray) -> None:
    """Contours of a learned prior from its draws ``pts`` (m, 2): the smallest regions holding 39%, 86% and
    99% of the draws (the mass inside 1, 2, 3 sd of a 2-D Gaussian), from a smoothed 2-D histogram."""
    from scipy.ndimage import gaussian_filter

    lo, hi = np.percentile(pts, 0.2, 0), np.percentile(pts, 99.8, 0)
    pad = 0.15 * (hi - lo) + 1e-9
    hist, xe, ye = np.histogram2d(pts[:, 0], pts[:, 1], bins=80, range=[[lo[0] - pad[0], hi[0] + pad[0]],
                                                                      [lo[1] - pad[1], hi[1] + pad[1]]])
    dens = gaussian_filter(hist, 1.2)
    flat = np.sort(dens.ravel())[::-1]
    mass = np.cumsum(flat) / max(flat.sum(), 1e-12)
    levels = sorted({float(flat[min(int(np.searchsorted(mass, q)), len(flat) - 1)]) for q in (0.99, 0.86, 0.39)})
    if len(levels) < 2:
        return
    xc, yc = 0.5 * (xe[1:] + xe[:-1]), 0.5 * (ye[1:] + ye[:-1])
    ax.contour(xc, yc, dens.T, levels=levels, colors="0.25", linewidths=0.9)
    ax.plot([], [], color="0.25", lw=0.9, label="learned prior p(z): 39, 86, 99% regions")


def latent_panels(panels: Sequence[dict[str, Any]], width: float = 12) -> bytes:
    """One scatter per panel; a panel is {points (n, 2), y (n,) labels or None, title, xlabel, ylabel,
    prior_centre (2,) or None, prior_points (m, 2) or None, equal (bool)}: ``prior_centre`` draws N(0, I)'s
    1-2-3 sd circles, ``prior_points`` (draws of a learned prior) its density contours. Points are coloured
    by label with a shared colour bar."""
    n = len(panels)
    fig = _figure(width if n > 1 else 6.4, width / n * 0.85 + 0.4 if n > 1 else 5.2)
    axes = np.atleast_1d(fig.subplots(1, n))
    mappable = None
    y = panels[0].get("y")
    legend_drawn = False
    for ax, p in zip(axes, panels, strict=True):
        mappable = _scatter(ax, p["points"], p.get("y"))
        if p.get("prior_points") is not None or p.get("prior_centre") is not None:
            if p.get("prior_points") is not None:
                _prior_density(ax, p["prior_points"])
            else:
                _prior_contours(ax, p["prior_centre"])
            if not legend_drawn:  # once per figure
                ax.legend(loc="best", framealpha=0.85)
                legend_drawn = True
        if p.get("equal", True):
            ax.set_aspect("equal", adjustable="datalim")
        ax.set_title(p["title"])
        ax.set_xlabel(p["xlabel"])
        ax.set_ylabel(p["ylabel"])
    if y is not None and mappable is not None:
        classes = np.unique(y)
        bar = fig.colorbar(mappable, ax=list(axes), ticks=classes if len(classes) <= 20 else None,
                           shrink=0.85, pad=0.01)
        bar.set_label("label")
    return to_png(fig)


def kl_bars(kl: np.ndarray, order: np.ndarray, active_threshold: float | None = None) -> bytes:
    """Mean KL per latent dimension (nats per example), bars sorted from most to least used."""
    d = len(kl)
    fig = _figure(min(max(4.5, 0.35 * d + 2), 13), 3.6)
    ax = fig.add_subplot()
    ax.bar(np.arange(d), kl[order], color="C0", width=0.6 if d < 6 else 0.8)
    ax.set_xticks(np.arange(d), [f"z{j}" for j in order], rotation=90 if d > 16 else 0)
    ax.set_xlabel("latent dimension (sorted by KL)")
    ax.set_ylabel(f"KL ({NATS})")
    ax.set_title(f"KL per latent dimension (total {kl.sum():.2f} nats)")
    if active_threshold is not None:
        ax.axhline(active_threshold, color="C3", lw=0.9, ls="--", label=f"{active_threshold:g} nats")
        ax.legend(loc="upper right")
    return to_png(fig)


# ------------------------------------------------------------------------------------ vector data
def _feature_grid(n: int, width: float = 12, panel: float = 2.3) -> tuple[Figure, np.ndarray]:
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig = _figure(min(width, cols * panel * 1.25), rows * panel + 0.5)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes


def recon_scatter(x: np.ndarray, x_hat: np.ndarray, features: Sequence[int]) -> bytes:
    """Per-feature scatter of true (x-axis) against reconstructed (y-axis) values, with the identity line."""
    fig, axes = _feature_grid(len(features))
    for ax, j in zip(axes, features, strict=False):
        a, b = x[:, j], x_hat[:, j]
        lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
        ax.plot([lo, hi], [lo, hi], color="0.4", lw=0.8, ls="--")
        ax.scatter(a, b, s=5, alpha=0.5, linewidths=0)
        r = np.corrcoef(a, b)[0, 1] if a.std() > 0 and b.std() > 0 else float("nan")
        ax.set_title(f"feature {j} (r = {r:.2f})")
        ax.set_xlabel("true value (data units)")
        ax.set_ylabel("reconstructed")
    return to_png(fig)


def sample_histograms(x_data: np.ndarray, x_samples: np.ndarray, features: Sequence[int]) -> bytes:
    """Per-feature histograms of the data (test split) and of decoded prior samples (densities)."""
    fig, axes = _feature_grid(len(features))
    for i, (ax, j) in enumerate(zip(axes, features, strict=False)):
        both = np.concatenate([x_data[:, j], x_samples[:, j]])
        bins = np.linspace(float(both.min()), float(both.max()) + 1e-9, 30)
        ax.hist(x_data[:, j], bins=bins, density=True, alpha=0.55, label="data (test)")
        ax.hist(x_samples[:, j], bins=bins, density=True, alpha=0.55, label="samples from p(z)")
        ax.set_title(f"feature {j}")
        ax.set_xlabel("value (data units)")
        ax.set_ylabel("density")
        if i == 0:
            ax.legend(loc="upper right")
    return to_png(fig)


def feature_lines(panels: Sequence[tuple[str, np.ndarray, np.ndarray]], xlabel: str, features: Sequence[int]) -> bytes:
    """Decoded feature values along a path: each panel is (title, t (steps,), values (steps, D))."""
    fig, axes = _feature_grid(len(panels), panel=2.6)
    for ax, (title, t, values) in zip(axes, panels, strict=False):
        for k, j in enumerate(features):
            ax.plot(t, values[:, j], color=f"C{k % 10}", label=f"feature {j}")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("decoded mean (data units)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper")
    return to_png(fig)


# ------------------------------------------------------------------------------------ comparisons
def rate_distortion(points: Sequence[tuple[str, float, float]]) -> bytes:
    """Rate (KL, nats) against distortion (-E_q log p(x|z), nats), one labelled point per beta."""
    fig = _figure(6.4, 4.6)
    ax = fig.add_subplot()
    pts = sorted(points, key=lambda p: p[1])
    ax.plot([p[1] for p in pts], [p[2] for p in pts], color="0.6", lw=1, zorder=1)
    for i, (label, rate, dist) in enumerate(pts):
        ax.scatter([rate], [dist], s=40, color=f"C{i}", zorder=2)
        ax.annotate(label, (rate, dist), textcoords="offset points", xytext=(6, 6))
    ax.set_xlabel(f"rate: KL(q(z|x) || p(z)) ({NATS})")
    ax.set_ylabel(f"distortion: -E_q log p(x|z) ({NATS})")
    ax.set_title("rate / distortion trade-off (test split)")
    ax.margins(x=0.25, y=0.15)
    return to_png(fig)


def metric_curve(metrics: Sequence[dict[str, Any]], key: str, twin: str | None = None) -> bytes:
    """One validation metric per epoch (``key``, e.g. ``val_ndcg@100``) with its best epoch starred, and
    ``twin`` (e.g. the KL weight) on a second axis."""
    fig = _figure(7.5, 3.6)
    ax = fig.subplots()
    e, v = _series(metrics, key)
    ax.plot(e, v, marker="o" if len(e) < 15 else None, ms=3, color="C0", label=key)
    if len(v):
        best = int(np.argmax(v))
        ax.plot([e[best]], [v[best]], "*", ms=12, color="C3", label=f"best {v[best]:.4f}")
    ax.set_xlabel("epoch")
    ax.set_ylabel(key)
    if twin is not None:
        e2, v2 = _series(metrics, twin)
        if len(e2):
            ax2 = ax.twinx()
            ax2.plot(e2, v2, color="0.5", ls="--", label=twin)
            ax2.set_ylabel(twin)
    ax.legend(loc="lower right")
    return to_png(fig)
