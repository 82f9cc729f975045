"""A trained run, loaded for use: its model, config, checkpoint metadata and data, and the conditions a
conditional model is given. The layer below :mod:`vaekit.api`, :mod:`vaekit.evaluate` and
:mod:`vaekit.report` (which must not import the API).

Conditions: a label-conditional model (``model.condition label``) takes labels y, int64 (n,) in
0..n_classes-1; a covariate-conditional one (``covariates``) takes covariates c (n, k) in the data's own
units, standardised here with the run's recorded training statistics (``meta["data"]["prep"]
["covariates"]``), which is what ``VAE.encode`` / ``decode`` / ``sample`` take as ``c=``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vaekit.checkpoint import load_model
from vaekit.config import Config
from vaekit.data import DataBundle, load_run_data
from vaekit.errors import VaekitError
from vaekit.model import VAE


def load_run(path: str | Path, device: str = "cpu", overrides: dict[str, str] | None = None,
             ) -> tuple[VAE, Config, dict[str, Any], DataBundle]:
    """Model, config, checkpoint metadata and the run's data: the run's recorded preprocessing applied
    (never recomputed) and its data files checked against their recorded fingerprints. ``overrides``:
    dotted ``data.*`` keys that choose other data of the same kind (see :mod:`vaekit.data.rundata`)."""
    model, config, meta = load_model(path, device)
    config, data = load_run_data(config, meta, overrides)
    return model, config, meta, data


def user_condition(model: VAE, meta: dict[str, Any], n: int, label: Any = None, covariates: Any = None,
                   ) -> tuple[Tensor | None, Tensor | None]:
    """(y, c) for ``n`` examples from what a user gave: ``label`` (an int for all n, or n ints) for a
    label-conditional model, ``covariates`` ((k,) for all n, or (n, k), in the data's units) for a
    covariate-conditional one, nothing for an unconditional one. A missing or unwanted condition is a
    one-line error naming the CLI flag (--label / --condition) and the Python argument (label= / c=)."""
    which = model.schema.condition
    if which == "none":
        if label is not None or covariates is not None:
            flag = "--label (label=" if label is not None else "--condition (c="
            raise VaekitError(f"this run's model is not conditional (model.condition none): drop {flag} in "
                              "Python); train with --model.condition label for a class-conditional model")
        return None, None
    if which == "label":
        k = model.schema.n_classes
        if covariates is not None:
            raise VaekitError(f"this run's model is conditioned on labels (0..{k - 1}), not covariates: give "
                              "--label K instead of --condition (label= in Python)")
        if label is None:
            raise VaekitError(f"this run's model is label-conditional ({k} classes): give --label K with K in "
                              f"0..{k - 1} (label= in Python)")
        y = torch.as_tensor(np.asarray(label)).reshape(-1)
        if y.dtype == torch.bool or (y.dtype.is_floating_point and not bool((y == y.round()).all())):
            raise VaekitError(f"labels must be whole numbers in 0..{k - 1}, got {label!r}")
        y = y.long()
        if y.numel() == 1:
            y = y.expand(n).clone()
        if y.numel() != n:
            raise VaekitError(f"{y.numel()} labels for {n} examples; give one label, or one per example")
        if n and (int(y.min()) < 0 or int(y.max()) >= k):
            raise VaekitError(f"labels must be in 0..{k - 1} for this run's model, got {int(y.min())}..{int(y.max())}")
        return y, None
    from vaekit.data.preprocess import standardise_covariates

    record = ((meta.get("data") or {}).get("prep") or {}).get("covariates")
    if record is None:
        raise VaekitError("the checkpoint records no covariate statistics (meta.json data.prep.covariates); it is "
                          "corrupted, use another checkpoint")
    names = ", ".join(record["columns"])
    if label is not None:
        raise VaekitError(f"this run's model is conditioned on covariates ({names}), not labels: give --condition "
                          "V1,V2,... instead of --label (c= in Python)")
    if covariates is None:
        raise VaekitError(f"this run's model is covariate-conditional ({names}): give --condition with "
                          f"{len(record['loc'])} comma-separated values or a .npy of shape (n, {len(record['loc'])}) "
                          "(c= in Python)")
    c = torch.from_numpy(standardise_covariates(np.asarray(covariates, dtype=np.float64), record, "the covariates"))
    if c.shape[0] == 1:
        c = c.expand(n, -1).clone()
    if c.shape[0] != n:
        raise VaekitError(f"{c.shape[0]} rows of covariates for {n} examples; give one row, or one per example")
    return None, c


def example_condition(model: VAE, data: DataBundle, n: int) -> tuple[Tensor | None, Tensor | None]:
    """Conditions to show ``n`` samples of a conditional model with: labels 0, 1, ..., n_classes - 1
    repeated (a label model), or the held-out split's first covariate rows repeated (a covariate model);
    (None, None) for an unconditional model."""
    which = model.schema.condition
    if which == "label":
        return torch.arange(n) % model.schema.n_classes, None
    if which == "covariates":
        split = data.test if len(data.test) else (data.val if len(data.val) else data.train)
        if split.c is None or not len(split.c):
            raise VaekitError("the run's data have no covariates to condition on; evaluate with data that have "
                              "the run's covariate columns")
        return None, split.c[torch.arange(n) % len(split.c)]
    return None, None
