"""Honest likelihoods: importance-sampled log p(x), the naive estimator, and the numbers researchers report.

Importance sampling (Burda et al., 2016, eq. 14 as an estimator):

    log p(x) ~ logsumexp_j (log p(x, z_j) - log q(z_j|x)) - log k,   z_j ~ q(z|x), j = 1..k

computed by ``objectives.log_weights`` (the training code path) for ``batch_size`` points at once and
the k samples ``chunk`` at a time under ``torch.inference_mode()``; a running ``logaddexp`` merges the
chunks, so memory is bounded by batch_size x chunk decoded images whatever k is. The naive estimator
(seed 000 eq. 1) is the same computation with the model's prior p(z) (N(0, I), or a learned one) as the proposal:
log p(x) ~ logsumexp_j log p(x|z_j) - log k, z_j ~ p(z); it is shown beside the IS estimate to make
visible why the encoder matters (for images it is many nats too low at any affordable k).

Every value is in nats per example (a sum over the data's event axes); a dataset figure is the
average over its examples. ``evaluate_run`` is the library call behind ``vaekit eval``.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vaekit.batch import Batch, as_batch
from vaekit.bounds import log_terms
from vaekit.distributions import autocast_off, draw, is_gaussian, reparameterise
from vaekit.errors import VaekitError
from vaekit.inputs import check_input, trusted
from vaekit.threads import following_load, poll_load

PROPOSALS = ("posterior", "prior")
PRECISIONS = ("fp32", "bf16")
#: Seed offsets so that the IS repeats and the naive estimator never share draws.
REPEAT_SEED_STRIDE = 7919
NAIVE_SEED_OFFSET = 104_729
#: ``eval.compile auto`` compiles the block from this many decoded samples (points x k) on: 5,000 points at
#: k = 5000. On a 2-core CPU (bench/eval_floor.py, 250 x 8 blocks) the compiled block saved 1.5 ms of 23 ms per
#: point at k = 5000 and the first batch took 3.5 s, compile included (10.3 s with an empty inductor cache): it
#: pays from about 2,300 (7,000) points on.
COMPILE_FROM = 25_000_000


def _log_w(model: Any, xb: Batch, z: Tensor, q: Any, p_z: Any) -> Tensor:
    """One block's importance log-weights (m, b): :func:`vaekit.bounds.log_terms`, the one likelihood path."""
    return log_terms(model, xb, z, q, p_z).log_w


_compiled: list[Any] = []  # the torch.compile'd _log_w, made on first use (importing torch._dynamo costs 0.7 s)
_compile_failure: list[str] = []  # why it failed in this process: every later block runs eagerly


def compile_failure() -> str | None:
    """Why compiling the evaluation block failed in this process (it then runs eagerly), or None."""
    return _compile_failure[0] if _compile_failure else None


def compilable(model: Any, precision: str) -> bool:
    """Whether :func:`log_likelihood` can compile ``model``'s blocks at ``precision``: float32 (bf16 runs under
    autocast) and one latent level (a hierarchy's posterior caches its last draw and checks it by identity)."""
    return precision == "fp32" and not getattr(model, "level_names", ())


def use_compile(mode: str, points: int, k: int, device: torch.device, precision: str = "fp32") -> bool:
    """Whether ``eval.compile`` = ``mode`` (auto / on / off) compiles the block of an evaluation of ``points``
    points at ``k`` samples: ``on`` always, ``auto`` on a CPU in float32 from :data:`COMPILE_FROM` decoded
    samples on (where the compile pays for itself), ``off`` never."""
    if mode == "on":
        return True
    return mode == "auto" and device.type == "cpu" and precision == "fp32" and points * k >= COMPILE_FROM


