"""How a model does on a labelled table, for `mlabel evaluate --report`: summary, per-label
and worst-error tables, confusion matrices, precision-recall and F1-by-threshold curves, and
a reliability diagram."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score, precision_recall_curve

from mlabel import faults
from mlabel.atomic import folder_on_success
from mlabel.metrics import (
    CALIBRATION_BINS,
    RANKING_KS,
    THRESHOLD_GRID,
    calibration_bins,
    confusion_matrices,
    expected_calibration_error,
    f1_by_threshold,
    micro_f1,
)
from mlabel.reports.curves import plot_training_curves
from mlabel.reports.render import Report, TextTable, label_colors, label_grid, label_title, save_png

N_ERRORS = 10  # rows in each "worst errors" table
SNIPPET = 160  # characters of text shown per error
MANY_LABELS = 50  # above this, per-label tables and plots show a selection of labels
SHOW_EACH = 10  # labels in each group of that selection: most frequent, lowest and highest F1


def find_metrics_jsonl(model_dir: str | Path) -> Path | None:
    """RUN/metrics.jsonl for a model folder RUN/model, when it exists and is not empty."""
    path = Path(model_dir).resolve().parent / "metrics.jsonl"
    return path if path.is_file() and path.stat().st_size else None


def evaluation_tables(result, n_errors: int = N_ERRORS) -> list[TextTable]:
    """Summary, per-label (one table, or one per group of `label_groups` past MANY_LABELS), most
    confident false positives and false negatives."""
    return [
        _summary_table(result),
        *_per_label_tables(result),
        *_worst_error_tables(result, n_errors),
    ]


def label_groups(result) -> dict[str, np.ndarray]:
    """The labels per-label tables and plots show: all of them up to MANY_LABELS; past that the
    SHOW_EACH most frequent, and, among labels with positives in the data, the SHOW_EACH with the
    lowest F1 (the more frequent first on a tie) and with the highest F1. Thousands of panels
    or rows would hide what a reader looks for; `evaluate --json` holds every label."""
    labels = result.predictor.labels
    if len(labels) <= MANY_LABELS:
        return {"Precision, recall and F1 per label": np.arange(len(labels))}
    stats = [result.metrics["per_label"][label] for label in labels]
    f1 = np.array([s["f1"] for s in stats])
    support = np.array([s["support"] for s in stats])
    seen = np.flatnonzero(support > 0)
    n = len(labels)
    return {
        f"The {SHOW_EACH} most frequent labels (of {n})": np.lexsort((f1, -support))[:SHOW_EACH],
        f"The {SHOW_EACH} lowest F1 (labels with positives)": seen[
            np.lexsort((-support[seen], f1[seen]))
        ][:SHOW_EACH],
        f"The {SHOW_EACH} highest F1 (labels with positives)": seen[
            np.lexsort((-support[seen], -f1[seen]))
        ][:SHOW_EACH],
    }


def shown_labels(result) -> np.ndarray:
    """Every label of `label_groups`, once, in the order of the groups."""
    order = np.concatenate(list(label_groups(result).values()))
    return order[np.sort(np.unique(order, return_index=True)[1])]


def _summary_table(result) -> TextTable:
    m = result.metrics
    method = result.predictor.info.threshold_method
    rows = [
        ["rows", f"{len(result.examples)}"],
        ["labels", f"{len(result.predictor.labels)}"],
        ["thresholds", _threshold_summary(result.thresholds, method)],
        ["rule", result.rule.describe() or "none (thresholds alone)"],
        ["engine", result.predictor.engine],
    ]
    names = {
        "micro_f1": "micro-F1",
        "macro_f1": "macro-F1",
        "macro_f1_seen": "macro-F1, labels in the table or given",
        "samples_f1": "samples-F1",
        "jaccard": "Jaccard (samples)",
        "micro_precision": "micro precision",
        "micro_recall": "micro recall",
        "subset_accuracy": "subset accuracy",
        "hamming_loss": "Hamming loss",
    }
    rows += [[name, f"{m[key]:.4f}"] for key, name in names.items()]
    return TextTable("Summary", ["", "value"], rows + _ranking_rows(m))


def _ranking_rows(m: dict) -> list[list[str]]:
    """The ranking metrics (of the probabilities, over the rows with a label), when any."""
    if "lrap" not in m:
        return []
    names = {"precision": "precision", "recall": "recall", "f1": "F1", "ndcg": "nDCG"}
    rows = [
        [f"{name}@{k}", f"{m[f'{key}@{k}']:.4f}"] for key, name in names.items() for k in RANKING_KS
    ]
    return [
        *rows,
        ["label ranking average precision", f"{m['lrap']:.4f}"],
        ["coverage error (lower is better)", f"{m['coverage_error']:.2f}"],
        ["rows ranked (with a label)", f"{m['ranking_rows']}"],
    ]


def _threshold_summary(thresholds: np.ndarray, method: str) -> str:
    if np.allclose(thresholds, thresholds[0]):
        return f"{thresholds[0]:.2f} for every label" + (f" ({method})" if method else "")
    return f"per label, {thresholds.min():.2f} to {thresholds.max():.2f}" + (
        f" ({method})" if method else ""
    )


def _per_label_tables(result) -> list[TextTable]:
    header = ["label", "threshold", "precision", "recall", "F1", "AP", "support", "TP", "FP", "FN"]
    return [
        TextTable(title, header, [_per_label_row(result, j) for j in chosen])
        for title, chosen in label_groups(result).items()
    ]


def _per_label_row(result, j: int) -> list[str]:
    y, probs, label = result.examples.y[:, j] > 0, result.probs[:, j], result.predictor.labels[j]
    pred = result.y_pred[:, j] > 0
    s = result.metrics["per_label"][label]
    ap = average_precision_score(y, probs) if y.any() else float("nan")
    counts = [(y & pred).sum(), (~y & pred).sum(), (y & ~pred).sum()]  # TP, FP, FN
    return (
        [label, f"{result.thresholds[j]:.2f}", f"{s['precision']:.3f}", f"{s['recall']:.3f}"]
        + [f"{s['f1']:.3f}", f"{ap:.3f}", f"{s['support']}"]
        + [f"{c}" for c in counts]
    )


def _worst_error_tables(result, n_errors: int) -> list[TextTable]:
    y, probs, labels = result.examples.y > 0, result.probs, result.predictor.labels
    pred = result.y_pred > 0
    header = ["id", "label", "probability", "threshold", "true labels", "text"]
    tables = []
    for title, mask, order in (
        ("Most confident false positives", ~y & pred, -probs),
        ("Most confident false negatives", y & ~pred, probs),
    ):
        rows_cols = np.argwhere(mask)
        ranked = rows_cols[np.argsort(order[mask], kind="stable")][:n_errors]
        rows = [
            [result.examples.ids[i], labels[j], f"{probs[i, j]:.3f}", f"{result.thresholds[j]:.2f}"]
            + [", ".join(np.asarray(labels)[y[i]]) or "(none)", _snippet(result.examples.texts[i])]
            for i, j in ranked
        ]
        tables.append(TextTable(f"{title} ({int(mask.sum())} in all)", header, rows))
    return tables


def _snippet(text: str, width: int = SNIPPET) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def write_evaluation_report(
    result, out_dir: str | Path, metrics_jsonl: str | Path | None = None, n_errors: int = N_ERRORS
) -> Path:
    """PNG plots, report.md and report.html for an Evaluation in `out_dir`; returns the HTML path.
    They are written beside `out_dir` first and replace the previous report only once all are."""
    out = Path(out_dir)
    with folder_on_success(out) as stage:
        _write_report(result, stage, metrics_jsonl, n_errors)
    return out / "report.html"


def _write_report(result, out: Path, metrics_jsonl: str | Path | None, n_errors: int) -> None:
    summary, *per_label, false_pos, false_neg = evaluation_tables(result, n_errors)
    report = Report(f"Evaluation: {result.predictor.model_dir.name} on {result.examples.source}")
    report.table(summary)
    report.heading("Per label")
    if len(result.predictor.labels) > MANY_LABELS:
        report.text(
            f"{len(result.predictor.labels)} labels: these tables and the per-label plots show "
            "the most frequent labels and those with the lowest and highest F1; "
            "`mlabel evaluate --json` gives every label's metrics."
        )
    for table in per_label:
        report.table(table)
    _add_plots(report, result, out)
    faults.point("report.plots")
    if metrics_jsonl is not None:
        report.heading("Training")
        report.image(
            plot_training_curves(Path(metrics_jsonl), out / "training_curves.png"),
            "Loss and validation metrics per epoch",
        )
    report.heading("Worst errors")
    report.table(false_pos)
    report.table(false_neg)
    report.write(out)


def _add_plots(report: Report, result, out: Path) -> None:
    """The per-label, threshold and calibration plots of an Evaluation."""
    y, probs, t = result.examples.y, result.probs, result.thresholds
    shown = shown_labels(result)
    few = f" ({len(shown)} of {len(t)} labels)" if len(shown) < len(t) else ""
    labels = [result.predictor.labels[j] for j in shown]
    y_s, probs_s, t_s = y[:, shown], probs[:, shown], t[shown]
    cms = confusion_matrices(y_s, result.y_pred[:, shown])
    report.image(
        plot_confusion_grid(labels, cms, out / "confusion_matrices.png"),
        "Confusion matrix per label" + few,
    )
    report.image(
        plot_pr_curves(labels, y_s, probs_s, t_s, out / "pr_curves.png"),
        "Precision-recall curve per label" + few,
    )
    report.heading("Thresholds")
    report.image(
        plot_f1_global(y, probs, t, out / "f1_threshold.png"), "Micro-F1 against a single threshold"
    )
    report.image(
        plot_f1_per_label(labels, y_s, probs_s, t_s, out / "f1_threshold_per_label.png"),
        "F1 against threshold per label" + few,
    )
    report.heading("Calibration")
    ece = expected_calibration_error(y, probs)
    report.text(
        f"Expected calibration error (all labels pooled, {CALIBRATION_BINS} bins): {ece:.4f}"
    )
    report.image(plot_reliability(y, probs, out / "calibration.png"), "Reliability diagram")


def plot_confusion_grid(labels: list[str], cms: np.ndarray, out_png: Path) -> Path:
    """One 2x2 matrix per label, coloured by row share (so rare labels are readable too)."""
    fig, axes = label_grid(
        len(labels), "Confusion matrix per label (colour: share of the true row)"
    )
    colors = label_colors(len(labels))
    for ax, label, cm, color in zip(axes, labels, cms, colors):
        share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for (i, j), name in zip(np.ndindex(2, 2), ("TN", "FP", "FN", "TP")):
            ax.text(
                j,
                i,
                f"{name}\n{cm[i, j]}",
                ha="center",
                va="center",
                fontsize=9,
                color="white" if share[i, j] > 0.6 else "black",
            )
        ax.set_xticks([0, 1], ["pred 0", "pred 1"], fontsize=8)
        ax.set_yticks([0, 1], ["true 0", "true 1"], fontsize=8)
        label_title(ax, label, color)
    return save_png(fig, out_png)


def plot_pr_curves(
    labels: list[str], y: np.ndarray, probs: np.ndarray, thresholds: np.ndarray, out_png: Path
) -> Path:
    """Precision-recall curve per label; the dot is the model's threshold."""
    fig, axes = label_grid(len(labels), "Precision-recall per label (dot: the model's threshold)")
    for j, (ax, color) in enumerate(zip(axes, label_colors(len(labels)))):
        ax.set(xlim=(0, 1.02), ylim=(0, 1.05))
        ax.tick_params(labelsize=8)
        truth, pred = y[:, j] > 0, probs[:, j] >= thresholds[j]
        if not truth.any():
            label_title(ax, labels[j], color, "no positives in the data")
            continue
        precision, recall, _ = precision_recall_curve(truth, probs[:, j])
        ax.plot(recall, precision, color=color, linewidth=2, drawstyle="steps-post")
        ax.axhline(truth.mean(), color="#999999", linestyle=":", linewidth=1)
        tp = float((truth & pred).sum())
        if pred.any():  # with nothing predicted, precision is undefined: no dot
            ax.plot(tp / truth.sum(), tp / pred.sum(), "o", color="black", markersize=6)
        note = f"AP {average_precision_score(truth, probs[:, j]):.2f}, t={thresholds[j]:.2f}"
        label_title(ax, labels[j], color, note + ("" if pred.any() else " (none predicted)"))
    fig.supxlabel("recall")
    fig.supylabel("precision")
    return save_png(fig, out_png)


