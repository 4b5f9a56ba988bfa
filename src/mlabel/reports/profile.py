"""What a table holds, for `mlabel inspect`: texts, their lengths in words and tokens,
duplicates and labels, shown as tables, a --max-len suggestion and a report with plots."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from mlabel.cells import require_columns
from mlabel.data import (
    Examples,
    default_label_columns,
    join_texts,
    label_matrix_from_columns,
    read_rows,
    resolve_id_col,
    rows_as_texts,
    text_cells,
)
from mlabel.docdir import is_document_folder, lacks_subjects
from mlabel.errors import DataError, ModelError
from mlabel.labellists import labels_from_list_column, list_column
from mlabel.reports.data_plots import (
    plot_cooccurrence,
    plot_label_frequencies,
    plot_labels_per_row,
    plot_length_by_label,
    plot_length_histogram,
)
from mlabel.reports.render import Report, TextTable, pct

COVERAGE = 0.95  # share of rows the suggested --max-len keeps whole
SHOWN_LABELS = 50  # most labels in the per-label table and plots; past it, the most frequent
COOCCURRING = 20  # labels in the co-occurrence heatmap: the most frequent
PAIRS = 20  # rows of the most-frequent-pairs table
UNREAD_SHOWN = 8  # most frequent unread pieces named in the overview


@dataclass
class DataProfile:
    """What a table holds: texts, their lengths, duplicates and (when present) labels."""

    source: str
    text_cols: list[str]
    texts: list[str]  # "" where a row has no text
    empty: np.ndarray  # (n,) bool
    duplicate_texts: int  # rows that repeat an earlier row's text
    duplicate_ids: int | None  # rows that repeat an earlier id; None without an id column
    words: np.ndarray  # (n,) words per row, 0 for empty rows
    tokens: np.ndarray  # (n,) tokens per row with special tokens, 0 for empty rows
    tokenizer: str
    model_max_len: int
    labels: list[str]
    y: np.ndarray | None  # (n, L) 0/1, or None for unlabelled data
    conflicting: int = 0  # distinct duplicated texts whose copies carry different labels
    per_text: np.ndarray | None = None  # labels per text where training reads rows as fewer texts
    unread: np.ndarray | None = None  # (n,) tokens the tokenizer could only read as unknown
    unread_pieces: Counter = field(default_factory=Counter)  # the text behind them, counted
    no_subjects: int | None = None  # a document folder's documents without subjects

    @property
    def n_rows(self) -> int:
        return len(self.texts)

    @property
    def suggested_max_len(self) -> int:
        """The token length that COVERAGE of the (non-empty) rows fit in, capped at the model's."""
        return min(_covering_length(self.tokens[~self.empty]), self.model_max_len)


def _covering_length(lengths: np.ndarray, coverage: float = COVERAGE) -> int:
    return int(np.quantile(lengths, coverage, method="inverted_cdf")) if len(lengths) else 0


def profile_table(
    data: str | Path | pd.DataFrame,
    text_cols: Sequence[str],
    id_col: str = "ID",
    label_cols: Sequence[str] | None = None,
    labels_col: str | None = None,
    label_sep: str = "|",
    with_labels: bool = True,
    model: str = "default",
) -> DataProfile:
    """Profile a table; unlike load_examples it reports empty texts and duplicate ids."""
    text_cols = [text_cols] if isinstance(text_cols, str) else list(text_cols)
    df, source = read_rows(data, text_cols, id_col, labels_col if with_labels else None)
    id_col = resolve_id_col(df.columns, id_col)
    require_columns(df, text_cols, source, "--text-cols")
    empty = _empty_text_rows(df, text_cols)
    texts = _row_texts(df, text_cols, empty, source)
    labels, y, from_list = [], None, False
    if with_labels:
        labels, y, from_list = _read_labels(
            df, text_cols, id_col, label_cols, labels_col, label_sep, source
        )
    tokenizer = _load_tokenizer(model)
    counts = token_counts(tokenizer, texts)
    return DataProfile(
        source=source,
        text_cols=text_cols,
        texts=texts,
        empty=empty,
        duplicate_texts=int(pd.Series(texts)[~empty].duplicated().sum()),
        duplicate_ids=int(df[id_col].duplicated().sum()) if id_col in df.columns else None,
        words=np.array([len(t.split()) for t in texts], dtype=np.int64),
        tokens=np.where(empty, 0, counts.tokens),
        tokenizer=model,
        model_max_len=_model_max_len(tokenizer),
        labels=labels,
        y=y,
        conflicting=_conflicting_duplicates(texts, empty, y),
        per_text=_labels_per_text(df, id_col, texts, empty, labels, y, from_list, source),
        unread=counts.unread,
        unread_pieces=counts.pieces,
        no_subjects=int(lacks_subjects(df).sum()) if is_document_folder(data) else None,
    )


