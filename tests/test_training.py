"""The training loop on a tiny BERT: logs, losses, early stopping, checkpoints, thresholds and exact resume."""

from __future__ import annotations

import contextlib
import json
import math
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel

from mlabel import checkpoint as ckpt
from mlabel import dropout, folder, selection, training
from mlabel.baseline import NoTerms, TfidfModel
from mlabel.callbacks import ConsoleTable, CurvesPlot
from mlabel.classifier import fit_model
from mlabel.config import TrainConfig, from_dict, load_config
from mlabel.data import Examples, load_examples
from mlabel.decision import DecisionRule
from mlabel.errors import ConfigError
from mlabel.metrics import tune_thresholds
from mlabel.model import EncoderClassifier
from mlabel.optim import build_optimizer
from mlabel.predict import load_predictor
from mlabel.runtime import Runtime
from mlabel.selection import blend_weights, choose_rule
from mlabel.split import split_examples

TEXT_COLS = ["TITLE", "ABSTRACT"]
TIMING = {"seconds", "samples_per_s"}  # the only record fields allowed to differ between runs


class Interrupt(Exception):
    """Stands in for a crash or a kill."""


@contextlib.contextmanager
def interrupted_before_checkpoint(name: str, monkeypatch) -> Iterator[None]:
    """Inside the block, saving checkpoint `name` raises Interrupt (a crash just before it)."""
    save = ckpt.save_checkpoint

    def crash(directory, checkpoint, *args):
        if checkpoint == name:
            raise Interrupt
        return save(directory, checkpoint, *args)

    monkeypatch.setattr(ckpt, "save_checkpoint", crash)
    try:
        yield
    finally:
        monkeypatch.setattr(ckpt, "save_checkpoint", save)


def _config(encoder: str, **changes) -> TrainConfig:
    settings = dict(
        model=encoder,
        text_cols=TEXT_COLS,
        max_len=32,
        epochs=1,
        batch_size=16,
        lr=3e-3,
        pos_weight="none",
        ensemble=None,  # these tests are about the encoder's loop; the blend has its own test
        threads=2,
        seed=1,
        precision="fp32",
    )
    return TrainConfig(**{**settings, **changes})


def _history(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k not in TIMING} for record in history]


def _bce(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = probs.astype(np.float64)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def _checkpoints(out: Path) -> set[str]:
    return {p.name for p in ckpt.list_checkpoints(out / "checkpoints")}


@pytest.fixture(scope="module")
def split(small_csv) -> tuple[Examples, Examples]:
    """64 training texts (4 steps of 16 an epoch) and 35 validation texts."""
    train_ex, val_ex = split_examples(load_examples(small_csv, TEXT_COLS), 0.25, seed=1)
    return train_ex.subset(range(64)), val_ex


@pytest.fixture(scope="module")
def resume_cfg(tiny_encoder) -> TrainConfig:
    """Two epochs of 4 steps; step checkpoints every 3 steps land inside epochs."""
    return _config(tiny_encoder, epochs=2, save_steps=3, keep=20, thresholds="per-label")


@pytest.fixture(scope="module")
def reference(resume_cfg, split, tmp_path_factory) -> dict:
    """One uninterrupted run, recording the shape of every epoch's validation probabilities."""
    out = tmp_path_factory.mktemp("reference")
    shapes = []

    def evaluate(*args, **kwargs):
        probs, loss = original(*args, **kwargs)
        shapes.append(probs.shape)
        return probs, loss

    original = training._Run._evaluate
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training._Run, "_evaluate", evaluate)
        result = training.train(resume_cfg, *split, out)
    return {"out": out, "result": result, "shapes": shapes}


