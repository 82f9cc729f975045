"""The VAE, made of parts: encoder network -> posterior head -> q(z|x); prior p(z); decoder network ->
likelihood -> p(x|z). Nothing about training lives here.

Shapes: data x is (n, *event_shape) in data units; a condition c (conditional models) is (n, c_dim);
latents z are (..., d). ``decode`` accepts any leading sample axes, so V Monte-Carlo samples of shape
(V, n, d) decode to a distribution with batch shape (V, n) and event shape ``event_shape``. When the data
were standardised, the model holds the training-split statistics (``data_loc``, ``data_scale``; for
``unit`` scaling loc = lo and scale = hi - lo): the encoder sees scaled inputs and the likelihood maps
the decoder's output back, so every log-probability is in nats in the data's own units.

The parts come from registries (:mod:`vaekit.networks`, :mod:`vaekit.posteriors`, :mod:`vaekit.priors`,
:mod:`vaekit.likelihoods`); models come from :data:`MODEL_FAMILIES`, which is how checkpoints rebuild
them (:func:`build_model`, :func:`load_state`). State-dict names: ``encoder.net.*``, ``decoder.net.*``,
``likelihood.*`` (e.g. ``likelihood.log_sigma``), ``latent_prior.*``, ``data_loc``, ``data_scale``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution

from vaekit import distributions as D
from vaekit.batch import Batch, as_batch
from vaekit.bounds import elbo_terms
from vaekit.config import ModelConfig
from vaekit.errors import VaekitError
from vaekit.inputs import InputSpec, check_codes, check_input, default_spec, trusted
from vaekit.likelihoods import LIKELIHOODS
from vaekit.networks import build_decoder, build_encoder
from vaekit.posteriors import POSTERIORS
from vaekit.priors import build_prior
from vaekit.registry import Registry
from vaekit.schema import DataSchema


class EncoderInput(nn.Module):
    """What the encoder network reads: x (n, *event_shape) L2-normalised per example (``norm='l2'``: x / max(
    ||x||, 1e-12) over the flattened event; a zero row stays zero), then inverted dropout with probability
    ``dropout`` in training mode only (the Mult-VAE's input, Liang et al. 2018, in the paper's order). Same
    shape out; no parameters, so a model's state_dict does not change."""

    def __init__(self, norm: str = "none", dropout: float = 0.0) -> None:
        super().__init__()
        self.norm, self.dropout = norm, float(dropout)

    @property
    def changes_x(self) -> bool:
        """Whether :meth:`forward` changes x now (an l2 norm, or dropout in training mode); when not, callers may
        skip the call (one module call fewer per training step)."""
        return self.norm == "l2" or (self.dropout > 0.0 and self.training)

    def forward(self, x: Tensor) -> Tensor:
        if self.norm == "l2":
            x = F.normalize(x.flatten(1), dim=1).reshape(x.shape)
        if self.dropout > 0.0:
            x = F.dropout(x, self.dropout, training=self.training)
        return x