def _compiled_block(model: Any, xb: Batch, z: Tensor, q: Any, p_z: Any) -> Tensor | None:
    """:func:`_log_w` through ``torch.compile`` (one graph for the whole block: the decoder, the likelihood's
    softplus and sums, log p(z) and log q(z|x) fused by inductor), or None when compiling failed (then a
    warning, once per process, and every block runs eagerly)."""
    if _compile_failure:
        return None
    import torch._dynamo.config as dynamo_config

    # torch < 2.7 names the limit cache_size_limit and the flag fail_on_cache_limit_hit (aliases since)
    new_names = hasattr(dynamo_config, "fail_on_recompile_limit_hit")
    fail_flag = "fail_on_recompile_limit_hit" if new_names else "fail_on_cache_limit_hit"
    try:
        # past torch's limit of graphs per function (8 block shapes or architectures in one process) dynamo would
        # run the block eagerly without a word and eval.json would say compiled: the flag makes it raise
        with warnings.catch_warnings(), dynamo_config.patch(fail_flag, True):
            warnings.simplefilter("ignore", DeprecationWarning)  # torch's compiler stack, on first use
            if not _compiled:
                _compiled.append(torch.compile(_log_w, dynamic=False))
            out: Tensor = _compiled[0](model, xb, z, q, p_z)
        return out
    except Exception as exc:  # no C++ compiler, an operation inductor cannot lower, ...
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        if type(exc).__name__ in ("FailOnRecompileLimitHit", "FailOnCacheLimitHit"):
            limit = getattr(dynamo_config, "recompile_limit" if new_names else "cache_size_limit", "its")
            first = (f"torch's limit of {limit} compiled graphs per function was reached in this process: new "
                     "block shapes or model architectures; a new process compiles again")
        _compile_failure.append(f"{type(exc).__name__}: {first}")
        warnings.warn(f"vaekit: compiling the evaluation block failed ({_compile_failure[0]}); evaluating "
                      "eagerly (--eval.compile off skips the attempt)", RuntimeWarning, stacklevel=3)
        return None


