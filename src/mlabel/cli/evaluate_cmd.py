"""`mlabel evaluate MODEL_DIR DATA [--json] [--report DIR]`."""

from __future__ import annotations

import argparse
import json

from mlabel.cli.common import (
    DATA,
    HELP,
    add_engine_option,
    add_rule_options,
    add_table_options,
    probability,
    require_named_columns,
    whole,
)


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("evaluate", help="score a model folder on a labelled table")
    p.add_argument("model_dir")
    p.add_argument("data", help=f"labelled table: {DATA}")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument(
        "--threshold",
        type=probability,
        help="one threshold for every label instead of the stored ones",
    )
    add_rule_options(p)
    add_table_options(p)
    p.add_argument(
        "--labels-col",
        help=f"{HELP['labels_col']} (default: the model's form: its list column, else 0/1 columns)",
    )
    p.add_argument("--label-sep", default="|", help=f"{HELP['label_sep']} (default: |)")
    p.add_argument(
        "--report", metavar="DIR", help="write PNG plots, report.md and report.html to DIR"
    )
    p.add_argument(
        "--errors", type=whole(0), default=10, help="rows in each worst-errors table (default: 10)"
    )
    add_engine_option(p)
    return p


def run(args: argparse.Namespace) -> int:
    from mlabel.evaluation import evaluate_model, format_evaluation

    require_named_columns(args.data, args.id_col, args.labels_col)
    result = evaluate_model(
        args.model_dir,
        args.data,
        engine=args.engine,
        threshold=args.threshold,
        device=args.device,
        top_k=args.top_k,
        min_labels=args.min_labels,
        id_col=args.id_col,
        text_cols=args.text_cols,
        label_form={"labels_col": args.labels_col, "label_sep": args.label_sep}
        if args.labels_col
        else None,
    )
    if args.json:
        print(json.dumps(result.metrics, indent=2))
    else:
        print(format_evaluation(result))
    if args.report:
        from mlabel.reports.evaluation import find_metrics_jsonl, write_evaluation_report

        history = find_metrics_jsonl(args.model_dir)
        path = write_evaluation_report(result, args.report, history, n_errors=args.errors)
        print(f"report written to {path}")
    return 0
