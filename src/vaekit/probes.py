"""What the latent code holds: active units (Burda et al., 2016) and a linear probe on posterior means.

* ``posterior_means``: E_q[z|x] for every row of x, shape (n, d), batched, no gradients.
* ``active_units``: unit u is active when Var_x(E_q[z_u|x]) > 0.01 (the variance over the data points
  of the posterior mean; population variance, ddof = 0).
* ``collapse_warning``: the rule vaekit uses to call a posterior collapsed (see :data:`COLLAPSE_FRACTION`).
* ``probe_accuracy``: test accuracy of a multinomial logistic regression fitted on the posterior means
  of (a bounded subsample of) the training split.
* ``split_stats``: every statistic of the code on one split of a run's data (posterior means, KL per unit,
  active units, probe), each row encoded once with its condition: the one path used by ``vaekit eval``,
  the report and the collapse warning printed after training (same split, subsample and seed).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vaekit.batch import Batch
from vaekit.inputs import check_input, trusted
from vaekit.threads import poll_load

ACTIVE_THRESHOLD = 0.01
#: Warn when fewer than this fraction of the d latent units are active (and always when none is): one
#: active unit of 8 (Frey Face under a learned-variance Gaussian) is a collapse, not a sparse code.
COLLAPSE_FRACTION = 0.25
#: The probe is fitted on at most this many training examples (a seeded random subsample) for speed.
PROBE_MAX_TRAIN = 10_000


@torch.inference_mode()
def posterior_means(model, x: Tensor, batch_size: int = 1000) -> Tensor:
    """E_q[z|x] for x of shape (n, *event_shape): float32 (n, d) on the CPU (the code itself for an AE).
    The same encoding loop as :func:`split_stats` (:func:`encode_batches`), for a tensor of inputs."""
    x = check_input(model, x, "x")
    with trusted(model):  # checked once above, not once per batch
        return encode_batches(model, (Batch(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)))[0]


@torch.inference_mode()
def mean_kl_per_dim(model, x: Tensor, batch_size: int = 1000) -> Tensor:
    """KL(q(z|x) || p(z)) split by latent dimension and averaged over the n rows of x: (d,), nats (the
    prior's closed-form split, :meth:`vaekit.priors.Prior.analytic_kl_per_dim`; a prior without one
    raises ValueError). The same encoding loop as :func:`split_stats`."""
    x = check_input(model, x, "x")
    with trusted(model):
        kl_sum = encode_batches(model, (Batch(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)))[1]
    if kl_sum is None:
        raise ValueError(f"the {model.config.prior} prior has no per-dimension KL")
    return kl_sum / max(x.shape[0], 1)


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
class SplitStats:
    """What the code holds on one split, computed once (:func:`split_stats`) and shared by ``vaekit eval``,
    the report and the collapse warning after training.

    ``means``: posterior means E_q[z|x, c] of every row, float32 (n, d) on the CPU; ``y``: the rows' labels
    (n,) or None; ``cond``: the condition each row was encoded with, float32 (n, c_dim) (labels one-hot or
    standardised covariates), None for an unconditional model; ``kl_per_dim``: mean KL(q(z_j|x) || p(z_j))
    per latent unit, float64 (d,) nats (None for an autoencoder or a prior without a per-unit split);
    ``n_active`` of ``latent_dim`` units active, their ``variances`` (d,) float64; ``probe``: linear-probe
    accuracy (None without labels) fitted on ``n_probe_train`` training rows; ``seed``: the seed of the
    probe's subsample and of any dynamic binarisation."""

    split: str
    means: Tensor
    y: Tensor | None
    cond: Tensor | None
    kl_per_dim: Tensor | None
    n_active: int
    latent_dim: int
    variances: Tensor
    probe: float | None
    n_probe_train: int
    seed: int
    data_dim: int | None = None

    @property
    def n_points(self) -> int:
        return int(self.means.shape[0])

    def warning(self, likelihood: str | None = None, prep: dict[str, Any] | None = None) -> str | None:
        """:func:`collapse_warning` for these statistics (``prep``: the run's preprocessing record)."""
        return collapse_warning(self.n_active, self.latent_dim, likelihood, prep, self.data_dim)