def plot_f1_global(y: np.ndarray, probs: np.ndarray, thresholds: np.ndarray, out_png: Path) -> Path:
    """Micro-F1 against one threshold for all labels, with the best and the model's marked."""
    micro, _ = f1_by_threshold(y, probs)
    best = int(np.argmax(micro))
    fig = Figure(figsize=(8, 4.8), layout="constrained")
    ax = fig.subplots()
    ax.plot(THRESHOLD_GRID, micro, color="#4c72b0", linewidth=2, label="micro-F1, one threshold")
    ax.plot(
        THRESHOLD_GRID[best],
        micro[best],
        "o",
        color="#4c72b0",
        label=f"best: {micro[best]:.3f} at {THRESHOLD_GRID[best]:.2f}",
    )
    model_f1 = micro_f1(y > 0, probs >= thresholds)
    if np.allclose(thresholds, thresholds[0]):
        ax.axvline(
            thresholds[0],
            color="#c44e52",
            linestyle="--",
            label=f"model's threshold {thresholds[0]:.2f} (micro-F1 {model_f1:.3f})",
        )
    else:
        ax.axhline(
            model_f1,
            color="#c44e52",
            linestyle="--",
            label=f"model's per-label thresholds (micro-F1 {model_f1:.3f})",
        )
    ax.set(xlabel="threshold", ylabel="micro-F1", ylim=(0, 1.02), xlim=(0, 1))
    ax.set_title("Micro-F1 against the decision threshold")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    return save_png(fig, out_png)


