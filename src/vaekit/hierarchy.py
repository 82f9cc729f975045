"""The two-level hierarchical VAE (``model.levels = 2``, model family ``hvae``).

The factorisation of Tomczak & Welling (2018, the HVAE of the VampPrior paper), with z = [z1, z2] (each
``latent_dim`` = d wide; z1 the bottom level, z2 the top):

    q(z1, z2 | x) = q(z2 | x) q(z1 | x, z2)            p(x, z1, z2) = p(z2) p(z1 | z2) p(x | z1, z2)

* q(z2 | x): the encoder network's first head's worth of outputs, through the posterior head;
* q(z1 | x, z2): head(a(x) + g(z2)), a(x) the rest of the encoder's outputs, g an MLP (``model.hidden``);
* p(z2): any registered prior (``model.prior``: standard-normal, mog, or vamp, whose pseudo-inputs are
  encoded by q(z2 | .): the paper's HVAE + VampPrior);
* p(z1 | z2): a diagonal Gaussian whose mean and log-variance come from an MLP of z2;
* p(x | z1, z2): the decoder network fed the concatenation [z1, z2].

The model is a :class:`~vaekit.model.VAE` whose code is the 2d-dimensional z, so the one likelihood path
(:func:`vaekit.bounds.log_terms`) serves it unchanged: q(z|x) and p(z) are the joint distributions
:class:`TwoLevelPosterior` and :class:`TwoLevelPrior` (``log_prob`` of z (..., 2d) -> (...) nats), which
also give ``log_prob_levels`` (..., 2) = (level 1 = z1, level 2 = z2) for the KL per level. There is no
closed-form KL: the ELBO uses the Monte-Carlo KL from its own draws.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, constraints

from vaekit import distributions as D
from vaekit.batch import Batch, as_batch
from vaekit.config import ModelConfig
from vaekit.inputs import check_input
from vaekit.model import MODEL_FAMILIES, VAE
from vaekit.networks import build_encoder
from vaekit.networks.mlp import MLP
from vaekit.posteriors import POSTERIORS, DiagonalNormal, PosteriorHead
from vaekit.priors import Prior, build_prior
from vaekit.schema import DataSchema

LEVELS = ("z1", "z2")  # names of the levels, bottom first, as in the loss record and metrics (kl_z1, kl_z2)


class _Conditional:
    """A Gaussian level given its parent: ``head(params(parent))`` evaluated for parents of any leading
    shape (*lead, d_parent) -> a distribution over (*lead, d)."""

    def __init__(self, head: PosteriorHead, params: Callable[[Tensor], Tensor]) -> None:
        self.head, self.params = head, params

    def __call__(self, parent: Tensor) -> tuple[Distribution, torch.Size]:
        p = self.params(parent)  # (*lead, P)
        return self.head(p.reshape(-1, p.shape[-1])), parent.shape[:-1]


def _log_prob(dist_lead: tuple[Distribution, torch.Size], z: Tensor) -> Tensor:
    dist, lead = dist_lead
    return dist.log_prob(z.reshape(-1, z.shape[-1])).reshape(lead)


class TwoLevelPosterior(Distribution):
    """q(z|x) = q(z2|x) q(z1|x, z2) over z = [z1, z2]: batch (n,), event (2d,). ``rsample`` draws z2 then z1
    reparameterised; ``log_prob`` (..., n) nats; ``mean`` is the plug-in mean [E q(z1|x, E z2), E z2]."""

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {}
    has_rsample = True

    def __init__(self, top: Distribution, bottom: _Conditional, d: int) -> None:
        self.top, self.bottom, self.d = top, bottom, d
        self._last: tuple[Tensor, tuple[Distribution, torch.Size]] | None = None  # the last draw and its q(z1|.)
        super().__init__(top.batch_shape, torch.Size([2 * d]), validate_args=False)

    def rsample(self, sample_shape: torch.Size | Sequence[int] = ()) -> Tensor:
        z2 = self.top.rsample(torch.Size(sample_shape))
        level1 = self.bottom(z2)
        z = torch.cat([level1[0].rsample().reshape(*level1[1], self.d), z2], -1)
        self._last = (z, level1)  # log_prob of this very draw reuses q(z1|x, z2): no second pass of g
        return z

    def reparameterise(self, eps: Tensor) -> Tensor:
        """The draw z = [z1, z2] (*sample, n, 2d) made from standard-normal noise ``eps`` (*sample, n, 2d):
        z2 from q(z2|x) with eps[..., d:], then z1 from q(z1|x, z2) with eps[..., :d] (common draws for
        :func:`vaekit.evaluate.log_likelihood`'s ``eps``)."""
        z2 = D.reparameterise(self.top, eps[..., self.d:])
        level1 = self.bottom(z2)
        z1 = D.reparameterise(level1[0], eps[..., :self.d].reshape(-1, self.d)).reshape(*level1[1], self.d)
        z = torch.cat([z1, z2], -1)
        self._last = (z, level1)
        return z

    def log_prob_levels(self, z: Tensor) -> Tensor:
        """(log q(z1|x, z2), log q(z2|x)) stacked: (..., n, 2) nats."""
        z1, z2 = z[..., :self.d], z[..., self.d:]
        level1 = self._last[1] if self._last is not None and self._last[0] is z else self.bottom(z2)
        return torch.stack([_log_prob(level1, z1), self.top.log_prob(z2)], -1)

    def log_prob(self, value: Tensor) -> Tensor:
        return self.log_prob_levels(value).sum(-1)

    @property
    def mean(self) -> Tensor:
        z2 = self.top.mean
        dist, lead = self.bottom(z2)
        return torch.cat([dist.mean.reshape(*lead, self.d), z2], -1)


class TwoLevelPrior(Distribution):
    """p(z) = p(z2) p(z1|z2) over z = [z1, z2]: batch ``batch_shape`` (() as built), event (2d,).
    ``sample`` draws z2 from the top prior then z1; ``expand`` gives the naive estimator's proposal."""

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {}

    def __init__(self, top: Distribution, bottom: _Conditional, d: int,
                 batch_shape: Sequence[int] = ()) -> None:
        self.top, self.bottom, self.d = top, bottom, d
        super().__init__(torch.Size(batch_shape), torch.Size([2 * d]), validate_args=False)

    def expand(self, batch_shape: Any, _instance: Any = None) -> TwoLevelPrior:
        return TwoLevelPrior(self.top, self.bottom, self.d, torch.Size(batch_shape))

    def sample(self, sample_shape: torch.Size | Sequence[int] = ()) -> Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        z2 = self.top.sample(shape)
        dist, lead = self.bottom(z2)
        return torch.cat([dist.sample().reshape(*lead, self.d), z2], -1)

    def log_prob_levels(self, z: Tensor) -> Tensor:
        """(log p(z1|z2), log p(z2)) stacked: (..., 2) nats."""
        z1, z2 = z[..., :self.d], z[..., self.d:]
        return torch.stack([_log_prob(self.bottom(z2), z1), self.top.log_prob(z2)], -1)

    def log_prob(self, value: Tensor) -> Tensor:
        return self.log_prob_levels(value).sum(-1)


class TwoLevelPriorModule(Prior):
    """The prior of the hierarchy as a module: ``top`` (the ``model.prior`` over z2, saved as
    ``latent_prior.top.*``) and ``net``, the MLP of z2 -> (mean, log-variance) of p(z1|z2)
    (``latent_prior.net.*``). ``forward`` builds the top prior once (a VampPrior encodes its pseudo-inputs
    there) and returns :class:`TwoLevelPrior`."""

    def __init__(self, top: Prior, d: int, hidden: Sequence[int], activation: str) -> None:
        super().__init__(2 * d)
        self.top, self.d = top, d
        self.head = DiagonalNormal(d)
        self.net = MLP(d, hidden, self.head.n_params, activation)

    def forward(self) -> Distribution:
        return TwoLevelPrior(self.top(), _Conditional(self.head, self.net), self.d)

    def bind(self, encode: Callable[[Tensor], Distribution]) -> None:
        self.top.bind(encode)


class HierarchicalVAE(VAE):
    """The two-level VAE (module docstring). Its code z is [z1, z2], ``latent_dim`` = 2 * ``level_dim``;
    ``config.latent_dim`` is the width d of each level. State-dict names beyond the VAE's:
    ``bottom_net.*`` (g of q(z1|x, z2)), ``latent_prior.top.*``, ``latent_prior.net.*``."""

    level_names = LEVELS  # the levels' names, bottom first (kl_z1, kl_z2 in the records)

    def __init__(self, config: ModelConfig, event_shape: Sequence[int] | None = None,
                 data_loc: Tensor | None = None, data_scale: Tensor | None = None, sigma_units: str = "scaled",
                 *, schema: DataSchema | None = None) -> None:
        d = config.latent_dim
        joint = dataclasses.replace(config, latent_dim=2 * d, prior="standard-normal", levels=1)
        super().__init__(joint, event_shape, data_loc, data_scale, sigma_units, schema=schema)
        self.config = dataclasses.replace(self.config, latent_dim=d, prior=config.prior, levels=2)
        self.level_dim = d
        head = POSTERIORS.get(config.posterior)(d)
        self.posterior = head
        # the encoder reads x and gives q(z2|x)'s parameters and a(x), the x-part of q(z1|x, z2)'s
        self.encoder = build_encoder(self.config, self.event_shape, self.cond_dim, 2 * head.n_params)
        self.bottom_net = MLP(d, self.config.hidden, head.n_params, self.config.activation)
        self.latent_prior = TwoLevelPriorModule(build_prior(self.config, d, self.event_shape), d,
                                                self.config.hidden, self.config.activation)
        self.latent_prior.bind(self.encode_inputs)

    @property
    def latent_dim(self) -> int:
        return 2 * self.level_dim

    def encode(self, x: Tensor | Batch, c: Tensor | None = None, *, y: Tensor | None = None) -> Distribution:
        """q(z1, z2 | x): :class:`TwoLevelPosterior`, batch (n,), event (2d,)."""
        batch = as_batch(x, c, y)
        xb = batch.x
        if batch.mask is not None:
            xb = torch.where(batch.mask, xb, self.data_loc.expand_as(xb))
        if not self.training and not self._inputs_trusted:
            xb = check_input(self, xb, "encode's x")
        h = (xb - self.data_loc) / self.data_scale if self.standardised else xb
        params = self.encoder_params(h, self.condition(batch.c, batch.y))
        n_top = self.posterior.n_params
        a_x = params[:, n_top:]  # (n, P)
        bottom = _Conditional(self.posterior, lambda z2: a_x + self.bottom_net(z2))
        return TwoLevelPosterior(self.posterior(params[:, :n_top]), bottom, self.level_dim)

    def encode_inputs(self, h: Tensor) -> Distribution:
        """q(z2|h) for encoder inputs h (K, *event_shape) (the top level: what a VampPrior on z2 mixes)."""
        return self.posterior(self.encoder_params(h)[:, :self.posterior.n_params])


def level_slices(model: Any) -> dict[str, slice]:
    """The coordinates of each level in the model's code: {'z1': slice(0, d), 'z2': slice(d, 2d)} for the
    hierarchy, {} for a one-level model."""
    d = getattr(model, "level_dim", None)
    return {} if d is None else {"z1": slice(0, d), "z2": slice(d, 2 * d)}


@MODEL_FAMILIES.register("hvae")
def _hvae_family(config: ModelConfig, schema: DataSchema, data_loc: Tensor | None, data_scale: Tensor | None,
                 sigma_units: str) -> nn.Module:
    return HierarchicalVAE(config, data_loc=data_loc, data_scale=data_scale, sigma_units=sigma_units, schema=schema)


__all__ = ["LEVELS", "HierarchicalVAE", "TwoLevelPosterior", "TwoLevelPrior", "TwoLevelPriorModule", "level_slices"]
