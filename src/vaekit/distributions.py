"""Pure maths on tensors: the distributions a VAE needs and their closed-form KLs.

Every object here is a ``torch.distributions.Distribution`` with explicit batch and event shapes:
the event axes are summed by ``log_prob`` (result in nats), the batch axes are kept.

* posterior q(z|x): ``diag_normal`` (batch (n,), event (d,)) or ``full_normal`` (Cholesky factor)
* prior p(z) = N(0, I): ``standard_normal``
* likelihood p(x|z): ``bernoulli`` (logits) or ``gaussian`` (mean and standard deviation), event = data shape;
  ``multinomial`` (logits over the categories, e.g. the items of a recommender; the total count is read
  from the value scored), event = data shape
* the autoencoder's deterministic code: ``PointMass``
"""

from __future__ import annotations

import contextlib
import math
from typing import ClassVar, TypeGuard

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import (
    Bernoulli,
    Categorical,
    Distribution,
    Independent,
    MixtureSameFamily,
    MultivariateNormal,
    Normal,
    constraints,
)

LOG_2PI = math.log(2 * math.pi)


def autocast_off(device_type: str) -> contextlib.AbstractContextManager[None]:
    """A block run without autocast: ``torch.autocast(device_type, enabled=False)`` when autocast is on (a bf16
    run), else no context at all (entering torch.autocast costs about 4 us even when it changes nothing, and
    the training step and every importance-sampling block enter such a block)."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


class DiagNormal(Independent):
    """N(loc, diag scale^2) over the last axis: ``Independent(Normal(loc, scale), 1)`` (batch = loc.shape[:-1],
    event = (d,)), which every ``torch.distributions`` function accepts as one, built without the generic
    argument processing of torch's constructors (a training step builds one per minibatch; loc and scale share
    one shape, so there is nothing to broadcast). ``log_var``: log scale^2 when the posterior head made scale
    from it (scale = exp(log_var / 2)), so the closed-form KL reads it instead of taking log(scale) again (one
    operation fewer per step, and finite where scale underflows to 0); None otherwise."""

    base_dist: Normal

    def __init__(self, loc: Tensor, scale: Tensor, log_var: Tensor | None = None) -> None:
        if loc.dim() < 1 or loc.shape != scale.shape:
            raise ValueError(f"DiagNormal needs loc and scale of one shape with at least one axis, got "
                             f"{tuple(loc.shape)} and {tuple(scale.shape)}")
        base = Normal.__new__(Normal)  # Normal(loc, scale) without broadcast_all: the shapes already agree
        base.loc, base.scale = loc, scale
        Distribution.__init__(base, loc.shape, validate_args=False)
        self.base_dist, self.reinterpreted_batch_ndims, self.log_var = base, 1, log_var
        Distribution.__init__(self, loc.shape[:-1], loc.shape[-1:], validate_args=False)

    def expand(self, batch_shape: torch.Size | list[int] | tuple[int, ...],
               _instance: Distribution | None = None) -> Independent:
        shape = torch.Size(batch_shape)
        return Independent(self.base_dist.expand(shape + self.event_shape), 1, validate_args=False)


def diag_normal(loc: Tensor, scale: Tensor, log_var: Tensor | None = None) -> Independent:
    """N(loc, diag scale^2) over the last axis: batch = loc.shape[:-1], event = (d,) (:class:`DiagNormal`
    when loc and scale share one shape, else torch's broadcasting ``Independent(Normal)``). ``log_var``:
    log scale^2, when scale was made from it."""
    if loc.dim() >= 1 and loc.shape == scale.shape:
        return DiagNormal(loc, scale, log_var)
    return Independent(Normal(loc, scale, validate_args=False), 1, validate_args=False)


def full_normal(loc: Tensor, scale_tril: Tensor) -> MultivariateNormal:
    """N(loc, L L^T) with L = ``scale_tril`` (..., d, d) lower-triangular with positive diagonal."""
    return MultivariateNormal(loc, scale_tril=scale_tril, validate_args=False)


def standard_normal(d: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Independent:
    """The prior p(z) = N(0, I_d): batch shape (), event shape (d,)."""
    return diag_normal(torch.zeros(d, device=device, dtype=dtype), torch.ones(d, device=device, dtype=dtype))


#: Draws per example from which x . l is one batched matrix product per example (importance sampling: k draws
#: share each x) instead of a broadcast product and sum. torch runs a batched product as a loop over the examples,
#: so with few draws (training: one) that loop costs more than the whole step's matrix products at batch 512.
SHARED_DRAWS_MIN = 128


class BernoulliLogits(Independent):
    """Independent Bernoulli elements with logits l (the last ``event_ndims`` axes are the event), whose
    ``log_prob`` is the summed form  sum_i x_i l_i - softplus(l_i): one softplus pass over the logits and one
    dot product with x, instead of torch's elementwise binary cross-entropy (several passes and temporaries).
    The dot product is a batched matrix product when at least ``SHARED_DRAWS_MIN`` draws share each x (no
    broadcast copy of x over the samples), a product and sum otherwise. Same value for any x (0/1 data, or
    grey levels in [0, 1]) up to float32 rounding; checked against ``torch.distributions.Bernoulli``. On the
    importance-sampling path the logits are (k, n, *event) and x (n, *event). ``base_dist`` is torch's
    ``Bernoulli(logits=logits)``, built without its constructor's argument processing (one per training step)."""

    base_dist: Bernoulli

    def __init__(self, logits: Tensor, event_ndims: int) -> None:
        if not 0 <= event_ndims <= logits.dim():
            raise ValueError(f"BernoulliLogits: event_ndims {event_ndims} for logits of shape {tuple(logits.shape)}")
        base = Bernoulli.__new__(Bernoulli)  # Bernoulli(logits=logits): a lazy probs, nothing to broadcast
        base.logits = base._param = logits
        Distribution.__init__(base, logits.shape, validate_args=False)
        self.base_dist, self.reinterpreted_batch_ndims = base, event_ndims
        cut = logits.dim() - event_ndims
        Distribution.__init__(self, logits.shape[:cut], logits.shape[cut:], validate_args=False)

    def expand(self, batch_shape: torch.Size | list[int] | tuple[int, ...],
               _instance: Distribution | None = None) -> BernoulliLogits:
        shape = torch.Size(batch_shape) + self.event_shape
        return BernoulliLogits(self.base_dist.logits.expand(shape), self.reinterpreted_batch_ndims)

    def log_prob(self, value: Tensor) -> Tensor:
        logits = self.base_dist.logits
        dtype = torch.promote_types(logits.dtype, torch.float32)  # bf16 logits are summed in float32
        if logits.dtype == dtype == value.dtype and not torch.is_autocast_enabled(logits.device.type):
            return self._summed(logits, value)  # nothing to cast or to switch off (a float32 training step)
        with autocast_off(logits.device.type):  # as autocast runs torch's BCE: in float32
            return self._summed(logits.to(dtype), value.to(dtype))

    def _summed(self, logits: Tensor, value: Tensor) -> Tensor:
        """sum over the event axes of x * l - softplus(l), for logits and x of one floating dtype."""
        nd = self.reinterpreted_batch_ndims
        if nd == 0:
            return value * logits - F.softplus(logits)
        lead = logits.dim() - value.dim()
        draws = math.prod(logits.shape[:lead]) if lead > 0 else 0
        if draws >= SHARED_DRAWS_MIN and value.shape[:-nd] == logits.shape[lead:-nd]:  # many draws share x
            flat_l, flat_x = logits.flatten(-nd), value.flatten(-nd)
            xl = torch.einsum("...bd,bd->...b", flat_l.reshape(-1, *flat_l.shape[lead:]),
                              flat_x.reshape(-1, flat_x.shape[-1])).reshape(flat_l.shape[:-1])
            return xl - F.softplus(flat_l).sum(-1)
        events = tuple(range(-nd, 0))  # summed in place: no flattened views in the training step's graph
        return (logits * value).sum(events) - F.softplus(logits).sum(events)


def bernoulli(logits: Tensor, event_ndims: int) -> BernoulliLogits:
    """Bernoulli likelihood parameterised by logits; the last ``event_ndims`` axes are the event
    (:class:`BernoulliLogits`)."""
    return BernoulliLogits(logits, event_ndims)


def gaussian(loc: Tensor, scale: Tensor, event_ndims: int) -> Independent:
    """Gaussian likelihood with per-element mean and standard deviation (broadcast to ``loc``)."""
    return Independent(Normal(loc, scale.expand_as(loc), validate_args=False), event_ndims, validate_args=False)


def multinomial(logits: Tensor, event_ndims: int) -> Multinomial:
    """A multinomial over the counts of the categories in the last ``event_ndims`` axes of ``logits``
    (batch = the other axes), with each value's own total count: see :class:`Multinomial`."""
    return Multinomial(logits, event_ndims)


class Multinomial(Distribution):
    """Counts x of I categories (the last ``event_ndims`` axes, flattened to I) drawn with probabilities
    p = softmax(logits) over the categories, the total N = sum_i x_i read from each value scored:

        log p(x) = lgamma(N + 1) - sum_i lgamma(x_i + 1) + sum_i x_i log p_i     (nats)

    a normalised pmf over the count vectors with that total (torch's ``Multinomial`` needs one total for
    the whole batch; here every row has its own, as every user of a recommender has their own number of
    interactions). Shapes: ``logits`` (*batch, *event); ``log_prob(x)`` of x broadcastable to them has
    shape ``batch``. ``mean`` is the category probabilities p (the expected counts of N events are N * p);
    ``sample`` draws ``total_count`` events per row (1 unless given)."""

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {"logits": constraints.real}
    has_rsample = False

    def __init__(self, logits: Tensor, event_ndims: int = 1, total_count: int = 1) -> None:
        if event_ndims < 1 or logits.dim() < event_ndims:
            raise ValueError(f"a multinomial needs logits with at least {max(event_ndims, 1)} event axes, got "
                             f"shape {tuple(logits.shape)}")
        self.logits, self.total_count = logits, int(total_count)
        cut = logits.dim() - event_ndims
        super().__init__(logits.shape[:cut], logits.shape[cut:], validate_args=False)

    def _flat(self, t: Tensor) -> Tensor:
        return t.reshape(*t.shape[:t.dim() - len(self.event_shape)], -1)

    @property
    def probs(self) -> Tensor:
        """p = softmax(logits) over the categories, shape (*batch, *event); sums to 1 over the event."""
        return torch.softmax(self._flat(self.logits), -1).reshape(self.logits.shape)

    @property
    def mean(self) -> Tensor:
        return self.probs

    def log_prob(self, value: Tensor) -> Tensor:
        x = self._flat(value.to(self.logits.dtype))
        log_p = torch.log_softmax(self._flat(self.logits), -1)
        n = x.sum(-1)
        coefficient = torch.lgamma(n + 1.0) - torch.lgamma(x + 1.0).sum(-1)
        return coefficient + (x * log_p).sum(-1)

    def sample(self, sample_shape: torch.Size | list[int] | tuple[int, ...] = ()) -> Tensor:
        with torch.no_grad():
            flat = torch.distributions.Multinomial(self.total_count, logits=self._flat(self.logits),
                                                   validate_args=False).sample(torch.Size(sample_shape))
        return flat.reshape(*sample_shape, *self.logits.shape)


class PointMass(Distribution):
    """A deterministic code z = loc (the plain autoencoder's encoder). It has no density: ``log_prob``
    raises, and sampling returns ``loc`` for every draw (so the same decoding code serves AE and VAE)."""

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {"loc": constraints.real}
    has_rsample = True

    def __init__(self, loc: Tensor) -> None:
        self.loc = loc
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=False)

    @property
    def mean(self) -> Tensor:
        return self.loc

    @property
    def variance(self) -> Tensor:
        return torch.zeros_like(self.loc)

    def rsample(self, sample_shape: torch.Size | list[int] | tuple[int, ...] = ()) -> Tensor:
        return self.loc.expand(*sample_shape, *self.loc.shape)

    def log_prob(self, value: Tensor) -> Tensor:
        raise ValueError("a point-mass code has no density; use a VAE (model.kind='vae') for likelihoods")