def _empty_text_rows(df: pd.DataFrame, text_cols: list[str]) -> np.ndarray:
    cells = [text_cells(df, c) == "" for c in text_cols]
    return np.logical_and.reduce([c.to_numpy() for c in cells])


def _row_texts(df: pd.DataFrame, text_cols: list[str], empty: np.ndarray, source: str) -> list[str]:
    """Each row's text columns joined as `load_examples` joins them; "" for rows without text."""
    texts = np.array([""] * len(df), dtype=object)
    if (~empty).any():
        texts[~empty] = join_texts(df[~empty], text_cols, source)
    return texts.tolist()


def _read_labels(
    df: pd.DataFrame,
    text_cols: list[str],
    id_col: str,
    label_cols: Sequence[str] | None,
    labels_col: str | None,
    label_sep: str,
    source: str,
) -> tuple[list[str], np.ndarray | None, bool]:
    """Labels from a list column or 0/1 columns, read by `mlabel.data` as for training, and
    whether a list column held them; ([], None, False) when no column is left for them."""
    rest = default_label_columns(df, id_col, text_cols)
    labels_col = list_column(df, label_cols, labels_col, rest=rest, sep=label_sep)
    if labels_col is not None:
        return (*labels_from_list_column(df, labels_col, label_sep, None, source), True)
    names = list(label_cols or rest)
    if not names:
        return [], None, False
    try:
        y = label_matrix_from_columns(df, names, source, hint=label_cols is None)
        return names, y, False
    except DataError as err:
        if label_cols is not None:
            raise
        raise DataError(f"{err}, or pass --no-labels") from None


def _load_tokenizer(model: str):
    from mlabel.encoding import load_tokenizer
    from mlabel.model import resolve_encoder

    try:
        return load_tokenizer(resolve_encoder(model))
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load a tokenizer for model {model!r}: {err}") from None


@dataclass
class TokenCounts:
    """Tokens per text (special tokens included, no truncation), how many of them are the
    tokenizer's unknown token, and the text those stand for (e.g. emoji a vocabulary lacks)."""

    tokens: np.ndarray
    unread: np.ndarray
    pieces: Counter


def token_counts(tokenizer, texts: list[str]) -> TokenCounts:
    """Count each text's tokens and unknown tokens with `tokenizer` (a fast one: the unknown
    tokens' text comes from its offsets, asked for the texts that hold any), a bounded block
    of texts at a time."""
    from mlabel.encoding import text_blocks

    tokens, unread, pieces = [], [], Counter()
    unk = tokenizer.unk_token_id
    for _, block in text_blocks(texts):
        args = dict(truncation=False, return_attention_mask=False, return_token_type_ids=False)
        rows = tokenizer(block, **args)["input_ids"]
        tokens.extend(map(len, rows))
        unread.extend(row.count(unk) for row in rows)  # 0 where there is no unknown token
        holding = [text for text, row in zip(block, rows) if unk in row]
        if holding:
            found = tokenizer(holding, return_offsets_mapping=True, **args)
            for text, ids, spans in zip(holding, found["input_ids"], found["offset_mapping"]):
                pieces.update(text[a:b] for t, (a, b) in zip(ids, spans) if t == unk)
    return TokenCounts(np.asarray(tokens, np.int64), np.asarray(unread, np.int64), pieces)