class VAE(nn.Module):
    """A variational autoencoder (``kind='vae'``) or plain autoencoder (``kind='ae'``, a point-mass code).

    ``model.likelihood='auto'`` is decided from the data by :func:`vaekit.train.fit`; a VAE built directly
    (no data to decide from) takes ``bernoulli`` and says so in ``self.config``. A conditional VAE
    (``schema.condition`` ``label`` or ``covariates``) feeds the condition c to both networks; its
    entry points take ``c=`` (or ``y=`` labels, turned one-hot)."""

    data_loc: Tensor
    data_scale: Tensor

    def __init__(
        self,
        config: ModelConfig,
        event_shape: Sequence[int] | None = None,
        data_loc: Tensor | None = None,
        data_scale: Tensor | None = None,
        sigma_units: str = "scaled",
        *,
        schema: DataSchema | None = None,
    ) -> None:
        super().__init__()
        if config.likelihood == "auto":  # no data to decide from: the documented default of a bare VAE
            config = dataclasses.replace(config, likelihood="bernoulli")
        if schema is None:
            if event_shape is None:
                raise TypeError("VAE needs event_shape or schema")
            schema = DataSchema.for_shape(event_shape, standardised=data_loc is not None)
        self.config, self.schema = config, schema
        self.event_shape = schema.event_shape
        self.data_dim = int(torch.Size(self.event_shape).numel())
        self.cond_dim = schema.cond_dim
        head = POSTERIORS.get("point" if config.kind == "ae" else config.posterior)(config.latent_dim)
        likelihood = LIKELIHOODS.get(config.likelihood)(config, self.event_shape, sigma_units)
        # registration order = parameter order (encoder, decoder, likelihood): optimizer states of format-1/2
        # checkpoints, keyed by index, map onto these names (vaekit.checkpoint)
        self.input_transform = EncoderInput(config.input_norm, config.input_dropout)  # no parameters
        self.encoder = build_encoder(config, self.event_shape, self.cond_dim, head.n_params)
        self.decoder = build_decoder(config, self.cond_dim, (likelihood.n_params, *self.event_shape))
        self.likelihood = likelihood
        self.posterior = head
        self.latent_prior = build_prior(config, config.latent_dim, self.event_shape)
        self.latent_prior.bind(self.encode_inputs)  # a VampPrior encodes its pseudo-inputs with this encoder
        self.register_buffer("data_loc", torch.zeros(self.event_shape) if data_loc is None else data_loc.float())
        self.register_buffer("data_scale",
                             torch.ones(self.event_shape) if data_scale is None else data_scale.float())
        self.standardised = schema.standardised
        #: What the model was trained on (set from the checkpoint's metadata when a run is loaded); the
        #: public entry points check their inputs against it (vaekit.inputs). Not part of the state_dict.
        self.input_spec: InputSpec | None = default_spec(config.likelihood)
        self._inputs_trusted = False
        self.sigma_units = sigma_units

    # ------------------------------------------------------------------------------ properties
    @property
    def accepts_flat(self) -> bool:
        """True when the encoder reads each example as one flat vector (an MLP), so inputs of another shape
        with as many values per example are accepted (reshaped, with a warning; :mod:`vaekit.inputs`)."""
        return bool(self.encoder.accepts_flat)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def conditional(self) -> bool:
        return self.cond_dim > 0

    # ------------------------------------------------------------------------------ distributions
    def prior(self) -> Distribution:
        """p(z): batch shape (), event shape (d,). Build it once per batch and pass it on (a learnable
        prior's distribution costs a forward pass)."""
        return self.latent_prior()

    def condition(self, c: Tensor | None = None, y: Tensor | None = None) -> Tensor | None:
        """The condition (n, c_dim) the networks see: ``c``, or the labels ``y`` (n,) one-hot for a
        label-conditional model; None for an unconditional model. A conditional model given neither, or an
        unconditional one given a condition, is an error naming the fix. Label ranges and finiteness are
        checked in eval mode outside :func:`~vaekit.inputs.trusted` (the public entry points), never in a
        training step, which must not wait for the device (the data layer checked the labels once)."""
        if not self.conditional:
            if c is not None:
                raise VaekitError("this model is not conditional, but a condition c was given; drop c (train "
                                  "with --model.condition label for a conditional VAE)")
            return None
        checked = not self.training and not self._inputs_trusted  # values are checked at the public entry points
        if c is None and y is not None and self.schema.condition == "label":
            y = torch.as_tensor(y).to(self.data_loc.device).long()
            if checked and y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.schema.n_classes):
                raise VaekitError(f"labels must be in 0..{self.schema.n_classes - 1} for this model, got "
                                  f"{int(y.min())}..{int(y.max())}")
            c = F.one_hot(y, self.schema.n_classes)
        if c is None:
            what = "labels y= (shape (n,))" if self.schema.condition == "label" else \
                f"covariates c= (shape (n, {self.cond_dim}))"
            raise VaekitError(f"this is a conditional model ({self.schema.condition}): pass {what}")
        c = c.to(device=self.data_loc.device, dtype=self.data_loc.dtype)
        if c.dim() != 2 or c.shape[1] != self.cond_dim or (checked and not torch.isfinite(c).all()):
            raise VaekitError(f"the condition c must be finite with shape (n, {self.cond_dim}), got "
                              f"{tuple(c.shape)}")
        return c

    def encode(self, x: Tensor | Batch, c: Tensor | None = None, *, y: Tensor | None = None) -> Distribution:
        """q(z|x[, c]) for x of shape (n, *event_shape) (or a :class:`~vaekit.batch.Batch`): batch shape
        (n,), event shape (d,). In eval mode x is checked first (:func:`vaekit.inputs.check_input`)."""
        batch = as_batch(x, c, y)
        xb = batch.x
        if batch.mask is not None:  # the encoder sees missing entries filled with the data's centre
            xb = torch.where(batch.mask, xb, self.data_loc.expand_as(xb))
        if not self.training and not self._inputs_trusted:
            xb = check_input(self, xb, "encode's x")
        h = (xb - self.data_loc) / self.data_scale if self.standardised else xb
        # an unconditional model given no c has no condition: no call (a training step encodes once)
        cond = None if not self.cond_dim and batch.c is None else self.condition(batch.c, batch.y)
        return self.posterior(self.encoder_params(h, cond))

    def encoder_params(self, h: Tensor, cond: Tensor | None = None) -> Tensor:
        """The encoder network's output (n, P) for inputs h (n, *event_shape) in the encoder's input units
        (after any standardisation), in the model's dtype."""
        if self.input_transform.changes_x:  # a Mult-VAE's input
            h = self.input_transform(h)
        return self.encoder(h, cond).to(self.data_loc.dtype)  # bf16 under autocast -> fp32

    def encode_inputs(self, h: Tensor) -> Distribution:
        """q(z|h) for encoder inputs h (K, *event_shape) already in the encoder's units (a VampPrior's
        pseudo-inputs): batch (K,), event (d,). No input check, no condition."""
        return self.posterior(self.encoder_params(h))

    def decode(self, z: Tensor, c: Tensor | None = None, *, y: Tensor | None = None) -> Distribution:
        """p(x|z[, c]) for z of shape (*batch, d) and c (n, c_dim) with n = batch[-1]: batch shape ``batch``,
        event shape ``event_shape``. In eval mode z is checked first (last axis d, finite)."""
        if not self.training and not self._inputs_trusted:
            check_codes(self, z, "decode's z")
        lead = z.shape[:-1]
        zf = z if z.dim() == 2 else z.reshape(-1, z.shape[-1])  # (m, d): a (d,) code becomes (1, d)
        cond = None if not self.cond_dim and c is None else self.condition(c, y)
        if cond is not None and len(lead) > 1:  # (n, k) for z (*sample, n, d): one copy per sample
            cond = cond.expand(*lead, cond.shape[-1]).reshape(-1, cond.shape[-1])
        params = self.decoder(zf, cond).to(self.data_loc.dtype)
        if len(lead) != 1:  # (m, ...) back to (*lead, ...); a (n, d) z needs no view (one node fewer per step)
            params = params.reshape(*lead, *params.shape[1:])
        return self.likelihood(params, self.data_loc, self.data_scale)

    def log_px(self, p_x: Distribution, batch: Batch) -> Tensor:
        """log p(x|z) of ``batch.x`` under ``p_x``, nats, summed over the observed entries (``batch.mask``)."""
        return D.masked_log_prob(p_x, batch.x, batch.mask)

    # ------------------------------------------------------------------------------- conveniences
    @torch.no_grad()
    def sample(self, n: int, *, mean: bool = True, generator: torch.Generator | None = None,
               c: Tensor | None = None, y: Tensor | int | None = None) -> Tensor:
        """n draws z ~ p(z) decoded to (n, *event_shape): the decoder mean (``mean=True``, what grids
        show) or a draw x ~ p(x|z). A conditional model needs ``y`` (an int or (n,) labels) or ``c`` (n, c_dim)."""
        if isinstance(y, int):
            y = torch.full((n,), y, dtype=torch.long)
        z = self.latent_prior.sample(n, generator)
        p_x = self.decode(z, c, y=y)
        return p_x.mean if mean else p_x.sample()

    @torch.no_grad()
    def reconstruct(self, x: Tensor | Batch, c: Tensor | None = None, *, y: Tensor | None = None) -> Tensor:
        """Decoder mean at the posterior mean: x_hat with the shape of x (n, *event_shape, or a flat/reshaped
        equivalent that :func:`vaekit.inputs.conform_shape` accepts)."""
        batch = as_batch(x, c, y)
        shape = batch.x.shape if isinstance(batch.x, Tensor) else None
        batch = batch.with_x(check_input(self, batch.x, "reconstruct's x"))
        with trusted(self):
            return self.decode(self.encode(batch).mean, batch.c, y=batch.y).mean.reshape(shape)

    def elbo(self, x: Tensor | Batch, n_samples: int = 1, beta: float = 1.0, *, c: Tensor | None = None,
             y: Tensor | None = None) -> Tensor:
        """Per-example ELBO E_q[log p(x|z)] - beta * KL(q || p) in nats, shape (n,) (V=n_samples).
        A plain autoencoder has no ELBO: a VaekitError (see :meth:`reconstruction_log_likelihood`)."""
        if not self.posterior.has_density:
            raise VaekitError("an autoencoder (model.kind 'ae') has no ELBO: its code is a point, with no posterior "
                              "or KL; use model.reconstruction_log_likelihood(x) for log p(x | z = f(x)), or "
                              "train a VAE (model.kind 'vae') for an ELBO and log p(x)")
        batch = as_batch(x, c, y)
        batch = batch.with_x(check_input(self, batch.x, "elbo's x"))
        with trusted(self):
            return elbo_terms(self, batch, n_samples=n_samples, beta=beta).bound

    @torch.no_grad()
    def reconstruction_log_likelihood(self, x: Tensor | Batch, c: Tensor | None = None, *,
                                      y: Tensor | None = None) -> Tensor:
        """log p(x | z = E_q[z|x]) in nats, shape (n,): the decoder's density of x at the posterior mean
        (the code itself for an autoencoder). Not a bound on log p(x)."""
        batch = as_batch(x, c, y)
        batch = batch.with_x(check_input(self, batch.x, "reconstruction_log_likelihood's x"))
        with trusted(self):
            return self.log_px(self.decode(self.encode(batch).mean, batch.c, y=batch.y), batch)


