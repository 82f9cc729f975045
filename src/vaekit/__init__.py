"""vaekit: variational autoencoders with honest likelihoods.

Three lines from data to a trained model and its log-likelihood::

    import vaekit
    run_dir, trainer = vaekit.fit(vaekit.Config(name="digits-vae"))
    model = vaekit.load(run_dir)
    vaekit.log_likelihood(model, x, k=5000)   # per-example log p(x), nats

Names are imported lazily so that ``vaekit --help`` does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from vaekit.memory import reuse_large_blocks
from vaekit.threads import bound_spinning

__version__ = "0.1.0"
bound_spinning()  # before torch loads OpenMP: see vaekit.threads
reuse_large_blocks()  # large temporaries reused, not page-faulted afresh: see vaekit.memory

_EXPORTS = {
    "load": "vaekit.api",
    "evaluate_run": "vaekit.api",
    "Config": "vaekit.config",
    "ModelConfig": "vaekit.config",
    "TrainConfig": "vaekit.config",
    "EvalConfig": "vaekit.config",
    "DataConfig": "vaekit.data.config",
    "load_config": "vaekit.config",
    "load_data": "vaekit.data",
    "VAE": "vaekit.model",
    "fit": "vaekit.train",
    "resume": "vaekit.train",
    "Trainer": "vaekit.train",
    "Callback": "vaekit.train",
    "log_likelihood": "vaekit.evaluate",
    "elbo_terms": "vaekit.objectives",
    "iwae_bound": "vaekit.objectives",
    "LossOutput": "vaekit.objectives",
    "VaekitError": "vaekit.errors",
    "recommender": "vaekit.recsys.recommend",
    "impute": "vaekit.imputation",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vaekit' has no attribute {name!r}")