def is_gaussian(q: Distribution) -> bool:
    """A diagonal (``Independent(Normal)``) or full-covariance (``MultivariateNormal``) Gaussian."""
    return _is_diag(q) or isinstance(q, MultivariateNormal)


def reparameterise(q: Distribution, eps: Tensor) -> Tensor:
    """z = loc + L eps for standard-normal noise ``eps`` of shape (*sample, *batch, d): the draw that
    ``q.rsample`` makes from the same noise (diagonal: loc + scale * eps; full: loc + scale_tril @ eps;
    a point mass: loc; a distribution with its own ``reparameterise(eps)``, such as the two-level posterior of
    :mod:`vaekit.hierarchy`: that)."""
    if isinstance(q, MultivariateNormal):
        return q.loc + (q.scale_tril @ eps.unsqueeze(-1)).squeeze(-1)
    if _is_diag(q):
        return q.base_dist.loc + q.base_dist.scale * eps
    if isinstance(q, PointMass):
        return q.loc.expand_as(eps)
    own = getattr(q, "reparameterise", None)  # a composite posterior (the hierarchy's) draws from its own noise
    if callable(own):
        return own(eps)
    raise TypeError(f"cannot reparameterise a {type(q).__name__} from standard-normal noise")


class DiagGaussianMixture(MixtureSameFamily):
    """sum_k w_k N(loc_k, diag scale_k^2): a ``MixtureSameFamily`` of diagonal Gaussians (components of batch
    (K,), event (d,)) whose ``log_prob`` is two matrix products instead of a (..., K, d) tensor:

    log N(z | m_k, diag s_k^2) = -1/2 [z^2 . a_k - 2 z . (m_k a_k) + m_k^2 . a_k] - sum_d log s_kd - d/2 log 2 pi,
    a_k = 1 / s_k^2, for every z (..., d) and k at once: (..., K), computed in float64 whatever the input's
    dtype and never under autocast (the expanded square cancels: float32 lost 0.02 nats, bf16 would lose whole
    nats), returned in the input's dtype (float32 at least). A VampPrior of K = 500 pseudo-inputs at k = 5000
    importance samples costs two (m, d) x (d, K) products per block instead of passes over an (m, K, d) tensor.
    An expanded mixture (batch shape not ()) and sampling are ``MixtureSameFamily``'s own."""

    def log_prob(self, value: Tensor) -> Tensor:
        if self.batch_shape != torch.Size(()):
            return super().log_prob(value)
        base = self.component_distribution.base_dist  # type: ignore[attr-defined]
        out = torch.promote_types(value.dtype, torch.float32)
        with autocast_off(value.device.type):  # float64 inside: the expanded square cancels
            z = value.double()
            loc, scale = base.loc.double(), base.scale.double()
            precision = scale.pow(-2)  # (K, d)
            scaled_loc = loc * precision
            quad = (z * z) @ precision.T - 2 * (z @ scaled_loc.T) + (loc * scaled_loc).sum(-1)  # (..., K)
            log_norm = scale.log().sum(-1) + 0.5 * loc.shape[-1] * LOG_2PI  # (K,)
            log_weights = torch.log_softmax(self.mixture_distribution.logits.double(), -1)
            return torch.logsumexp(log_weights - log_norm - 0.5 * quad, -1).to(out)


