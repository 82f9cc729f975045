"""The VAE: encode(x) -> q_z, decode(z) -> p_x, prior() -> p_z. Nothing about training lives here.

Shapes: data x is (n, *event_shape) in data units; latents z are (..., d). ``decode`` accepts any
leading sample axes, so V Monte-Carlo samples of shape (V, n, d) decode to a distribution with batch
shape (V, n) and event shape ``event_shape``. When the data were standardised, the model holds the
training-split statistics (``data_loc``, ``data_scale``; for ``unit`` scaling loc = lo and scale = hi - lo):
the encoder sees standardised inputs and the decoder's distribution is mapped back, so every
log-probability is in nats in the data's own units. Bernoulli models see 0/1 data (discrete, no Jacobian).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from vaekit import distributions as D
from vaekit.config import ModelConfig
from vaekit.errors import VaekitError
from vaekit.inputs import InputSpec, check_codes, check_input, default_spec, trusted
from vaekit.nn import MLP


class VAE(nn.Module):
    """A variational autoencoder (``kind='vae'``) or plain autoencoder (``kind='ae'``) with MLP networks.

    ``model.likelihood='auto'`` is decided from the data by :func:`vaekit.train.fit`; a VAE built directly
    (no data to decide from) takes ``bernoulli`` and says so in ``self.config``."""

    # buffers (register_buffer): declared for the type checker
    data_loc: Tensor
    data_scale: Tensor
    _tril_idx: Tensor

    def __init__(
        self,
        config: ModelConfig,
        event_shape: Sequence[int],
        data_loc: Tensor | None = None,
        data_scale: Tensor | None = None,
        sigma_units: str = "scaled",
    ) -> None:
        super().__init__()
        if config.likelihood == "auto":  # no data to decide from: the documented default of a bare VAE
            config = dataclasses.replace(config, likelihood="bernoulli")
        self.config = config
        self.event_shape = tuple(int(s) for s in event_shape)
        self.data_dim = math.prod(self.event_shape)
        d = config.latent_dim
        if config.kind == "ae":
            enc_out = d
        elif config.posterior == "full":
            enc_out = d + d * (d + 1) // 2
        else:
            enc_out = 2 * d
        per_output = config.likelihood == "gaussian-learned" and config.variance == "per-output"
        self.encoder = MLP(self.data_dim, config.hidden, enc_out, config.activation)
        self.decoder = MLP(d, tuple(reversed(config.hidden)), self.data_dim * (2 if per_output else 1),
                           config.activation)
        if config.likelihood == "gaussian-learned" and config.variance == "per-dim":
            self.log_sigma = nn.Parameter(torch.zeros(self.data_dim))
        if config.posterior == "full":
            self.register_buffer("_tril_idx", torch.tril_indices(d, d), persistent=False)
        standardised = data_loc is not None
        self.register_buffer("data_loc", torch.zeros(self.event_shape) if data_loc is None else data_loc.float())
        self.register_buffer("data_scale",
                             torch.ones(self.event_shape) if data_scale is None else data_scale.float())
        self.standardised = standardised
        #: What the model was trained on (set from the checkpoint's metadata when a run is loaded); the
        #: public entry points check their inputs against it (vaekit.inputs). Not part of the state_dict.
        self.input_spec: InputSpec | None = default_spec(config.likelihood)
        self._inputs_trusted = False
        #: 'scaled': the fixed sigma of the 'gaussian' likelihood is in the model's scaled units (decoded
        #: sigma in file units = sigma * data_scale); 'file': in file units (format-1 standardize runs).
        self.sigma_units = sigma_units

    # ------------------------------------------------------------------------------ distributions
    @property
    def accepts_flat(self) -> bool:
        """True when the encoder reads each example as one flat vector (an MLP), so inputs of another shape
        with as many values per example are accepted (reshaped, with a warning; :mod:`vaekit.inputs`)."""
        return bool(getattr(self.encoder, "accepts_flat", False))

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def prior(self) -> Distribution:
        """p(z) = N(0, I): batch shape (), event shape (d,)."""
        return D.standard_normal(self.latent_dim, device=self.data_loc.device, dtype=self.data_loc.dtype)

    def encode(self, x: Tensor) -> Distribution:
        """q(z|x) for x of shape (n, *event_shape): batch shape (n,), event shape (d,). In eval mode x is
        checked first (shape, finiteness, training range: :func:`vaekit.inputs.check_input`)."""
        if not self.training and not self._inputs_trusted:
            x = check_input(self, x, "encode's x")
        h = ((x - self.data_loc) / self.data_scale).flatten(1) if self.standardised else x.flatten(1)
        out = self.encoder(h).to(self.data_loc.dtype)  # bf16 under autocast -> the model's dtype
        d = self.latent_dim
        if self.config.kind == "ae":
            return D.PointMass(out)
        mu = out[:, :d]
        if self.config.posterior == "diag":
            return D.diag_normal(mu, torch.exp(0.5 * out[:, d:]))  # second half: log sigma^2
        raw = out[:, d:]
        rows, cols = self._tril_idx
        tril = torch.zeros(out.shape[0], d, d, device=out.device, dtype=out.dtype)
        tril[:, rows, cols] = raw
        diag = torch.exp(torch.diagonal(tril, dim1=-2, dim2=-1))  # positive diagonal: log-parameterised
        L = torch.tril(tril, -1) + torch.diag_embed(diag)
        return D.full_normal(mu, L)

    def decode(self, z: Tensor) -> Distribution:
        """p(x|z) for z of shape (*batch, d): batch shape ``batch``, event shape ``event_shape``. In eval
        mode z is checked first (last axis d, finite)."""
        if not self.training and not self._inputs_trusted:
            check_codes(self, z, "decode's z")
        batch = z.shape[:-1]
        out = self.decoder(z.flatten(0, -2) if z.dim() > 1 else z[None]).to(self.data_loc.dtype)
        k = len(self.event_shape)
        lik = self.config.likelihood
        if lik == "bernoulli":
            return D.bernoulli(out.reshape(*batch, *self.event_shape), k)
        if lik == "gaussian-learned" and self.config.variance == "per-output":
            mean, log_sigma = out.chunk(2, dim=-1)
            sigma = torch.exp(log_sigma).reshape(*batch, *self.event_shape) * self.data_scale
        elif lik == "gaussian-learned":
            mean = out
            sigma = torch.exp(self.log_sigma).reshape(self.event_shape) * self.data_scale
        else:
            mean = out
            sigma = torch.full_like(self.data_scale, self.config.sigma)
            if self.sigma_units == "scaled":
                sigma = sigma * self.data_scale
        mean = mean.reshape(*batch, *self.event_shape) * self.data_scale + self.data_loc
        return D.gaussian(mean, sigma, k)

    # ------------------------------------------------------------------------------- conveniences
    @torch.no_grad()
    def sample(self, n: int, *, mean: bool = True, generator: torch.Generator | None = None) -> Tensor:
        """n draws z ~ p(z) decoded to (n, *event_shape): the decoder mean (``mean=True``, what grids
        show) or a draw x ~ p(x|z)."""
        z = torch.randn(n, self.latent_dim, generator=generator, dtype=self.data_loc.dtype)
        z = z.to(self.data_loc.device)
        p_x = self.decode(z)
        return p_x.mean if mean else p_x.sample()

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Decoder mean at the posterior mean: x_hat with the shape of x (n, *event_shape, or a flat/reshaped
        equivalent that :func:`vaekit.inputs.conform_shape` accepts)."""
        shape = x.shape if isinstance(x, Tensor) else None
        x = check_input(self, x, "reconstruct's x")
        with trusted(self):
            return self.decode(self.encode(x).mean).mean.reshape(shape)

    def elbo(self, x: Tensor, n_samples: int = 1, beta: float = 1.0) -> Tensor:
        """Per-example ELBO E_q[log p(x|z)] - beta * KL(q || p) in nats, shape (n,) (V=n_samples).
        A plain autoencoder has no ELBO: a VaekitError (see :meth:`reconstruction_log_likelihood`)."""
        from vaekit.objectives import elbo_terms

        if self.config.kind == "ae":
            raise VaekitError("an autoencoder (model.kind 'ae') has no ELBO: its code is a point, with no posterior "
                              "or KL; use model.reconstruction_log_likelihood(x) for log p(x | z = f(x)), or "
                              "train a VAE (model.kind 'vae') for an ELBO and log p(x)")
        x = check_input(self, x, "elbo's x")
        with trusted(self):
            return elbo_terms(self, x, n_samples=n_samples, beta=beta).bound

    @torch.no_grad()
    def reconstruction_log_likelihood(self, x: Tensor) -> Tensor:
        """log p(x | z = E_q[z|x]) in nats, shape (n,): the decoder's density of x at the posterior mean
        (the code itself for an autoencoder). Not a bound on log p(x)."""
        x = check_input(self, x, "reconstruction_log_likelihood's x")
        with trusted(self):
            return self.decode(self.encode(x).mean).log_prob(x)
