"""Kill matrix for the writers besides training's checkpoints: `evaluate --report`, `export --onnx
--int8`, `tune` and `train --all-data`, each SIGKILLed mid-way at a named point of `mlabel.faults`.
Afterwards the previous output is there byte for byte (or there is none), nothing half-written
is visible, and running again completes and clears what the killed run left.

Runs go through the fork server of `test_kill_matrix` (mlabel imported once, a child per run).
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest
import yaml
from test_kill_matrix import ForkServer, _assert_no_half_model, _assert_same_run, train_args

KILLED = -signal.SIGKILL
OLD = {"report.html": b"old page", "report.md": b"old text", "calibration.png": b"old plot"}


@pytest.fixture(scope="module")
def server():
    forks = ForkServer()
    yield forks
    forks.close()


def run(server: ForkServer, argv: list, log: Path, kill_at: str | None = None) -> int:
    return server.run([str(a) for a in argv], log, kill_at)


def temp_files(root: Path) -> list[str]:
    """What killed writers leave: hidden `.tmp-` files and folders (removed by the next write)."""
    return sorted(p.name for p in root.rglob(".tmp-*"))


def snapshot(directory: Path) -> dict[str, bytes]:
    """The visible files of `directory` (a killed writer's hidden temporary file aside)."""
    return {
        p.name: p.read_bytes()
        for p in directory.iterdir()
        if p.is_file() and not p.name.startswith(".tmp-")
    }


@pytest.mark.parametrize("previous", [True, False], ids=["over-a-report", "new-folder"])
def test_a_killed_report_leaves_the_previous_one(
    previous, server, trained_tiny, tiny_csv, tmp_path
):
    out, log = tmp_path / "report", tmp_path / "evaluate.log"
    if previous:
        out.mkdir()
        for name, data in {**OLD, "notes.txt": b"mine"}.items():
            (out / name).write_bytes(data)
    before = snapshot(out) if previous else None
    argv = ["evaluate", trained_tiny, tiny_csv, "--report", out]
    # plots drawn, pages not: the old way left new plots beside the old pages
    assert run(server, argv, log, kill_at="report.plots") == KILLED, log.read_text()
    assert (snapshot(out) if out.exists() else None) == before
    assert run(server, argv, log) == 0, log.read_text()
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert (out / "calibration.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "notes.txt").exists() == previous  # files not of the report stay
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize("point", ["export.traced", "export.quantized"])
def test_a_killed_export_keeps_the_previous_graphs_and_record(
    point, server, trained_tiny, tmp_path
):
    model, log = tmp_path / "model", tmp_path / "export.log"
    shutil.copytree(trained_tiny, model)
    graphs = model / "onnx"
    graphs.mkdir()
    old = {"model.onnx": b"old fp32 graph", "model-int8.onnx": b"old int8 graph"}
    for name, data in old.items():
        (graphs / name).write_bytes(data)
    record = (model / "mlabel.json").read_bytes()
    argv = ["export", model, "--onnx", "--int8", "--sample-rows", "16"]
    assert run(server, argv, log, kill_at=point) == KILLED, log.read_text()
    after = snapshot(graphs)
    if point == "export.quantized":  # fp32 replaced whole before int8 began
        assert after.pop("model.onnx").startswith(b"\x08")  # an ONNX protobuf, not the old bytes
        old.pop("model.onnx")
    assert after == old and (model / "mlabel.json").read_bytes() == record
    assert run(server, argv, log) == 0, log.read_text()
    assert {name: data[:1] for name, data in snapshot(graphs).items()} == {
        "model.onnx": b"\x08",
        "model-int8.onnx": b"\x08",
    }
    assert "engine auto ->" in log.read_text() and temp_files(tmp_path) == []


def tune_args(csv: Path, encoder: str, out: Path) -> list:
    return [
        "tune", csv, "--model", encoder, "--text-cols", "TITLE", "ABSTRACT", "--trials", 1,
        "--epochs-min", 1, "--epochs-max", 1, "--max-len-max", 32, "--val-frac", 0.25,
        "--threads", 2, "--precision", "fp32", "--ensemble", "none", "--out", out,
    ]  # fmt: skip


def test_a_killed_tune_keeps_its_study_and_best_config(server, tiny_csv, tiny_encoder, tmp_path):
    optuna = pytest.importorskip("optuna")
    out, log = tmp_path / "tune", tmp_path / "tune.log"
    argv = tune_args(tiny_csv, tiny_encoder, out)
    assert run(server, argv, log) == 0, log.read_text()
    best, link = (out / "best.yaml").read_bytes(), (out / "best_model").readlink()
    assert run(server, argv, log, kill_at="train.backward:2") == KILLED  # mid-trial
    assert (out / "best.yaml").read_bytes() == best and (out / "best_model").readlink() == link
    # trial 2 completes; the kill falls between the best_model link and best.yaml
    assert run(server, argv, log, kill_at="tune.best_linked") == KILLED
    _assert_best_config_is_whole(out)
    assert run(server, argv, log) == 0, log.read_text()
    study = optuna.load_study(study_name="mlabel", storage=f"sqlite:///{out / 'study.db'}")
    states = [t.state.name for t in sorted(study.trials, key=lambda t: t.number)]
    assert states == ["COMPLETE", "RUNNING", "COMPLETE", "COMPLETE"]  # the killed trial's stays
    _assert_best_config_is_whole(out)
    assert (out / "best_model").resolve() == Path(
        study.best_trial.user_attrs["model_dir"]
    ).resolve()
    assert temp_files(tmp_path) == []


def _assert_best_config_is_whole(out: Path) -> None:
    """best.yaml parses, and the model folder it names was trained with its settings."""
    text = (out / "best.yaml").read_text()
    named = Path(text.split("# its model folder: ")[1].split("\n")[0])
    trained = yaml.safe_load((named / "mlabel.json").read_text())["config"]
    assert yaml.safe_load(text) == trained
    assert ((out / "best_model") / "mlabel.json").is_file()


def all_data_args(csv: Path, encoder: str, out: Path) -> list[str]:
    args = train_args(csv, encoder, out)
    at = args.index("--thresholds")
    args[at + 1] = "fixed:0.5"
    return [*args, "--all-data"]


@pytest.fixture(scope="module")
def all_data_reference(server, tiny_csv, tiny_encoder, tmp_path_factory) -> Path:
    """The uninterrupted --all-data run, keeping every checkpoint (each epoch's weights)."""
    out = tmp_path_factory.mktemp("all-data")
    args = [*all_data_args(tiny_csv, tiny_encoder, out), "--keep", "20"]
    assert run(server, args, out.with_suffix(".log")) == 0
    return out


@pytest.mark.parametrize(
    "point", ["train.backward:4", "staged.swapping:1", "finalize.before_write"]
)
def test_a_killed_all_data_fit_resumes_to_the_uninterrupted_result(
    point,
    server,
    all_data_reference,
    tiny_csv,
    tiny_encoder,
    tmp_path,
):
    out, log = tmp_path / "run", tmp_path / "run.log"
    args = all_data_args(tiny_csv, tiny_encoder, out)
    assert run(server, args, log, kill_at=point) == KILLED, log.read_text()
    _assert_no_half_model(out, all_data_reference)
    assert run(server, [*args, "--resume"], log) == 0, log.read_text()
    _assert_same_run(out, all_data_reference)
