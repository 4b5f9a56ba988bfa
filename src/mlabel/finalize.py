"""The end of a training run: the model folder's record, its thresholds (tuned on the validation
split, fixed, or taken from another model folder), the optional TF-IDF blend, and the
`TrainResult` a run returns. The TF-IDF baseline, which trains in one step, is only this."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlabel import folder, runlock
from mlabel.atomic import write_text_atomic
from mlabel.config import TrainConfig, save_config
from mlabel.data import Examples
from mlabel.decision import decide
from mlabel.errors import ConfigError
from mlabel.folder import Ensemble, ModelInfo
from mlabel.metrics import multilabel_metrics, tune_thresholds
from mlabel.selection import blend_weights, tuned_rule
from mlabel.subjects import training_subjects

SMALL_VALIDATION = 50  # validation rows under which its figures and the chosen rule are rough


@dataclass
class TrainResult:
    out_dir: Path
    model_dir: Path
    history: list[dict[str, Any]]  # one record per epoch, as in metrics.jsonl
    best_epoch: int
    metrics: dict[str, Any] = field(default_factory=dict)  # the best epoch's, tuned thresholds


def model_info(
    cfg: TrainConfig, labels: list[str], metrics: dict, kind: str = "transformer"
) -> ModelInfo:
    """The record of a model trained with `cfg`, before its thresholds are chosen."""
    encoder = kind == "transformer"
    uris, names = training_subjects(labels, cfg.subject_uri_base, cfg.subject_uris)
    return ModelInfo(
        kind=kind,
        labels=list(labels),
        thresholds=[0.5] * len(labels),
        threshold_method="fixed:0.5",
        threshold_source="default",
        rule=cfg.rule(),
        max_len=cfg.max_len if encoder else None,
        text_cols=cfg.text_cols,
        pooling=cfg.pooling if encoder else None,
        long=cfg.long,
        stride=cfg.chunk_stride(),
        long_pool=cfg.long_pool,
        subject_uris=uris,
        subject_names=names,
        metrics=metrics,
        config=cfg.to_dict(),
        versions=folder.package_versions(),
    )


def finalize_thresholds(
    cfg: TrainConfig,
    model_dir: Path,
    train_ex: Examples,
    val_ex: Examples | None,
    probs: np.ndarray | None,
) -> dict[str, Any]:
    """Thresholds, their source, the decision rule, the optional TF-IDF ensemble and the
    validation metrics for mlabel.json."""
    update: dict[str, Any] = {}
    source = threshold_source(cfg, train_ex.labels, val_ex is not None)
    if cfg.ensemble == "tfidf":
        probs = _add_tfidf(model_dir, train_ex, val_ex, probs, update, cfg.threads)
    rule = cfg.rule()
    if source is not None:
        thresholds = np.asarray(source.thresholds)
        if source.threshold_method.endswith("+min1") and rule.min_labels == 0:
            rule = dataclasses.replace(rule, min_labels=1)  # chosen together with its thresholds
        update.update(
            threshold_method=source.threshold_method, threshold_source=str(cfg.thresholds_from)
        )
    elif val_ex is None:
        # `auto` has nothing to choose on: the fixed cut, and the record says why.
        method = "fixed:0.5" if cfg.thresholds == "auto" else cfg.thresholds
        none = np.zeros((1, len(train_ex.labels)))
        thresholds = tune_thresholds(none, none, method)
        why = " (auto without a validation split)" if method != cfg.thresholds else ""
        update.update(threshold_method=method, threshold_source="fixed" + why)
    else:
        choice = tuned_rule(val_ex.y, probs, cfg.thresholds, rule, train_y=train_ex.y)
        thresholds, rule = choice.thresholds, choice.rule
        update.update(threshold_method=choice.method, threshold_source="validation split")
    update.update(thresholds=[float(t) for t in thresholds], rule=rule)
    # Without a validation split there is nothing to score (not the last epoch's training record).
    update["metrics"] = (
        multilabel_metrics(val_ex.y, decide(probs, thresholds, rule), train_ex.labels)
        if val_ex is not None
        else {}
    )
    return update


def _add_tfidf(
    model_dir: Path,
    train_ex: Examples,
    val_ex: Examples | None,
    probs: np.ndarray | None,
    update: dict[str, Any],
    threads: int | None,
) -> np.ndarray | None:
    """Train and save the TF-IDF member (on `threads` processes), record its blend weight(s) in
    `update` (fitted on the validation split; half and half without one) and return the blended
    validation probs."""
    from mlabel.baseline import NoTerms, TfidfModel

    try:
        tfidf = TfidfModel(workers=threads).fit(train_ex.texts, train_ex.y)
    except NoTerms as err:  # the encoder's epochs are not lost for want of a blend
        warnings.warn(f"{err}; the encoder is saved alone, without the TF-IDF blend", stacklevel=2)
        return probs
    with folder.staged(folder.tfidf_dir(model_dir)) as tmp:  # whole or not at all
        tfidf.save(tmp)
    if val_ex is None:
        update["ensemble"] = Ensemble(weight=0.5)
        return probs
    tfidf_probs = tfidf.predict_proba(val_ex.texts)
    weight = np.round(1.0 - blend_weights(val_ex.y, probs, tfidf_probs), 4)  # the TF-IDF share
    same = bool(np.all(weight == weight[0]))
    update["ensemble"] = Ensemble(weight=float(weight[0]) if same else weight.tolist())
    return (1 - weight) * probs + weight * tfidf_probs


def threshold_source(cfg: TrainConfig, labels: list[str], has_val: bool) -> ModelInfo | None:
    """The record of the model folder `thresholds_from` names, checked against this run."""
    if cfg.thresholds_from:
        source = folder.read(cfg.thresholds_from)
        if source.labels != labels:
            raise ConfigError(
                f"thresholds_from {cfg.thresholds_from}: its labels {source.labels} differ "
                f"from this data's {labels}"
            )
        return source
    if not has_val and cfg.thresholds != "auto" and not cfg.thresholds.startswith("fixed"):
        raise ConfigError(
            f"thresholds {cfg.thresholds!r} are tuned on a validation split and this run has "
            "none (all_data); pass thresholds_from=<a trained model folder> or a fixed threshold"
        )
    return None


def small_validation(val_ex: Examples | None) -> str | None:
    """The note for a validation split too small for steady figures and thresholds."""
    n = len(val_ex.texts) if val_ex is not None else SMALL_VALIDATION
    if n >= SMALL_VALIDATION:
        return None
    return (
        f"validation: {n} row{'s' * (n != 1)} only: its F1 and the thresholds tuned on it are "
        "rough (a larger --val-frac or a --val table gives steadier ones)"
    )


def train_tfidf(
    cfg: TrainConfig, train_ex: Examples, val_ex: Examples | None, out_dir: str | Path
) -> TrainResult:
    """The built-in baseline: TF-IDF + logistic regression, saved as the same kind of model folder.
    Holds `out_dir`'s run lock, as encoder training does: a second run into it stops (`RunLocked`)."""
    from mlabel.baseline import TfidfModel

    out = Path(out_dir)
    model_dir = out / "model"
    t0 = time.perf_counter()
    with runlock.held(out):
        if note := small_validation(val_ex):
            print(note, file=sys.stderr)
        tfidf = TfidfModel(workers=cfg.threads).fit(train_ex.texts, train_ex.y)
        probs = tfidf.predict_proba(val_ex.texts) if val_ex is not None else None
        with folder.staged(model_dir) as tmp:
            tfidf.save(folder.tfidf_dir(tmp))
            update = finalize_thresholds(cfg.replace(ensemble=None), tmp, train_ex, val_ex, probs)
            info = dataclasses.replace(model_info(cfg, train_ex.labels, {}, kind="tfidf"), **update)
            folder.write(info, tmp)
        save_config(cfg, out / "config.yaml")
        record = {"epoch": 1, "seconds": time.perf_counter() - t0}
        record.update({k: v for k, v in info.metrics.items() if k != "per_label"})
        write_text_atomic(out / "metrics.jsonl", json.dumps(record) + "\n")
    return TrainResult(out, model_dir, [record], 1, info.metrics)
