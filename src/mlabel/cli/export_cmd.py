"""`mlabel export MODEL_DIR --onnx [--int8] [--sample DATA]`: ONNX files plus the measured engine choice."""

from __future__ import annotations

import argparse

from mlabel import extras
from mlabel.cli.common import whole
from mlabel.errors import UsageError


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "export", help="export to ONNX (optionally int8) and pick the fastest engine"
    )
    p.add_argument("model_dir")
    p.add_argument("--onnx", action="store_true", help="write MODEL_DIR/onnx/model.onnx")
    p.add_argument("--int8", action="store_true", help="also write a dynamic int8 model")
    p.add_argument(
        "--sample",
        help="table with the model's text columns to time the engines on "
        "(default: synthetic texts from the vocabulary)",
    )
    p.add_argument("--sample-rows", type=whole(1), default=256, help="rows of --sample to use")
    return p


def run(args: argparse.Namespace) -> int:
    if not args.onnx:
        raise UsageError("mlabel export: nothing to do; give --onnx (and optionally --int8)")
    extras.require("onnx", "mlabel export --onnx")
    from mlabel.export import choose_engine, export_onnx

    for path in export_onnx(args.model_dir, int8=args.int8):
        print(f"wrote {path}")
    texts, source = _sample(args)
    record = choose_engine(args.model_dir, texts, source)
    for engine, r in record.measured.items():
        print(
            f"{engine:<10} {r['docs_per_s']:8.1f} docs/s  agreement with fp32 "
            f"{r['agreement_f1']:.4f}  max |dp| {r['max_abs_diff']:.4f}"
        )
    print(f"engine auto -> {record.choice} (recorded in mlabel.json)")
    return 0


def _sample(args: argparse.Namespace) -> tuple[list[str], str]:
    from mlabel.data import join_texts
    from mlabel.export import synthetic_texts
    from mlabel.folder import read
    from mlabel.tables import iter_table

    if args.sample is None:
        return synthetic_texts(args.model_dir, args.sample_rows), "synthetic"
    text_cols = read(args.model_dir).text_cols
    chunk = next(iter(iter_table(args.sample, chunk_rows=args.sample_rows, str_cols=text_cols)))
    return join_texts(chunk, text_cols, args.sample), str(args.sample)
