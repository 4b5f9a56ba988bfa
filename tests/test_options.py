"""Bad option values are refused where they enter, with exit 2 and one line naming the option,
before any table is read or model loaded (the paths given here do not even exist)."""

from __future__ import annotations

import pytest
import torch

from mlabel.cli import main
from mlabel.config import TrainConfig
from mlabel.errors import ConfigError
from mlabel.runtime import autocast_dtype

NOWHERE = "/nonexistent/model"


def _parse_error(capsys, *argv: str) -> str:
    """The line argparse prints for a refused option."""
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    assert exit_.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["predict", NOWHERE, "--text", "x", "--threshold", "1.5"], "1.5 is not between 0 and 1"),
        (["predict", NOWHERE, "--text", "x", "--threshold", "-0.1"], "-0.1 is not between 0"),
        (["predict", NOWHERE, "--text", "x", "--threshold", "nan"], "nan is not between 0"),
        (["predict", NOWHERE, "--text", "x", "--threshold", "high"], "'high' is not a number"),
        (["predict", NOWHERE, "data.csv", "--limit", "0"], "--limit: 0 is below 1"),
        (["predict", NOWHERE, "data.csv", "-o", "o.csv", "--chunk-rows", "0"], "below 1"),
        (
            ["predict", NOWHERE, "d.csv", "-o", "o", "--engine", "ray", "--num-actors", "0"],
            "0 is below 1",
        ),
        (["predict", NOWHERE, "d.csv", "-o", "o", "--actor-gpus", "-1"], "-1 is not a number"),
        (["predict", NOWHERE, "d.csv", "-o", "o", "--actor-gpus", "inf"], "inf is not a number"),
        (["evaluate", NOWHERE, "data.csv", "--threshold", "2"], "--threshold: 2 is not between"),
        (["evaluate", NOWHERE, "data.csv", "--errors", "-1"], "--errors: -1 is below 0"),
        (["evaluate", NOWHERE, "data.csv", "--errors", "ten"], "'ten' is not a whole number"),
        (["export", NOWHERE, "--onnx", "--sample-rows", "0"], "--sample-rows: 0 is below 1"),
        (["tune", "data.csv", "--trials", "0"], "--trials: 0 is below 1"),
        (["tune", "data.csv", "--timeout", "-5"], "--timeout: -5 is not a number from 0"),
        (["tune", "data.csv", "--max-len-max", "4"], "--max-len-max: 4 is below 8"),
    ],
)
def test_an_option_out_of_range_is_refused_before_any_work(capsys, argv, message):
    line = _parse_error(capsys, *argv)
    assert "error: argument" in line and message in line


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--threads", "0"], "threads is 0, expected 1 or more"),
        (["--save-steps", "0"], "save_steps is 0, expected 1 or more"),
        (["--patience", "-1"], "patience is -1, expected 0 or more"),
        (["--stride", "-4"], "stride is -4, expected 0 or more"),
        (["--max-grad-norm", "-1"], "max_grad_norm is -1.0"),
        (["--lr", "nan"], "lr is nan, expected a positive number"),
        (["--head-lr", "0"], "head_lr is 0.0, expected a positive number"),
        (["--label-sep", ""], "label_sep is empty"),
    ],
)
def test_a_training_setting_out_of_range_is_one_line_before_any_work(capsys, option, message):
    assert main(["train", "/nonexistent/data.csv", "--text-cols", "t", *option]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_fp16_without_a_gpu_is_refused_before_loading_anything(capsys, monkeypatch):
    import mlabel.classifier

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def loaded(*args, **kwargs):
        raise AssertionError("the model was loaded before the precision was checked")

    monkeypatch.setattr(mlabel.classifier, "fit_model", loaded)
    argv = ["train", "/nonexistent/data.csv", "--text-cols", "t", "--precision", "fp16"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == "error: precision fp16 needs a GPU; use bf16 or fp32 on a CPU\n"
    with pytest.raises(ConfigError, match="fp16 needs a GPU"):  # and for library callers
        autocast_dtype("fp16", torch.device("cpu"))


def test_training_settings_accept_their_edge_values():
    cfg = TrainConfig(patience=0, max_grad_norm=0.0, stride=0, threads=1, save_steps=1)
    assert (cfg.patience, cfg.max_grad_norm, cfg.save_steps) == (0, 0.0, 1)


def test_a_server_setting_out_of_range_is_refused_before_loading(capsys):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    assert main(["serve", NOWHERE, "--port", "70000"]) == 2
    assert capsys.readouterr().err == "error: port is 70000, expected 0 to 65535\n"


def test_a_tuning_range_that_is_empty_is_refused_before_any_trial(capsys):
    pytest.importorskip("optuna")
    assert main(["tune", "/nonexistent/data.csv", "--text-cols", "t", "--lr-min", "nan"]) == 2
    assert capsys.readouterr().err.startswith("error: lr range (nan, ")


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["train", "d.csv", "--frob", "3"],
            "mlabel train: error: unrecognized arguments: --frob 3 (see mlabel train --help)",
        ),
        (
            ["predict", NOWHERE, "--engine", "nope"],
            "mlabel predict: error: argument --engine: invalid choice: 'nope'",
        ),
        (
            ["evaluate", NOWHERE, "d.csv", "--errors", "ten"],
            "mlabel evaluate: error: argument --errors: 'ten' is not a whole number",
        ),
        (["export"], "mlabel export: error: the following arguments are required: model_dir"),
        (["frob"], "mlabel: error: argument COMMAND: invalid choice: 'frob'"),
    ],
)
def test_a_parse_error_is_one_line_with_a_pointer_to_help(capsys, argv, line):
    """No usage block before the error, as for every other error of the CLI; still exit 2."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    prog = line.split(": error")[0]
    assert err.count("\n") == 1 and err.startswith(line) and err.endswith(f"(see {prog} --help)\n")


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["train"], "data"),
        (["tune"], "data"),
        (["inspect"], "data"),
        (["evaluate", NOWHERE], "data"),
        (["predict", NOWHERE], "data"),
        (["explain", NOWHERE], "data"),
        (["adapt"], "texts"),
    ],
)
def test_help_names_every_kind_of_table_the_readers_take(capsys, argv, name):
    """The help of a command's data argument lists what `tables.read_chunks` reads."""
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    line = help_text.split(f" {name} ", 1)[1]
    for kind in ("JSON Lines", "Parquet", "Arrow/Feather", ".txt", "Parquet parts", "datasets"):
        assert kind in line
    assert "Annif corpus folder" in line