def _model_max_len(tokenizer) -> int:
    """The tokenizer's position limit; a huge sentinel (no limit recorded) becomes 512."""
    limit = int(min(tokenizer.model_max_length, 10**9))
    return limit if limit < 10**6 else 512


def _labels_per_text(
    df: pd.DataFrame,
    id_col: str,
    texts: list[str],
    empty: np.ndarray,
    labels: list[str],
    y: np.ndarray | None,
    from_list: bool,
    source: str,
) -> np.ndarray | None:
    """Labels per text where training reads the rows with text as fewer texts
    (`mlabel.data.rows_as_texts`); None where it reads each row as one, or where ids are
    shared by different texts (an error in training; the overview counts duplicate ids)."""
    if y is None:
        return None
    has_ids = id_col in df.columns
    ids = df[id_col].astype("str") if has_ids else pd.Series(range(len(df))).astype("str")
    keep = ~empty
    rows = Examples(
        ids[keep].tolist(), list(np.asarray(texts, dtype=object)[keep]), labels, y[keep], source
    )
    try:
        read = rows_as_texts(rows, id_col, has_ids, from_list)
    except DataError:
        return None
    return read.y.sum(axis=1) if len(read.texts) < len(rows.texts) else None


def _conflicting_duplicates(texts: list[str], empty: np.ndarray, y: np.ndarray | None) -> int:
    if y is None:
        return 0
    keys = [row.tobytes() for row in np.packbits(y > 0, axis=1)]  # n bytes per row, not n * L
    frame = pd.DataFrame({"text": texts, "labels": keys})[~empty]
    return int((frame.groupby("text")["labels"].nunique() > 1).sum())


def inspect_tables(p: DataProfile) -> list[TextTable]:
    """The numbers of a profile as tables: overview, lengths, and (with labels) label counts."""
    tables = [_overview_table(p), _length_table(p)]
    if p.y is not None:
        tables += [_label_count_table(p), _labels_per_row_table(p)]
        if len(p.labels) > COOCCURRING:
            tables.append(_label_pairs_table(p))
    return tables


def frequent_labels(y: np.ndarray, most: int) -> np.ndarray:
    """Indices of the `most` labels with the most positives, most frequent first."""
    return np.argsort(-y.sum(axis=0), kind="stable")[:most]


def _overview_table(p: DataProfile) -> TextTable:
    n = p.n_rows
    rows = [
        ["rows", f"{n}"],
        ["text columns", ", ".join(p.text_cols)],
        ["empty texts", f"{int(p.empty.sum())} ({pct(p.empty.sum(), n)}){_first_rows(p.empty)}"],
        ["duplicate texts", f"{p.duplicate_texts} ({pct(p.duplicate_texts, n)})"],
        ["duplicate ids", _duplicate_ids(p.duplicate_ids)],
    ]
    if p.unread is not None:
        rows.append([f"texts with unknown tokens ({p.tokenizer})", _unread_summary(p)])
    if p.y is not None:
        per_row = p.y.sum(axis=1)
        rows += [
            ["labels", f"{len(p.labels)}"],
            ["labels per row (mean)", _labels_per_row(per_row, p.per_text)],
            [
                "rows without labels",
                f"{int((per_row == 0).sum())} ({pct((per_row == 0).sum(), n)})",
            ],
            ["duplicate texts with different labels", f"{p.conflicting}"],
        ]
        if p.no_subjects:
            rows.append(
                [
                    "documents without subjects",
                    f"{p.no_subjects} ({pct(p.no_subjects, n)}; training and evaluation leave "
                    "them out)",
                ]
            )
    else:
        rows.append(["labels", "none (length statistics only)"])
    return TextTable("Overview", ["", "value"], rows)


def _labels_per_row(per_row: np.ndarray, per_text: np.ndarray | None) -> str:
    """The mean, and where training reads the rows as fewer texts, the mean per text."""
    if per_text is None:
        return f"{per_row.mean():.2f}{_classes_note(per_row)}"
    return (
        f"{per_row.mean():.2f} ({per_text.mean():.2f} per text: training reads the rows as "
        f"{len(per_text)} texts, each with the labels of all its rows){_classes_note(per_text)}"
    )


