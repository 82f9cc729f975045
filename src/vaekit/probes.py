"""What the latent code holds: active units (Burda et al., 2016) and a linear probe on posterior means.

* ``posterior_means``: E_q[z|x] for every row of x, shape (n, d), batched, no gradients.
* ``active_units``: unit u is active when Var_x(E_q[z_u|x]) > 0.01 (the variance over the data points
  of the posterior mean; population variance, ddof = 0).
* ``collapse_warning``: the rule vaekit uses to call a posterior collapsed (see :data:`COLLAPSE_FRACTION`).
* ``probe_accuracy``: test accuracy of a multinomial logistic regression fitted on the posterior means
  of (a bounded subsample of) the training split.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from vaekit.distributions import kl_per_dim
from vaekit.inputs import check_input, trusted

ACTIVE_THRESHOLD = 0.01
#: Warn when fewer than this fraction of the d latent units are active (and always when none is).
COLLAPSE_FRACTION = 0.1
#: The probe is fitted on at most this many training examples (a seeded random subsample) for speed.
PROBE_MAX_TRAIN = 10_000


@torch.inference_mode()
def posterior_means(model, x: Tensor, batch_size: int = 1000) -> Tensor:
    """E_q[z|x] for x of shape (n, *event_shape): float32 (n, d) on the CPU (the code itself for an AE)."""
    device = next(model.parameters()).device
    check_input(model, x, "x")
    was_training = model.training
    model.eval()
    with trusted(model):
        out = [model.encode(x[i:i + batch_size].to(device)).mean.float().cpu()
               for i in range(0, x.shape[0], batch_size)]
    model.train(was_training)
    return torch.cat(out)


@torch.inference_mode()
def mean_kl_per_dim(model, x: Tensor, batch_size: int = 1000) -> Tensor:
    """KL(q(z|x) || N(0, I)) split by latent dimension and averaged over the n rows of x: (d,), nats."""
    device = next(model.parameters()).device
    check_input(model, x, "x")
    total = torch.zeros(model.latent_dim, dtype=torch.float64)
    with trusted(model):
        for i in range(0, x.shape[0], batch_size):
            total += kl_per_dim(model.encode(x[i:i + batch_size].to(device))).double().sum(0).cpu()
    return total / max(x.shape[0], 1)


def active_units(means: Tensor, threshold: float = ACTIVE_THRESHOLD) -> tuple[int, Tensor]:
    """(number of active units, per-unit variance (d,) float64) from posterior means of shape (n, d):
    unit u is active when Var_x(E_q[z_u]) > ``threshold`` (population variance over the n points)."""
    var = means.double().var(0, correction=0)
    return int((var > threshold).sum()), var


def collapse_warning(n_active: int, d: int) -> str | None:
    """A warning when the posterior has collapsed: no active unit, or fewer than
    ``COLLAPSE_FRACTION`` * d of them; None otherwise."""
    if n_active == 0 or n_active < COLLAPSE_FRACTION * d:
        return (f"posterior collapse: {n_active} of {d} latent units are active (Var_x E_q[z_u] > "
                f"{ACTIVE_THRESHOLD}); the decoder ignores the code. Try KL warm-up (--train.warmup_steps), a "
                f"smaller --train.beta, or a smaller --model.latent_dim")
    return None


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