@torch.inference_mode()
def log_likelihood(model, x: Tensor | Batch, k: int = 5000, chunk: int = 250, batch_size: int = 8,
                   seed: int | None = None, *, proposal: str = "posterior", precision: str = "fp32",
                   eps: Tensor | None = None, c: Tensor | None = None, y: Tensor | None = None,
                   generator: torch.Generator | None = None, compile: bool = False) -> Tensor:
    """Per-example importance-sampled estimate of log p(x) in nats, float64 shape (n,), on the CPU.

    ``x``: (n, *event_shape) in data units. ``k`` samples per point, ``chunk`` at a time for
    ``batch_size`` points at once (peak memory ~ batch_size * chunk decoded outputs).
    ``proposal='posterior'`` draws z ~ q(z|x) (the IS estimate: a stochastic lower bound whose bias
    vanishes as k grows; its expectation is the ELBO at k = 1); ``'prior'`` draws z ~ p(z), the model's
    own prior (the naive estimator). The noise comes from a private generator seeded with ``seed`` (the
    global RNG when None), drawn as (chunk, batch, d) blocks; pass ``eps`` (k, n, d) to fix the draws exactly,
    which makes the result independent of ``chunk`` and ``batch_size`` up to rounding.
    ``precision='bf16'`` runs the networks under bfloat16 autocast; log-probabilities stay float32.
    A conditional model takes its condition as ``c`` (n, c_dim) or labels ``y`` (n,) (or a Batch carrying
    them) and the estimate is log p(x | c). Every weight comes from :func:`vaekit.bounds.log_terms`, with the
    prior built once per batch of points. ``generator`` (on the model's device) replaces ``seed``: calls on
    consecutive blocks of rows whose sizes are multiples of ``batch_size`` then draw exactly what one call on
    all the rows draws (:func:`split_log_likelihood`). ``compile``: run every whole (chunk x batch_size) block's
    ``log_terms`` through ``torch.compile`` (float32, one-level models; the same draws, the same value up to
    float32 rounding; compiling takes seconds, so worth it for thousands of points: :func:`use_compile`); a
    failed compile warns once and runs eagerly.
    """
    if k < 1 or chunk < 1 or batch_size < 1:
        raise ValueError(f"k, chunk and batch_size must be >= 1; got {k}, {chunk}, {batch_size}")
    if proposal not in PROPOSALS:
        raise ValueError(f"proposal must be one of {PROPOSALS}, got '{proposal}'")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got '{precision}'")
    full = as_batch(x, c, y)
    x = check_input(model, full.x, "log_likelihood's x")  # once per call, not per chunk (the loop runs trusted)
    full = full.with_x(x)
    if not model.posterior.has_density:
        raise VaekitError("an autoencoder (model.kind 'ae') has no posterior density, so no log p(x); train a VAE")
    n, d = x.shape[0], model.latent_dim
    if eps is not None and tuple(eps.shape) != (k, n, d):
        raise ValueError(f"eps must have shape (k, n, d) = {(k, n, d)}, got {tuple(eps.shape)}")
    device = next(model.parameters()).device
    gen = generator if generator is not None else \
        (torch.Generator(device).manual_seed(seed) if seed is not None else None)
    compiled = compile and compilable(model, precision)
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"), trusted(model):
            for start in range(0, n, batch_size):
                rows = slice(start, start + batch_size)
                xb = Batch(full.x[rows], *(None if t is None else t[rows] for t in (full.y, full.c, full.mask)))
                xb = xb.to(device)
                b = len(xb)
                p_z = model.prior()  # once per batch of points, shared by every chunk
                q = model.encode(xb) if proposal == "posterior" else p_z.expand((b,))
                acc: Tensor | None = None  # running logsumexp over chunks, in the model's dtype
                for done in range(0, k, chunk):
                    poll_load()  # a long evaluation follows the machine's load (vaekit.threads.following_load)
                    m = min(chunk, k - done)
                    with autocast_off(device.type):  # draws and densities in float32
                        if eps is not None:
                            z = reparameterise(q, eps[done:done + m, start:start + b].to(device))
                        elif is_gaussian(q):  # standard-normal noise, drawn as (chunk, batch, d) blocks
                            z = reparameterise(q, torch.randn((m, b, d), generator=gen, device=device))
                        else:  # e.g. a mixture prior as the naive proposal: its own sampler, same generator
                            z = draw(q, (m,), gen)
                    lw = None  # (m, b); compiled for whole blocks only (one shape: no recompiles for the tail)
                    if compiled and m == chunk and b == batch_size:
                        lw = _compiled_block(model, xb, z, q, p_z)
                    if lw is None:
                        lw = log_terms(model, xb, z, q, p_z).log_w
                    lse = torch.logsumexp(lw, 0)
                    acc = lse if acc is None else torch.logaddexp(acc, lse)
                assert acc is not None  # k >= 1 chunks were merged
                out.append(acc.double().cpu() - math.log(k))
    finally:
        model.train(was_training)
    return torch.cat(out)