@pytest.fixture(scope="module")
def no_dropout_encoder(tiny_encoder, tmp_path_factory) -> str:
    """The tiny encoder without dropout, so training-mode and inference outputs agree."""
    path = tmp_path_factory.mktemp("tiny-bert-no-dropout")
    shutil.copytree(tiny_encoder, path, dirs_exist_ok=True)
    config = json.loads((path / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (path / "config.json").write_text(json.dumps(config))
    return str(path)


@pytest.fixture(scope="module")
def frozen(no_dropout_encoder, split, tmp_path_factory) -> dict:
    """A learning rate too small to change anything: validation F1 cannot improve.

    One example more than a batch makes the last batch a single text, so a mean of batch
    means would differ clearly from the mean over all examples.
    """
    out = tmp_path_factory.mktemp("frozen")
    cfg = _config(
        no_dropout_encoder,
        epochs=6,
        patience=2,
        keep=1,
        lr=1e-12,
        dropout=0.0,
        batch_size=len(split[0]) - 1,
        thresholds="global",
    )
    return {"out": out, "cfg": cfg, "result": training.train(cfg, *split, out)}


@pytest.fixture(scope="module")
def accumulated(tiny_encoder, split, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("accumulated")
    cfg = _config(tiny_encoder, batch_size=8, grad_accum=2, pos_weight="auto", thresholds="shrunk")
    return {"out": out, "cfg": cfg, "result": training.train(cfg, *split, out)}


# ---------------------------------------------------------------- logs and the model folder


def test_cpu_training_uses_mlabel_attention_and_dropout_and_validation_sdpa(
    tiny_encoder, split, tmp_path
):
    seen = set()
    original = EncoderClassifier.forward

    def forward(self, *args, **kwargs):
        fast = all(type(m) is not torch.nn.Dropout for m in self.modules())
        seen.add((self.training, self.encoder.config._attn_implementation, fast))
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(EncoderClassifier, "forward", forward)
        cpu = Runtime(rank=0, world=1, device=torch.device("cpu"))  # the CPU path, GPU or not
        result = training.train(_config(tiny_encoder), *split, tmp_path, runtime=cpu)
    assert seen == {(True, dropout.ATTENTION, True), (False, "sdpa", True)}
    assert "eager" not in (result.model_dir / "config.json").read_text()


def test_attention_dropout_setting_trains_without_it(tiny_encoder, split, tmp_path):
    seen = set()
    original = EncoderClassifier.forward

    def forward(self, *args, **kwargs):
        if self.training:
            seen.update(m.dropout.p for m in self.modules() if hasattr(m, "attention_head_size"))
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(EncoderClassifier, "forward", forward)
        result = training.train(_config(tiny_encoder, attention_dropout=0.0), *split, tmp_path)
    assert seen == {0.0}
    saved = json.loads((result.model_dir / "config.json").read_text())
    assert saved["attention_probs_dropout_prob"] == 0.0 and saved["hidden_dropout_prob"] == 0.1


def test_metrics_jsonl_has_one_line_per_epoch(reference):
    history = _history(reference["out"])
    assert [r["epoch"] for r in history] == [1, 2]
    for record in history:
        assert {"train_loss", "val_loss", "micro_f1", "macro_f1"} <= record.keys()
        assert all(math.isfinite(record[k]) for k in ("train_loss", "val_loss"))
    assert _without_timing(history) == _without_timing(reference["result"].history)


def test_config_yaml_is_the_resolved_config(reference, resume_cfg):
    assert from_dict(load_config(reference["out"] / "config.yaml")) == resume_cfg


def test_model_folder_opens_with_transformers(reference, split):
    model_dir = reference["out"] / "model"
    encoder = AutoModel.from_pretrained(model_dir)
    assert encoder.config.hidden_size == 32
    info = folder.read(model_dir)
    assert info.labels == split[0].labels
    assert len(info.thresholds) == len(split[0].labels)
    assert info.max_len == 32
    assert info.text_cols == TEXT_COLS
    assert info.pooling == "mean"
    assert {"micro_f1", "macro_f1", "per_label"} <= info.metrics.keys()
    assert from_dict(info.config).thresholds == "per-label"
    assert {"torch", "transformers"} <= info.versions.keys()


@pytest.mark.parametrize(
    ("run", "method"), [("reference", "per-label"), ("frozen", "global"), ("accumulated", "shrunk")]
)
def test_thresholds_are_tuned_on_the_validation_split(request, split, run, method):
    out = request.getfixturevalue(run)["out"]
    info = folder.read(out / "model")
    assert info.threshold_method == method
    assert info.threshold_source == "validation split"
    probs = np.load(out / "val_probs.npy")
    np.testing.assert_allclose(info.thresholds, tune_thresholds(split[1].y, probs, method))


# ---------------------------------------------------------------- losses and validation


def test_val_loss_is_the_mean_bce_of_the_saved_probabilities(reference, split):
    """val_probs.npy holds the best epoch's probabilities; its val_loss is their mean BCE."""
    out = reference["out"]
    best = folder.read(out / "model").best_epoch
    val_loss = _history(out)[best - 1]["val_loss"]
    expected = _bce(np.load(out / "val_probs.npy"), split[1].y).mean()
    assert val_loss == pytest.approx(expected, abs=1e-5)


def test_validation_probabilities_are_fresh_each_epoch(reference, split):
    n_val, n_labels = len(split[1]), len(split[1].labels)
    assert reference["shapes"] == [(n_val, n_labels)] * 2


def test_train_loss_is_the_mean_over_all_examples_and_labels(frozen, split):
    """With weights that do not move, every epoch's train_loss is the model's BCE on the train set."""
    train_ex = split[0]
    probs = load_predictor(frozen["out"] / "model", engine="torch").predict_proba(train_ex.texts)
    expected = _bce(probs, train_ex.y).mean()
    for record in _history(frozen["out"]):
        assert record["train_loss"] == pytest.approx(expected, abs=1e-5)


def test_focal_loss_is_what_validation_reports(tiny_encoder, split, tmp_path):
    cfg = _config(tiny_encoder, loss="focal", focal_gamma=2.0)
    training.train(cfg, split[0], split[1], tmp_path)
    (record,) = _history(tmp_path)
    assert math.isfinite(record["train_loss"])
    probs, y = np.load(tmp_path / "val_probs.npy").astype(np.float64), split[1].y
    p_t = probs * y + (1 - probs) * (1 - y)
    expected = (_bce(probs, y) * (1 - p_t) ** 2).mean()
    assert record["val_loss"] == pytest.approx(expected, abs=1e-5)


def test_gradient_accumulation_steps_once_per_two_batches(accumulated, split):
    (record,) = _history(accumulated["out"])
    assert math.isfinite(record["train_loss"]) and math.isfinite(record["val_loss"])
    state = json.loads((accumulated["out"] / "checkpoints/epoch-001/state.json").read_text())
    assert state["global_step"] == math.ceil(math.ceil(len(split[0]) / 8) / 2)


def test_layer_decay_gives_lower_layers_lower_learning_rates(tiny_encoder):
    cfg = _config(tiny_encoder, lr=1e-3, layer_decay=0.5, head_lr=1e-2)
    model = EncoderClassifier.from_encoder(tiny_encoder, 3)
    optimizer = build_optimizer(model, cfg)
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    named = dict(model.named_parameters())

    def lr(name: str) -> float:
        return lr_of[id(named[name])]

    assert lr("encoder.embeddings.word_embeddings.weight") == pytest.approx(2.5e-4)
    assert lr("encoder.encoder.layer.0.attention.self.query.weight") == pytest.approx(5e-4)
    assert lr("encoder.encoder.layer.1.output.dense.weight") == pytest.approx(1e-3)
    assert lr("head.weight") == pytest.approx(1e-2)
    decay_of = {
        id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]
    }
    assert decay_of[id(named["encoder.encoder.layer.1.output.dense.weight"])] == cfg.weight_decay
    assert decay_of[id(named["encoder.encoder.layer.1.output.dense.bias"])] == 0.0


# ---------------------------------------------------------------- early stopping and checkpoints


def test_early_stopping_after_patience_epochs_without_improvement(frozen):
    assert [r["epoch"] for r in _history(frozen["out"])] == [1, 2, 3]
    assert frozen["result"].best_epoch == 1
    assert folder.read(frozen["out"] / "model").best_epoch == 1


def test_max_minutes_starts_no_epoch_that_would_end_past_it(tiny_encoder, split, tmp_path, capsys):
    """The first epoch always runs; the next starts only if, as long as the longest so far, it
    would end within the budget."""
    cfg = _config(tiny_encoder, epochs=3, max_minutes=1e-6)
    result = training.train(cfg, *split, tmp_path / "short")
    assert [r["epoch"] for r in result.history] == [1]
    said = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert "stopping after epoch 1 of 3: the next would end past max_minutes 1e-06" in said
    assert folder.read(tmp_path / "short" / "model").best_epoch == 1
    result = training.train(replace(cfg, max_minutes=60.0), *split, tmp_path / "long")
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    with pytest.raises(ConfigError, match="max_minutes is 0"):
        _config(tiny_encoder, max_minutes=0)


def test_keep_prunes_to_the_last_checkpoints_and_the_best(frozen):
    assert _checkpoints(frozen["out"]) == {"epoch-001", "epoch-003"}


def test_checkpoint_state_json_keeps_its_format(reference):
    """state.json is TrainState's fields, in the order of the dict it replaced: old checkpoints
    resume, new ones resume under older code."""
    state = json.loads((reference["out"] / "checkpoints/step-0000006/state.json").read_text())
    keys = ["epoch", "batch", "global_step", "best", "best_epoch", "bad_epochs", "epoch_loss"]
    assert list(state) == [*keys, "history"]
    assert (state["epoch"], state["batch"], state["global_step"]) == (1, 2, 6)
    assert state["epoch_loss"][1] > 0  # the summed loss of epoch 2's first two steps
    assert _without_timing(state["history"]) == _without_timing(reference["result"].history[:1])


def test_checkpoint_every_epoch_and_every_save_steps(reference):
    epochs = {"epoch-001", "epoch-002"}
    steps = {"step-0000003", "step-0000006"}  # steps 4 and 8 end epochs
    assert _checkpoints(reference["out"]) == epochs | steps


# ---------------------------------------------------------------- exact resume


def _assert_same_run(out: Path, reference: dict) -> None:
    ref = reference["out"]
    assert _without_timing(_history(out)) == _without_timing(_history(ref))
    for name in ("model/model.safetensors", "model/head.safetensors"):
        _assert_same_tensors(out / name, ref / name)
    last = "checkpoints/epoch-002"  # the final weights; the model folder holds the best epoch's
    for name in ("model.safetensors", "optimizer.safetensors"):
        _assert_same_tensors(out / last / name, ref / last / name)
    mine, theirs = folder.read(out / "model"), folder.read(ref / "model")
    assert mine.thresholds == theirs.thresholds
    assert mine.best_epoch == theirs.best_epoch


def _assert_same_tensors(path: Path, reference: Path) -> None:
    mine, theirs = load_file(str(path)), load_file(str(reference))
    assert mine.keys() == theirs.keys()
    for key in theirs:
        torch.testing.assert_close(mine[key], theirs[key], rtol=0, atol=1e-6, msg=key)


class StopAfterEpoch:
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, record: dict) -> None:
        if record["epoch"] == self.epoch:
            raise Interrupt

    def on_train_end(self, result) -> None:
        pass

    def on_train_abort(self, error: BaseException) -> None:
        self.aborted = error


def test_resume_after_an_epoch_matches_the_uninterrupted_run(
    reference, resume_cfg, split, tmp_path
):
    tmp_path = tmp_path / "runs[" / "exp]"  # "[/exp]" read as rich markup broke the resume message
    stop = StopAfterEpoch(1)
    with pytest.raises(Interrupt):
        training.train(resume_cfg, *split, tmp_path, callbacks=(stop,))
    assert isinstance(stop.aborted, Interrupt)  # callbacks hear why the run stopped
    assert len(_history(tmp_path)) == 1
    # as written before state.json had epoch_loss (it is [0, 0] at an epoch's end)
    state_json = tmp_path / "checkpoints" / "epoch-001" / "state.json"
    state = json.loads(state_json.read_text())
    assert state.pop("epoch_loss") == [0.0, 0.0]
    state_json.write_text(json.dumps(state))
    training.train(resume_cfg, *split, tmp_path, resume=True)
    _assert_same_run(tmp_path, reference)


def test_resume_mid_epoch_matches_the_uninterrupted_run(
    reference, resume_cfg, split, tmp_path, monkeypatch
):
    """A crash after epoch 2 was logged but before its checkpoint: resume from step 6 (mid-epoch)."""
    with interrupted_before_checkpoint("epoch-002", monkeypatch), pytest.raises(Interrupt):
        training.train(resume_cfg, *split, tmp_path)
    assert len(_history(tmp_path)) == 2  # epoch 2 was logged; resuming must not log it twice
    _plant_unfinished_checkpoints(tmp_path / "checkpoints", "step-0000006")
    training.train(resume_cfg, *split, tmp_path, resume=True)
    _assert_same_run(tmp_path, reference)


def test_resume_refuses_other_settings_and_changes_nothing(resume_cfg, split, tmp_path):
    with pytest.raises(Interrupt):
        training.train(resume_cfg, *split, tmp_path, callbacks=(StopAfterEpoch(1),))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    changed = resume_cfg.replace(lr=1e-3, max_len=24)
    with pytest.raises(
        ConfigError, match=r"max_len \(run 32, now 24\); lr \(run 0.003, now 0.001\)"
    ):
        training.train(changed, *split, tmp_path, resume=True)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    shutil.rmtree(tmp_path / "checkpoints")  # nothing to resume from: the new settings start afresh
    assert training.train(changed, *split, tmp_path, resume=True).history[0]["epoch"] == 1


def test_resume_may_train_for_more_epochs(resume_cfg, split, tmp_path):
    with pytest.raises(Interrupt):
        training.train(resume_cfg, *split, tmp_path, callbacks=(StopAfterEpoch(1),))
    longer = resume_cfg.replace(epochs=3, patience=0, keep=1)
    result = training.train(longer, *split, tmp_path, resume=True)
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert from_dict(load_config(tmp_path / "config.yaml")).epochs == 3


def _plant_unfinished_checkpoints(directory: Path, latest: str) -> None:
    """Newer-looking checkpoints that a crash can leave: a temp folder, a folder without state.json."""
    for name in (".tmp-step-0000099", "step-0000098"):
        shutil.copytree(directory / latest, directory / name)
        weights = load_file(str(directory / name / "model.safetensors"))
        save_file(
            {k: torch.zeros_like(v) for k, v in weights.items()},
            str(directory / name / "model.safetensors"),
        )
        state = json.loads((directory / name / "state.json").read_text())
        (directory / name / "state.json").write_text(json.dumps({**state, "global_step": 99}))
    (directory / "step-0000098" / "state.json").unlink()


# ---------------------------------------------------------------- training on all data


def test_all_data_takes_thresholds_from_another_model(reference, split, tiny_encoder, tmp_path):
    source = reference["out"] / "model"
    cfg = _config(tiny_encoder, all_data=True, thresholds="per-label", thresholds_from=str(source))
    training.train(cfg, split[0], None, tmp_path)
    info, theirs = folder.read(tmp_path / "model"), folder.read(source)
    assert info.thresholds == theirs.thresholds
    assert info.threshold_method == "per-label"
    assert info.threshold_source == str(source)


def test_all_data_with_tuned_thresholds_needs_a_source(split, tiny_encoder, tmp_path):
    cfg = _config(tiny_encoder, all_data=True, thresholds="shrunk")
    with pytest.raises(ConfigError, match="thresholds_from"):
        training.train(cfg, split[0], None, tmp_path)
    assert not (tmp_path / "checkpoints").exists()  # refused before training, not after


def test_auto_thresholds_record_the_rule_chosen_on_the_validation_split(split, tmp_path):
    training.train_tfidf(TrainConfig(model="tfidf", thresholds="auto"), *split, tmp_path)
    info = folder.read(tmp_path / "model")
    probs = TfidfModel.load(tmp_path / "model" / "tfidf").predict_proba(split[1].texts)
    choice = choose_rule(split[1].y, probs, DecisionRule(), train_y=split[0].y)
    assert info.threshold_method == choice.method and info.threshold_method.startswith("auto:")
    assert info.rule == choice.rule
    np.testing.assert_allclose(info.thresholds, choice.thresholds)


def test_auto_weighs_at_least_one_label_by_the_training_rows_without_one(
    split, tmp_path, monkeypatch
):
    seen, real = [], selection.choose_rule

    def spy(*args, **kwargs):
        seen.append((~kwargs["train_y"].any(axis=1)).mean())
        return real(*args, **kwargs)

    monkeypatch.setattr(selection, "choose_rule", spy)
    train_ex = split[0]
    y = train_ex.y.copy()
    y[::4] = 0  # a quarter of the training texts carry no label: legitimate rows
    unlabelled = Examples(train_ex.ids, train_ex.texts, train_ex.labels, y, "")
    training.train_tfidf(TrainConfig(model="tfidf"), unlabelled, split[1], tmp_path)
    assert seen == [0.25]
    assert folder.read(tmp_path / "model").rule.min_labels == 0


def test_all_data_with_auto_thresholds_falls_back_to_the_fixed_cut(split, tmp_path):
    cfg = TrainConfig(model="tfidf", thresholds="auto", all_data=True)
    training.train_tfidf(cfg, split[0], None, tmp_path)
    info = folder.read(tmp_path / "model")
    assert info.thresholds == [0.5] * len(split[0].labels)
    assert info.threshold_method == "fixed:0.5"
    assert info.threshold_source == "fixed (auto without a validation split)"


def test_thresholds_from_a_model_with_other_labels_is_refused(
    reference, split, tiny_encoder, tmp_path
):
    cfg = _config(tiny_encoder, all_data=True, thresholds_from=str(reference["out"] / "model"))
    train_ex = split[0]
    fewer = Examples(train_ex.ids, train_ex.texts, train_ex.labels[:3], train_ex.y[:, :3], "")
    with pytest.raises(ConfigError, match="labels"):
        training.train(cfg, fewer, None, tmp_path)


def test_ensemble_blends_tfidf_and_tunes_thresholds_on_the_blend(tiny_encoder, split, tmp_path):
    training.train(_config(tiny_encoder, ensemble="tfidf", thresholds="global"), *split, tmp_path)
    info = folder.read(tmp_path / "model")
    tfidf = TfidfModel.load(tmp_path / "model" / "tfidf")
    val_texts, encoder = split[1].texts, np.load(tmp_path / "val_probs.npy")
    tfidf_probs = tfidf.predict_proba(val_texts)
    weight = np.round(1 - blend_weights(split[1].y, encoder, tfidf_probs), 4)  # fitted, not 0.5
    assert info.ensemble.kind == "tfidf"
    np.testing.assert_allclose(np.broadcast_to(info.ensemble.weight, weight.shape), weight)
    blend = (1 - weight) * encoder + weight * tfidf_probs
    np.testing.assert_allclose(info.thresholds, tune_thresholds(split[1].y, blend, "global"))
    served = load_predictor(tmp_path / "model", engine="torch").predict_proba(val_texts[:8])
    np.testing.assert_allclose(served, blend[:8], atol=1e-5)


def test_texts_without_tfidf_terms_save_the_encoder_alone(tiny_encoder, split, tmp_path):
    """Texts of one-character tokens give TF-IDF no vocabulary: the encoder's epochs are saved
    without the blend and a warning says why (it was a traceback after training); TF-IDF alone
    refuses them in one line."""
    ex = [Examples(e.ids, [" ".join(w[0] for w in t.split()[:20]) for t in e.texts], e.labels, e.y, "")
          for e in split]  # fmt: skip
    with pytest.warns(
        UserWarning, match="TF-IDF finds no terms .* saved alone, without the TF-IDF"
    ):
        training.train(_config(tiny_encoder, ensemble="tfidf"), *ex, tmp_path / "run")
    assert folder.read(tmp_path / "run" / "model").ensemble is None
    assert not (tmp_path / "run" / "model" / "tfidf").exists()
    with pytest.raises(
        NoTerms, match=r"TF-IDF finds no terms in the texts .* at least 1 text\): empty vocabulary"
    ):
        TfidfModel().fit(ex[0].texts, ex[0].y)


# ---------------------------------------------------------------- runtime, rank 0 and callbacks


def test_train_sets_up_the_runtime_only_when_not_given(tiny_encoder, split, tmp_path, monkeypatch):
    calls = []

    def setup(threads):
        calls.append(threads)
        return Runtime(rank=0, world=1, device=torch.device("cpu"))

    def built(*args):
        raise Interrupt

    monkeypatch.setattr(training, "setup", setup)
    monkeypatch.setattr(training, "_Run", built)
    cfg = _config(tiny_encoder)
    with pytest.raises(Interrupt):
        training.train(cfg, *split, tmp_path, runtime=Runtime(0, 1, torch.device("cpu")))
    assert calls == []  # the caller's setup() is the process's only one
    with pytest.raises(Interrupt):
        training.train(cfg, *split, tmp_path)
    assert calls == [cfg.threads]


def test_only_rank_0_calls_the_callbacks():
    heard = []

    class Recorder:
        def on_epoch_end(self, record: dict) -> None:
            heard.append(record["epoch"])

    for rank in (0, 1):
        notify = training._Callbacks(Runtime(rank, 2, torch.device("cpu")), [Recorder()])
        notify("on_epoch_end", {"epoch": rank + 1})
    assert heard == [1]


def test_fit_model_prints_and_plots_before_the_given_callbacks(small_csv, tmp_path, monkeypatch):
    given = StopAfterEpoch(1)
    monkeypatch.setattr(training, "train", lambda *args, callbacks, **kwargs: callbacks)
    table, plot, mine = fit_model(
        TrainConfig(text_cols=TEXT_COLS), small_csv, tmp_path, callbacks=(given,)
    )
    assert isinstance(table, ConsoleTable) and isinstance(plot, CurvesPlot) and mine is given


def test_default_callbacks_print_the_epoch_and_draw_the_curves(tmp_path, capsys):
    records = [
        {"epoch": e, "train_loss": 1.0 / e, "val_loss": 0.9 / e, "micro_f1": 0.2 * e}
        for e in (1, 2)
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    ConsoleTable().on_epoch_end(records[1])
    err = capsys.readouterr().err
    assert "micro_f1" in err and "0.4000" in err
    result = training.TrainResult(tmp_path, tmp_path / "model", records, 2)
    CurvesPlot(tmp_path).on_train_end(result)
    assert (tmp_path / "training_curves.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "saved, now, changed",
    [
        ({"stride": 64}, {}, []),  # a run from before the automatic stride, truncating
        ({"long": "chunk", "stride": 32}, {"long": "chunk"}, []),  # 32 is the stride at 128
        ({"long": "chunk", "max_len": 256, "stride": 64}, {"long": "chunk", "max_len": 256}, []),
        (
            {"long": "chunk", "max_len": 256, "stride": 64},
            {"long": "chunk", "max_len": 256, "stride": 32},
            ["stride (run 64, now 32)"],
        ),
        ({"epochs": 3, "batch_size": 8}, {"epochs": 5}, ["batch_size (run 8, now 16)"]),
    ],
)
def test_resume_compares_the_stride_as_the_windows_it_makes(saved, now, changed):
    assert training.changed_settings(TrainConfig(**saved), TrainConfig(**now)) == changed


def test_training_rows_share_the_labels_of_their_texts_unless_chunked(tiny_encoder):
    """One window per text: the training rows' labels are the table's (a copy of 60,000 texts x
    18,645 subjects weighed 4.5 GB); chunked texts repeat their labels on every window."""
    from mlabel.encoding import load_tokenizer

    tokenizer = load_tokenizer(tiny_encoder)
    y = np.array([[1, 0], [0, 1]], dtype=np.float32)
    ex = Examples(["a", "b"], ["short", " ".join(["word"] * 200)], ["x", "y"], y, "t")
    data = training._encode(tokenizer, ex, _config(tiny_encoder, max_len=16))
    assert data.y is ex.y
    chunked = training._encode(tokenizer, ex, _config(tiny_encoder, max_len=16, long="chunk"))
    assert len(chunked.y) > 2 and not np.shares_memory(chunked.y, ex.y)
    assert (chunked.y == y[chunked.encoded.owner]).all()


def test_validation_of_many_subjects_holds_one_copy_of_its_logits(tiny_encoder, tmp_path):
    """A validation split of many subjects is large in float32 (9,000 texts x 18,645
    subjects: 0.6 GiB); its loss, targets and probabilities were five more copies at once."""
    import tracemalloc

    rng = np.random.default_rng(0)
    n_val, n_labels = 300, 3000
    words = [f"w{i}" for i in range(50)]
    texts = [" ".join(rng.choice(words, 8)) for _ in range(n_val + 32)]
    y = rng.random((len(texts), n_labels)) < 0.002
    labels = [f"s{j}" for j in range(n_labels)]
    ex = Examples([str(i) for i in range(len(texts))], texts, labels, y, "t")
    peaks = []

    def evaluate(*args, **kwargs):
        tracemalloc.start()
        try:
            return original(*args, **kwargs)
        finally:
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()

    original = training._Run._evaluate
    cfg = _config(tiny_encoder, max_len=16, thresholds="fixed:0.5")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training._Run, "_evaluate", evaluate)
        training.train(cfg, ex.subset(range(32)), ex.subset(range(32, len(texts))), tmp_path)
    assert peaks and max(peaks) < 2 * n_val * n_labels * 4  # one float32 copy, with room