def mixture(logits: Tensor, components: Distribution) -> MixtureSameFamily:
    """sum_j softmax(logits)_j components_j: batch (), event (d,) for ``components`` of batch (K,); a
    :class:`DiagGaussianMixture` when the components are diagonal Gaussians."""
    kind = DiagGaussianMixture if _is_diag(components) else MixtureSameFamily
    return kind(Categorical(logits=logits, validate_args=False), components, validate_args=False)


def draw(q: Distribution, sample_shape: tuple[int, ...], generator: torch.Generator | None = None) -> Tensor:
    """``sample_shape`` reparameterised draws from ``q`` (shape (*sample_shape, *batch, *event)), with the
    noise from ``generator`` when given. Gaussians and point masses use :func:`reparameterise`; any other
    distribution ``rsample``s (or ``sample``s) under a copy of the global RNG seeded from ``generator``."""
    shape = (*sample_shape, *q.batch_shape, *q.event_shape)
    if is_gaussian(q) or isinstance(q, PointMass):
        loc = q.mean
        eps = torch.randn(shape, generator=generator, device=loc.device, dtype=loc.dtype)
        return reparameterise(q, eps)
    if generator is None:
        return q.rsample(sample_shape) if q.has_rsample else q.sample(sample_shape)
    seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return q.rsample(sample_shape) if q.has_rsample else q.sample(sample_shape)