def plot_f1_per_label(
    labels: list[str], y: np.ndarray, probs: np.ndarray, thresholds: np.ndarray, out_png: Path
) -> Path:
    """F1 against threshold per label; the dashed line is the model's threshold for that label."""
    _, curves = f1_by_threshold(y, probs)
    fig, axes = label_grid(
        len(labels), "F1 against threshold per label (dashed: the model's threshold)"
    )
    for j, (ax, color) in enumerate(zip(axes, label_colors(len(labels)))):
        best = int(np.argmax(curves[j]))
        label_title(
            ax, labels[j], color, f"best {curves[j][best]:.2f} at {THRESHOLD_GRID[best]:.2f}"
        )
        ax.plot(THRESHOLD_GRID, curves[j], color=color, linewidth=2)
        ax.plot(THRESHOLD_GRID[best], curves[j][best], "o", color=color, markersize=5)
        ax.axvline(thresholds[j], color="black", linestyle="--", linewidth=1)
        ax.set(xlim=(0, 1), ylim=(0, 1.05))
        ax.tick_params(labelsize=8)
    fig.supxlabel("threshold")
    fig.supylabel("F1")
    return save_png(fig, out_png)


def plot_reliability(y: np.ndarray, probs: np.ndarray, out_png: Path) -> Path:
    """Reliability diagram over all (row, label) pairs, with how many pairs fall in each bin."""
    count, mean_p, rate = calibration_bins(y, probs)
    used = count > 0
    edges = np.linspace(0, 1, CALIBRATION_BINS + 1)
    fig = Figure(figsize=(6.5, 7), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.plot([0, 1], [0, 1], color="#999999", linestyle=":", label="perfectly calibrated")
    top.bar(
        edges[:-1][used],
        rate[used],
        width=1 / CALIBRATION_BINS,
        align="edge",
        color="#4c72b0",
        alpha=0.35,
        edgecolor="#4c72b0",
        label="observed rate per bin",
    )
    top.plot(mean_p[used], rate[used], "o-", color="#4c72b0", label="mean probability vs rate")
    top.set(ylabel="share that is truly positive", xlim=(0, 1), ylim=(0, 1.02))
    ece = expected_calibration_error(y, probs)
    top.set_title(f"Reliability diagram, all labels pooled (ECE {ece:.3f})")
    top.legend(loc="upper left", fontsize=9)
    bottom.bar(
        edges[:-1][used],
        count[used],
        width=1 / CALIBRATION_BINS,
        align="edge",
        color="#888888",
        edgecolor="white",
    )
    bottom.set_yscale("log")
    bottom.set_ylim(bottom=0.8)
    bottom.set(xlabel="predicted probability", ylabel="(row, label) pairs")
    return save_png(fig, out_png)
