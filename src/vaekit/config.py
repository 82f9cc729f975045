"""Typed, frozen run configuration: TOML file + dotted command-line overrides.

A config field name is its CLI flag and its key in the saved ``config.toml``:
``[train] lr = 3e-4`` == ``--train.lr 3e-4``. Unknown keys, wrong types and out-of-range values raise
:class:`~vaekit.errors.VaekitError` naming the key. Nothing is ever evaluated as code.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from vaekit.data.config import DataConfig
from vaekit.errors import VaekitError
from vaekit.typed import check_fields, coerce

ACTIVATIONS = ("relu", "tanh", "elu", "gelu", "silu", "softplus")
CONDITIONS = ("none", "label", "covariates")
INPUT_NORMS = ("none", "l2")


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise VaekitError(f"config key '{key}': {message}")


#: Part names known without importing torch (a fast path for the common names); the registries in
#: vaekit.networks / posteriors / priors / likelihoods are the truth, and a part registered there by the
#: user is accepted too.
_PART_REGISTRIES = {
    "model.encoder": ("vaekit.networks", "ENCODERS", ("mlp", "conv")),
    "model.decoder": ("vaekit.networks", "DECODERS", ("mlp", "conv")),
    "model.prior": ("vaekit.priors", "PRIORS", ("standard-normal", "mog", "vamp")),
    "model.posterior": ("vaekit.posteriors", "POSTERIORS", ("diag", "full")),
    "model.likelihood": ("vaekit.likelihoods", "LIKELIHOODS", ("auto", "bernoulli", "gaussian", "gaussian-learned",
                                                                "multinomial", "mixed")),
}


def _check_part(key: str, name: str) -> None:
    """``name`` is a registered part for ``key`` (e.g. model.prior); else a one-line error listing them."""
    module, attr, builtin = _PART_REGISTRIES[key]
    if name in builtin:
        return
    import importlib

    registry = getattr(importlib.import_module(module), attr)
    if name not in registry:
        names = (*[n for n in builtin if n not in registry], *registry.names())
        raise VaekitError(f"config key '{key}': use one of {', '.join(names)} (got '{name}', which is not registered)")


@dataclass(frozen=True)
class ModelConfig:
    """The generative model and its amortised posterior.

    ``kind='ae'`` is the plain autoencoder (deterministic encoder, no KL, the beta -> 0 limit);
    ``posterior='full'`` uses a full-covariance Gaussian q(z|x) with a Cholesky factor.
    ``likelihood='auto'`` is resolved from the data when a run is trained (binary data and grey-level
    images: ``bernoulli``; other real-valued data: ``gaussian-learned`` on standardised data; see
    docs/data.md) and the run's saved config holds the resolved value.
    ``sigma`` is the fixed decoder standard deviation of the ``gaussian`` likelihood in the model's
    *scaled* units: the decoded standard deviation in file units is ``sigma * data_scale`` (the
    per-feature scale of ``data.scale`` unit/standardize, 1 for ``none``), so log p(x) is always in nats
    of the file's units;
    ``variance`` picks one learned variance per data dimension (``per-dim``, a free parameter) or one
    per output (``per-output``, predicted by the decoder) for ``gaussian-learned``.
    ``hidden`` lists the hidden widths of the encoder (the decoder mirrors them); ``()`` is an explicit
    linear encoder and decoder (``hidden = []`` in TOML, ``--model.hidden none``; an empty
    ``--model.hidden ''`` is refused).
    The parts are named by registries (docs/architecture.md): ``encoder`` / ``decoder`` networks
    (:mod:`vaekit.networks`: ``mlp``, or ``conv`` for images of shape (H, W) or (C, H, W) with C = 1 or 3),
    ``posterior`` (:mod:`vaekit.posteriors`), ``prior``
    (:mod:`vaekit.priors`: ``standard-normal``, ``mog`` (a learned mixture of ``prior_components`` Gaussians),
    ``vamp`` (the VampPrior: a mixture of the posteriors at ``prior_components`` learned pseudo-inputs);
    docs/priors.md) and ``likelihood`` (:mod:`vaekit.likelihoods`); unknown
    names are refused when the model is built. ``condition`` makes a conditional VAE: ``label`` (the
    data's class labels, one-hot) or ``covariates``; ``none`` is the unconditional model.
    ``channels`` shapes the ``conv`` networks: one stride-2 convolution block per entry (its output
    channels), each halving the image's height and width (rounded up for odd ``kernel_size``); the
    decoder retraces them with transposed convolutions back to exactly (H, W). ``kernel_size`` is their
    square kernel (2..7). Both are unused by ``mlp`` networks (as ``hidden`` is unused by ``conv``).
    ``input_norm`` and ``input_dropout`` transform what the encoder network reads (after any
    standardisation), never what the likelihood scores: ``input_norm = 'l2'`` divides each example by its
    Euclidean norm, then ``input_dropout`` = p zeroes each input with probability p in training mode
    (survivors scaled by 1 / (1 - p); nothing in eval mode): the Mult-VAE's input (Liang et al. 2018: l2,
    0.5; with ``kind='ae'`` the denoising Mult-DAE). ``none`` and 0.0 leave the input as it is.
    ``columns``: the column layout of the ``mixed`` likelihood of a table (``real``, ``binary``, ``count``,
    ``negbin``, ``categorical:K`` per column; docs/tables.md), set from the data when a table is trained.
    ``levels = 2`` builds the two-level hierarchical VAE (:mod:`vaekit.hierarchy`): z = [z1, z2], each
    ``latent_dim`` wide, q(z2|x) q(z1|x, z2), p(z2) p(z1|z2) p(x|z1, z2), ``prior`` on the top level z2.
    """

    kind: str = "vae"
    latent_dim: int = 8
    hidden: tuple[int, ...] = (256, 128)
    activation: str = "relu"
    likelihood: str = "auto"
    sigma: float = 0.1
    variance: str = "per-dim"
    posterior: str = "diag"
    encoder: str = "mlp"
    decoder: str = "mlp"
    prior: str = "standard-normal"
    condition: str = "none"
    channels: tuple[int, ...] = (32, 64)
    kernel_size: int = 3
    input_norm: str = "none"
    input_dropout: float = 0.0
    columns: tuple[str, ...] = ()
    prior_components: int = 10
    levels: int = 1

    def __post_init__(self) -> None:
        check_fields(self, "model")  # types first: one-line errors naming the key
        _check(self.kind in ("vae", "ae"), "model.kind", f"got '{self.kind}'; use 'vae' or 'ae'")
        _check(self.latent_dim >= 1, "model.latent_dim", f"must be >= 1, got {self.latent_dim}")
        _check(all(h >= 1 for h in self.hidden), "model.hidden", f"widths must be >= 1, got {self.hidden}")
        _check(all(1 <= ch <= 4096 for ch in self.channels), "model.channels",
               f"conv channels must be in 1..4096, got {self.channels}")
        _check(len(self.channels) <= 8, "model.channels", f"at most 8 conv blocks, got {len(self.channels)}")
        _check(2 <= self.kernel_size <= 7, "model.kernel_size", f"must be in 2..7, got {self.kernel_size}")
        _check(self.activation in ACTIVATIONS, "model.activation", f"use one of {', '.join(ACTIVATIONS)}")
        for key in ("encoder", "decoder", "prior", "likelihood"):
            _check_part(f"model.{key}", getattr(self, key))
        _check(self.sigma > 0 and math.isfinite(self.sigma), "model.sigma", f"must be > 0, got {self.sigma}")
        _check(self.variance in ("per-dim", "per-output"), "model.variance", "use 'per-dim' or 'per-output'")
        _check(self.posterior != "point", "model.posterior",
               "the point-mass code is the autoencoder: use --model.kind ae (model.posterior then does not apply)")
        _check_part("model.posterior", self.posterior)
        _check(self.condition in CONDITIONS, "model.condition", f"use one of {', '.join(CONDITIONS)}")
        _check(not self.columns or self.likelihood in ("mixed", "auto"), "model.columns",
               f"is the column layout of the mixed likelihood, but model.likelihood is '{self.likelihood}'; drop "
               "model.columns or use --model.likelihood mixed")
        _check(self.input_norm in INPUT_NORMS, "model.input_norm", f"use one of {', '.join(INPUT_NORMS)}")
        _check(0.0 <= self.input_dropout < 1.0, "model.input_dropout",
               f"must be in [0, 1) (the probability of zeroing an input), got {self.input_dropout}")
        _check(1 <= self.prior_components <= 100_000, "model.prior_components",
               f"must be in 1..100000 mixture components, got {self.prior_components}")
        _check(self.levels in (1, 2), "model.levels",
               f"use 1 (a VAE) or 2 (the two-level hierarchy), got {self.levels}")
        learned = self.prior in ("mog", "vamp") or self.levels == 2
        _check(not (learned and self.kind == "ae"), "model.kind",
               f"an autoencoder has no prior to learn (model.prior '{self.prior}', model.levels {self.levels}); "
               "use --model.kind vae")
        _check(not ((self.prior == "vamp" or self.levels == 2) and self.condition != "none"), "model.condition",
               "the VampPrior and the two-level model are unconditional; drop --model.condition or use "
               "--model.prior standard-normal --model.levels 1")


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation loop. ``beta`` weighs the KL (beta-VAE); ``warmup_steps`` ramps the KL weight
    linearly from 0 to ``beta``; ``n_samples`` is the number V of Monte-Carlo samples per point
    (``objective='iwae'`` uses them in the importance-weighted bound instead).
    ``checkpoint_every`` > 0 also checkpoints every that many steps inside an epoch, so a killed run
    resumes mid-epoch (0 = at epoch ends only). ``checkpoint_every_epochs`` = N writes the epoch-end
    checkpoint only at epochs that are a multiple of N, at the final epoch, at an early or requested stop,
    and at every epoch that improves the validation ELBO (or the run's selection score, e.g. ``val_ndcg@100``
    for a recommender; :mod:`vaekit.train.selection`) (so ``best`` always holds the best epoch's exact
    weights and ``last`` the final ones); a killed run resumes from the newest of these and redoes the
    epochs after it exactly. ``nproc`` > 1 makes ``vaekit train`` launch that many training processes on
    this machine through torchrun (torch.distributed, docs/distributed.md); ``batch_size`` stays the
    global batch. Under torchrun itself the launcher's process count rules and ``nproc`` is not used.

    KL control (docs/priors.md): ``kl_schedule`` ``linear`` ramps the KL weight from 0 to ``beta`` over
    ``warmup_steps``; ``cyclical`` (Fu et al. 2019) repeats ``kl_cycles`` ramps over the run, each rising from
    0 to ``beta`` over the first ``kl_ratio`` of its cycle then holding ``beta``. ``free_bits`` = lambda > 0
    (nats per latent dimension) replaces the KL term by sum_g max(lambda * d_g, mean_batch KL_g) (Kingma et
    al. 2016): the groups g are the latent dimensions when the prior has a per-dimension closed form, else
    the latent levels (the whole code of a one-level model) with d_g dimensions each.
    ``iwae_k`` is the number k of importance samples of ``objective = 'iwae'`` (0: ``n_samples``, the older
    spelling); IWAE trains the plain k-sample bound, so ``beta``, warm-up, the cyclical schedule and free bits
    are refused with it.
    ``threads``: torch's intra-op threads per process; -1 (default) = the cores other processes leave free: decided
    when training starts (once per process, saved in the run's config as the number chosen, so a resume starts from
    it) and looked at again while the run trains (at a log point, every 25 steps, 2 s or more after the last look),
    so a process that starts later gets its core (:class:`vaekit.threads.ThreadGovernor`; a resumed run goes on
    doing so); 0 = torch's own count (one per core); N fixes it (:mod:`vaekit.threads`, which also bounds OpenMP's
    spinning so that a busy machine slows a run down instead of collapsing it)."""

    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-3
    lr_schedule: str = "constant"
    weight_decay: float = 0.0
    beta: float = 1.0
    warmup_steps: int = 0
    n_samples: int = 1
    objective: str = "elbo"
    patience: int = 0
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    grad_clip: float = 0.0
    keep_last: int = 2
    max_bad_steps: int = 20
    checkpoint_every: int = 0
    checkpoint_every_epochs: int = 1
    nproc: int = 1
    iwae_k: int = 0
    free_bits: float = 0.0
    kl_schedule: str = "linear"
    kl_cycles: int = 4
    kl_ratio: float = 0.5
    threads: int = -1

    def __post_init__(self) -> None:
        check_fields(self, "train")  # types first: one-line errors naming the key
        _check(self.epochs >= 1, "train.epochs", f"must be >= 1, got {self.epochs}")
        _check(self.batch_size >= 1, "train.batch_size", f"must be >= 1, got {self.batch_size}")
        _check(self.lr > 0 and math.isfinite(self.lr), "train.lr", f"must be > 0, got {self.lr}")
        _check(self.lr_schedule in ("constant", "cosine", "step"), "train.lr_schedule",
               "use 'constant', 'cosine' or 'step'")
        _check(self.weight_decay >= 0, "train.weight_decay", "must be >= 0")
        _check(self.beta >= 0 and math.isfinite(self.beta), "train.beta", f"must be >= 0, got {self.beta}")
        _check(self.warmup_steps >= 0, "train.warmup_steps", "must be >= 0")
        _check(self.n_samples >= 1, "train.n_samples", f"must be >= 1, got {self.n_samples}")
        _check(self.objective in ("elbo", "iwae"), "train.objective", "use 'elbo' or 'iwae'")
        _check(self.patience >= 0, "train.patience", "must be >= 0 (0 disables early stopping)")
        _check(self.device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", self.device) is not None,
               "train.device", "use 'auto', 'cpu', 'cuda' or 'cuda:N' (N a GPU index)")
        _check(self.precision in ("fp32", "bf16"), "train.precision", "use 'fp32' or 'bf16'")
        _check(self.grad_clip >= 0, "train.grad_clip", "must be >= 0 (0 disables clipping)")
        _check(self.keep_last >= 1, "train.keep_last", "must be >= 1")
        _check(self.max_bad_steps >= 1, "train.max_bad_steps", "must be >= 1")
        _check(self.checkpoint_every >= 0, "train.checkpoint_every",
               f"must be >= 0 steps (0 = checkpoint at epoch ends only), got {self.checkpoint_every}")
        _check(self.checkpoint_every_epochs >= 1, "train.checkpoint_every_epochs",
               f"must be >= 1 epochs (1 = a checkpoint after every epoch), got {self.checkpoint_every_epochs}")
        _check(1 <= self.nproc <= 1024, "train.nproc", f"must be in 1..1024 processes, got {self.nproc}")
        _check(-1 <= self.threads <= 1024, "train.threads",
               f"must be in -1..1024 (0 = one per core, -1 = the free cores), got {self.threads}")
        _check(self.iwae_k >= 0, "train.iwae_k", f"must be >= 0 (0: train.n_samples), got {self.iwae_k}")
        _check(self.free_bits >= 0 and math.isfinite(self.free_bits), "train.free_bits",
               f"must be >= 0 nats per latent dimension, got {self.free_bits}")
        _check(self.kl_schedule in ("linear", "cyclical"), "train.kl_schedule", "use 'linear' or 'cyclical'")
        _check(self.kl_cycles >= 1, "train.kl_cycles", f"must be >= 1, got {self.kl_cycles}")
        _check(0 < self.kl_ratio <= 1, "train.kl_ratio", f"must be in (0, 1], got {self.kl_ratio}")
        _check(not (self.kl_schedule == "cyclical" and self.warmup_steps), "train.warmup_steps",
               "the cyclical schedule has its own ramps; drop --train.warmup_steps or use --train.kl_schedule linear")
        if self.objective == "iwae":
            _check(not (self.iwae_k and self.n_samples > 1), "train.n_samples",
                   f"objective iwae takes its k from train.iwae_k ({self.iwae_k}); drop --train.n_samples")
            changed = [f"--train.{key} {getattr(self, key)}" for key, off in
                       (("beta", 1.0), ("warmup_steps", 0), ("free_bits", 0.0), ("kl_schedule", "linear"))
                       if getattr(self, key) != off]
            _check(not changed, "train.objective",
                   f"objective iwae trains the plain k-sample bound, which has no KL weight: drop {', '.join(changed)} "
                   "or use --train.objective elbo")
        else:
            _check(self.iwae_k == 0, "train.iwae_k", "applies to --train.objective iwae only; drop it or add "
                   "--train.objective iwae")

    @property
    def k(self) -> int:
        """The number of importance samples of the IWAE objective (``iwae_k``, else ``n_samples``)."""
        return self.iwae_k or self.n_samples


