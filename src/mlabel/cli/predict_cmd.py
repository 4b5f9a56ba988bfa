"""`mlabel predict MODEL_DIR DATA -o OUT.csv` or `mlabel predict MODEL_DIR --text "..."`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from mlabel import extras
from mlabel.cli.common import (
    DATA,
    add_engine_option,
    add_rule_options,
    add_table_options,
    non_negative,
    one_text,
    probability,
    require_named_columns,
    table_columns,
    whole,
)
from mlabel.errors import UsageError

if TYPE_CHECKING:
    from mlabel.decision import DecisionRule

SHOWN_PROBS = 20  # probability lines per text in --text output (every tag is shown)


def add_parser(sub) -> argparse.ArgumentParser:
    from mlabel.config import ENGINES

    p = sub.add_parser("predict", help="tag a table (streamed in chunks) or one text")
    p.add_argument("model_dir")
    p.add_argument("data", nargs="?", help=f"table to tag: {DATA}")
    p.add_argument(
        "-o", "--output", help="output .csv, .jsonl or .parquet (without it: print --limit rows)"
    )
    p.add_argument(
        "--limit", type=whole(1), default=5, help="rows to print when there is no -o (default 5)"
    )
    p.add_argument(
        "--text",
        type=one_text,
        help="tag one text and print tags and probabilities (`-`: read it from standard input)",
    )
    p.add_argument("--proba", action="store_true", help="write probabilities instead of 0/1")
    p.add_argument("--threshold", type=probability, help="one threshold for every label")
    add_rule_options(p)
    p.add_argument(
        "--format",
        choices=("wide", "long"),
        default="wide",
        help="wide: one column per label (default); long: one row per (id, label, score) "
        "for the labels given",
    )
    add_table_options(p)
    p.add_argument(
        "--chunk-rows", type=whole(1), default=5000, help="rows read and written at a time"
    )
    add_engine_option(p, extra=("ray",))
    ray = p.add_argument_group("--engine ray (batch prediction on a Ray cluster)")
    ray.add_argument("--address", help="Ray cluster address (default: start a local instance)")
    ray.add_argument("--num-actors", type=whole(1), default=2, help="predictor actors (default 2)")
    ray.add_argument(
        "--actor-engine",
        choices=ENGINES,
        default="auto",
        help="engine in each actor (default: auto)",
    )
    ray.add_argument(
        "--actor-gpus",
        type=non_negative,
        default=0.0,
        help="GPUs per actor, fractions share one (default 0: actors on CPUs)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    from mlabel.predict import load_predictor, predict_file

    if (args.text is None) == (args.data is None):
        raise UsageError("predict: give DATA or --text (one of them)")
    if args.format == "long" and args.proba:
        raise UsageError("predict: --proba does not apply to --format long: its rows carry scores")
    if args.engine == "ray":
        if args.device != "auto":
            raise UsageError("predict: --device does not apply to --engine ray (see --actor-gpus)")
        if args.format != "wide" or args.top_k is not None or args.min_labels is not None:
            raise UsageError(
                "predict --engine ray: --format long, --top-k and --min-labels "
                "are not supported yet (the model's stored rule applies)"
            )
        return _predict_ray(args)  # which checks a local table's columns before starting Ray
    require_named_columns(args.data, args.id_col)
    predictor = load_predictor(args.model_dir, args.engine, args.device)
    id_col = table_columns(predictor, args)
    rule = predictor.decision_rule(args.top_k, args.min_labels)
    if args.text is not None:
        _show(predictor, ["text"], [args.text], args.threshold, rule)
        return 0
    if not args.output:
        from mlabel.data import id_spellings
        from mlabel.predict import table_rows
        from mlabel.tables import iter_table

        columns = [*id_spellings(id_col), *predictor.text_cols]
        # Only the first --limit rows are read: a huge table prints as fast as a small one.
        head = next(iter_table(args.data, chunk_rows=args.limit, str_cols=columns))
        _, ids, texts = table_rows(head, predictor.text_cols, id_col, Path(args.data).name)
        _show(predictor, ids, texts, args.threshold, rule)
        return 0
    n = predict_file(
        predictor,
        args.data,
        args.output,
        proba=args.proba,
        threshold=args.threshold,
        id_col=id_col,
        chunk_rows=args.chunk_rows,
        rule=rule,
        layout=args.format,
    )
    rows = f"{n} rows" if args.format == "wide" else f"the labels of {n} rows"
    print(f"wrote {rows} to {args.output} (engine {predictor.engine})")
    return 0


def _predict_ray(args: argparse.Namespace) -> int:
    """`--engine ray`: Ray Data feeds a pool of actors, each running `--actor-engine`."""
    from mlabel.ray_predict import predict_ray

    if args.data is None or not args.output:
        raise UsageError("predict --engine ray: give DATA and -o OUT (a file, or a folder)")
    extras.require("ray", "mlabel predict --engine ray")
    n = predict_ray(
        args.model_dir,
        args.data,
        args.output,
        proba=args.proba,
        threshold=args.threshold,
        id_col=args.id_col,
        text_cols=args.text_cols,
        engine=args.actor_engine,
        num_actors=args.num_actors,
        batch_size=args.chunk_rows,
        address=args.address,
        gpus_per_actor=args.actor_gpus,
    )
    print(f"wrote {n} rows to {args.output} (engine ray, {args.num_actors} actors)")
    return 0


def _show(
    predictor, ids: list[str], texts: list[str], threshold: float | None, rule: DecisionRule
) -> None:
    """Print each text's tags and its labels' probabilities, best first (tags marked with *):
    every tag, and other labels up to SHOWN_PROBS lines; a count of the rest."""
    import numpy as np

    preds = predictor.run(texts, threshold, rule)
    for row_id, text, tags, probs, hits in zip(
        ids, texts, preds.label_lists(), preds.probs, preds.hits
    ):
        if not text:
            print(f"{row_id}: (no text)\n  tags: (none: not scored)")
            continue
        print(f"{row_id}: {text.splitlines()[0][:90]}")
        print(f"  tags: {', '.join(tags) or '(none)'}")
        order = np.argsort(-probs, kind="stable")
        keep = hits > 0  # a tag under its own low threshold may rank past the first lines
        keep[order[:SHOWN_PROBS]] = True
        shown = order[keep[order]]
        width = max(30, *(len(predictor.labels[j]) for j in shown))  # probabilities in a column
        for j in shown:
            print(f"   {'*' if hits[j] else ' '} {predictor.labels[j]:<{width}} {probs[j]:.3f}")
        if not keep.all():
            rest = np.count_nonzero(~keep)
            print(f"     ... {rest} more labels, each at most {probs[~keep].max():.3f}")
