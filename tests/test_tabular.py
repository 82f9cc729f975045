"""Tables of mixed types: column-type inference and overrides, the saved schema, encoding rows to the
model's input (values + mask) and back, unseen categories, the config's column types (TOML table and
command line), and training on a table in memory and through ``vaekit train``."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from cli_helpers import run_vaekit

from vaekit.config import Config, TrainConfig, apply_overrides, load_config
from vaekit.errors import VaekitError
from vaekit.tabular import (
    MAX_COUNT,
    TableSchema,
    decode_table,
    encode_table,
    infer_schema,
    infer_type,
    is_missing,
    model_config,
    parse_column_types,
    table_bundle,
)
from vaekit.train.runs import fit


def mixed_table(n: int = 120, seed: int = 0, holes: float = 0.2) -> pd.DataFrame:
    """A table with a real, a categorical (strings), a binary and a count column, correlated through one
    latent factor, with ``holes`` of the cells missing completely at random."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    df = pd.DataFrame({"size": 2.0 * a + 5.0 + 0.1 * rng.normal(size=n),
                       "level": np.where(a > 0.5, "hi", np.where(a < -0.5, "lo", "mid")),
                       "flag": (a + 0.3 * rng.normal(size=n) > 0).astype(int),
                       "n": rng.poisson(np.exp(0.5 * a + 1.0))}).astype(object)
    df = df.mask(rng.random(df.shape) < holes)  # None / NaN in the holes
    return df


@pytest.mark.parametrize(("cells", "kind"), [
    (["a", "b", "1"], "categorical"),
    ([0, 1, 1, 0], "binary"),
    ([True, False], "binary"),
    (["0", "1", "1"], "binary"),
    ([0, 3, 7, MAX_COUNT], "count"),
    (["2", "5"], "count"),
    ([0, 3, MAX_COUNT + 1], "real"),
    ([-1, 2, 3], "real"),
    ([0.5, 1.0], "real"),
    ([1.0, 2.0, 2.0], "count"),
])
def test_column_types_are_inferred_by_the_documented_rules(cells, kind):
    assert infer_type(cells, "c")[0] == kind


def test_missing_cells_are_recognised_in_every_spelling():
    for cell in (None, float("nan"), np.nan, pd.NA, pd.NaT, "", " NA ", "nan", "NULL", "None", "?"):
        assert is_missing(cell), cell
    for cell in (0, 0.0, "0", "a", False):
        assert not is_missing(cell), cell


def test_a_column_with_no_observed_cell_or_an_infinite_value_is_refused():
    with pytest.raises(VaekitError, match="column 'c' has no observed value"):
        infer_schema(np.array([[1.0, None], [2.0, None]], dtype=object), names=["a", "c"])
    with pytest.raises(VaekitError, match="infinite"):
        infer_type([1.0, math.inf], "c")


def test_overrides_by_name_or_index_and_their_errors():
    df = mixed_table()
    schema = infer_schema(df, "n=negbin,flag=categorical")
    assert schema.model_columns == ("real", "categorical:3", "categorical:2", "negbin")
    assert schema.columns[2].categories == (0, 1) and schema.columns[3].reason == "set by data.column_types"
    assert infer_schema(df, {"n": "real"}).columns[3].type == "real"
    assert parse_column_types(("a=real", "b=count")) == {"a": "real", "b": "count"}
    assert parse_column_types({"a": "binary"}) == {"a": "binary"}
    with pytest.raises(VaekitError, match="unknown column type 'float'"):
        parse_column_types("a=float")
    with pytest.raises(VaekitError, match="not NAME=TYPE"):
        parse_column_types("a")
    with pytest.raises(VaekitError, match="'zz', which is not a column"):
        infer_schema(df, "zz=real")
    with pytest.raises(VaekitError, match="column 'level' is real but holds the non-numeric value"):
        infer_schema(df, "level=real")
    with pytest.raises(VaekitError, match="column 'size' is count but holds"):
        infer_schema(df, "size=count")
    numbered = infer_schema(np.array([[1, 0.5], [0, 1.5]], dtype=object), "0=categorical")
    assert numbered.names == ("x0", "x1") and numbered.columns[0].type == "categorical"


def test_schema_is_json_safe_and_round_trips():
    df = mixed_table()
    schema = infer_schema(df, unknown="unknown")
    text = json.dumps(schema.to_dict())
    back = TableSchema.from_dict(json.loads(text))
    assert back == schema
    size = [v for v in df["size"] if not is_missing(v)]
    assert schema.columns[0].loc == pytest.approx(np.mean(size)) and schema.columns[0].scale == pytest.approx(
        np.std(size))
    assert schema.columns[1].categories == ("hi", "lo", "mid", "<unknown>")
    with pytest.raises(VaekitError, match="table schema is invalid"):
        TableSchema.from_dict({"columns": [{"type": "real"}]})