@dataclass(frozen=True)
class EvalConfig:
    """Test-time likelihood: ``k`` importance samples per point, ``chunk`` samples for ``batch_size``
    points decoded at once. The defaults (250 x 8 = 2,000 decoded rows) keep a block in a 2-core CPU's
    cache, about 2x faster there than 500 x 500; on a GPU use larger blocks (e.g. --chunk 5000
    --batch-size 200). ``naive_k`` prior samples feed the naive estimator shown beside the IS one."""

    k: int = 5000
    chunk: int = 250
    batch_size: int = 8
    repeats: int = 1
    naive_k: int = 1000
    #: ``torch.compile`` the importance-sampling block (``vaekit.evaluate``): ``auto`` on a CPU from
    #: ``COMPILE_FROM`` decoded samples (points x k) on, ``on``, or ``off``.
    compile: str = "auto"
    #: torch's intra-op threads while evaluating, as ``train.threads``: -1 the cores other processes leave free,
    #: followed while it runs; 0 torch's count (one per core); N fixed.
    threads: int = -1

    def __post_init__(self) -> None:
        check_fields(self, "eval")  # types first: one-line errors naming the key
        for key in ("k", "chunk", "batch_size", "repeats", "naive_k"):
            value = getattr(self, key)
            _check(value >= 1, f"eval.{key}", f"must be >= 1, got {value}")
        _check(self.compile in ("auto", "on", "off"), "eval.compile",
               f"must be auto, on or off, got '{self.compile}'")
        _check(-1 <= self.threads <= 1024, "eval.threads",
               f"must be in -1..1024 (0 = one per core, -1 = the free cores), got {self.threads}")


