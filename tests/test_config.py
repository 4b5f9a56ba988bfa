"""TrainConfig: defaults, range and type checks, YAML/TOML files, unknown keys."""

from __future__ import annotations

import re

import pytest

from mlabel.config import TrainConfig, from_dict, load_config, save_config
from mlabel.errors import ConfigError


def test_defaults_are_valid():
    cfg = TrainConfig()
    assert cfg.replace() == cfg
    assert from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "setting, shown",
    [
        ({"dropout": 1.5}, "1.5"),
        ({"attention_dropout": -0.1}, "-0.1"),
        ({"val_frac": 1.0}, "1.0"),
        ({"epochs": 0}, "0"),
        ({"lr": -0.1}, "-0.1"),
        ({"max_len": 4}, "4"),
        ({"pooling": "max"}, "'max'"),
        ({"loss": "hinge"}, "'hinge'"),
        ({"long": "chunk", "max_len": 64, "stride": 40}, "40"),
        ({"epochs": "three"}, "'three'"),
        ({"epochs": 2.5}, "2.5"),
        ({"all_data": "yes"}, "'yes'"),
        ({"text_cols": 5}, "5"),
    ],
)
def test_bad_values_are_quoted(setting, shown):
    name = next(iter(setting)) if "stride" not in setting else "stride"
    with pytest.raises(ConfigError, match=rf"{name} is {re.escape(shown)},") as err:
        TrainConfig(**setting)
    assert "\n" not in str(err.value)


def test_numbers_written_as_text_convert():
    """YAML 1.1 reads `1e-4` (no dot) as a string."""
    assert TrainConfig(lr="1e-4").lr == pytest.approx(1e-4)
    assert TrainConfig(text_cols="TITLE").text_cols == ["TITLE"]


def test_label_forms_are_exclusive():
    with pytest.raises(ConfigError, match="not both"):
        TrainConfig(label_cols=["a"], labels_col="tags")


def test_unknown_keys_named_with_suggestion():
    with pytest.raises(ConfigError) as err:
        from_dict({"epochz": 3, "lr": 1e-4, "zzz": 1}, source="run.yaml")
    msg = str(err.value)
    assert msg.startswith("run.yaml: unknown setting")
    assert "'epochz' (did you mean 'epochs'?)" in msg
    assert "'zzz'" in msg and "'zzz' (did" not in msg


YAML = """\
model: tfidf
text_cols: [TITLE, ABSTRACT]
epochs: 3
lr: 1e-4
pooling: cls
label_cols: null
"""
TOML = """\
model = "tfidf"
text_cols = ["TITLE", "ABSTRACT"]
epochs = 3
lr = 1e-4
pooling = "cls"
"""


def test_yaml_and_toml_give_the_same_config(tmp_path):
    (tmp_path / "c.yaml").write_text(YAML)
    (tmp_path / "c.toml").write_text(TOML)
    from_yaml = from_dict(load_config(tmp_path / "c.yaml"))
    from_toml = from_dict(load_config(tmp_path / "c.toml"))
    assert from_yaml == from_toml
    assert from_yaml.epochs == 3 and from_yaml.lr == pytest.approx(1e-4)
    assert from_yaml.text_cols == ["TITLE", "ABSTRACT"]


def test_saved_config_loads_back(tmp_path):
    cfg = TrainConfig(text_cols=["a", "b"], epochs=2, head_lr=1e-3, labels_col="tags")
    save_config(cfg, tmp_path / "config.yaml")
    assert from_dict(load_config(tmp_path / "config.yaml")) == cfg


@pytest.mark.parametrize(
    "name, text, match",
    [
        (
            "bad.yaml",
            "epochz: 3\n",
            r"bad.yaml: unknown setting 'epochz' \(did you mean 'epochs'\?\)",
        ),
        ("bad.yaml", "dropout: 2\n", "bad.yaml: dropout is 2.0, expected 0.0 to 1.0"),
        ("bad.yaml", "epochs: [3\n", "bad.yaml: not valid yaml"),
        ("bad.toml", "epochs = \n", "bad.toml: not valid toml"),
        ("bad.yaml", "- epochs\n", "expected a mapping"),
        ("missing.yaml", None, "config file not found"),
    ],
)
def test_bad_files(tmp_path, name, text, match):
    if text is not None:
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(tmp_path / name)


@pytest.mark.parametrize("method", ["fixed:2", "fixed:abc", "median", "fixed:0"])
def test_bad_threshold_method_is_rejected_when_configured(method):
    with pytest.raises(ConfigError, match="thresholds is"):
        TrainConfig(thresholds=method)


@pytest.mark.parametrize("method", ["auto", "fixed", "fixed:0.3", "global", "per-label", "shrunk"])
def test_threshold_methods_are_accepted(method):
    assert TrainConfig(thresholds=method).thresholds == method


def test_none_turns_the_ensemble_off():
    assert TrainConfig(ensemble="none").ensemble is None
    assert TrainConfig().ensemble == "tfidf"


@pytest.mark.parametrize("max_len, stride", [(64, 16), (128, 32), (129, 32), (130, 64), (512, 64)])
def test_long_chunk_takes_a_stride_that_fits_max_len(max_len, stride):
    """The default recipe's max_len 128 with --long chunk: 64 would not be under half of it."""
    cfg = TrainConfig(max_len=max_len, long="chunk")
    assert cfg.stride is None and cfg.chunk_stride() == stride
    assert TrainConfig(max_len=max_len, long="chunk", stride=5).chunk_stride() == 5
    with pytest.raises(
        ConfigError, match=rf"stride is {max_len // 2}, expected 0 to {max_len // 2 - 1} "
    ):
        TrainConfig(max_len=max_len, long="chunk", stride=max_len // 2)
