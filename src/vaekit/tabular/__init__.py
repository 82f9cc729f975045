"""Mixed-type tables: column types, a saved schema, missing values as a mask, and the ``mixed`` likelihood.

Public API (docs/tables.md): :func:`infer_schema`, :class:`TableSchema`, :func:`encode_table`,
:func:`decode_table`, :func:`table_bundle`, :func:`model_config`, :func:`schema_of_run`. Imputation and
row log-likelihoods are in :mod:`vaekit.imputation` (they need a trained model)."""

from __future__ import annotations

from typing import Any

from vaekit.tabular.bundle import load_table_data, schema_of_run, table_bundle
from vaekit.tabular.columns import MAX_COUNT, MISSING, TYPES, infer_type, is_missing, parse_column_types
from vaekit.tabular.encode import decode_columns, decode_table, encode_table
from vaekit.tabular.schema import ColumnSpec, TableSchema, infer_schema
from vaekit.tabular.table import Cells, read_table, write_table

__all__ = ["MAX_COUNT", "MISSING", "TYPES", "Cells", "ColumnSpec", "TableSchema", "decode_columns", "decode_table",
           "encode_table", "infer_schema", "infer_type", "is_missing", "load_table_data", "model_config",
           "parse_column_types", "read_table", "schema_of_run", "table_bundle", "write_table"]


def model_config(schema: TableSchema, **model_fields: Any) -> Any:
    """A :class:`vaekit.config.ModelConfig` for ``schema``: likelihood ``mixed`` with the schema's column layout,
    plus any other model fields (latent_dim, hidden, variance, ...)."""
    from vaekit.config import ModelConfig

    return ModelConfig(likelihood="mixed", columns=schema.model_columns, **model_fields)