@dataclass(frozen=True)
class Config:
    """The whole resolved configuration of a run (saved as ``runs/<name>/config.toml``)."""

    name: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        check_fields(self, "")
        _check(not self.data.condition_columns or self.model.condition == "covariates", "data.condition_columns",
               f"covariates are the input of a covariate-conditional model, but model.condition is "
               f"'{self.model.condition}'; add --model.condition covariates or drop --data.condition_columns")
        _check(not (self.model.kind == "ae" and self.train.objective == "iwae"), "train.objective",
               "an autoencoder (model.kind 'ae') has no posterior density, so no importance-weighted bound; use "
               "--train.objective elbo or --model.kind vae")

    def replace(self, **sections: Any) -> Config:
        return dataclasses.replace(self, **sections)


# ----------------------------------------------------------------------------------------- parsing

def _coerce(value: Any, kind: Any, key: str) -> Any:
    """Check ``value`` (from TOML or JSON) against the annotation ``kind``; ints widen to floats
    (:func:`vaekit.typed.coerce`, the same rules as the dataclasses' own checks)."""
    return coerce(value, kind, key)


def _parse_text(text: str, kind: Any, key: str) -> Any:
    """Parse a command-line string into the type of the field. A list is comma-separated; an empty
    value is refused (say ``none`` for an empty list, e.g. ``--model.hidden none``: no hidden layer)."""
    origin = typing.get_origin(kind)
    if origin is tuple:
        (item_kind, _) = typing.get_args(kind)
        if text.strip().lower() == "none":
            return ()
        parts = [p for p in text.replace("[", "").replace("]", "").split(",") if p.strip()]
        example = {"model.hidden": "256,128", "model.channels": "32,64"}.get(key, "28,28")
        _check(bool(parts), key, f"empty value '{text}'; give comma-separated values, e.g. --{key} {example}, "
               f"or --{key} none for an empty list")
        return tuple(_parse_text(p.strip(), item_kind, key) for p in parts)
    if kind is bool:
        low = text.strip().lower()
        _check(low in ("true", "false", "1", "0", "yes", "no"), key, f"expected true or false, got '{text}'")
        return low in ("true", "1", "yes")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            _check(False, key, f"expected an integer, got '{text}'")
    if kind is float:
        try:
            return float(text)
        except ValueError:
            _check(False, key, f"expected a number, got '{text}'")
    return text


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build_section(cls: type, values: dict[str, Any], prefix: str, base: Any = None) -> Any:
    hints = _hints(cls)
    known = {f.name for f in fields(cls)}
    kwargs = {}
    for key, value in values.items():
        full = f"{prefix}.{key}"
        if key not in known:
            raise VaekitError(
                f"unknown config key '{full}'; known keys in [{prefix}]: {', '.join(sorted(known))}")
        if isinstance(value, dict) and hints[key] == tuple[str, ...]:  # a TOML table of NAME = VALUE
            value = [f"{k}={v}" for k, v in value.items()]
        kwargs[key] = _coerce(value, hints[key], full)
    try:
        return dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)
    except TypeError as err:  # pragma: no cover - every field has a default
        raise VaekitError(f"config section [{prefix}]: {err}") from None


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "eval": EvalConfig}


