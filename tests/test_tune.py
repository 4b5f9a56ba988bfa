"""Hyperparameter search: best.yaml, resume from SQLite, plots, and the final --all-data fit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from mlabel.cli import main
from mlabel.config import TrainConfig, from_dict, load_config
from mlabel.errors import ConfigError, DataError
from mlabel.reports.curves import plot_history, plot_importance
from mlabel.tune import (
    STUDY_NAME,
    PruningCallback,
    SearchSpace,
    completed,
    fixed_names,
    open_study,
    param_importances,
    tune,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def tune_args(csv: Path, encoder: str, out: Path, trials: int) -> list[str]:
    return [
        "tune",
        str(csv),
        "--model",
        encoder,
        "--text-cols",
        "TITLE",
        "ABSTRACT",
        "--trials",
        str(trials),
        "--out",
        str(out),
        "--epochs-min",
        "1",
        "--epochs-max",
        "2",
        "--max-len-max",
        "48",
        "--lr-min",
        "5e-4",
        "--lr-max",
        "3e-3",
        "--val-frac",
        "0.25",
        "--threads",
        "2",
        "--precision",
        "fp32",
    ]


@pytest.fixture(scope="module")
def rows(small_csv, tmp_path_factory) -> Path:
    """80 of the small table's rows: tuning trains several models."""
    path = tmp_path_factory.mktemp("data") / "rows.csv"
    pd.read_csv(small_csv, dtype={"ID": str}).sample(80, random_state=0).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def study_dir(tiny_encoder, rows, tmp_path_factory) -> Path:
    """A 2-trial search on the tiny model, run once for this module."""
    out = tmp_path_factory.mktemp("tune")
    assert main(tune_args(rows, tiny_encoder, out, 2)) == 0
    return out


def load(out: Path):
    return optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{out / 'study.db'}")


def test_tune_writes_best_config_plots_and_model_link(study_dir, capsys):
    values = load_config(study_dir / "best.yaml")
    cfg = from_dict(values)
    assert cfg.text_cols == ["TITLE", "ABSTRACT"] and cfg.max_len == 48
    assert 1 <= cfg.epochs <= 2 and 5e-4 <= cfg.lr <= 3e-3
    study = load(study_dir)
    assert values == study.best_trial.user_attrs["config"]
    meta = json.loads((study_dir / "best_model" / "mlabel.json").read_text())
    assert meta["config"] == values
    for name in ("history.png", "importance.png"):
        assert (study_dir / name).read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in (study_dir / "trials").iterdir()) == ["000", "001"]


def test_tune_resumes_the_stored_study(study_dir, tiny_encoder, rows, capsys, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    before = {t.number: t.params for t in load(study_dir).trials}
    assert main([*tune_args(rows, tiny_encoder, study_dir, 1), "--track", "mlflow"]) == 0
    trials = load(study_dir).trials
    assert len(trials) == 3 and trials[2].state.name == "COMPLETE"
    assert trials[2].params != before[0]  # a resumed sampler does not replay the first draw
    out = capsys.readouterr().out
    assert "Trials" in out and "best trial" in out
    client = MlflowClient(tracking_uri=(study_dir / "mlruns").as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("mlabel").experiment_id])
    assert run.info.run_name == "trial 002" and "micro_f1" in run.data.metrics


def test_final_fit_on_all_data_keeps_tuned_thresholds(study_dir, rows, tmp_path):
    best_model = study_dir / "best_model"
    run = tmp_path / "final"
    argv = ["train", str(rows), "--config", str(study_dir / "best.yaml"), "--all-data"]
    argv += ["--thresholds-from", str(best_model), "--out", str(run)]
    assert main(argv) == 0
    cfg = from_dict(load_config(study_dir / "best.yaml"))
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == list(range(1, cfg.epochs + 1))
    assert all("micro_f1" not in r for r in history)  # no validation split
    meta = json.loads((run / "model" / "mlabel.json").read_text())
    source = json.loads((best_model / "mlabel.json").read_text())
    assert meta["threshold_source"] == str(best_model)
    assert meta["thresholds"] == source["thresholds"]
    assert meta["config"]["all_data"] is True


def test_search_space_holds_given_settings_fixed():
    fixed = fixed_names(["lr", "epochs", "text_cols", "model"])
    assert fixed == {"lr", "epochs"}
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    draws = [SearchSpace(fixed=fixed).sample(study.ask()) for _ in range(8)]
    for drawn in draws:
        assert "lr" not in drawn and "epochs" not in drawn
        assert drawn["thresholds"] in ("auto", "fixed:0.5", "global", "per-label", "shrunk")
        TrainConfig().replace(**drawn)  # every draw is a valid setting
    # attention dropout: the encoder's own or off (off helped the larger sets, not the small one)
    assert {d["attention_dropout"] for d in draws} == {None, 0.0}
    held = SearchSpace(fixed=fixed_names(["attention_dropout"])).sample(study.ask())
    assert "attention_dropout" not in held