# ----------------------------------------------------------------------------------- families

class ModelFamily(Protocol):
    """How a family of models is built from a config and a data schema, and from a checkpoint."""

    def __call__(self, config: ModelConfig, schema: DataSchema, data_loc: Tensor | None, data_scale: Tensor | None,
                 sigma_units: str) -> nn.Module: ...


MODEL_FAMILIES: Registry[ModelFamily] = Registry("model family", "model.family")


@MODEL_FAMILIES.register("vae")
def _vae_family(config: ModelConfig, schema: DataSchema, data_loc: Tensor | None, data_scale: Tensor | None,
                sigma_units: str) -> nn.Module:
    return VAE(config, data_loc=data_loc, data_scale=data_scale, sigma_units=sigma_units, schema=schema)


def family_of(config: ModelConfig) -> str:
    """The model family a config builds: ``hvae`` for ``model.levels = 2`` (:mod:`vaekit.hierarchy`),
    else ``vae``."""
    return "hvae" if config.levels == 2 else "vae"


def build_model(config: ModelConfig, schema: DataSchema, data_loc: Tensor | None = None,
                data_scale: Tensor | None = None, sigma_units: str = "scaled", family: str | None = None) -> Any:
    """A new model of ``config``'s family for data described by ``schema``."""
    import vaekit.hierarchy  # noqa: F401  (registers the 'hvae' family)

    return MODEL_FAMILIES.get(family or family_of(config))(config, schema, data_loc, data_scale, sigma_units)


def parts_of(config: ModelConfig) -> dict[str, str]:
    """The registry names of a config's parts (recorded in checkpoints' meta.json)."""
    return {"encoder": config.encoder, "decoder": config.decoder,
            "posterior": "point" if config.kind == "ae" else config.posterior, "prior": config.prior,
            "likelihood": config.likelihood}
