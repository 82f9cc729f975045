"""What the latent code holds: active units (Burda et al., 2016) and a linear probe on posterior means.

* ``posterior_means``: E_q[z|x] for every row of x, shape (n, d), batched, no gradients.
* ``active_units``: unit u is active when Var_x(E_q[z_u|x]) > 0.01 (the variance over the data points
  of the posterior mean; population variance, ddof = 0).
* ``collapse_warning``: the rule vaekit uses to call a posterior collapsed (see :data:`COLLAPSE_FRACTION`).
* ``probe_accuracy``: test accuracy of a multinomial logistic regression fitted on the posterior means
  of (a bounded subsample of) the training split.
* ``latent_summary``: both of the above for a run's data, the one path used by ``vaekit eval``, the
  report and the collapse warning printed after training (same split, subsample and seed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vaekit.inputs import check_input, trusted

ACTIVE_THRESHOLD = 0.01
#: Warn when fewer than this fraction of the d latent units are active (and always when none is): one
#: active unit of 8 (Frey Face under a learned-variance Gaussian) is a collapse, not a sparse code.
COLLAPSE_FRACTION = 0.25
#: The probe is fitted on at most this many training examples (a seeded random subsample) for speed.
PROBE_MAX_TRAIN = 10_000


@torch.inference_mode()
def posterior_means(model, x: Tensor, batch_size: int = 1000) -> Tensor:
    """E_q[z|x] for x of shape (n, *event_shape): float32 (n, d) on the CPU (the code itself for an AE)."""
    device = next(model.parameters()).device
    x = check_input(model, x, "x")
    was_training = model.training
    model.eval()
    with trusted(model):
        out = [model.encode(x[i:i + batch_size].to(device)).mean.float().cpu()
               for i in range(0, x.shape[0], batch_size)]
    model.train(was_training)
    return torch.cat(out)


@torch.inference_mode()
def mean_kl_per_dim(model, x: Tensor, batch_size: int = 1000) -> Tensor:
    """KL(q(z|x) || p(z)) split by latent dimension and averaged over the n rows of x: (d,), nats (the
    prior's closed-form split, :meth:`vaekit.priors.Prior.analytic_kl_per_dim`; a prior without one
    raises ValueError)."""
    device = next(model.parameters()).device
    x = check_input(model, x, "x")
    total = torch.zeros(model.latent_dim, dtype=torch.float64)
    with trusted(model):
        for i in range(0, x.shape[0], batch_size):
            kl = model.latent_prior.analytic_kl_per_dim(model.encode(x[i:i + batch_size].to(device)))
            if kl is None:
                raise ValueError(f"the {model.config.prior} prior has no per-dimension KL")
            total += kl.double().sum(0).cpu()
    return total / max(x.shape[0], 1)


def active_units(means: Tensor, threshold: float = ACTIVE_THRESHOLD) -> tuple[int, Tensor]:
    """(number of active units, per-unit variance (d,) float64) from posterior means of shape (n, d):
    unit u is active when Var_x(E_q[z_u]) > ``threshold`` (population variance over the n points)."""
    var = means.double().var(0, correction=0)
    return int((var > threshold).sum()), var


def collapse_warning(n_active: int, d: int, likelihood: str | None = None, prep: dict[str, Any] | None = None,
                     data_dim: int | None = None) -> str | None:
    """A one-line warning when the posterior has collapsed: no active unit, or fewer than
    ``COLLAPSE_FRACTION`` of the units the data can use, min(d, ``data_dim``) (a 2-feature table cannot
    keep 8 units busy); None otherwise. The hint fits the ``likelihood`` (a learned-variance Gaussian
    decoder can explain the data as noise and leave the code unused) and names only remedies the run's
    preprocessing record ``prep`` does not already apply."""
    usable = min(d, data_dim) if data_dim else d
    if n_active and n_active >= COLLAPSE_FRACTION * usable:
        return None
    prep = prep or {}
    if likelihood == "gaussian-learned":
        tries = []
        if prep.get("dequantize") == "none" and prep.get("value_range"):  # integer data of known range
            tries.append("uniform dequantisation of integer pixels (data.dequantize, --data.dequantize uniform)")
        if prep.get("scale") != "standardize":
            tries.append("standardised inputs (data.scale, --data.scale standardize)")
        tries += ["KL warm-up over most of the run (train.warmup_steps, e.g. --train.warmup_steps set to the run's "
                  "total steps)", "a fixed-sigma likelihood (--model.likelihood gaussian)"]
        hint = ("a learned-variance decoder can explain the data as noise instead of using the code. Try "
                + ", ".join(tries[:-1]) + " or " + tries[-1])
    else:
        hint = ("the decoder ignores the code. Try KL warm-up (train.warmup_steps, --train.warmup_steps), a "
                "smaller --train.beta, or a smaller --model.latent_dim")
    return (f"posterior collapse: {n_active} of {d} latent units are active (Var_x E_q[z_u] > "
            f"{ACTIVE_THRESHOLD}); {hint}")


@dataclass
class LatentSummary:
    """What the code holds on one split: ``n_active`` of ``latent_dim`` units, their ``variances`` (d,)
    float64, the linear-probe accuracy ``probe`` (None without labels), the number of points
    ``n_points`` and training rows ``n_probe_train`` behind them, and the ``seed`` used."""

    n_active: int
    latent_dim: int
    variances: Tensor
    probe: float | None
    n_points: int
    n_probe_train: int
    seed: int
    data_dim: int | None = None

    def warning(self, likelihood: str | None = None, prep: dict[str, Any] | None = None) -> str | None:
        """:func:`collapse_warning` for this summary (``prep``: the run's preprocessing record)."""
        return collapse_warning(self.n_active, self.latent_dim, likelihood, prep, self.data_dim)


def latent_summary(model, data, split: str = "test", seed: int = 0, batch_size: int = 1000,
                   probe: bool = True) -> LatentSummary:
    """Active units and linear-probe accuracy of ``model`` on ``data`` (a DataBundle): the one computation
    behind ``vaekit eval``, the report and the collapse warning after training.

    Active units: posterior means of every row of the ``split`` split ('test', 'val' or 'train').
    Probe (when both the split and the training split have labels and ``probe``): fitted on the
    posterior means of at most ``PROBE_MAX_TRAIN`` training rows, a random permutation seeded with
    ``seed`` whose dynamic binarisation (if any) draws from the same seeded generator, then scored on
    the split's means. ``batch_size`` only bounds memory."""
    part = getattr(data, split)
    x = part.all()
    means = posterior_means(model, x, batch_size)
    n_active, var = active_units(means)
    accuracy, n_train = None, 0
    if probe and part.y is not None and data.train.y is not None and len(data.train) and len(part):
        gen = torch.Generator().manual_seed(seed)
        n_train = min(len(data.train), PROBE_MAX_TRAIN)
        rows = torch.randperm(len(data.train), generator=gen)[:n_train]
        train_means = posterior_means(model, data.train.batch(rows, gen), batch_size)
        accuracy = probe_accuracy(train_means, data.train.y[rows], means, part.y, seed=seed)
    return LatentSummary(n_active=n_active, latent_dim=model.latent_dim, variances=var, probe=accuracy,
                         n_points=len(part), n_probe_train=n_train, seed=seed, data_dim=model.data_dim)


def probe_accuracy(train_means: Tensor, train_y: Tensor, test_means: Tensor, test_y: Tensor,
                   max_train: int = PROBE_MAX_TRAIN, seed: int = 0) -> float:
    """Test accuracy in [0, 1] of a logistic regression (scikit-learn, features standardised with the
    training statistics) fitted on ``train_means`` (n, d) -> ``train_y`` (n,). At most ``max_train``
    training rows are used, drawn without replacement with ``seed``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xs, ys = train_means.double().numpy(), train_y.numpy()
    if len(xs) > max_train:
        keep = np.random.default_rng(seed).choice(len(xs), size=max_train, replace=False)
        xs, ys = xs[keep], ys[keep]
    if len(np.unique(ys)) < 2:
        return float(np.mean(test_y.numpy() == ys[0]))
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    clf.fit(xs, ys)
    return float(clf.score(test_means.double().numpy(), test_y.numpy()))