def config_from_dict(raw: dict[str, Any], base: Config | None = None) -> Config:
    """Build a :class:`Config` from nested dicts (a parsed TOML/JSON file), on top of ``base``."""
    base = base or Config()
    updates: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "name":
            updates["name"] = _coerce(value, str, "name")
        elif key in SECTIONS:
            _check(isinstance(value, dict), key, "must be a table like [train]")
            updates[key] = _build_section(SECTIONS[key], value, key, getattr(base, key))
        else:
            raise VaekitError(f"unknown config section '{key}'; use one of name, {', '.join(SECTIONS)}")
    return dataclasses.replace(base, **updates)


def load_config(path: str | Path, base: Config | None = None) -> Config:
    """Read a TOML config file. Missing file or invalid TOML raise :class:`VaekitError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise VaekitError(f"cannot read config file {path}: {err.strerror}; check the path") from None
    try:
        raw = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise VaekitError(f"config file {path} is not valid TOML ({err}); fix the syntax") from None
    return config_from_dict(raw, base)


def apply_overrides(config: Config, overrides: dict[str, str]) -> Config:
    """Apply dotted overrides such as ``{'train.lr': '3e-4', 'model.hidden': '400,200'}``."""
    nested: dict[str, dict[str, Any]] = {}
    for dotted, text in overrides.items():
        if dotted == "name":
            config = dataclasses.replace(config, name=text)
            continue
        section, _, key = dotted.partition(".")
        if section not in SECTIONS or not key:
            raise VaekitError(f"unknown option '--{dotted}'; options look like --train.lr or --model.latent_dim")
        cls = SECTIONS[section]
        hints = _hints(cls)
        if key not in hints:
            known = ", ".join(sorted(f"--{section}.{f.name}" for f in fields(cls)))
            raise VaekitError(f"unknown config key '{dotted}'; known: {known}")
        nested.setdefault(section, {})[key] = _parse_text(text, hints[key], dotted)
    return config_from_dict(nested, config) if nested else config


def config_to_dict(config: Config) -> dict[str, Any]:
    out = dataclasses.asdict(config)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in out.items()}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def config_to_toml(config: Config) -> str:
    """Serialise the resolved config; ``load_config`` of the result gives back an equal object."""
    lines = [f"name = {_toml_value(config.name)}", ""]
    for section in SECTIONS:
        lines.append(f"[{section}]")
        for key, value in dataclasses.asdict(getattr(config, section)).items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)
