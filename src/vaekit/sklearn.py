"""vaekit as a scikit-learn estimator: :class:`VAE`, a transformer that replaces PCA in a Pipeline.

``VAE(latent_dim=2).fit(X)`` trains vaekit's model in memory (:func:`vaekit.train.runs.fit` with
``runs_root=None``: no run directory unless ``run_dir`` is given) on X (n, p) as vaekit prepares any
array: binary data -> Bernoulli, other values -> a Gaussian with learned variance on standardised columns
(``likelihood`` overrides it). Then, for X (n, p) in the fitted data's units:

* ``transform(X)`` -> (n, latent_dim) float64 posterior means E[z | x];
* ``inverse_transform(Z)`` -> (n, p) float64 decoder means E[x | z], in X's units;
* ``score_samples(X)`` -> (n,) float64 importance-sampled log p(x) in nats per row (``k`` samples from
  q(z|x), :func:`vaekit.evaluate.log_likelihood`: the one likelihood path); ``score(X)`` is their mean,
  so GridSearchCV without ``scoring`` picks the model with the highest held-out log-likelihood. The
  importance samples are common to every row (one standard-normal draw of (k, d) from ``random_state``),
  so a row's score does not depend on which other rows are scored with it;
* ``sample(n, random_state)`` -> (n, p) draws x ~ p(x|z), z ~ p(z);
* ``get_feature_names_out()`` -> ``vae0 .. vae{latent_dim-1}``.

``save(path)`` writes a vaekit checkpoint directory (safetensors weights + meta.json; no pickled code),
which :meth:`VAE.load` (and :func:`vaekit.load`, for the bare model) reads; ``pickle`` and
``sklearn.base.clone`` work too (a pickle holds the same weights and metadata, never the model's code).
Documentation: docs/sklearn.md.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from vaekit import checkpoint as ckpt
from vaekit.batch import Batch
from vaekit.config import Config, ModelConfig, TrainConfig, config_from_dict
from vaekit.data.config import DataConfig
from vaekit.errors import VaekitError
from vaekit.inputs import spec_from_meta, trusted
from vaekit.train.callbacks import Callback

if TYPE_CHECKING:
    from vaekit.tabular import TableSchema

__all__ = ["VAE"]

#: Offset of the importance-sampling draws of ``score_samples`` from the training seed.
SCORE_SEED_OFFSET = 1_000_033
#: The key of the estimator's own record in a saved checkpoint's meta.json.
META_KEY = "sklearn"


class _EpochPrinter(Callback):
    """Prints one line per epoch (``verbose`` > 0): the epoch and its training loss in nats per row."""

    def on_epoch_end(self, trainer: Any, metrics: dict[str, Any]) -> None:
        print(f"[VAE] epoch {metrics['epoch']}: train loss {metrics['train_loss']:.4f} nats/row", flush=True)


class VAE(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """A variational autoencoder as a scikit-learn transformer (see the module docstring).

    Parameters mirror vaekit's config (docs/config.md): ``latent_dim``, ``hidden``, ``activation``,
    ``likelihood`` ('auto', 'bernoulli', 'gaussian', 'gaussian-learned'), ``posterior`` ('diag', 'full'),
    ``prior`` ('standard-normal', 'mog', 'vamp'), ``prior_components``, ``levels`` (2: the two-level
    hierarchy, whose codes are [z1, z2], 2 * ``latent_dim`` wide), ``sigma`` and ``variance`` are
    ``model.*``; ``epochs``, ``batch_size`` (capped at the number of rows), ``lr``, ``weight_decay``, ``beta``,
    ``warmup_steps``, ``n_samples`` and ``objective`` are
    ``train.*``; ``k`` is the number of importance samples per row of :meth:`score_samples` (``eval.k``).
    ``random_state``: an int seeds everything (the training run's ``train.seed``, the score's draws), so
    two fits give identical models; None draws a fresh seed per fit. ``device``: 'cpu', 'cuda' or 'auto'.
    ``run_dir``: None trains in memory; a path makes that run directory (checkpoints, metrics.jsonl,
    config.toml) as ``vaekit train`` does. ``verbose`` > 0 prints the data decisions and one line per epoch.
    Parameters are stored as given and checked by :meth:`fit` (scikit-learn's contract).

    Fitted attributes: ``model_`` (the trained :class:`vaekit.model.VAE`, in eval mode), ``config_`` (the
    resolved :class:`vaekit.config.Config`), ``likelihood_`` (the likelihood used), ``n_features_in_``,
    ``feature_names_in_`` (DataFrames with string column names), ``seed_`` (the seed used),
    ``history_`` (the training epochs' metric rows).
    """

    schema_: TableSchema | None

    def __init__(self, latent_dim: int = 2, hidden: Sequence[int] = (64,), activation: str = "relu",
                 likelihood: str = "auto", posterior: str = "diag", prior: str = "standard-normal",
                 prior_components: int = 10, levels: int = 1, sigma: float = 0.1, variance: str = "per-dim",
                 epochs: int = 50, batch_size: int = 64,
                 lr: float = 1e-3, weight_decay: float = 0.0, beta: float = 1.0, warmup_steps: int = 0,
                 n_samples: int = 1, objective: str = "elbo", k: int = 100, column_types: Any = None,
                 unknown_categories: str = "error", random_state: Any = None, device: str = "cpu",
                 run_dir: str | Path | None = None, verbose: int = 0) -> None:
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.activation = activation
        self.likelihood = likelihood
        self.posterior = posterior
        self.prior = prior
        self.prior_components = prior_components
        self.levels = levels
        self.sigma = sigma
        self.variance = variance
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.beta = beta
        self.warmup_steps = warmup_steps
        self.n_samples = n_samples
        self.objective = objective
        self.k = k
        self.column_types = column_types
        self.unknown_categories = unknown_categories
        self.random_state = random_state
        self.device = device
        self.run_dir = run_dir
        self.verbose = verbose

    # ------------------------------------------------------------------------------------ tags
    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64"]  # outputs are float64 whatever the input dtype
        tags.non_deterministic = False  # an int random_state fixes every draw (fit, score, sample)
        tags.input_tags.allow_nan = True  # missing cells make a table: masked, never scored or filled silently
        tags.input_tags.string = True  # text columns are categorical
        tags.input_tags.categorical = True
        return tags

    # ------------------------------------------------------------------------------------ fitting
    def _config(self, seed: int, n_rows: int, columns: tuple[str, ...] = ()) -> Config:
        """The vaekit config these parameters stand for (vaekit's own one-line errors for bad values);
        ``columns``: a table's column layout (``model.columns`` of the ``mixed`` likelihood)."""
        if isinstance(self.hidden, (str, bytes)) or not isinstance(self.hidden, Sequence):
            raise VaekitError(f"hidden must be a sequence of layer widths such as (64,) or (), got {self.hidden!r}")
        model = ModelConfig(latent_dim=_integer(self.latent_dim, "latent_dim"),
                            hidden=tuple(_integer(h, "hidden") for h in self.hidden), activation=self.activation,
                            likelihood="mixed" if columns else self.likelihood, posterior=self.posterior,
                            prior=self.prior, prior_components=_integer(self.prior_components, "prior_components"),
                            levels=_integer(self.levels, "levels"), sigma=float(self.sigma), variance=self.variance,
                            columns=columns)
        batch = _integer(self.batch_size, "batch_size")
        train = TrainConfig(epochs=_integer(self.epochs, "epochs"), batch_size=min(batch, n_rows) if batch >= 1
                            else batch, lr=float(self.lr), weight_decay=float(self.weight_decay),
                            beta=float(self.beta), warmup_steps=_integer(self.warmup_steps, "warmup_steps"),
                            n_samples=_integer(self.n_samples, "n_samples"), objective=self.objective, seed=seed,
                            device=self.device)
        name = Path(self.run_dir).name if self.run_dir is not None else "sklearn-vae"
        # every row trains: no validation or test split (the selected model is the last epoch's)
        data = DataConfig(val_fraction=0.0, test_fraction=0.0, seed=seed)
        return Config(name=name, data=data, model=model, train=train)

    def fit(self, X: Any, y: Any = None) -> VAE:
        """Train on X (n, p): a numpy array or a DataFrame; ``y`` is ignored. Numeric data without missing
        values train as an array (Bernoulli for 0/1 data, else a learned-variance Gaussian on standardised
        columns); a table (text or categorical columns, missing cells, ``column_types``, or
        ``likelihood='mixed'``) trains the per-column ``mixed`` likelihood of :mod:`vaekit.tabular` with
        the missing cells masked (``schema_`` says each column's type)."""
        from vaekit.train.runs import fit as fit_run

        if _integer(self.k, "k") < 1:
            raise VaekitError(f"k (importance samples per row) must be >= 1, got {self.k}")
        seed = _seed(self.random_state)
        if self._is_table(X):
            table = self._table(X, reset=True)
            data, config = self._table_data(table, seed)
        else:
            arr = validate_data(self, X, dtype=[np.float64, np.float32])
            config = self._config(seed, len(arr))
            data = _array_bundle(arr, config)
            self.schema_ = None
        notify = _print_notice if self.verbose else None
        callbacks: list[Callback] = [_EpochPrinter()] if self.verbose else []
        runs_root = None if self.run_dir is None else Path(self.run_dir).parent
        _, trainer = fit_run(config, runs_root=runs_root, callbacks=callbacks, data=data, notify=notify)
        model = trainer.model
        model.load_state_dict(trainer.best_state_dict())  # no validation split: the last epoch's weights
        self._set_model(model)
        self.config_ = trainer.config
        self.likelihood_ = trainer.config.model.likelihood
        self.seed_ = seed
        self.history_ = list(trainer.metrics)
        self._data_info = _json_safe(data.info)
        self._n_features_out = int(model.latent_dim)  # levels = 2: [z1, z2], 2 * latent_dim
        self._frame = hasattr(X, "columns") and hasattr(X, "iloc")
        return self

    def _is_table(self, X: Any) -> bool:
        """True when X is trained as a mixed-type table: ``likelihood='mixed'`` or ``column_types`` asked for
        it, or (``likelihood='auto'``) X has a text, categorical or boolean column or a missing cell."""
        import scipy.sparse

        if self.likelihood == "mixed" or self.column_types is not None:
            return True
        if self.likelihood != "auto" or scipy.sparse.issparse(X):
            return False
        dtypes = getattr(X, "dtypes", None)
        if dtypes is not None and hasattr(X, "isna"):  # a DataFrame: text, category, bool columns or holes
            kinds = list(dtypes) if hasattr(dtypes, "__iter__") else [dtypes]
            return any(getattr(t, "kind", "O") not in "iuf" for t in kinds) or bool(X.isna().to_numpy().any())
        arr = np.asarray(X)
        if arr.dtype.kind == "O":
            return any(not isinstance(v, numbers.Real) or v != v for v in arr.ravel())  # text, None, NaN
        if arr.dtype.kind in "US":
            return True
        return arr.dtype.kind == "f" and bool(np.isnan(arr).any())

    def _table(self, X: Any, reset: bool) -> Any:
        """X checked as a table (width and names against the fit; NaN allowed, inf refused): the DataFrame
        itself, or the checked (n, p) array."""
        arr = validate_data(self, X, dtype=None, ensure_all_finite="allow-nan", reset=reset)
        if arr.dtype.kind == "f" and np.isinf(arr).any():
            raise ValueError("Input X contains infinity; a missing cell is NaN or empty, never inf")
        return X if hasattr(X, "columns") and hasattr(X, "iloc") else arr

    def _table_data(self, table: Any, seed: int) -> tuple[Any, Config]:
        """The bundle of a table (every row trains) and its config (``mixed`` with the schema's layout)."""
        from vaekit.tabular import infer_schema, table_bundle

        names = [str(c) for c in self.feature_names_in_] if hasattr(self, "feature_names_in_") else None
        schema = infer_schema(table, self.column_types, names=names, unknown=self.unknown_categories)
        self.schema_ = schema
        data = table_bundle(table, schema)
        return data, self._config(seed, len(data.train), schema.model_columns)

    # ------------------------------------------------------------------------------------ inference
    def _set_model(self, model: Any) -> None:
        """Keep the trained model (``model_``, float32: what :meth:`save` writes) and a float64 copy that
        computes every output, so a row's result does not depend on the rows computed beside it (float32
        matrix products round differently with the batch's size and order)."""
        self.model_ = model.eval()
        self._model64 = copy.deepcopy(model).double().eval()

    def _device(self) -> torch.device:
        return self.model_.data_loc.device

    def _batch(self, X: Any) -> Batch:
        """X (n, p) checked against the fit (width, names, finiteness) as the model reads it, on its device:
        a table's encoded rows with their mask, or an array's values in the model's units (a Bernoulli
        model's min-max scaling applied)."""
        from vaekit.tabular import encode_table

        check_is_fitted(self)
        if self.schema_ is not None:
            batch = encode_table(self.schema_, self._table(X, reset=False)).to(self._device())
            return batch.with_x(batch.x.double())
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        a, b = self._affine()
        x = X.astype(np.float32) if (a, b) == (1.0, 0.0) else (a * X.astype(np.float64) + b).astype(np.float32)
        x64 = np.ascontiguousarray(x, dtype=np.float64)  # the served float32 values; C order: one result per row
        return Batch(torch.from_numpy(x64).to(self._device()))

    def _affine(self) -> tuple[float, float]:
        """(a, b) with served = a * X + b (identity except for a Bernoulli model on non-binary data)."""
        a, b = self._data_info.get("affine", [1.0, 0.0])
        return float(a), float(b)

    def transform(self, X: Any) -> np.ndarray:
        """Posterior means E[z | x]: float64 (n, latent_dim), or (n, 2 latent_dim) = [z1, z2] with ``levels=2``
        (the hierarchy's plug-in mean)."""
        batch = self._batch(X)
        if self.likelihood_ == "bernoulli":
            batch = batch.with_x(batch.x.clamp(0.0, 1.0))  # the encoder reads levels in [0, 1], as in training
        with torch.no_grad(), trusted(self._model64):
            z = self._model64.encode(batch).mean
        return z.double().cpu().numpy()

    def inverse_transform(self, X: Any) -> Any:
        """Decoder means E[x | z] for codes X (n, latent_dim): float64 (n, p) in the fitted data's units. A
        table gives one value per column (real: the mean; count: the rounded mean; binary: 0/1; categorical:
        the most probable level), as a DataFrame when the fit was given one, else an array (object dtype
        when a column holds text)."""
        check_is_fitted(self)
        z = check_array(X, dtype=[np.float64, np.float32])
        d = self._n_features_out
        if z.shape[1] != d:
            raise ValueError(f"X has {z.shape[1]} features, but {type(self).__name__} decodes codes of "
                             f"{d} features (latent_dim, times 2 with levels=2); pass the output of transform")
        with torch.no_grad(), trusted(self._model64):
            x_hat = self._model64.decode(torch.from_numpy(z.astype(np.float64)).to(self._device())).mean
        return self._to_input_units(x_hat)

    def _to_input_units(self, x: torch.Tensor) -> Any:
        """Decoder means or draws (n, *event) in the model's units -> the fitted data's units and kind."""
        if self.schema_ is not None:
            from vaekit.tabular import decode_table

            return decode_table(self.schema_, x, as_frame=self._frame)
        a, b = self._affine()
        out = x.double().cpu().numpy()
        return out if (a, b) == (1.0, 0.0) else (out - b) / a

    def score_samples(self, X: Any) -> np.ndarray:
        """Importance-sampled log p(x) per row: float64 (n,), nats in the fitted data's units, with ``k``
        samples from q(z|x) common to every row (:func:`vaekit.evaluate.log_likelihood`). A table's row scores
        its observed cells only (log p(x_obs)). A Bernoulli model scores 0/1 rows only."""
        from vaekit.evaluate import log_likelihood

        batch = self._batch(X)
        x = batch.x
        if self.likelihood_ == "bernoulli" and not bool(((x == 0) | (x == 1)).all()):
            raise VaekitError("this Bernoulli model scores 0/1 rows only, but X holds other values; binarise X "
                              "(e.g. X > 0.5) or fit with likelihood='gaussian-learned' to score real values")
        n, d, k = len(x), self._n_features_out, int(self.k)
        gen = torch.Generator(self._device()).manual_seed(self.seed_ + SCORE_SEED_OFFSET)
        eps = torch.randn((k, 1, d), generator=gen, device=self._device()).double().expand(k, n, d)
        with trusted(self._model64):
            ll = log_likelihood(self._model64, batch, k=k, chunk=k, batch_size=max(1, min(n, 4096 // k)), eps=eps)
        return ll.numpy()

    def score(self, X: Any, y: Any = None) -> float:
        """The mean of :meth:`score_samples`: average log p(x) in nats per row (higher is better)."""
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples: int = 1, random_state: Any = None) -> Any:
        """``n_samples`` draws x ~ p(x|z), z ~ p(z): float64 (n_samples, p) in the fitted data's units (a
        table: one drawn value per column, as :meth:`inverse_transform` returns them)."""
        check_is_fitted(self)
        n = _integer(n_samples, "n_samples")
        if n < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
        device = self._device()
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad(), \
                trusted(self._model64):
            torch.manual_seed(seed)  # the likelihood's own draw x ~ p(x|z) uses the (forked) global stream
            x = self._model64.sample(n, mean=False, generator=torch.Generator(device).manual_seed(seed))
        return self._to_input_units(x.reshape(n, *self.model_.event_shape))

    def impute(self, X: Any, draws: int = 0) -> Any:
        """X with every missing cell filled by the model (:func:`vaekit.imputation.impute`, ``k`` importance
        samples): the conditional mean / mode (``draws=0``), or a list of ``draws`` multiple-imputation tables
        (importance resampling, as in MIWAE). Observed cells are copied unchanged; the result has X's kind
        (DataFrame or array). Needs a model fitted on a table (:attr:`schema_`)."""
        from vaekit.imputation import impute

        check_is_fitted(self)
        if self.schema_ is None:
            raise VaekitError("this VAE was fitted on a numeric array without missing values, so it has no table "
                              "schema to impute with; fit it on data with missing cells (NaN) or a DataFrame, or "
                              "pass likelihood='mixed'")
        table = self._table(X, reset=False)
        return impute(self._model64, table, schema=self.schema_, draws=_integer(draws, "draws"), k=int(self.k),
                      seed=self.seed_ + SCORE_SEED_OFFSET)

    # ------------------------------------------------------------------------------------ persistence
    def _record(self) -> dict[str, Any]:
        """What rebuilds the fitted estimator besides the weights: meta.json's content."""
        params = {key: _json_param(value) for key, value in self.get_params().items()}
        record: dict[str, Any] = {"params": params, "seed": self.seed_, "n_features_in": self.n_features_in_,
                                  "history": _json_safe(self.history_), "frame": self._frame}
        if hasattr(self, "feature_names_in_"):
            record["feature_names_in"] = [str(c) for c in self.feature_names_in_]
        return {**ckpt.model_meta(self.model_), "data": self._data_info, META_KEY: record}

    def save(self, path: str | Path) -> Path:
        """Write the fitted estimator as a vaekit checkpoint directory at ``path`` (which must not exist):
        model.safetensors + meta.json, never pickled code. :meth:`load` reads it back."""
        check_is_fitted(self)
        return ckpt.save_checkpoint(path, self.model_, self.config_, self._record())

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> VAE:
        """A fitted estimator from a checkpoint written by :meth:`save` (safetensors + JSON only)."""
        model, config, meta = ckpt.load_model(path, device)
        record = meta.get(META_KEY)
        if not isinstance(record, dict) or not isinstance(record.get("params"), dict):
            raise VaekitError(f"{path} is a vaekit checkpoint but not one written by vaekit.sklearn.VAE.save "
                              "(no 'sklearn' record in meta.json); load it with vaekit.load for the bare model")
        return cls._restore(model, config, meta)

    @classmethod
    def _restore(cls, model: Any, config: Config, meta: dict[str, Any]) -> VAE:
        record = meta[META_KEY]
        params = dict(record["params"])
        if isinstance(params.get("hidden"), list):
            params["hidden"] = tuple(params["hidden"])
        est = cls(**params)
        est._set_model(model)
        est.config_ = config
        est.likelihood_ = config.model.likelihood
        est.seed_ = int(record["seed"])
        est.history_ = list(record.get("history", []))
        est.n_features_in_ = int(record["n_features_in"])
        if "feature_names_in" in record:
            est.feature_names_in_ = np.asarray(record["feature_names_in"], dtype=object)
        est._data_info = meta.get("data") or {}
        est._n_features_out = int(model.latent_dim)
        est._frame = bool(record.get("frame", False))
        est.schema_ = None
        if config.model.likelihood == "mixed":
            from vaekit.tabular import schema_of_run

            est.schema_ = schema_of_run(meta)
        return est

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the fitted model as weights (numpy arrays) and the checkpoint's metadata, never as code."""
        state = dict(self.__dict__)
        state.pop("_model64", None)
        model = state.pop("model_", None)
        if model is not None:
            state.pop("config_", None)
            meta = {"config": dataclasses.asdict(self.config_), **self._record()}
            state["_checkpoint"] = {"meta": json.loads(json.dumps(meta)),
                                    "weights": {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()},
                                    "device": str(self._device())}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        saved = state.pop("_checkpoint", None)
        self.__dict__.update(state)
        if saved is not None:
            meta = saved["meta"]
            config = config_from_dict(meta["config"])
            weights = {k: torch.from_numpy(np.array(v)) for k, v in saved["weights"].items()}
            model = _rebuild(config, meta, weights)
            self._set_model(model.to(saved["device"]))
            self.config_ = config


# ---------------------------------------------------------------------------------------- helpers

def _rebuild(config: Config, meta: dict[str, Any], weights: dict[str, torch.Tensor]) -> Any:
    """The model of ``config`` with ``weights`` (as :func:`vaekit.checkpoint.load_model` builds it)."""
    from vaekit.model import build_model
    from vaekit.schema import DataSchema

    schema = DataSchema.from_meta(meta)
    model = build_model(config.model, schema, data_loc=weights.get("data_loc") if schema.standardised else None,
                        data_scale=weights.get("data_scale") if schema.standardised else None,
                        family=str(meta.get("family", "vae")))
    model.load_state_dict(weights, strict=True)
    model.input_spec = spec_from_meta(meta, config.model.likelihood)
    return model


def _array_bundle(x: np.ndarray, config: Config) -> Any:
    """A numeric array (n, p) as vaekit prepares any array (:func:`vaekit.data.preprocess.build`): every row in
    the training split, the likelihood, scaling and binarisation decided from it."""
    from vaekit.data.preprocess import build
    from vaekit.data.raw import RawData

    raw = RawData(x.astype(np.float32), None, info={"source": "in-memory array (vaekit.sklearn.VAE.fit)"})
    return build(raw, config.data, config.model.likelihood, "X (VAE.fit)")


def _integer(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise VaekitError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _seed(random_state: Any) -> int:
    """The training seed: an int random_state itself, else a draw from it (None: from numpy's global RNG)."""
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if not 0 <= int(random_state) < 2**32:
            raise ValueError(f"random_state must be in [0, 2**32), got {random_state}")
        return int(random_state)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def _print_notice(kind: str, message: str) -> None:
    print(f"[VAE] {kind}: {message}", flush=True)


def _json_param(value: Any) -> Any:
    """A constructor parameter as JSON: tuples as lists, paths as strings, a RandomState as None."""
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.random.RandomState):
        return None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    return value


def _json_safe(value: Any) -> Any:
    """``value`` with numpy scalars and arrays as plain JSON values (data.info holds a few)."""
    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))