def _classes_note(per_row: np.ndarray) -> str:
    """Where every row has exactly one label, say so: classes rather than tags."""
    if len(per_row) and (per_row == 1).all():
        return " (one on every row: classes; `thresholds auto` tries the best label alone first)"
    return ""


def _unread_summary(p: DataProfile) -> str:
    """How many texts hold pieces the tokenizer reads as unknown, and the commonest pieces: the
    encoder sees none of them (the TF-IDF member may)."""
    from mlabel.encoding import is_symbol  # imports torch: only once a tokenizer has read texts

    has = p.unread > 0
    common = ", ".join(f"{piece!r} x{n}" for piece, n in p.unread_pieces.most_common(UNREAD_SHOWN))
    symbols = any(is_symbol(s) for s in p.unread_pieces)
    return (
        f"{int(has.sum())} ({pct(has.sum(), p.n_rows)}){_first_rows(has)}"
        + (f"; most often {common}" if common else "")
        + ("; `train --spell-symbols` reads such symbols as their names" if symbols else "")
    )


def _duplicate_ids(count: int | None) -> str:
    if count is None:
        return "no id column"
    merged = " (rows that share an id and its text are one text with all their labels)"
    return f"{count}{merged if count else ''}"


def _first_rows(mask: np.ndarray, show: int = 5) -> str:
    rows = np.flatnonzero(mask)[:show] + 1
    more = ", ..." if mask.sum() > show else ""
    return f": row {', '.join(map(str, rows))}{more}" if len(rows) else ""


def _length_table(p: DataProfile) -> TextTable:
    rows = []
    for unit, values in (("words", p.words), (f"tokens ({p.tokenizer})", p.tokens)):
        v = values[~p.empty]
        if not len(v):
            continue
        q = np.quantile(v, [0.5, 0.9, COVERAGE, 0.99])
        rows.append(
            [unit, f"{v.min()}", f"{q[0]:.0f}", f"{v.mean():.1f}", f"{q[1]:.0f}"]
            + [f"{_covering_length(v)}", f"{q[3]:.0f}", f"{v.max()}"]
        )
    header = ["length in", "min", "median", "mean", "p90", f"p{COVERAGE * 100:.0f}", "p99", "max"]
    return TextTable("Text length (non-empty rows)", header, rows)


def max_len_advice(p: DataProfile) -> str:
    """Which --max-len keeps COVERAGE of rows whole, and how many rows the default --max-len and
    the model's limit cut."""
    from mlabel.config import TrainConfig

    tokens = p.tokens[~p.empty]
    if not len(tokens):
        return "No row has text, so there is no length to suggest."
    default = TrainConfig.max_len
    over_default = int((tokens > default).sum())
    over_limit = int((tokens > p.model_max_len).sum())
    return (
        f"Suggested --max-len {p.suggested_max_len}: {pct((tokens <= p.suggested_max_len).sum(), len(tokens))} "
        f"of rows fit whole. The default --max-len {default} truncates {over_default} rows "
        f"({pct(over_default, len(tokens))}); {over_limit} rows are longer than the model's limit "
        f"of {p.model_max_len} tokens (--long chunk reads them whole)."
    )


def _label_count_table(p: DataProfile) -> TextTable:
    counts = p.y.sum(axis=0).astype(int)
    rows = []
    for j in frequent_labels(p.y, SHOWN_LABELS):
        has = (p.y[:, j] > 0) & ~p.empty
        median = f"{np.median(p.tokens[has]):.0f}" if has.any() else "-"
        rows.append([p.labels[j], f"{counts[j]}", pct(counts[j], p.n_rows), median])
    title = "Positives per label"
    if len(p.labels) > SHOWN_LABELS:
        title += f" (the {SHOWN_LABELS} most frequent of {len(p.labels)} labels)"
    return TextTable(title, ["label", "rows", "share", "median tokens"], rows)


