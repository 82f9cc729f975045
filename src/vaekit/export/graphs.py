"""The two graphs an export holds, as small ``nn.Module``\\ s around the model's own entry points.

:class:`EncoderGraph` calls ``model.encode`` and :class:`DecoderGraph` ``model.decode`` (the same code path
as training and evaluation: standardisation by the model's ``data_loc`` / ``data_scale``, the encoder's
``input_norm``, a label one-hot, the networks, the posterior head and the likelihood), then return the
distributions' parameters as plain tensors, which is what an exporter can trace.

Inputs (n = any batch size):

* ``x`` (n, *event_shape) float32, in the model's input units (what ``VAE.encode`` takes);
* ``z`` (n, d) float32 latent codes;
* a label-conditional model: ``y`` (n,) int64 class labels in 0..n_classes-1 (one-hot inside the graph,
  as ``VAE.condition`` does);
* a covariate-conditional model: ``c`` (n, k) float32 covariates in the data's own units, standardised
  inside the graph with the run's recorded training mean and std (as :func:`vaekit.runload.user_condition`
  does before calling the model).

Outputs: :func:`posterior_outputs` and :func:`likelihood_outputs` name them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Independent, MultivariateNormal, Normal

from vaekit import distributions as D
from vaekit.errors import VaekitError
from vaekit.inputs import trusted


def posterior_outputs(q_z: Distribution) -> dict[str, Tensor]:
    """q(z|x) as named tensors: a diagonal Gaussian -> ``loc``, ``scale`` (n, d) (standard deviations); a
    full-covariance one -> ``loc`` (n, d), ``scale_tril`` (n, d, d) (lower-triangular L, covariance L L^T);
    the autoencoder's point mass -> ``code`` (n, d)."""
    if isinstance(q_z, MultivariateNormal):
        return {"loc": q_z.loc, "scale_tril": q_z.scale_tril}
    if isinstance(q_z, Independent) and isinstance(q_z.base_dist, Normal):
        return {"loc": q_z.base_dist.loc, "scale": q_z.base_dist.scale}
    if isinstance(q_z, D.PointMass):
        return {"code": q_z.loc}
    raise VaekitError(f"cannot export a posterior of type {type(q_z).__name__}; export supports the diag, full "
                      "and point (model.kind ae) posteriors")


def likelihood_outputs(p_x: Distribution) -> dict[str, Tensor]:
    """p(x|z) as named tensors of shape (n, *event_shape), in the model's input units: Bernoulli ->
    ``logits``, ``mean`` (= sigmoid(logits), the pixel probabilities); Gaussian -> ``mean``, ``scale``
    (standard deviations); multinomial -> ``logits``, ``mean`` (= softmax(logits) over the items)."""
    if isinstance(p_x, D.Multinomial):
        return {"logits": p_x.logits, "mean": p_x.probs}
    if isinstance(p_x, Independent) and isinstance(p_x.base_dist, Bernoulli):
        return {"logits": p_x.base_dist.logits, "mean": p_x.base_dist.probs}
    if isinstance(p_x, Independent) and isinstance(p_x.base_dist, Normal):
        return {"mean": p_x.base_dist.loc, "scale": p_x.base_dist.scale}
    raise VaekitError(f"cannot export a likelihood of type {type(p_x).__name__}; export supports the bernoulli, "
                      "gaussian, gaussian-learned and multinomial likelihoods")


class _Condition(nn.Module):
    """The condition as the graph takes it -> the keyword arguments of ``model.encode`` / ``decode``."""

    cov_loc: Tensor
    cov_scale: Tensor

    def __init__(self, model: Any, covariates: dict[str, Any] | None) -> None:
        super().__init__()
        self.kind: str = model.schema.condition
        if self.kind == "covariates":
            if covariates is None:
                raise VaekitError("the checkpoint records no covariate statistics (meta.json data.prep.covariates); "
                                  "it is corrupted, use another checkpoint")
            self.register_buffer("cov_loc", torch.tensor(covariates["loc"], dtype=torch.float32))
            self.register_buffer("cov_scale", torch.tensor(covariates["scale"], dtype=torch.float32))

    @property
    def input_name(self) -> str | None:
        return {"label": "y", "covariates": "c"}.get(self.kind)

    def forward(self, cond: Tensor | None) -> dict[str, Tensor]:
        if self.kind == "none" or cond is None:
            return {}
        if self.kind == "label":
            return {"y": cond}
        return {"c": (cond - self.cov_loc) / self.cov_scale}


class EncoderGraph(nn.Module):
    """x (n, *event_shape) [, y (n,) | c (n, k)] -> the posterior's parameters (:func:`posterior_outputs`)."""

    def __init__(self, model: Any, covariates: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.model = model
        self.condition = _Condition(model, covariates)

    def named(self, x: Tensor, cond: Tensor | None = None) -> dict[str, Tensor]:
        """The outputs by name."""
        with trusted(self.model):  # no Python-side checks in a graph: the inputs are the caller's to check
            return posterior_outputs(self.model.encode(x, **self.condition(cond)))

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, ...]:
        return tuple(self.named(x, cond).values())


class DecoderGraph(nn.Module):
    """z (n, d) [, y (n,) | c (n, k)] -> the likelihood's parameters and mean (:func:`likelihood_outputs`)."""

    def __init__(self, model: Any, covariates: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.model = model
        self.condition = _Condition(model, covariates)

    def named(self, z: Tensor, cond: Tensor | None = None) -> dict[str, Tensor]:
        """The outputs by name."""
        with trusted(self.model):
            return likelihood_outputs(self.model.decode(z, **self.condition(cond)))

    def forward(self, z: Tensor, cond: Tensor | None = None) -> tuple[Tensor, ...]:
        return tuple(self.named(z, cond).values())


def example_inputs(model: Any, n: int, generator: torch.Generator, covariates: dict[str, Any] | None = None,
                   ) -> tuple[Tensor, Tensor, Tensor | None]:
    """(x, z, cond) for ``n`` examples, plausible for ``model``: x 0/1 draws for a Bernoulli or multinomial
    model, else values around the model's data transform (loc + scale * N(0, 1)); z ~ N(0, I); labels
    uniform over the classes, covariates around their training mean (in data units)."""
    shape = (n, *model.event_shape)
    if model.config.likelihood in ("bernoulli", "multinomial"):
        x = torch.bernoulli(torch.full(shape, 0.5), generator=generator)
    else:
        x = model.data_loc.cpu() + model.data_scale.cpu() * torch.randn(shape, generator=generator)
    z = torch.randn(n, model.latent_dim, generator=generator)
    cond: Tensor | None = None
    if model.schema.condition == "label":
        cond = torch.randint(model.schema.n_classes, (n,), generator=generator)
    elif model.schema.condition == "covariates" and covariates is not None:
        loc, scale = (torch.tensor(covariates[k], dtype=torch.float32) for k in ("loc", "scale"))
        cond = loc + scale * torch.randn(n, len(loc), generator=generator)
    return x, z, cond
