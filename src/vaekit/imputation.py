"""Filling the missing cells of a table with a model trained on it (``model.likelihood mixed``), and the
importance-sampled log-likelihood of its rows.

For each row, K draws z_k ~ q(z | x_obs) give importance weights w_k proportional to
p(x_obs | z_k) p(z_k) / q(z_k | x_obs) (:func:`vaekit.bounds.log_weights`: the one likelihood path, which
scores only the observed cells). Single imputation (``draws=0``) fills a missing cell with the weighted
predictive mean sum_k w_k E[x | z_k]: real columns that mean, count columns it rounded, binary and
categorical columns their most probable value under the weighted probabilities (the mode). Multiple
imputation (``draws=m``) is sampling importance resampling as in MIWAE (Mattei & Frellsen 2019): for each
draw, pick z_k with probability w_k, then draw x ~ p(x | z_k). Observed cells are copied unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vaekit.batch import Batch
from vaekit.bounds import log_weights
from vaekit.errors import VaekitError
from vaekit.tabular import TableSchema, schema_of_run
from vaekit.tabular.encode import assemble, cells_of, decode_columns, encode_table, observed_of
from vaekit.tabular.table import Cells, write_table

__all__ = ["impute", "impute_file", "row_log_likelihood"]


def _model_and_schema(run_or_model: Any, schema: TableSchema | None) -> tuple[Any, TableSchema]:
    if isinstance(run_or_model, (str, Path)):
        from vaekit.checkpoint import load_model

        model, _, meta = load_model(run_or_model)
        return model, schema if schema is not None else schema_of_run(meta)
    if schema is None:
        raise VaekitError("impute needs the table's schema with a model: pass schema= (vaekit.tabular.infer_schema "
                          "of the training table), or give the run directory instead of the model")
    if getattr(run_or_model.config, "likelihood", "") != "mixed":
        raise VaekitError("impute needs a model trained on a table (model.likelihood mixed); train one with "
                          "--model.likelihood mixed")
    if tuple(run_or_model.config.columns) != schema.model_columns:
        raise VaekitError(f"the schema's columns {schema.model_columns} are not the model's "
                          f"{run_or_model.config.columns}; pass the schema the model was trained with")
    return run_or_model, schema


def _check(k: int, draws: int) -> None:
    if k < 1:
        raise VaekitError(f"k (importance samples per row) must be >= 1, got {k}")
    if draws < 0:
        raise VaekitError(f"draws must be >= 0 (0 = one filled table), got {draws}")


@torch.no_grad()
def _filled_means(model: Any, batch: Batch, k: int, draws: int) -> list[Tensor]:
    """(b, W) decoder-mean tables: one (weighted predictive mean) for draws = 0, else ``draws`` resampled draws."""
    q_z = model.encode(batch)
    z = q_z.sample((k,))  # (k, b, d)
    log_w = log_weights(model, batch, k, q_z=q_z, z=z)  # (k, b): observed cells only
    w = torch.softmax(log_w, 0)
    p_x = model.decode(z)
    if draws == 0:
        return [(w[..., None] * p_x.mean).sum(0)]
    out = []
    cols = torch.arange(batch.x.shape[0], device=w.device)
    for _ in range(draws):
        pick = torch.multinomial(w.T, 1).squeeze(1)  # (b,): z_k chosen with probability w_k
        out.append(p_x.sample()[pick, cols])
    return out


def impute(run_or_model: Any, table: Any, *, schema: TableSchema | None = None, draws: int = 0, k: int = 200,
           seed: int = 0, batch_size: int = 256) -> Any:
    """``table`` (DataFrame, (n, d) array, rows, or a CSV path) with every missing cell filled (module docstring).

    ``run_or_model``: a run directory (its schema is read from the run) or a trained model with ``schema``.
    ``draws=0``: one filled table; ``draws=m``: a list of m filled tables (multiple imputation). ``k``:
    importance samples per row. A DataFrame comes back as a DataFrame (same index), anything else as an array
    (float64 when every cell is a number, else object). Observed cells are the input's own values."""
    _check(k, draws)
    model, schema = _model_and_schema(run_or_model, schema)
    cells = cells_of(schema, table)
    tables = _impute_cells(model, schema, cells, draws, k, seed, batch_size)
    out = [assemble(schema.names, cols, "frame" if cells.kind == "frame" else "array", cells.index) for cols in tables]
    return out[0] if draws == 0 else out


def _impute_cells(model: Any, schema: TableSchema, cells: Cells, draws: int, k: int, seed: int,
                  batch_size: int) -> list[list[list[Any]]]:
    """Filled columns for each output table (1 for draws = 0)."""
    model.eval()
    seen = observed_of(schema, cells)
    batch = encode_table(schema, cells)
    device = next(model.parameters()).device
    n = cells.n_rows
    means: list[list[Tensor]] = [[] for _ in range(max(draws, 1))]
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, n, batch_size):
            sl = slice(start, min(start + batch_size, n))
            assert batch.mask is not None
            part = Batch(batch.x[sl].to(device), mask=batch.mask[sl].to(device))
            for m, t in enumerate(_filled_means(model, part, k, draws)):
                means[m].append(t.cpu())
    tables = []
    for chunks in means:
        decoded = decode_columns(schema, torch.cat(chunks) if chunks else torch.zeros(0, schema.width))
        tables.append([[col[i] if seen[i, j] else dec[i] for i in range(n)]
                       for j, (col, dec) in enumerate(zip(cells.columns, decoded, strict=True))])
    return tables


def draw_paths(out: str | Path, draws: int) -> list[Path]:
    """Where ``vaekit impute --draws m`` writes: ``filled.csv`` -> ``filled_1.csv`` ... ``filled_m.csv``."""
    out = Path(out)
    if draws == 0:
        return [out]
    return [out.with_name(f"{out.stem}_{i}{out.suffix}") for i in range(1, draws + 1)]


def impute_file(run: str | Path, input: str | Path, out: str | Path, *, draws: int = 0, k: int = 200,
                seed: int = 0) -> list[Path]:
    """``vaekit impute``: read the table ``input``, fill it with the run's model, write ``out`` (or the m
    files of :func:`draw_paths`) atomically; observed cells keep their text exactly. Returns the paths."""
    _check(k, draws)
    if Path(out).expanduser().resolve() == Path(input).expanduser().resolve():
        raise VaekitError(f"--out {out} is the input file; write the filled table to another file")
    model, schema = _model_and_schema(run, None)
    cells = cells_of(schema, Path(input))
    tables = _impute_cells(model, schema, cells, draws, k, seed, 256)
    return [write_table(p, schema.names, cols) for p, cols in zip(draw_paths(out, draws), tables, strict=True)]


@torch.no_grad()
def row_log_likelihood(model: Any, schema: TableSchema, table: Any, k: int = 200, seed: int | None = 0,
                       batch_size: int = 64) -> np.ndarray:
    """Importance-sampled log p(x_obs) of each row of ``table``, (n,) float64, nats in the data's units
    (observed cells only; :func:`vaekit.evaluate.log_likelihood` with the rows' mask)."""
    from vaekit.evaluate import log_likelihood

    _model_and_schema(model, schema)
    batch = encode_table(schema, table)
    model.eval()
    out = log_likelihood(model, batch, k=k, chunk=min(k, 250), batch_size=batch_size, seed=seed)
    return out.detach().cpu().numpy().astype(np.float64)