def masked_log_prob(p_x: Distribution, x: Tensor, mask: Tensor | None) -> Tensor:
    """log p(x|z) summed over the event axes, counting only the entries where ``mask`` is True (the
    observed ones): shape = p_x's batch shape, nats. Missing entries never enter the sum, not even as
    NaN * 0 (``torch.where``, with x filled where it is missing)."""
    if mask is None:
        return p_x.log_prob(x)
    if not isinstance(p_x, Independent):
        raise TypeError(f"masking needs an elementwise likelihood (Independent), got {type(p_x).__name__}")
    x = torch.where(mask, x, torch.zeros_like(x))
    elementwise = p_x.base_dist.log_prob(x)
    kept = torch.where(mask, elementwise, torch.zeros_like(elementwise))
    return kept.flatten(-p_x.reinterpreted_batch_ndims).sum(-1) if p_x.reinterpreted_batch_ndims else kept


def kl_standard_normal(q_z: Distribution) -> Tensor:
    """KL(q || N(0, I)) in nats, closed form, shape = q's batch shape.

    Diagonal: 0.5 * sum(mu^2 + sigma^2 - 1 - log sigma^2).
    Full covariance S = L L^T: 0.5 * (tr S + mu^T mu - d - log|S|).
    """
    kl = closed_kl_standard_normal(q_z)
    if kl is None:
        raise TypeError(f"no closed-form KL to N(0, I) for {type(q_z).__name__}")
    return kl


