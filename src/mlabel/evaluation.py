"""Score a saved model on a labelled table: metrics, report, confusion matrices."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlabel.data import Examples, load_examples
from mlabel.metrics import (
    apply_thresholds,
    classification_report_text,
    confusion_matrices,
    multilabel_metrics,
)
from mlabel.predict import Predictor, load_predictor


@dataclass
class Evaluation:
    examples: Examples
    probs: np.ndarray
    thresholds: np.ndarray
    metrics: dict[str, Any]
    predictor: Predictor

    @property
    def y_pred(self) -> np.ndarray:
        return apply_thresholds(self.probs, self.thresholds)


def evaluate_model(
    model_dir: str | Path,
    data: Any,
    engine: str = "auto",
    threshold: float | None = None,
    id_col: str = "ID",
    device: str = "auto",
) -> Evaluation:
    """Predict a labelled table with the model's own text columns and labels, and score it."""
    predictor = load_predictor(model_dir, engine, device)
    examples = load_examples(
        data, predictor.text_cols, id_col=id_col, labels=predictor.labels, **_label_form(predictor)
    )
    probs = predictor.predict_proba(examples.texts)
    thresholds = predictor.decision_thresholds(threshold)
    metrics = multilabel_metrics(examples.y, apply_thresholds(probs, thresholds), predictor.labels)
    return Evaluation(examples, probs, thresholds, metrics, predictor)


def _label_form(predictor: Predictor) -> dict[str, Any]:
    """Read labels the way the training data held them (0/1 columns or one list column)."""
    config = predictor.info.get("config", {})
    if config.get("labels_col"):
        return {"labels_col": config["labels_col"], "label_sep": config.get("label_sep", "|")}
    return {}


def format_evaluation(result: Evaluation) -> str:
    """Metrics, classification report and per-label confusion matrices as text."""
    m = result.metrics
    lines = [
        f"rows {len(result.examples)}  micro-F1 {m['micro_f1']:.4f}  macro-F1 {m['macro_f1']:.4f}  "
        f"samples-F1 {m['samples_f1']:.4f}  subset accuracy {m['subset_accuracy']:.4f}  "
        f"Hamming loss {m['hamming_loss']:.4f}",
        "",
        classification_report_text(result.examples.y, result.y_pred, result.predictor.labels),
        "confusion matrices ([[TN FP] [FN TP]]):",
    ]
    for label, cm in zip(
        result.predictor.labels, confusion_matrices(result.examples.y, result.y_pred)
    ):
        lines.append(
            f"  {label:<32} TN {cm[0, 0]:>6}  FP {cm[0, 1]:>6}  FN {cm[1, 0]:>6}  TP {cm[1, 1]:>6}"
        )
    return "\n".join(lines)
