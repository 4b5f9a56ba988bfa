"""`mlabel explain MODEL_DIR --text "..."` or `mlabel explain MODEL_DIR DATA -o WORDS.csv`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from mlabel.cli.common import (
    DATA,
    add_table_options,
    one_text,
    probability,
    require_named_columns,
    table_columns,
    whole,
)
from mlabel.errors import UsageError

if TYPE_CHECKING:
    from mlabel.explain import Explanation

TEXT_TOP = 10  # words printed per label unless --top says otherwise


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("explain", help="the words that pushed each label's probability up or down")
    p.add_argument("model_dir")
    p.add_argument("data", nargs="?", help=f"table to explain: {DATA}")
    p.add_argument(
        "--text",
        type=one_text,
        help="explain one text and print the words (`-`: read it from standard input)",
    )
    p.add_argument(
        "-o", "--output", help="output .csv or .jsonl: one row per (id, label, word, span, weight)"
    )
    p.add_argument(
        "--label",
        action="append",
        metavar="LABEL",
        help="explain this label (repeat for more; default: the labels predicted, else the best)",
    )
    p.add_argument(
        "--top",
        type=whole(1),
        help=f"strongest words per label (default: {TEXT_TOP} printed, every word in a table)",
    )
    p.add_argument("--threshold", type=probability, help="one threshold for every label")
    p.add_argument(
        "--limit", type=whole(1), default=3, help="rows to print when there is no -o (default 3)"
    )
    add_table_options(p)
    p.add_argument(
        "--chunk-rows", type=whole(1), default=64, help="rows read and written at a time"
    )
    p.add_argument(
        "--steps",
        type=whole(1),
        default=32,
        help="integrated-gradients steps per label (default 32; more is closer, slower)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    from mlabel.explain import Explainer, explain_file

    if (args.text is None) == (args.data is None):
        raise UsageError("explain: give DATA or --text (one of them)")
    if args.output and args.data is None:
        raise UsageError("explain: -o writes the words of a table; give DATA")
    require_named_columns(args.data, args.id_col)
    explainer = Explainer(args.model_dir, n_steps=args.steps)
    id_col = table_columns(explainer.predictor, args)
    if args.text is not None:
        _show(
            ["text"],
            [args.text],
            explainer.explain([args.text], args.label, args.threshold),
            args.top,
        )
        return 0
    if not args.output:
        from mlabel.data import id_spellings, load_examples
        from mlabel.tables import iter_table

        text_cols = explainer.predictor.text_cols
        columns = [*id_spellings(id_col), *text_cols]
        head = next(iter_table(args.data, chunk_rows=args.limit, str_cols=columns))
        rows = load_examples(head, text_cols, id_col, require_labels=False)
        found = explainer.explain(rows.texts, args.label, args.threshold)
        _show(rows.ids, rows.texts, found, args.top)
        return 0
    n = explain_file(
        explainer, args.data, args.output, args.label, args.top, id_col, args.chunk_rows
    )
    print(f"wrote the word weights of {n} rows to {args.output}")
    return 0


def _show(
    ids: list[str], texts: list[str], found: list[list[Explanation]], top: int | None
) -> None:
    """Each text's labels, their probabilities, and their strongest words, signed."""
    for row_id, text, per_label in zip(ids, texts, found):
        print(f"{row_id}: {text.splitlines()[0][:90]}")
        for e in per_label:
            print(f"  {e.label}: probability {e.probability:.3f} ({e.baseline:.3f} for no text)")
            for w in e.strongest(top or TEXT_TOP):
                sign = "+" if w.weight > 0 else "−"
                print(f"    {sign} {abs(w.weight):.4f}  {w.text}  [{w.start}:{w.end}]")