def closed_kl_standard_normal(q_z: Distribution) -> Tensor | None:
    """:func:`kl_standard_normal` for a Gaussian q (diagonal or full covariance), None for any other
    distribution (a training step asks once per batch: one type check)."""
    if _is_diag(q_z):
        return _kl_diag(q_z).sum(-1)
    return _kl_full(q_z) if isinstance(q_z, MultivariateNormal) else None


def kl_per_dim(q_z: Distribution) -> Tensor:
    """The diagonal KL split by latent dimension, shape (*batch, d), in nats. For a full-covariance
    posterior the per-dimension split uses the marginals N(mu_j, S_jj); their sum is <= the total KL."""
    if _is_diag(q_z):
        return _kl_diag(q_z)
    if isinstance(q_z, MultivariateNormal):
        var = q_z.scale_tril.square().sum(-1)
        return 0.5 * (q_z.loc.square() + var - 1.0 - torch.log(var))
    raise TypeError(f"no closed-form KL to N(0, I) for {type(q_z).__name__}")


def _is_diag(q_z: Distribution) -> TypeGuard[Independent]:
    return isinstance(q_z, Independent) and isinstance(q_z.base_dist, Normal)


def _kl_diag(q_z: Independent) -> Tensor:
    """KL(N(mu, diag sigma^2) || N(0, I)) per dimension (*batch, d), nats."""
    mu, sigma = q_z.base_dist.loc, q_z.base_dist.scale
    log_var = getattr(q_z, "log_var", None)
    if log_var is not None:  # made from log sigma^2: no log of sigma (finite where sigma underflowed to 0)
        return 0.5 * (mu.square() + sigma.square() - 1.0 - log_var)
    return 0.5 * (mu.square() + sigma.square() - 1.0) - torch.log(sigma)


def _kl_full(q_z: MultivariateNormal) -> Tensor:
    """KL(N(mu, L L^T) || N(0, I)) per example (*batch,), nats."""
    L = q_z.scale_tril
    d = L.shape[-1]
    trace = L.square().sum((-2, -1))
    log_det = 2.0 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
    return 0.5 * (trace + q_z.loc.square().sum(-1) - d - log_det)
