"""Score a saved model on a labelled table: metrics, report, confusion matrices."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlabel.data import Examples, load_examples
from mlabel.decision import DecisionRule
from mlabel.metrics import (
    RANKING_KS,
    classification_report_text,
    confusion_matrices,
    multilabel_metrics,
    ranking_metrics,
)
from mlabel.predict import Predictions, Predictor, load_predictor, proba_in_chunks

SHOWN_LABELS = 50  # past this many labels, the text output lists the most frequent ones


@dataclass
class Evaluation:
    examples: Examples
    predictions: Predictions
    metrics: dict[str, Any]
    predictor: Predictor
    rule: DecisionRule

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
    id_col: str | None = None,
    device: str = "auto",
    top_k: int | None = None,
    min_labels: int | None = None,
    text_cols: list[str] | None = None,
    label_form: dict[str, str] | None = None,
) -> Evaluation:
    """Load a model folder and score it on a labelled table (`evaluate`), reading the table's
    text columns as the model was trained unless `text_cols` names them, and its labels as
    `label_form` says (`{"labels_col": ..., "label_sep": ...}`) or as the model was trained."""
    predictor = load_predictor(model_dir, engine, device)
    predictor.text_cols = text_cols or predictor.text_cols
    return evaluate(predictor, data, threshold, id_col, top_k, min_labels, label_form)


def evaluate(
    predictor: Predictor,
    data: Any,
    threshold: float | None = None,
    id_col: str | None = None,
    top_k: int | None = None,
    min_labels: int | None = None,
    label_form: dict[str, str] | None = None,
) -> Evaluation:
    """Predict a labelled table (path or DataFrame) with the predictor's labels, text columns
    and id column (unless `id_col` names the table's), and score it: the decisions (by the
    stored thresholds and rule, or those given; `top_k=0` lifts a stored cap) and the
    probabilities' ranking (`ranking_metrics`)."""
    examples = load_examples(
        data,
        predictor.text_cols,
        id_col=id_col or predictor.id_col,
        labels=predictor.labels,
        **(label_form or predictor.info.label_form()),
    )
    rule = predictor.decision_rule(top_k, min_labels)
    probs = proba_in_chunks(predictor, examples.texts, examples.source)
    preds = predictor.decisions(probs, threshold, rule)
    metrics = multilabel_metrics(examples.y, preds.hits, predictor.labels)
    metrics.update(ranking_metrics(examples.y, preds.probs))
    return Evaluation(examples, preds, metrics, predictor, rule)


def _ranking_lines(m: dict[str, Any]) -> list[str]:
    """The ranking metrics as a small table, one line per k."""
    if "lrap" not in m:
        why = "one label, nothing to rank" if m["ranking_rows"] else "no row with a label to rank"
        return [f"ranking: {why}"]
    lines = [
        f"ranking of the probabilities ({m['ranking_rows']} rows with a label): "
        f"LRAP {m['lrap']:.4f}  coverage error {m['coverage_error']:.2f}",
        f"  {'k':>3} {'precision':>10} {'recall':>10} {'F1':>10} {'nDCG':>10}",
    ]
    for k in RANKING_KS:
        values = [m[f"{key}@{k}"] for key in ("precision", "recall", "f1", "ndcg")]
        lines.append(f"  {k:>3} " + " ".join(f"{v:>10.4f}" for v in values))
    return lines


def _unseen_line(m: dict[str, Any], n_labels: int) -> list[str]:
    """Where labels are missing from the table and were not given, the macro-F1 without them."""
    if m["labels_seen"] == n_labels:
        return []
    return [
        f"macro-F1 over the {m['labels_seen']} labels the table holds or that were given: "
        f"{m['macro_f1_seen']:.4f} (the other {n_labels - m['labels_seen']} count as 0 in macro-F1)"
    ]


def format_evaluation(result: Evaluation) -> str:
    """Metrics, classification report and per-label confusion matrices as text."""
    m = result.metrics
    lines = [
        f"rows {len(result.examples)}  micro-F1 {m['micro_f1']:.4f}  macro-F1 {m['macro_f1']:.4f}  "
        f"samples-F1 {m['samples_f1']:.4f}  Jaccard {m['jaccard']:.4f}  subset accuracy {m['subset_accuracy']:.4f}  "
        f"Hamming loss {m['hamming_loss']:.4f}"
        + (f"  (rule: {result.rule.describe()})" if result.rule.describe() else ""),
        *_unseen_line(m, len(result.predictor.labels)),
        *_ranking_lines(m),
        "",
    ]
    y, labels = result.examples.y, result.predictor.labels
    shown = np.arange(len(labels))
    if len(labels) > SHOWN_LABELS:
        shown = np.argsort(-y.sum(axis=0), kind="stable")[:SHOWN_LABELS]
        lines.append(
            f"per-label lines for the {SHOWN_LABELS} most frequent of {len(labels)} labels "
            "(averages over all; --json or --report for the rest)"
        )
    lines += [
        classification_report_text(y, result.y_pred, labels, shown),
        "confusion matrices ([[TN FP] [FN TP]]):",
    ]
    cms = confusion_matrices(y, result.y_pred)
    for j in shown:
        cm = cms[j]
        lines.append(
            f"  {labels[j]:<32} TN {cm[0, 0]:>6}  FP {cm[0, 1]:>6}  FN {cm[1, 0]:>6}  TP {cm[1, 1]:>6}"
        )
    return "\n".join(lines)
