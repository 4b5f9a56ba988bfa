"""Options shared by several subcommands."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from pathlib import Path

from mlabel.config import TrainConfig

if typing.TYPE_CHECKING:
    from mlabel.predict import Predictor

DATA = (
    "CSV, TSV, JSON, JSON Lines, Parquet, Arrow/Feather or .txt file (CSV/TSV/JSON/text "
    "compressed too), a folder of Parquet parts, a Hugging Face datasets folder, or an Annif "
    "corpus folder"
)
HELP = {
    "model": "encoder name or path, `default` (embedded all-MiniLM-L6-v2) or `tfidf` (baseline)",
    "text_cols": "text columns, joined in this order",
    "id_col": "id column (default ID, in any case; else the row number)",
    "label_cols": "0/1 label columns (default: every column that is not id or text)",
    "labels_col": "one column holding label lists, e.g. 'cs.AI|math.CO'",
    "label_sep": "separator of the labels in a --labels-col cell",
    "val_frac": "validation share, split by iterative multi-label stratification",
    "val": "validation file instead of a split",
    "unlabeled": "table or .txt file (one text per line) of unlabelled texts: first adapt the "
    "encoder to them by masked-LM training (see `mlabel adapt`), then train from it",
    "all_data": "train on every row for the set number of epochs (no validation, no early stopping)",
    "pos_weight": "`auto`: weight positives by sqrt(negatives/positives) per label",
    "thresholds": "auto | fixed:X | global | per-label | shrunk (tuned on the validation split; "
    "auto picks shrunk, global or fixed 0.5, with or without at least one label per text)",
    "thresholds_from": "take thresholds from this model folder (for --all-data)",
    "top_k": "at most this many labels per text, the best ones over their thresholds",
    "min_labels": "at least this many labels per text, the best ones even under their thresholds",
    "ensemble": "`tfidf` (default): average with a TF-IDF model trained alongside; `none`: encoder alone",
    "long": "truncate, or chunk: read long texts whole as overlapping windows",
    "stride": "tokens neighbouring windows share with --long chunk (default: 64, or a "
    "quarter of max_len where 64 is not under half of it: 32 at max_len 128)",
    "max_len": "tokens read per text (or per window with --long chunk); `mlabel inspect` "
    "suggests one",
    "pooling": "mean or cls: how the token vectors become one text vector",
    "dropout": "dropout before the classification layer",
    "epochs": "epochs at most (early stopping may end sooner)",
    "batch_size": "texts per step",
    "grad_accum": "steps whose gradients add up to one update (batch size x this per update)",
    "lr": "peak learning rate (linear warmup, then linear decay to zero)",
    "head_lr": "learning rate of the classification layer (default: --lr)",
    "weight_decay": "AdamW weight decay",
    "warmup": "share of the steps spent warming the learning rate up",
    "max_grad_norm": "clip the gradient to this norm (0: off)",
    "optimizer": "adamw or adam",
    "loss": "bce (binary cross-entropy) or focal",
    "focal_gamma": "gamma of --loss focal",
    "patience": "stop after this many epochs without a better validation micro-F1 (0: off)",
    "long_pool": "max or mean: how a long text's window probabilities combine (--long chunk)",
    "seed": "seed of the split, the head's initialisation, shuffling and dropout",
    "threads": "CPU threads, and processes fitting the TF-IDF member (default: one per core)",
    "save_steps": "also checkpoint every this many steps within an epoch (resumable mid-epoch)",
    "keep": "newest checkpoints kept (the best epoch's is kept too)",
    "layer_decay": "layer-wise learning-rate decay factor (1 = off)",
    "attention_dropout": "dropout on the attention probabilities while training (default: "
    "the encoder's own, 0.1 for BERT-style encoders); 0 trains faster on long texts",
    "spell_symbols": "read symbols the encoder's vocabulary lacks (emoji) as their Unicode names, "
    "e.g. 'face with tears of joy', instead of one unknown token",
    "max_minutes": "time budget: start no epoch that would end past this many minutes of "
    "training, judged by the longest epoch so far (the first always runs; reading, tokenizing "
    "and saving come on top)",
    "precision": "auto (bf16 where the hardware is fast), fp32, bf16, fp16 (GPU)",
    "track": "mlflow or tensorboard",
    "subject_uri_base": "subject URIs are this base + the URL-quoted label (Annif API)",
    "subject_uris": "CSV/TSV table of label and uri columns (Annif API; every label needs one)",
}


def _arg_type(hint: typing.Any):
    """The element type argparse should parse, and whether the option takes a list."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return _arg_type(args[0])
    if typing.get_origin(hint) is list:
        return typing.get_args(hint)[0], True
    return hint, False


