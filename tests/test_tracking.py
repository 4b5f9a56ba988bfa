"""Tracking: MLflow runs read back with MLflow's own client; TensorBoard scalars; missing extras."""

from __future__ import annotations

import sys
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from mlabel.cli import main
from mlabel.config import TrainConfig
from mlabel.tracking import EXPERIMENT, MlflowTracker, TensorBoardTracker, tracking_callbacks
from mlabel.training import TrainResult

RECORDS = [
    {"epoch": 1, "train_loss": 0.6, "micro_f1": 0.4, "seconds": 1.0},
    {"epoch": 2, "train_loss": 0.5, "micro_f1": 0.55, "seconds": 1.0},
]


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_ALLOW_FILE_STORE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def fake_run(out: Path) -> TrainResult:
    """A finished run folder: a model folder and a plot, as training and reports leave them."""
    (out / "model").mkdir(parents=True)
    (out / "model" / "mlabel.json").write_text("{}")
    (out / "report").mkdir()
    (out / "report" / "f1.png").write_bytes(b"\x89PNG")
    return TrainResult(out, out / "model", RECORDS, 2, {"micro_f1": 0.55})


def replay(tracker, result: TrainResult) -> None:
    for record in RECORDS:
        tracker.on_epoch_end(record)
    tracker.on_train_end(result)


def only_run(uri: str):
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    (run,) = client.search_runs([experiment.experiment_id])
    return client, run


def test_mlflow_logs_params_metrics_plots_and_model_to_a_local_store(tmp_path, clean_env):
    cfg = TrainConfig(track="mlflow", lr=3e-5, text_cols=["TITLE", "ABSTRACT"])
    (tracker,) = tracking_callbacks(cfg, tmp_path)
    replay(tracker, fake_run(tmp_path))
    client, run = only_run((tmp_path / "mlruns").as_uri())
    assert run.info.status == "FINISHED" and run.info.run_name == tmp_path.name
    assert run.data.params["lr"] == "3e-05" and run.data.params["text_cols"] == "TITLE ABSTRACT"
    history = client.get_metric_history(run.info.run_id, "micro_f1")
    assert [(m.step, m.value) for m in history] == [(1, 0.4), (2, 0.55)]
    assert run.data.metrics["final_micro_f1"] == 0.55
    paths = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert paths == {"plots/f1.png"}
    assert [a.path for a in client.list_artifacts(run.info.run_id, "model")] == [
        "model/mlabel.json"
    ]


def test_mlflow_uses_tracking_uri_from_the_environment(tmp_path, clean_env):
    store = (tmp_path / "elsewhere").as_uri()
    clean_env.setenv("MLFLOW_TRACKING_URI", store)
    clean_env.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    tracker = MlflowTracker(TrainConfig(), tmp_path / "run")
    replay(tracker, fake_run(tmp_path / "run"))
    assert not (tmp_path / "run" / "mlruns").exists()
    client, run = only_run(store)
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 2


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (optuna.TrialPruned("pruned at epoch 2"), "KILLED"),
        (KeyboardInterrupt(), "KILLED"),
        (RuntimeError("out of memory"), "FAILED"),
    ],
)
def test_mlflow_run_of_a_stopped_training_is_not_left_running(tmp_path, clean_env, error, status):
    tracker = MlflowTracker(TrainConfig(), tmp_path)
    tracker.on_epoch_end(RECORDS[0])
    tracker.on_train_abort(error)
    _, run = only_run((tmp_path / "mlruns").as_uri())
    assert run.info.status == status
    assert run.data.tags["mlabel.stopped"] == f"{type(error).__name__}: {error}"
    assert run.data.metrics["micro_f1"] == 0.4  # what it logged stays


def test_tensorboard_writes_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tracker = TensorBoardTracker(TrainConfig(), tmp_path)
    replay(tracker, fake_run(tmp_path))
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(s.step, round(s.value, 3)) for s in events.Scalars("micro_f1")] == [
        (1, 0.4),
        (2, 0.55),
    ]


@pytest.mark.parametrize(
    ("track", "modules"),
    [("mlflow", ["mlflow", "mlflow.tracking"]), ("tensorboard", ["tensorboard"])],
)
def test_missing_extra_is_a_clear_error(
    track, modules, tiny_encoder, small_csv, tmp_path, monkeypatch, capsys
):
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # imports fail as if not installed
    argv = ["train", str(small_csv), "--model", tiny_encoder, "--text-cols", "TITLE", "ABSTRACT"]
    assert main([*argv, "--epochs", "1", "--track", track, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"--track {track} needs the" in err and "pip install 'mlabel[track]'" in err
    assert not (tmp_path / "model").exists()  # refused before training


def test_cli_train_tracks_to_mlflow(tiny_settings, small_csv, tmp_path, clean_env):
    argv = ["train", str(small_csv), "--model", tiny_settings["model"], "--text-cols", "TITLE"]
    argv += ["ABSTRACT", "--max-len", "32", "--epochs", "1", "--val-frac", "0.25"]
    argv += ["--threads", "2", "--track", "mlflow", "--out", str(tmp_path)]
    assert main(argv) == 0
    client, run = only_run((tmp_path / "mlruns").as_uri())
    assert run.data.params["epochs"] == "1" and "micro_f1" in run.data.metrics
    assert any(
        a.path == "model/mlabel.json" for a in client.list_artifacts(run.info.run_id, "model")
    )
