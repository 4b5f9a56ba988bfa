"""`mlabel inspect DATA [--text-cols ...] [--out DIR]`: what a table holds, before training."""

from __future__ import annotations

import argparse

from mlabel.cli.common import DATA, HELP, require_named_columns


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("inspect", help="label counts, duplicates and text lengths of a table")
    p.add_argument("data", help=DATA)
    p.add_argument(
        "--text-cols", nargs="+", default=["text"], help=f"{HELP['text_cols']} (default: text)"
    )
    p.add_argument("--id-col", help=HELP["id_col"])
    labels = p.add_mutually_exclusive_group()
    labels.add_argument("--label-cols", nargs="+", help=HELP["label_cols"])
    labels.add_argument("--labels-col", help=HELP["labels_col"])
    labels.add_argument("--no-labels", action="store_true", help="length statistics only")
    p.add_argument("--label-sep", default="|", help="separator in --labels-col (default: |)")
    p.add_argument(
        "--model",
        default="default",
        help="encoder whose tokenizer counts tokens (default: default)",
    )
    p.add_argument("--out", "-o", help="folder for PNG plots, report.md and report.html")
    return p


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from mlabel.reports.profile import (
        inspect_tables,
        max_len_advice,
        profile_table,
        write_inspect_report,
    )

    require_named_columns(args.data, args.id_col)
    profile = profile_table(
        args.data,
        args.text_cols,
        id_col=args.id_col or "ID",
        label_cols=args.label_cols,
        labels_col=args.labels_col,
        label_sep=args.label_sep,
        with_labels=not args.no_labels,
        model=args.model,
    )
    console = Console(markup=False)  # labels and texts are data, not markup
    for table in inspect_tables(profile):
        console.print(table.rich())
    console.print(max_len_advice(profile), soft_wrap=True)
    if args.out:
        console.print(
            f"report written to {write_inspect_report(profile, args.out)}", soft_wrap=True
        )
    return 0