def add_config_options(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One option per TrainConfig field; only options given on the command line are set."""
    hints = typing.get_type_hints(TrainConfig)
    for field in dataclasses.fields(TrainConfig):
        if field.name in skip:
            continue
        flag = "--" + field.name.replace("_", "-")
        kind, many = _arg_type(hints[field.name])
        help_text = HELP.get(field.name, "")
        if kind is bool:
            parser.add_argument(
                flag, action="store_true", default=argparse.SUPPRESS, help=help_text
            )
        else:
            parser.add_argument(
                flag,
                type=kind,
                nargs="+" if many else None,
                default=argparse.SUPPRESS,
                help=_with_default(help_text, _default(field)),
                metavar=field.name.upper(),
            )


def _with_default(help_text: str, default: typing.Any) -> str:
    """`help_text` ending in its default, unless it says the default itself or there is none."""
    if default is None or "default" in help_text:
        return help_text
    return f"{help_text} (default: {default})"


def _default(field: dataclasses.Field) -> typing.Any:
    if field.default_factory is not dataclasses.MISSING:
        return " ".join(field.default_factory())
    return field.default


def config_values(args: argparse.Namespace) -> dict:
    """The TrainConfig settings given as options."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return {k: v for k, v in vars(args).items() if k in names}


def add_engine_option(parser: argparse.ArgumentParser, extra: tuple[str, ...] = ()) -> None:
    from mlabel.config import ENGINES

    parser.add_argument(
        "--engine",
        choices=(*ENGINES, *extra),
        default="auto",
        help="inference engine (default: auto)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="cpu, cuda or cuda:N for the torch engines (default: auto, the first GPU if any)",
    )


def add_rule_options(parser: argparse.ArgumentParser) -> None:
    """`--top-k` and `--min-labels`, replacing the model's stored decision rule where given."""
    parser.add_argument(
        "--top-k",
        type=whole(0),
        metavar="K",
        help="at most K labels per text, the best over their thresholds (0: no cap; "
        "default: the model's rule)",
    )
    parser.add_argument(
        "--min-labels",
        type=whole(0),
        metavar="N",
        help="at least N labels per text, its best even under their thresholds "
        "(default: the model's rule, 0 unless trained with one)",
    )


# Option types: argparse rejects a bad value where it enters (exit 2, naming the option), before
# any file is read or model loaded.


def add_table_options(parser: argparse.ArgumentParser) -> None:
    """`--text-cols` and `--id-col` for reading a table with a trained model: by default the
    columns the model was trained with."""
    parser.add_argument(
        "--text-cols",
        nargs="+",
        metavar="COL",
        help=f"{HELP['text_cols']} (default: the model's, as trained)",
    )
    parser.add_argument(
        "--id-col",
        help="id column (default: the model's, as trained, else ID; in any case; "
        "else the row number)",
    )


def table_columns(predictor: Predictor, args: argparse.Namespace) -> str:
    """Point `predictor` at the table's text columns where --text-cols names them; the id column."""
    predictor.text_cols = args.text_cols or predictor.text_cols
    return args.id_col or predictor.id_col


def require_named_columns(
    data: str | None, id_col: str | None, labels_col: str | None = None
) -> None:
    """An --id-col or --labels-col the table lacks stops the command: its ids would silently be
    row numbers, its labels looked for in other columns. Read from the table's first row alone."""
    if data is None or (id_col is None and labels_col is None):
        return
    from mlabel.cells import require_columns
    from mlabel.data import id_spellings, resolve_id_col
    from mlabel.tables import iter_table

    spellings = id_spellings(id_col) if id_col else []
    head = next(iter_table(data, chunk_rows=1, str_cols=spellings), None)
    if head is not None and id_col is not None:
        require_columns(head, [resolve_id_col(head.columns, id_col)], Path(data).name, "--id-col")
    if head is not None and labels_col is not None:
        require_columns(head, [labels_col], Path(data).name, "--labels-col")


def one_text(value: str) -> str:
    """--text's value; `-` reads the text from standard input (a whole document, as `annif
    suggest` reads one)."""
    return sys.stdin.read() if value == "-" else value


def probability(text: str) -> float:
    """A number from 0 to 1 (a threshold)."""
    value = _parse(text, float, "a number")
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def whole(low: int) -> typing.Callable[[str], int]:
    """A whole number, `low` or more."""

    def parse(text: str) -> int:
        value = _parse(text, int, "a whole number")
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below {low}")
        return value

    return parse


def non_negative(text: str) -> float:
    """A finite number, 0 or more (GPUs per actor, minutes)."""
    value = _parse(text, float, "a number")
    if not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a number from 0 up")
    return value


def _parse(text: str, kind: type, name: str) -> typing.Any:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {name}") from None
