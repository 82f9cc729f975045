"""``preprocessing.json``: what a program serving the exported graphs must know that is not in them.

Inside the graphs (nothing to do at the other end): the model's standardisation of x by its training
statistics (``data.scale standardize`` / Gaussian ``unit``: ``data_loc``, ``data_scale``), the encoder's
``input_norm`` (``input_dropout`` is a training-time noise: absent, as in eval mode), a label's one-hot,
the covariates' standardisation, and the likelihood's map back to the data's units.

Beside them (this record): how the data files' values become the model's input x (``input``: the affine
map ``a * value + b``, binarisation and dequantisation conventions, the training range), the event shape,
latent size, likelihood and posterior, every graph input and output with its shape and units, the
condition, a recommender's item vocabulary, and the onnxruntime-vs-PyTorch check made at export time.
Format: one JSON object, ``"format": "vaekit-onnx"``, ``"version": 1``.
"""

from __future__ import annotations

from typing import Any

from vaekit import __version__

FORMAT, VERSION = "vaekit-onnx", 1

_POSTERIOR_OUT = {
    "loc": "posterior mean E[z|x] (n, d)",
    "scale": "posterior standard deviations (n, d): q(z|x) = N(loc, diag scale^2)",
    "scale_tril": "lower-triangular Cholesky factor L (n, d, d): q(z|x) = N(loc, L L^T)",
    "code": "the autoencoder's code z = f(x) (n, d)",
}
_LIKELIHOOD_OUT = {
    ("bernoulli", "logits"): "logits of p(x_i = 1 | z), (n, *event_shape)",
    ("bernoulli", "mean"): "sigmoid(logits): the probability of a 1 per element, (n, *event_shape)",
    ("gaussian", "mean"): "mean of p(x|z) in the model's input units, (n, *event_shape)",
    ("gaussian", "scale"): "standard deviation of p(x|z) in the model's input units, (n, *event_shape)",
    ("multinomial", "logits"): "logits over the items (n, I); log softmax = the items' log-probabilities",
    ("multinomial", "mean"): "softmax(logits): the items' probabilities, summing to 1 per row, (n, I)",
}


def _family(likelihood: str) -> str:
    return "gaussian" if likelihood.startswith("gaussian") else likelihood


def _input_record(meta: dict[str, Any], likelihood: str) -> dict[str, Any]:
    """How a data file's values become x (the model's input units), from the run's recorded preprocessing."""
    data = meta.get("data") or {}
    prep = data.get("prep") or {}
    a, b = (float(v) for v in prep.get("affine") or data.get("affine") or [1.0, 0.0])
    binarize = str(prep.get("binarize") or data.get("binarize") or "none")
    dequantize = str(prep.get("dequantize") or data.get("dequantize") or "none")
    detail = prep.get("scale_detail") or data.get("scale_detail") or ""
    if (a, b) != (1.0, 0.0):
        steps = [f"x = {a:.10g} * value + {b:.10g}" + (f" ({detail})" if detail else "")]
    else:
        steps = ["x = the data's values as stored" + (f" (data.scale: {detail}; inside the graph)" if detail else "")]
    if binarize == "threshold":
        steps.append(f"then x = (x > {float(prep.get('threshold', 0.5)):g}) as 0/1")
    elif binarize in ("dynamic", "static"):
        steps.append(f"then 0/1 values: the model was trained on Bernoulli draws of x (data.binarize {binarize}); "
                     "give 0/1 draws, or the values in [0, 1] themselves for their expected code")
    if dequantize == "uniform":
        steps.append("the model was trained on integer values plus U(0, 1) noise (data.dequantize uniform): add "
                     "the noise to score densities, not to embed or generate")
    if _family(likelihood) == "multinomial":
        steps.append("one row per user: counts (1.0 per interaction) over the items in the vocabulary's order")
    return {
        "affine": [a, b],
        "binarize": binarize,
        **({"threshold": float(prep.get("threshold", 0.5))} if binarize == "threshold" else {}),
        "dequantize": dequantize,
        "value_range": prep.get("value_range"),
        "input_range": prep.get("input_range") or data.get("input_range"),
        "input_binary": bool(prep.get("input_binary", data.get("input_binary", likelihood == "bernoulli"))),
        "scale": prep.get("scale") or data.get("scale"),
        "steps": steps,
    }