@torch.inference_mode()
def encode_rows(model, split, rows: Tensor, generator: torch.Generator | None = None, batch_size: int = 1000,
                ) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Encode rows ``rows`` (m,) of ``split`` with their own condition (``Split.batch_of``: labels /
    covariates): :func:`encode_batches` of the split's batches. ``generator`` draws any dynamic binarisation."""
    return encode_batches(model, (split.batch_of(rows[start:start + batch_size], generator)
                                  for start in range(0, len(rows), batch_size)))


@torch.inference_mode()
def encode_batches(model, batches: Iterable[Batch]) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Encode every batch, in eval mode: (posterior means float32 (m, d), KL per unit summed over the rows
    float64 (d,) or None (an autoencoder, or a prior without a per-unit split), conditions float32
    (m, c_dim) or None), all on the CPU. The one encoding loop behind every statistic of the code."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    means, conds = [], []
    kl_sum: Tensor | None = torch.zeros(model.latent_dim, dtype=torch.float64)
    try:
        for batch in batches:
            poll_load()  # within vaekit.threads.following_load: the thread count follows the load
            batch = batch.to(device)
            q_z = model.encode(batch)
            means.append(q_z.mean.float().cpu())
            cond = model.condition(batch.c, batch.y) if model.conditional else None
            if cond is not None:
                conds.append(cond.float().cpu())
            kl = model.latent_prior.analytic_kl_per_dim(q_z) if model.posterior.has_density else None
            kl_sum = None if kl is None or kl_sum is None else kl_sum + kl.double().sum(0).cpu()
    finally:
        model.train(was_training)
    if not model.posterior.has_density:
        kl_sum = None
    z = torch.cat(means) if means else torch.zeros(0, model.latent_dim)
    return z, kl_sum, (torch.cat(conds) if conds else None)


def split_stats(model, data, split: str = "test", seed: int = 0, batch_size: int = 1000,
                probe: bool = True) -> SplitStats:
    """The statistics of the code of ``model`` on the ``split`` split ('test', 'val' or 'train') of
    ``data`` (a DataBundle), each row encoded once with its condition: the one computation behind
    ``vaekit eval``, the report and the collapse warning after training (same split and seed, so the same
    numbers).

    Posterior means, KL per unit and active units: every row of the split. Probe (when both the split and
    the training split have labels and ``probe``): fitted on the posterior means of at most
    ``PROBE_MAX_TRAIN`` training rows, a random permutation seeded with ``seed`` whose dynamic binarisation
    (if any) draws from the same seeded generator, then scored on the split's means. ``batch_size`` only
    bounds memory."""
    part = getattr(data, split)
    gen = torch.Generator().manual_seed(seed)
    means, kl_sum, cond = encode_rows(model, part, torch.arange(len(part)), gen, batch_size)
    n_active, var = active_units(means)
    kl = None if kl_sum is None else kl_sum / max(len(part), 1)
    accuracy, n_train = None, 0
    if probe and part.y is not None and data.train.y is not None and len(data.train) and len(part):
        n_train = min(len(data.train), PROBE_MAX_TRAIN)
        rows = torch.randperm(len(data.train), generator=gen)[:n_train]
        train_means = encode_rows(model, data.train, rows, gen, batch_size)[0]
        accuracy = probe_accuracy(train_means, data.train.y[rows], means, part.y, seed=seed)
    return SplitStats(split=split, means=means, y=part.y, cond=cond, kl_per_dim=kl, n_active=n_active,
                      latent_dim=model.latent_dim, variances=var, probe=accuracy, n_probe_train=n_train, seed=seed,
                      data_dim=model.data_dim)


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