def test_encoding_fills_holes_marks_the_mask_and_decodes_back():
    df = mixed_table(40, seed=1)
    schema = infer_schema(df)
    assert [c.type for c in schema.columns] == ["real", "categorical", "binary", "count"]
    batch = encode_table(schema, df)
    assert batch.x.shape == batch.mask.shape == (40, schema.width) == (40, 1 + 3 + 1 + 1 + 4)
    assert torch.isfinite(batch.x).all()
    observed = ~df.isna().to_numpy()
    value_slot = [0, 1, 4, 5]
    for j, s in enumerate(value_slot):
        np.testing.assert_array_equal(batch.mask[:, s].numpy(), observed[:, j])
        np.testing.assert_array_equal(batch.x[:, schema.n_values + j].numpy(), observed[:, j].astype(np.float32))
    assert batch.mask[:, schema.n_values:].all()
    loc, _ = schema.loc_scale()
    holes = ~observed[:, 0]
    torch.testing.assert_close(batch.x[holes, 0], loc[0].expand(int(holes.sum())))  # filled with the mean
    assert (batch.x[~observed[:, 1], 1:4] == 0).all()
    back = decode_table(schema, batch.x, as_frame=True)
    for j, name in enumerate(schema.names):
        obs = observed[:, j]
        got, want = back[name][obs].tolist(), df[name][obs].tolist()
        if name == "size":
            np.testing.assert_allclose(got, want, rtol=1e-6)
        else:
            assert got == want, name


def test_unseen_category_is_an_error_or_the_unknown_level():
    df = mixed_table(30)
    new = df.head(2).copy()
    new.loc[new.index[0], "level"] = "huge"
    with pytest.raises(VaekitError, match=r"column 'level' has the value 'huge', unseen in training.*"
                                          r"--data.unknown_categories unknown"):
        encode_table(infer_schema(df), new)
    schema = infer_schema(df, unknown="unknown")
    batch = encode_table(schema, new)
    assert batch.x[0, 1 + schema.columns[1].categories.index("<unknown>")] == 1.0


def test_encoding_needs_the_schemas_columns_and_numbers_where_it_has_numbers():
    df = mixed_table(10)
    schema = infer_schema(df)
    with pytest.raises(VaekitError, match="no column 'flag'"):
        encode_table(schema, df.drop(columns="flag"))
    bad = df.copy()
    bad.loc[bad.index[0], "n"] = 2.5
    with pytest.raises(VaekitError, match="column 'n' is count but holds 2.5"):
        encode_table(schema, bad)
    reordered = encode_table(schema, df[["n", "flag", "level", "size"]])
    torch.testing.assert_close(reordered.x, encode_table(schema, df).x)