def split_log_likelihood(model, split, k: int, chunk: int, batch_size: int, seed: int, *,
                         proposal: str = "posterior", precision: str = "fp32", block: int = 4096,
                         compile: bool = False) -> Tensor:
    """:func:`log_likelihood` of every row of ``split`` (a Split or SparseSplit), float64 (n,): the rows are
    served ``block`` at a time (rounded to a multiple of ``batch_size``) with one generator seeded by ``seed``, so
    the result equals one call on the whole split while memory holds one block of rows, never the whole split
    (a sparse split of users x items is densified one block at a time)."""
    device = next(model.parameters()).device
    gen = torch.Generator(device).manual_seed(seed)
    rows = max(batch_size, block // batch_size * batch_size)
    out = [log_likelihood(model, split.batch_of(torch.arange(start, min(start + rows, len(split)))), k, chunk,
                          batch_size, proposal=proposal, precision=precision, generator=gen, compile=compile)
           for start in range(0, len(split), rows)]
    return torch.cat(out)


#: What ``log_likelihood_nats`` of ``vaekit eval`` is, by ``model.condition``.
LIKELIHOOD_OF = {"none": "log p(x)", "label": "log p(x | y)", "covariates": "log p(x | c)"}
ELBO_SAMPLES = 100  # Monte-Carlo samples per point for the reported ELBO (1% of k = 5000's decoding work)


def bits_per_dim(log_likelihood_nats: float, dims: int) -> float:
    """-log p(x) / (D log 2): nats per example -> bits per data dimension."""
    return -log_likelihood_nats / (dims * math.log(2.0))


def standard_error(values: Tensor) -> float:
    """Standard error of the mean of ``values`` (n,): std (ddof = 1) / sqrt(n); 0 for n < 2."""
    n = values.numel()
    return float(values.double().std() / math.sqrt(n)) if n > 1 else 0.0


def loose_proposal_warning(is_estimate: Tensor, naive: Tensor) -> str | None:
    """A warning when the naive (prior-sampling) estimate beats the importance-sampled one by more than 1 nat
    and 3 paired standard errors: both are stochastic lower bounds on log p(x), so the IS figure is then the
    looser one (the encoder's posteriors are poor proposals, e.g. after training with a small KL weight)."""
    gap = naive.double() - is_estimate.double()  # per point, the same points
    mean = float(gap.mean())
    if mean > 1.0 and mean > 3.0 * standard_error(gap):
        return (f"the naive prior-sampling estimate is {mean:.2f} nats higher than the importance-sampled "
                "log_likelihood_nats; both are lower bounds on log p(x) in expectation, so the reported figure is "
                "loose: the encoder's posteriors are poor proposals (e.g. trained with a small KL weight); raise "
                "--k or report the naive figure beside it")
    return None


# ------------------------------------------------------------------------------------ the report

def _check_positive(name: str, value: int) -> int:
    if value < 1:
        raise VaekitError(f"--{name.replace('_', '-')} must be >= 1 (argument {name} in Python), got {value}; "
                          "give a positive number of samples/points")
    return value


def _eval_config(config, overrides: dict[str, str] | None):
    """Apply ``--eval.*`` overrides to a run's saved config; ``--data.*`` ones are checked here and
    applied by :func:`vaekit.data.load_run_data` (other sections are fixed by the checkpoint)."""
    from vaekit.config import apply_overrides
    from vaekit.data.rundata import apply_data_overrides

    overrides = overrides or {}
    for key in overrides:
        if not key.startswith(("data.", "eval.")):
            raise VaekitError(f"override '{key}' (--{key}) does not apply to eval: the model and training settings "
                              "come from the checkpoint; only --data.* and --eval.* (data.* and eval.* keys of "
                              "overrides) can be changed")
    apply_data_overrides(config, overrides)  # refuses preprocessing changes before any work
    return apply_overrides(config, {k: v for k, v in overrides.items() if k.startswith("eval.")})


def bits_per_dim_convention(prep: dict[str, Any], log_likelihood_nats: float, dims: int,
                            ) -> tuple[float | None, str]:
    """bits/dim and the convention it follows, or (None, why not).

    Discrete data (a Bernoulli on binary data): -log P(x) / (D log 2). Integer data under a Gaussian
    with uniform dequantisation: the density is over bins of width 1 in file units and
    E_u log p(x + u) <= log P(x) (Theis et al. 2016), so the same formula is an upper bound on the
    discrete bits/dim. Continuous data without dequantisation: a density has no bits/dim (None)."""
    lik, dq = prep.get("likelihood"), prep.get("dequantize")
    if lik == "mixed":
        return None, ("null: a mixed-type table's log p(x_obs) adds densities (real columns) to probabilities "
                      "(binary, categorical, count columns), so it has no bits/dim; compare log_likelihood_nats "
                      "(nats_per_dim is per observed cell)")
    if lik == "multinomial":
        return None, ("null: a multinomial over items scores a user's whole row (which items, out of how many); "
                      "it has no per-dimension bits, compare log_likelihood_nats instead")
    if lik == "bernoulli":
        value, how = bits_per_dim(log_likelihood_nats, dims), "discrete: Bernoulli on binary data"
    elif dq == "uniform":
        value = bits_per_dim(log_likelihood_nats, dims)
        how = ("uniform dequantisation, bins of width 1 in file units (an upper bound on the discrete "
               "bits/dim)")
    else:
        return None, ("null: the data are continuous (Gaussian density, data.dequantize none), so log p is a "
                      "density in the file's units and has no bits/dim; compare log_likelihood_nats instead")
    if value < 0:
        return None, (f"null: {how} gave a negative value ({value:.3f}), which means the model puts a density "
                      "above 1 per bin; the data are not integer bins of width 1")
    return value, how


def _nats_per_dim(mean_ll: float, dims: int, split: Any, prep: dict[str, Any]) -> tuple[float, str]:
    """-log p(x) per data dimension and what a dimension is. A mixed-type table's row (width W = value slots +
    one observed-indicator per column) scores its observed cells only, so its rate is per observed cell:
    -sum of the rows' log p(x_obs) / the number of observed cells of the split (a categorical column's cell
    counts once); every other model's is per dimension of its event (``dims``)."""
    if prep.get("likelihood") == "mixed" and "table" in prep:
        from vaekit.tabular import TableSchema

        n_values = TableSchema.from_dict(prep["table"]).n_values
        cells = float(split.x[:, n_values:].sum())  # the indicator slots: 1 where a column's cell is observed
        if cells > 0:
            return -mean_ll * len(split) / cells, "observed cell (table columns; a categorical counts once)"
    return -mean_ll / dims, "data dimension"


def evaluate_run(path: str | Path, k: int | None = None, chunk: int | None = None, batch_size: int | None = None,
                 seed: int = 0, write: bool = True, *, repeats: int | None = None, naive_k: int | None = None,
                 precision: str = "fp32", overrides: dict[str, str] | None = None,
                 device: str = "cpu", out: str | Path | None = None) -> dict[str, Any]:
    """Evaluate a run (or checkpoint) on its test split (validation split when there is no test split).

    Reports, in nats per example averaged over the split: ``elbo_nats``, ``recon_nats``, ``kl_nats`` and
    ``kl_per_dim`` (closed-form KL per latent unit), the importance-sampled ``log_likelihood_nats`` with
    ``k`` samples and its standard error across points ``log_likelihood_se`` (and, with ``repeats`` > 1,
    ``log_likelihood_mc_se``: the standard error of the reported estimate from the spread of ``repeats``
    independent k-sample estimates, whose per-point average is reported), ``nats_per_dim``,
    ``bits_per_dim``, the naive prior-sampling estimate ``naive_log_likelihood_nats`` (``naive_k``
    samples) with ``naive_log_likelihood_se``, ``active_units``, ``probe_accuracy`` (None without labels)
    and ``warnings``; which rows were scored: ``split`` (test or val), ``data`` (the absolute path of the
    file holding them, or the dataset's name), ``data_fingerprint``, ``n_examples``, ``data_split``
    (``data.split``: ``all`` scores every row of ``data.path``) and ``split_detail``; ``notes`` (e.g. data
    reshaped to the model's shape); ``compiled``: whether the importance-sampling blocks ran through
    ``torch.compile`` (``eval.compile``: :func:`use_compile`); ``threads``: torch's intra-op threads at the start
    (``eval.threads``, chosen as ``train.threads`` is: by default the cores other processes leave free, followed
    while the evaluation runs, :func:`vaekit.threads.following_load`). For an autoencoder the likelihood keys are
    None.
    A conditional model (``conditional``: ``label`` or ``covariates``; ``none`` otherwise) is scored with each
    row's own condition: ``log_likelihood_nats`` is then log p(x | y) (labels) or log p(x | c) (covariates),
    and the ELBO, reconstruction, KL, naive estimate, active units and probe all condition the same way;
    ``log_likelihood_of`` says which (``log p(x)``, ``log p(x | y)`` or ``log p(x | c)``). ``kl_per_dim``,
    ``active_units`` and ``probe_accuracy`` come from :func:`vaekit.probes.split_stats`, the function the
    report shows them from. ``overrides`` are dotted
    ``data.*`` / ``eval.*`` settings (evaluate on other data of the same shape). When ``write``, writes
    the result atomically to ``out`` (default: ``eval.json`` in the run directory), whose folder is
    probed for writability before anything is computed.
    """
    from vaekit import probes
    from vaekit.checkpoint import choose_checkpoint, load_model, run_dir_of
    from vaekit.data import load_run_data
    from vaekit.devices import pick_device
    from vaekit.fileio import atomic_write_text, check_writable
    from vaekit.scoring import evaluate_split

    t0 = time.perf_counter()
    if precision not in PRECISIONS:
        raise VaekitError(f"--precision must be one of {', '.join(PRECISIONS)} (argument precision in Python), "
                          f"got '{precision}'")
    dev = pick_device(device)
    choice = choose_checkpoint(path)  # which checkpoint, and why when it is not the best one asked for
    ckpt = choice.path
    run_dir = run_dir_of(path)
    out = Path(out) if out is not None else run_dir / "eval.json"
    if write:  # before minutes of computing: a read-only run needs out= (--out FILE) elsewhere
        check_writable(out, "--out FILE (out= in evaluate_run)")
    model, config, meta = load_model(ckpt, dev)
    config = _eval_config(config, overrides)
    ec = config.eval
    k = _check_positive("k", ec.k if k is None else k)
    chunk = _check_positive("chunk", ec.chunk if chunk is None else chunk)
    batch_size = _check_positive("batch_size", ec.batch_size if batch_size is None else batch_size)
    repeats = _check_positive("repeats", ec.repeats if repeats is None else repeats)
    naive_k = _check_positive("naive_k", ec.naive_k if naive_k is None else naive_k)

    config, data = load_run_data(config, meta, overrides)
    split_name = "test" if len(data.test) else "val"
    split = getattr(data, split_name)
    if len(split) == 0:
        raise VaekitError("the data have no test or validation examples; set --data.test_fraction 0.1")
    files = data.info.get("split_files") or {}
    scored = files.get(split_name) or files.get("train") or {}  # the file holding the scored rows (absolute)
    dims = math.prod(model.event_shape)
    is_vae = model.posterior.has_density  # a point-mass code (the AE) has no ELBO or likelihood
    d = model.latent_dim
    warnings: list[str] = ([choice.warning] if choice.warning else []) + list(data.info.get("warnings", []))

    # load_run_data checked these data (and recorded any warning): no second check; eval.threads as train.threads
    with trusted(model), following_load(ec.threads) as threads:
        terms = evaluate_split(model, split, batch_size, seed, n_samples=ELBO_SAMPLES)
        stats = probes.split_stats(model, data, split_name, seed=seed)  # the report shows the same numbers
        if (msg := stats.warning(config.model.likelihood, data.info.get("prep"))) is not None:
            warnings.append(msg)
        condition = model.schema.condition  # 'none' for an unconditional model

        result: dict[str, Any] = {
            "run": str(run_dir), "checkpoint": ckpt.name, "split": split_name, "data": scored.get("path") or
            config.data.name, "data_fingerprint": scored.get("fingerprint"), "n_examples": len(split),
            "data_split": config.data.split, "split_detail": data.info.get("split_detail"),
            "dims": dims, "latent_dim": d, "k": k, "naive_k": naive_k,
            "checkpoint_role": choice.role,  # 'best', 'last (best step-... is missing)', 'given', ...
            "repeats": repeats, "precision": precision, "seed": seed,
            "elbo_nats": terms["elbo"] if is_vae else None, "recon_nats": terms["recon"],
            "kl_nats": terms["kl"] if is_vae else None,
            "kl_per_dim": stats.kl_per_dim.tolist() if is_vae and stats.kl_per_dim is not None else None,
            "active_units": stats.n_active, "probe_accuracy": stats.probe,
            "conditional": condition, "log_likelihood_of": LIKELIHOOD_OF[condition],
            "threads": threads,  # torch's intra-op threads at the start (eval.threads)
        }
        levels = getattr(model, "level_names", ())  # a hierarchy: KL (Monte Carlo) and active units per level
        if levels:
            d_level = d // len(levels)
            result["kl_levels_nats"] = {lv: terms[f"kl_{lv}"] for lv in levels}
            active = stats.variances > probes.ACTIVE_THRESHOLD  # (2d,) bool
            result["active_units_levels"] = {lv: int(active[j * d_level:(j + 1) * d_level].sum())
                                             for j, lv in enumerate(levels)}
        if is_vae:
            # only whole (chunk x batch_size) blocks compile: k < chunk or fewer rows than a batch leaves none
            compiled = (use_compile(ec.compile, len(split), k * repeats, dev, precision)
                        and compilable(model, precision) and k >= chunk and len(split) >= batch_size)
            runs = [split_log_likelihood(model, split, k, chunk, batch_size, seed + r * REPEAT_SEED_STRIDE,
                                         precision=precision, compile=compiled) for r in range(repeats)]
            ll = torch.stack(runs).mean(0)  # per point: average of the repeats' k-sample estimates
            mean_ll = float(ll.mean())
            bpd, convention = bits_per_dim_convention(data.info["prep"], mean_ll, dims)
            per_dim, per_dim_of = _nats_per_dim(mean_ll, dims, split, data.info["prep"])
            naive = split_log_likelihood(model, split, naive_k, chunk, batch_size, seed + NAIVE_SEED_OFFSET,
                                         proposal="prior", precision=precision)  # 1/5 the work: eager
            result.update({
                "compiled": compiled and compile_failure() is None,
                "log_likelihood_nats": mean_ll,
                "log_likelihood_se": standard_error(ll),
                "log_likelihood_mc_se": standard_error(torch.stack([r.mean() for r in runs])) if repeats > 1 else None,
                "nats_per_dim": per_dim, "nats_per_dim_of": per_dim_of,
                "bits_per_dim": bpd,
                "bits_per_dim_convention": convention if bpd is not None else None,
                "bits_per_dim_note": None if bpd is not None else convention,
                "naive_log_likelihood_nats": float(naive.mean()),
                "naive_log_likelihood_se": standard_error(naive),
            })
            if (msg := loose_proposal_warning(ll, naive)) is not None:
                warnings.append(msg)
            if compiled and (failure := compile_failure()) is not None:
                warnings.append(f"compiling the evaluation block failed ({failure}); evaluated eagerly, the same "
                                "estimate, slower")
        else:
            result.update(dict.fromkeys(("log_likelihood_nats", "log_likelihood_se", "log_likelihood_mc_se",
                                         "nats_per_dim", "nats_per_dim_of", "bits_per_dim",
                                         "naive_log_likelihood_nats",
                                         "naive_log_likelihood_se", "bits_per_dim_convention")))
            result["bits_per_dim_note"] = "null: an autoencoder has no likelihood"
            result["compiled"] = False
            warnings.append("an autoencoder has no likelihood: the likelihood keys are null (train with "
                            "--model.kind vae for log p(x))")
    if data.rec is not None:  # a recommender: the paper's ranking metrics beside the baselines, same users
        from vaekit.recsys.harness import json_table, model_label, ranking_table
        from vaekit.recsys.scores import recommendation_scores

        with following_load(ec.threads):  # on the free cores too, as the likelihood above
            table = ranking_table({model_label(model): lambda rows: recommendation_scores(model, rows)},
                                  data.rec.data, split_name)
        result["ranking"] = json_table(table)
    result["warnings"] = warnings
    result["notes"] = list(data.info.get("notes", []))
    result["seconds"] = time.perf_counter() - t0
    if write:
        atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    return result
