"""One run as the explorer serves it: loaded once through :func:`vaekit.runload.load_run` (the model, the
run's data with its recorded preprocessing, the same test split and labels ``vaekit eval`` uses), its
codes from :func:`vaekit.probes.split_stats` (the posterior means and KL per dimension eval reports), and
every decode through ``model.decode`` in eval mode with its public input checks: one likelihood path.

Shapes: codes z (m, d) float64 here, float32 into the model; map points (n, 2); decoded outputs are the
decoder means E[x|z] in the data's own units, rendered by the run's :class:`~vaekit.explore.views.OutputView`.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, final

import numpy as np
import torch

from vaekit.errors import VaekitError
from vaekit.explore.projections import MAP_DECIMALS, Projection, available_methods, project
from vaekit.explore.views import OutputView, view_for
from vaekit.probes import split_stats
from vaekit.report.latent import prior_name, subsample_index
from vaekit.runload import load_run

#: Test points drawn on the map (a seeded subsample when the split is larger).
MAX_POINTS = 2000


@final
class ExploredRun:
    """A loaded run: ``rows`` (n,) the split rows drawn on the map, ``z`` (n, d) their posterior means,
    ``y`` (n,) labels or None, ``cond`` (n, c_dim) the conditions they were encoded with or None,
    ``order`` (d,) latent dimensions most used first (mean KL per dimension over the whole split; code
    variance for an autoencoder), ``kl`` (d,) nats or None."""

    def __init__(self, path: str | Path, max_points: int = MAX_POINTS, seed: int = 0) -> None:
        self.path = Path(path)
        model, config, meta, data = load_run(path)
        self.model = model.cpu().eval()
        self.meta, self.seed = meta, seed
        self.likelihood = config.model.likelihood
        self.split_name = "test" if len(data.test) else ("val" if len(data.val) else "train")
        self.split = getattr(data, self.split_name)
        if not len(self.split):
            raise VaekitError(f"run {path} has no data to explore; check its data.* settings")
        stats = split_stats(self.model, data, self.split_name, seed=seed, probe=False)
        idx = subsample_index(stats.n_points, max_points, seed)
        self.rows = idx
        self.z = stats.means[idx].double().numpy()
        self.y = None if stats.y is None or not len(stats.y) else stats.y[idx].numpy()
        self.cond = None if stats.cond is None else stats.cond[idx]
        self.kl = None if stats.kl_per_dim is None else stats.kl_per_dim.numpy()
        score = self.kl if self.kl is not None else stats.means.double().var(0, correction=0).numpy()
        self.order = np.argsort(-score, kind="stable")
        self.view: OutputView = view_for(self.model.schema.kind, self.likelihood, meta, data.info,
                                             getattr(data, "rec", None))
        self.class_names = [str(c) for c in (data.info.get("classes") or [])]
        self._maps: dict[str, Projection] = {}
        self._lock = threading.Lock()
        # one model call at a time: model.reconstruct toggles the model's trusted-input flag (vaekit.inputs),
        # which concurrent requests (waitress threads) must not interleave; a decode takes under a millisecond
        self._model_lock = threading.Lock()

    @property
    def latent_dim(self) -> int:
        return int(self.model.latent_dim)

    @property
    def n_points(self) -> int:
        return len(self.rows)

    def info(self) -> dict[str, Any]:
        """What the page shows before anything is decoded."""
        schema = self.model.schema
        lo, hi = self.z.min(0), self.z.max(0)
        has_prior = self.model.posterior.has_density
        dims = []
        for j in self.order:
            a, b = float(lo[j]), float(hi[j])
            pad = 0.1 * max(b - a, 1e-3)
            a, b = (min(a - pad, -3.0), max(b + pad, 3.0)) if has_prior else (a - pad, b + pad)
            dims.append({"dim": int(j), "kl": None if self.kl is None else float(self.kl[j]), "min": a, "max": b})
        n_classes = schema.n_classes if schema.condition == "label" else (
            int(self.y.max()) + 1 if self.y is not None else 0)
        return {"name": self.path.name, "kind": self.model.config.kind, "likelihood": self.likelihood,
                "latent_dim": self.latent_dim, "split": self.split_name, "n_points": self.n_points,
                "condition": schema.condition, "n_classes": n_classes,
                "class_names": self.class_names[:n_classes] if len(self.class_names) >= n_classes else [],
                "methods": available_methods(self.latent_dim), "dims": dims, "view": self.view.describe(),
                "prior": self.prior_name()}

    def prior_name(self) -> str | None:
        """How the page names the run's prior p(z) (:func:`vaekit.report.latent.prior_name`, as the report
        does), or None for a plain AE, which has none to draw from."""
        if not self.model.posterior.has_density:
            return None
        return prior_name(self.model)

    def projection(self, method: str) -> Projection:
        """The map of this run's codes by ``method`` (computed once, then cached)."""
        with self._lock:
            if method not in self._maps:
                self._maps[method] = project(self.z, method, self.seed)
            return self._maps[method]

    def map(self, method: str) -> dict[str, Any]:
        proj = self.projection(method)
        return {"method": method, "points": np.round(proj.points, MAP_DECIMALS).tolist(),
                "labels": None if self.y is None else self.y.tolist()}

    def _condition(self, n: int, label: int | None, point: int | None) -> dict[str, torch.Tensor]:
        """The condition of n decodes: ``y`` = ``label`` for a label model (required), ``c`` = the map
        point's own covariates (else the mean of the shown points') for a covariate model."""
        which = self.model.schema.condition
        if which == "label":
            if label is None:
                k = self.model.schema.n_classes
                raise VaekitError(f"this run's model is label-conditional: give \"label\" in 0..{k - 1}")
            return {"y": torch.full((n,), label, dtype=torch.long)}
        if which == "covariates":
            assert self.cond is not None
            c = self.cond[point] if point is not None else self.cond.mean(0)
            return {"c": c.expand(n, -1).clone()}
        return {}

    def decode(self, z: np.ndarray, label: int | None = None, point: int | None = None) -> list[dict[str, Any]]:
        """Decoder means at codes z (m, d), rendered by the run's view (one dict per code)."""
        with self._model_lock, torch.inference_mode():
            p_x = self.model.decode(torch.as_tensor(z, dtype=torch.float32), **self._condition(len(z), label, point))
            return self.view.render(p_x.mean)

    def prior_samples(self, n: int, seed: int = 0, label: int | None = None, point: int | None = None
                      ) -> dict[str, Any]:
        """``n`` draws z ~ p(z) of the run's own prior (a learned prior's, not N(0, I)), seeded, and their
        decoder means rendered by the view: {"z": (n, d) list, "outputs": n rendered outputs}."""
        with self._model_lock, torch.inference_mode():
            z = self.model.latent_prior.sample(n, torch.Generator().manual_seed(seed))
        return {"z": z.tolist(), "outputs": self.decode(z.numpy(), label, point)}

    def point(self, j: int) -> dict[str, Any]:
        """Map point ``j``: its row of the split, code, label, input and reconstruction (rendered)."""
        row = int(self.rows[j])
        batch = self.split.batch_of(torch.tensor([row]), torch.Generator().manual_seed(self.seed + row))
        with self._model_lock:
            x_hat = self.model.reconstruct(batch)
        x_in, x_out = self.view.render(batch.x), self.view.render(x_hat)
        return {"index": j, "row": row, "z": self.z[j].tolist(),
                "label": None if self.y is None else int(self.y[j]), "input": x_in[0], "reconstruction": x_out[0]}