def label_pairs(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first, second, rows) of every pair of labels that share a row, first < second.

    Counted as a sparse product: the work grows with the pairs rows hold (labels per row
    squared), not with the square of the label count."""
    held = sparse.csr_matrix(y > 0, dtype=np.int64)
    both = sparse.triu(held.T @ held, k=1).tocoo()
    return both.row, both.col, both.data


def _label_pairs_table(p: DataProfile) -> TextTable:
    first, second, rows = label_pairs(p.y)
    counts = p.y.sum(axis=0)
    top = np.lexsort((first, -rows))[:PAIRS]
    table = [
        [p.labels[first[i]], p.labels[second[i]], f"{rows[i]}"]
        + [pct(rows[i], counts[first[i]]), pct(rows[i], counts[second[i]])]
        for i in top
    ]
    header = ["label", "with label", "rows with both", "share of the first's", "of the second's"]
    return TextTable(f"The {PAIRS} most frequent label pairs", header, table)


def _labels_per_row_table(p: DataProfile) -> TextTable:
    per_row = p.y.sum(axis=1).astype(int)
    values, counts = np.unique(per_row, return_counts=True)
    rows = [[f"{v}", f"{c}", pct(c, p.n_rows)] for v, c in zip(values, counts)]
    return TextTable("Labels per row", ["labels", "rows", "share"], rows)


def write_inspect_report(p: DataProfile, out_dir: str | Path) -> Path:
    """PNG plots, report.md and report.html for a profile in `out_dir`; returns the HTML path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    overview, lengths, *label_tables = inspect_tables(p)  # counts, per row[, pairs]
    report = Report(f"Data report: {p.source}")
    report.table(overview)
    if p.y is not None:
        _add_label_section(report, p, label_tables, out)
    report.heading("Text length")
    report.table(lengths)
    report.text(max_len_advice(p))
    _add_length_plots(report, p, out)
    return report.write(out)


def _add_label_section(report: Report, p: DataProfile, tables: list[TextTable], out: Path) -> None:
    counts, per_row, *pairs = tables
    report.heading("Labels")
    report.table(counts)
    shown = frequent_labels(p.y, SHOWN_LABELS)
    report.image(
        plot_label_frequencies(
            [p.labels[j] for j in shown],
            p.y[:, shown],
            out / "label_frequencies.png",
            len(p.labels),
        ),
        "Label frequencies" + _of_labels(len(shown), len(p.labels)),
    )
    report.table(per_row)
    report.image(plot_labels_per_row(p.y, out / "labels_per_row.png"), "Labels per row")
    top = frequent_labels(p.y, COOCCURRING)
    report.image(
        plot_cooccurrence([p.labels[j] for j in top], p.y[:, top], out / "label_cooccurrence.png"),
        "Label co-occurrence" + _of_labels(len(top), len(p.labels)),
    )
    for table in pairs:
        report.table(table)


def _of_labels(shown: int, total: int) -> str:
    """A caption's note when a plot shows only the most frequent labels."""
    return f" (the {shown} most frequent of {total} labels)" if shown < total else ""


def _add_length_plots(report: Report, p: DataProfile, out: Path) -> None:
    rows = ~p.empty
    words = p.words[rows]
    report.image(
        plot_length_histogram(words, "words", out / "length_words.png", _covering_length(words)),
        "Text length in words",
    )
    report.image(
        plot_length_histogram(
            p.tokens[rows],
            f"tokens of the {p.tokenizer} tokenizer",
            out / "length_tokens.png",
            cut=p.suggested_max_len,
            limit=p.model_max_len,
        ),
        "Text length in tokens, with the suggested --max-len",
    )
    if p.y is not None:
        shown = frequent_labels(p.y, SHOWN_LABELS)
        report.image(
            plot_length_by_label(
                [p.labels[j] for j in shown],
                p.y[rows][:, shown],
                p.tokens[rows],
                out / "length_by_label.png",
                p.suggested_max_len,
            ),
            "Text length in tokens by label" + _of_labels(len(shown), len(p.labels)),
        )