def test_column_types_from_a_toml_table_a_list_and_the_command_line(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[data]\npath = "t.csv"\n[data.column_types]\nage = "real"\nsex = "categorical"\n')
    assert load_config(path).data.column_types == ("age=real", "sex=categorical")
    path.write_text('[data]\npath = "t.csv"\ncolumn_types = ["age=count"]\n')
    assert load_config(path).data.column_types == ("age=count",)
    cfg = apply_overrides(Config(), {"data.column_types": "age=real,sex=categorical",
                                     "data.unknown_categories": "unknown"})
    assert cfg.data.column_types == ("age=real", "sex=categorical") and cfg.data.unknown_categories == "unknown"
    with pytest.raises(VaekitError, match="data.unknown_categories"):
        apply_overrides(Config(), {"data.unknown_categories": "drop"})


def test_a_table_trains_in_memory_and_scores_only_observed_cells():
    df = mixed_table(200, seed=2)
    schema = infer_schema(df)
    config = Config(model=model_config(schema, latent_dim=2, hidden=(16,)),
                    train=TrainConfig(epochs=2, batch_size=50, device="cpu", seed=3))
    run_dir, trainer = fit(config, runs_root=None, data=table_bundle(df, schema, val=range(150, 200)))
    assert run_dir is None
    model = trainer.model.eval()
    batch = encode_table(schema, df.head(8))
    with torch.no_grad():
        assert model.encode(batch).mean.shape == (8, 2)
        means = model.decode(model.encode(batch).mean).mean
    table = decode_table(schema, means)
    assert table.shape == (8, 4) and table.dtype == object
    assert set(table[:, 1]) <= {"hi", "lo", "mid"} and set(table[:, 2]) <= {0, 1}


def test_vaekit_train_and_eval_on_a_mixed_csv_with_missing_values(tmp_path):
    df = mixed_table(150, seed=4)
    df.to_csv(tmp_path / "t.csv", index=False)  # holes are empty cells
    proc = run_vaekit("train", "--data.path", "t.csv", "--model.likelihood", "mixed", "--model.latent_dim", "2",
                      "--model.hidden", "16", "--train.epochs", "2", "--train.batch_size", "50",
                      "--train.device", "cpu", "--data.column_types", "n=negbin", "--name", "tab", cwd=tmp_path,
                      check=True)
    assert "column 'level': categorical (3 levels)" in proc.stderr + proc.stdout
    assert "column 'n': negbin [set by data.column_types]" in proc.stderr + proc.stdout
    saved = load_config(tmp_path / "runs" / "tab" / "config.toml")
    assert saved.model.likelihood == "mixed" and saved.model.columns == ("real", "categorical:3", "binary", "negbin")
    proc = run_vaekit("eval", "runs/tab", "--k", "20", cwd=tmp_path, check=True)
    result = json.loads((tmp_path / "runs" / "tab" / "eval.json").read_text())
    assert math.isfinite(result["log_likelihood_nats"])


def test_a_csv_with_strings_or_holes_without_mixed_names_the_fix(tmp_path):
    (tmp_path / "t.csv").write_text("a,b\n1,x\n2,y\n3,\n")
    proc = run_vaekit("train", "--data.path", "t.csv", "--train.epochs", "1", cwd=tmp_path)
    assert proc.returncode == 2 and "--model.likelihood mixed" in proc.stderr


def test_table_options_that_do_not_apply_are_refused(tmp_path):
    from vaekit.config import ModelConfig
    from vaekit.data import load_data

    mixed_table(20).to_csv(tmp_path / "t.csv", index=False)
    cfg = apply_overrides(Config(), {"data.path": str(tmp_path / "t.csv"), "data.scale": "unit"})
    with pytest.raises(VaekitError, match="data.scale unit does not apply to a mixed-type table"):
        load_data(cfg.data, "mixed")
    cfg = apply_overrides(Config(), {"data.path": str(tmp_path / "t.csv"), "data.label_column": "flag"})
    with pytest.raises(VaekitError, match="data.label_column does not apply"):
        load_data(cfg.data, "mixed")
    with pytest.raises(VaekitError, match="model.columns"):
        ModelConfig(likelihood="gaussian", columns=("real",))
    bundle = load_data(apply_overrides(Config(), {"data.path": str(tmp_path / "t.csv"),
                                                  "data.column_types": "n=real"}).data)
    assert bundle.info["likelihood"] == "mixed" and bundle.train.mask is not None  # column types imply a table
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 20


def test_mixed_table_split_files_are_used_whole_named_and_fingerprinted(tmp_path):
    """data.val_path / data.test_path with a mixed-type table: each file's rows form its split, the split's
    description names each file (not the training file three times), and a changed test file is refused at
    evaluation like an array run's."""
    from vaekit.data import load_data
    from vaekit.evaluate import evaluate_run

    paths = {}
    for role, n, seed in (("train", 120, 0), ("val", 30, 1), ("test", 40, 2)):
        paths[role] = tmp_path / f"{role}.csv"
        mixed_table(n, seed=seed).to_csv(paths[role], index=False)
    cfg = apply_overrides(Config(), {
        "data.path": str(paths["train"]), "data.val_path": str(paths["val"]), "data.test_path": str(paths["test"]),
        "model.likelihood": "mixed", "model.latent_dim": "2", "model.hidden": "16", "train.epochs": "1",
        "train.batch_size": "40", "train.device": "cpu", "name": "tab"})
    bundle = load_data(cfg.data, "mixed")
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (120, 30, 40)
    detail = bundle.info["split_detail"]
    assert f"test = every row of {paths['test'].resolve()}" in detail
    assert f"val = every row of {paths['val'].resolve()}" in detail
    assert f"train = every row of {paths['train'].resolve()}" in detail
    files = bundle.info["split_files"]
    assert {r: files[r]["n_rows"] for r in files} == {"train": 120, "val": 30, "test": 40}
    assert len({files[r]["fingerprint"]["sha256"] for r in files}) == 3

    run_dir, _ = fit(cfg, runs_root=tmp_path / "runs")
    result = evaluate_run(run_dir, k=5, write=False)
    assert math.isfinite(result["log_likelihood_nats"])
    assert result["data"] == str(paths["test"].resolve()) and result["n_examples"] == 40  # the scored file
    mixed_table(41, seed=3).to_csv(paths["test"], index=False)  # the test file changed since training
    with pytest.raises(VaekitError, match=f"the content of {paths['test'].resolve()} differs"):
        evaluate_run(run_dir, k=5, write=False)
