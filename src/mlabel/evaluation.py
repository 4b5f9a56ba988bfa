"""Score a saved model on a labelled table: metrics, report, confusion matrices."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlabel.data import Examples, load_examples
from mlabel.metrics import (
    classification_report_text,
    confusion_matrices,
    multilabel_metrics,
)
from mlabel.predict import Predictions, Predictor, load_predictor


@dataclass
class Evaluation:
    examples: Examples
    predictions: Predictions
    metrics: dict[str, Any]
    predictor: Predictor

    @property
    def probs(self) -> np.ndarray:
        return self.predictions.probs

    @property
    def thresholds(self) -> np.ndarray:
        return self.predictions.thresholds

    @property
    def y_pred(self) -> np.ndarray:
        return self.predictions.hits


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
        data,
        predictor.text_cols,
        id_col=id_col,
        labels=predictor.labels,
        **predictor.info.label_form(),
    )
    preds = predictor.run(examples.texts, threshold)
    metrics = multilabel_metrics(examples.y, preds.hits, predictor.labels)
    return Evaluation(examples, preds, metrics, predictor)


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