def test_pruning_callback_raises_trial_pruned():
    class Trial:
        reported: list = []

        def report(self, value, step):
            self.reported.append((step, value))

        def should_prune(self):
            return len(self.reported) >= 2

    trial = Trial()
    cb = PruningCallback(trial)
    cb.on_epoch_end({"epoch": 1, "micro_f1": 0.2})
    with pytest.raises(optuna.TrialPruned):
        cb.on_epoch_end({"epoch": 2, "micro_f1": 0.3})
    assert trial.reported == [(1, 0.2), (2, 0.3)]


@pytest.mark.parametrize("n_trials", [0, 1])
def test_plots_with_too_few_trials(tmp_path, n_trials):
    study = optuna.create_study(direction="maximize")
    study.optimize(lambda t: t.suggest_float("lr", 0, 1), n_trials=n_trials)
    assert param_importances(study) == {}
    plot_history(completed(study), tmp_path / "history.png")
    plot_importance(param_importances(study), tmp_path / "importance.png")
    assert (tmp_path / "importance.png").stat().st_size > 0


def test_importance_ranks_the_parameter_that_matters(tmp_path):
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    study.optimize(lambda t: t.suggest_float("lr", 0, 1) + 0 * t.suggest_float("x", 0, 1), 12)
    found = param_importances(study)
    assert list(found)[0] == "lr" and np.isclose(sum(found.values()), 1.0)


def test_tune_refuses_all_data(tmp_path):
    with pytest.raises(ConfigError, match="validation"):
        tune(TrainConfig(all_data=True), "unused.csv", tmp_path, trials=1)


def test_a_bad_table_stops_tune_before_any_trial(tiny_encoder, tmp_path):
    """One DataError, no study with a failed trial (nor Optuna's traceback) left behind."""
    bad = tmp_path / "bad.csv"
    bad.write_text("text,Physics\n" + "".join(f"t{i},{i % 2}\n" for i in range(9)) + "t9,2\n")
    with pytest.raises(DataError, match="row 10: label 'Physics' is 2"):
        tune(TrainConfig(model=tiny_encoder), bad, tmp_path / "tune", trials=1)
    assert not (tmp_path / "tune").exists()


def test_two_tune_processes_share_one_study(tiny_encoder, rows, tmp_path):
    """Two `mlabel tune` into one folder (one SQLite study) at once: both finish, and each trial
    gets its own number and run folder. This process starts its search while the other's trial
    runs (whether the trials themselves overlap depends on the machine's speed, so that is not
    asserted)."""
    argv = [*tune_args(rows, tiny_encoder, tmp_path, 1), "--epochs-max", "1", "--threads", "1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    other = subprocess.Popen(
        [sys.executable, "-m", "mlabel", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 120
    while not _running_trial(tmp_path) and other.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _running_trial(tmp_path) and other.poll() is None  # its trial runs as this one starts
    assert main(argv) == 0
    output = other.communicate(timeout=300)[0]
    assert other.returncode == 0, output
    trials = load(tmp_path).trials
    assert sorted(t.number for t in trials) == [0, 1]
    assert {t.state for t in trials} == {optuna.trial.TrialState.COMPLETE}
    assert sorted(p.name for p in (tmp_path / "trials").iterdir()) == ["000", "001"]
    assert (tmp_path / "best_model" / "mlabel.json").is_file()


def _running_trial(out: Path) -> bool:
    if not (out / "study.db").is_file():
        return False
    try:
        states = [t.state for t in load(out).trials]
    except Exception:  # the other process is still creating the study
        return False
    return optuna.trial.TrialState.RUNNING in states


def test_a_search_that_loses_the_race_to_create_the_study_tries_again(tmp_path, monkeypatch):
    """Two searches creating one SQLite study at once: the one whose schema insert fails retries."""
    from sqlalchemy.exc import IntegrityError

    calls = []

    class Racing(optuna.storages.RDBStorage):
        def __init__(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == 1:
                raise IntegrityError("INSERT INTO alembic_version", {}, Exception("UNIQUE"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", Racing)
    study = open_study(tmp_path, None, seed=0)
    assert len(calls) == 2 and study.study_name == STUDY_NAME


def test_chunked_search_keeps_every_length_its_stride_fits():
    from mlabel.tune import max_len_choices

    assert max_len_choices(512, TrainConfig(long="chunk")) == (128, 256, 384, 512)  # auto stride
    explicit = TrainConfig(long="chunk", stride=100, max_len=512)
    assert max_len_choices(512, explicit) == (256, 384, 512)  # 100 is not under 64