def _condition_record(model: Any, covariates: dict[str, Any] | None) -> dict[str, Any]:
    schema = model.schema
    if schema.condition == "label":
        return {"kind": "label", "input": "y", "dtype": "int64", "shape": ["batch"], "n_classes": schema.n_classes,
                "meaning": f"integer class labels 0..{schema.n_classes - 1}, one-hot inside the graph (the graph "
                           "does not check the range: a label outside it gives an all-zero condition)"}
    if schema.condition == "covariates":
        cov = covariates or {}
        return {"kind": "covariates", "input": "c", "dtype": "float32", "shape": ["batch", schema.cond_dim],
                "columns": list(cov.get("columns") or []), "loc": list(cov.get("loc") or []),
                "scale": list(cov.get("scale") or []),
                "meaning": "covariates in the data's own units (raw, as in the data file); the graph standardises "
                           "them as (c - loc) / scale with the training statistics recorded here"}
    return {"kind": "none"}


def _io(name: str, dtype: str, shape: list[Any], meaning: str) -> dict[str, Any]:
    return {"name": name, "dtype": dtype, "shape": shape, "meaning": meaning}


def record(model: Any, meta: dict[str, Any], run: str, checkpoint: str, encoder_outputs: list[str],
           decoder_outputs: list[str], covariates: dict[str, Any] | None, check: dict[str, Any],
           items: list[Any] | None = None) -> dict[str, Any]:
    """The preprocessing.json object of an export of ``model`` (see the module doc)."""
    config = model.config
    event = [int(s) for s in model.event_shape]
    d = int(model.latent_dim)
    likelihood = str(config.likelihood)
    fam = _family(likelihood)
    cond = _condition_record(model, covariates)
    cond_in = [] if cond["kind"] == "none" else [_io(cond["input"], cond["dtype"], cond["shape"], cond["meaning"])]
    inside = []
    if model.standardised:
        inside.append("the model's data transform (x - data_loc) / data_scale (data.scale standardize: the training "
                      "mean and std; unit: the range's low end and width)")
    if config.input_norm != "none":
        inside.append(f"the encoder's input normalisation (model.input_norm {config.input_norm})")
    if config.input_dropout > 0:
        inside.append(f"no input dropout (model.input_dropout {config.input_dropout:g} is training-time only)")
    if cond["kind"] == "label":
        inside.append("the label's one-hot")
    if cond["kind"] == "covariates":
        inside.append("the covariates' standardisation")
    inside.append("the likelihood's parameters in the model's input units (the decoder's scaled outputs mapped back)")
    out: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "vaekit": __version__,
        "run": run,
        "checkpoint": checkpoint,
        "model": {"kind": config.kind, "latent_dim": d, "event_shape": event, "likelihood": likelihood,
                  "posterior": "point" if config.kind == "ae" else config.posterior, "encoder": config.encoder,
                  "decoder": config.decoder, "prior": config.prior, "input_norm": config.input_norm,
                  "input_dropout": config.input_dropout, "condition": model.schema.condition},
        "encoder": {"file": "encoder.onnx",
                    "inputs": [_io("x", "float32", ["batch", *event], "the model's input (see input.steps)"),
                               *cond_in],
                    "outputs": [_io(n, "float32", ["batch", d, d] if n == "scale_tril" else ["batch", d],
                                    _POSTERIOR_OUT[n]) for n in encoder_outputs]},
        "decoder": {"file": "decoder.onnx",
                    "inputs": [_io("z", "float32", ["batch", d], "latent codes, e.g. the prior's draws N(0, I)"),
                               *cond_in],
                    "outputs": [_io(n, "float32", ["batch", *event], _LIKELIHOOD_OUT.get((fam, n), n))
                                for n in decoder_outputs]},
        "inside_graph": inside,
        "input": _input_record(meta, likelihood),
        "condition": cond,
        "check": check,
    }
    if fam == "multinomial":
        prep = (meta.get("data") or {}).get("prep") or {}
        out["items"] = {"n_items": prep.get("n_items", event[0]), "sha256": prep.get("items_sha256"),
                        "ids": items, "meaning": "item id of each column of x and of the decoder's outputs"}
    return out
