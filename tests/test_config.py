"""Config: TOML + dotted overrides, typed, frozen; unknown keys and wrong types are errors naming the key."""

from __future__ import annotations

import pytest

from vaekit.config import (
    Config,
    ModelConfig,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    config_to_toml,
    load_config,
)
from vaekit.errors import VaekitError


def test_overrides_are_parsed_by_the_field_type():
    c = apply_overrides(Config(), {"train.lr": "3e-4", "model.latent_dim": "2", "model.hidden": "400,200",
                                   "data.mmap": "true", "model.likelihood": "gaussian", "name": "x"})
    assert c.train.lr == 3e-4 and c.model.latent_dim == 2 and c.model.hidden == (400, 200)
    assert c.data.mmap is True and c.model.likelihood == "gaussian" and c.name == "x"
    assert c.train.epochs == Config().train.epochs  # untouched fields keep their defaults


@pytest.mark.parametrize(("overrides", "words"), [
    ({"train.lrr": "1"}, "unknown config key 'train.lrr'"),
    ({"trian.lr": "1"}, "unknown option '--trian.lr'"),
    ({"train.lr": "fast"}, "'train.lr': expected a number"),
    ({"train.epochs": "2.5"}, "'train.epochs': expected an integer"),
    ({"train.lr": "0"}, "'train.lr': must be > 0"),
    ({"model.latent_dim": "0"}, "'model.latent_dim': must be >= 1"),
    ({"train.beta": "-1"}, "'train.beta': must be >= 0"),
    ({"model.likelihood": "poisson"}, "'model.likelihood': use one of"),
    ({"data.mmap": "maybe"}, "'data.mmap': expected true or false"),
    ({"eval.k": "0"}, "'eval.k': must be >= 1"),
])
def test_bad_overrides_name_the_key(overrides, words):
    with pytest.raises(VaekitError, match=words.replace("(", r"\(")) as err:
        apply_overrides(Config(), overrides)
    assert "\n" not in str(err.value)


def test_toml_file_with_unknown_key_or_wrong_type(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[train]\nlr = 1e-3\nepochs = 3\n[model]\nhidden = [64, 32]\n")
    c = load_config(path)
    assert c.train.epochs == 3 and c.model.hidden == (64, 32)
    path.write_text("[train]\nlearning_rate = 1e-3\n")
    with pytest.raises(VaekitError, match="unknown config key 'train.learning_rate'"):
        load_config(path)
    path.write_text("[model]\nlatent_dim = 'two'\n")
    with pytest.raises(VaekitError, match="'model.latent_dim': expected an integer"):
        load_config(path)
    path.write_text("[train\nlr = 1")
    with pytest.raises(VaekitError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(VaekitError, match="unknown config section 'optim'"):
        config_from_dict({"optim": {"lr": 1}})
    with pytest.raises(VaekitError, match="cannot read config file"):
        load_config(tmp_path / "missing.toml")


def test_saved_toml_round_trips_to_an_equal_config(tmp_path):
    c = Config(name='a "quoted" name', model=ModelConfig(hidden=(7, 5), sigma=0.25, kind="ae"),
               train=TrainConfig(lr=3e-4, beta=4.0, precision="bf16"))
    path = tmp_path / "config.toml"
    path.write_text(config_to_toml(c))
    assert load_config(path) == c


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        Config().train.lr = 1.0  # type: ignore[misc]
