"""Plots and reports: what a table holds (`mlabel inspect`) and how a model does on it
(`mlabel evaluate --report`). Each report is PNG files plus report.md and a self-contained
report.html in one folder.

Figures are drawn with matplotlib's object API (`Figure`, rendered by Agg), never pyplot, so
making a report changes no global matplotlib state.
"""

from __future__ import annotations

import base64
import html
import json
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score, precision_recall_curve

from mlabel.data import (
    DataError,
    default_label_columns,
    join_texts,
    label_matrix_from_columns,
    labels_from_list_column,
    read_rows,
    require_columns,
    resolve_id_col,
    text_cells,
)
from mlabel.metrics import THRESHOLD_GRID, confusion_matrices, f1_by_threshold, micro_f1

COVERAGE = 0.95  # share of rows the suggested --max-len keeps whole
DPI = 110
GRID_COLS = 6  # most panels per row in per-label grids
N_ERRORS = 10  # rows in each "worst errors" table
SNIPPET = 160  # characters of text shown per error
CALIBRATION_BINS = 10
TRAIN_METRICS = ("micro_f1", "macro_f1", "samples_f1", "subset_accuracy")


# ---------------------------------------------------------------- colours and layout


def label_colors(n: int) -> list[tuple[float, float, float, float]]:
    """One colour per label, the same in every plot: tab10 up to 10 labels, then tab20/b/c."""
    names = ["tab10"] if n <= 10 else ["tab20", "tab20b", "tab20c"]
    palette = [c for name in names for c in matplotlib.colormaps[name].colors]
    return [(*palette[i % len(palette)][:3], 1.0) for i in range(n)]


def _wrap(text: str, width: int = 24) -> str:
    return "\n".join(textwrap.wrap(str(text), width)) or str(text)


def _bar_height(n_labels: int) -> float:
    """Figure height (inches) for one horizontal bar or box per label."""
    return 1.6 + 0.32 * n_labels


def _label_grid(n: int, title: str, cell: tuple[float, float] = (2.7, 2.4)):
    """A figure with one small panel per label (at most GRID_COLS a row); unused panels hidden."""
    cols = min(n, 3 if n <= 6 else 4 if n <= 16 else GRID_COLS)  # few labels: bigger panels
    rows = -(-n // cols)
    fig = Figure(figsize=(cell[0] * cols, cell[1] * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=13)
    return fig, axes[:n]


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    return path


# ---------------------------------------------------------------- tables and report files


@dataclass
class TextTable:
    """A table of formatted cells, shown in the terminal (rich) and in report.md/.html."""

    title: str
    header: list[str]
    rows: list[list[str]]

    def rich(self):
        from rich.table import Table

        table = Table(*self.header, title=self.title, title_justify="left")
        for row in self.rows:
            table.add_row(*row)
        return table

    def markdown(self) -> str:
        def cells(values):
            return "| " + " | ".join(str(v).replace("|", "\\|") for v in values) + " |"

        lines = [cells(self.header), cells(["---"] * len(self.header))]
        return "\n".join([f"**{self.title}**", "", *lines, *map(cells, self.rows)])

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.header)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
            for row in self.rows
        )
        caption = f"<caption>{html.escape(self.title)}</caption>"
        return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


@dataclass
class Report:
    """An ordered list of headings, paragraphs, tables and images, written as .md and .html."""

    title: str
    parts: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.parts.append(("h2", text))

    def text(self, text: str) -> None:
        self.parts.append(("p", text))

    def table(self, table: TextTable) -> None:
        self.parts.append(("table", table))

    def image(self, path: Path, caption: str) -> None:
        self.parts.append(("img", (Path(path), caption)))

    def write(self, out_dir: Path) -> Path:
        """Write report.md and report.html into `out_dir`; return the HTML path."""
        (out_dir / "report.md").write_text(self._markdown(), encoding="utf-8")
        (out_dir / "report.html").write_text(self._html(), encoding="utf-8")
        return out_dir / "report.html"

    def _markdown(self) -> str:
        out = [f"# {self.title}"]
        for kind, value in self.parts:
            if kind == "h2":
                out.append(f"## {value}")
            elif kind == "p":
                out.append(value)
            elif kind == "table":
                out.append(value.markdown())
            else:
                out.append(f"![{value[1]}]({value[0].name})")
        return "\n\n".join(out) + "\n"

    def _html(self) -> str:
        out = [f"<h1>{html.escape(self.title)}</h1>"]
        for kind, value in self.parts:
            if kind == "h2":
                out.append(f"<h2>{html.escape(value)}</h2>")
            elif kind == "p":
                out.append(f"<p>{html.escape(value)}</p>")
            elif kind == "table":
                out.append(value.html())
            else:
                data = base64.b64encode(value[0].read_bytes()).decode("ascii")
                out.append(
                    f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(value[1])}">'
                    f"<figcaption>{html.escape(value[1])}</figcaption></figure>"
                )
        return HTML_PAGE.format(title=html.escape(self.title), body="\n".join(out))


HTML_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em;
       color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
caption {{ text-align: left; font-weight: bold; padding: 0.3em 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }}
th {{ background: #f3f3f3; }}
figure {{ margin: 1.5em 0; }}
img {{ max-width: 100%; height: auto; }}
figcaption {{ color: #555; font-size: 0.9em; }}
</style></head><body>
{body}
</body></html>
"""


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


# ---------------------------------------------------------------- inspecting a table


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
    df, source = read_rows(data, text_cols, id_col)
    id_col = resolve_id_col(df.columns, id_col)
    require_columns(df, text_cols, source)
    empty = _empty_text_rows(df, text_cols)
    texts = np.array([""] * len(df), dtype=object)
    if (~empty).any():
        texts[~empty] = join_texts(df[~empty], text_cols, source)
    texts = texts.tolist()
    labels, y = _read_labels(df, text_cols, id_col, label_cols, labels_col, label_sep, source)
    tokenizer = _load_tokenizer(model)
    return DataProfile(
        source=source,
        text_cols=text_cols,
        texts=texts,
        empty=empty,
        duplicate_texts=int(pd.Series(texts)[~empty].duplicated().sum()),
        duplicate_ids=int(df[id_col].duplicated().sum()) if id_col in df.columns else None,
        words=np.array([len(t.split()) for t in texts], dtype=np.int64),
        tokens=np.where(empty, 0, token_lengths(tokenizer, texts)),
        tokenizer=model,
        model_max_len=_model_max_len(tokenizer),
        labels=labels if with_labels else [],
        y=y if with_labels else None,
        conflicting=_conflicting_duplicates(texts, empty, y) if with_labels else 0,
    )


def _empty_text_rows(df: pd.DataFrame, text_cols: list[str]) -> np.ndarray:
    cells = [text_cells(df, c) == "" for c in text_cols]
    return np.logical_and.reduce([c.to_numpy() for c in cells])


def _read_labels(
    df: pd.DataFrame,
    text_cols: list[str],
    id_col: str,
    label_cols: Sequence[str] | None,
    labels_col: str | None,
    label_sep: str,
    source: str,
) -> tuple[list[str], np.ndarray | None]:
    """Labels from a list column or 0/1 columns; ([], None) when no column is left for them."""
    if labels_col is not None:
        return labels_from_list_column(df, labels_col, label_sep, None, source)
    names = list(label_cols or default_label_columns(df, id_col, text_cols))
    if not names:
        return [], None
    try:
        return names, label_matrix_from_columns(df, names, source)
    except DataError as err:
        if label_cols is not None:
            raise
        raise DataError(
            f"{err}; columns other than id and text are read as 0/1 labels: name a list column "
            "with --labels-col, choose columns with --label-cols, or pass --no-labels"
        ) from None


def _load_tokenizer(model: str):
    from mlabel.encoding import load_tokenizer
    from mlabel.model import ModelError, resolve_encoder

    try:
        return load_tokenizer(resolve_encoder(model))
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load a tokenizer for model {model!r}: {err}") from None


def token_lengths(tokenizer, texts: list[str], batch: int = 4096) -> np.ndarray:
    """Tokens per text, special tokens included, without truncation."""
    counts: list[int] = []
    for start in range(0, len(texts), batch):
        enc = tokenizer(
            texts[start : start + batch],
            truncation=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        counts.extend(len(ids) for ids in enc["input_ids"])
    return np.asarray(counts, dtype=np.int64)


def _model_max_len(tokenizer) -> int:
    """The tokenizer's position limit; a huge sentinel (no limit recorded) becomes 512."""
    limit = int(min(tokenizer.model_max_length, 10**9))
    return limit if limit < 10**6 else 512


def _conflicting_duplicates(texts: list[str], empty: np.ndarray, y: np.ndarray | None) -> int:
    if y is None:
        return 0
    keys = ["".join(row) for row in y.astype(int).astype(str)]
    frame = pd.DataFrame({"text": texts, "labels": keys})[~empty]
    return int((frame.groupby("text")["labels"].nunique() > 1).sum())


def inspect_tables(p: DataProfile) -> list[TextTable]:
    """The numbers of a profile as tables: overview, lengths, and (with labels) label counts."""
    tables = [_overview_table(p), _length_table(p)]
    if p.y is not None:
        tables += [_label_count_table(p), _labels_per_row_table(p)]
    return tables


def _overview_table(p: DataProfile) -> TextTable:
    n = p.n_rows
    rows = [
        ["rows", f"{n}"],
        ["text columns", ", ".join(p.text_cols)],
        ["empty texts", f"{int(p.empty.sum())} ({_pct(p.empty.sum(), n)}){_first_rows(p.empty)}"],
        ["duplicate texts", f"{p.duplicate_texts} ({_pct(p.duplicate_texts, n)})"],
        ["duplicate ids", "no id column" if p.duplicate_ids is None else f"{p.duplicate_ids}"],
    ]
    if p.y is not None:
        per_row = p.y.sum(axis=1)
        rows += [
            ["labels", f"{len(p.labels)}"],
            ["labels per row (mean)", f"{per_row.mean():.2f}"],
            [
                "rows without labels",
                f"{int((per_row == 0).sum())} ({_pct((per_row == 0).sum(), n)})",
            ],
            ["duplicate texts with different labels", f"{p.conflicting}"],
        ]
    else:
        rows.append(["labels", "none (length statistics only)"])
    return TextTable("Overview", ["", "value"], rows)


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
        f"Suggested --max-len {p.suggested_max_len}: {_pct((tokens <= p.suggested_max_len).sum(), len(tokens))} "
        f"of rows fit whole. The default --max-len {default} truncates {over_default} rows "
        f"({_pct(over_default, len(tokens))}); {over_limit} rows are longer than the model's limit "
        f"of {p.model_max_len} tokens (--long chunk reads them whole)."
    )


def _label_count_table(p: DataProfile) -> TextTable:
    counts = p.y.sum(axis=0).astype(int)
    rows = []
    for j in np.argsort(-counts, kind="stable"):
        has = (p.y[:, j] > 0) & ~p.empty
        median = f"{np.median(p.tokens[has]):.0f}" if has.any() else "-"
        rows.append([p.labels[j], f"{counts[j]}", _pct(counts[j], p.n_rows), median])
    return TextTable("Positives per label", ["label", "rows", "share", "median tokens"], rows)


def _labels_per_row_table(p: DataProfile) -> TextTable:
    per_row = p.y.sum(axis=1).astype(int)
    values, counts = np.unique(per_row, return_counts=True)
    rows = [[f"{v}", f"{c}", _pct(c, p.n_rows)] for v, c in zip(values, counts)]
    return TextTable("Labels per row", ["labels", "rows", "share"], rows)


def write_inspect_report(p: DataProfile, out_dir: str | Path) -> Path:
    """PNG plots, report.md and report.html for a profile in `out_dir`; returns the HTML path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(f"Data report: {p.source}")
    tables = inspect_tables(p)
    report.table(tables[0])
    if p.y is not None:
        report.heading("Labels")
        report.table(tables[2])
        report.image(
            plot_label_frequencies(p.labels, p.y, out / "label_frequencies.png"),
            "Label frequencies",
        )
        report.table(tables[3])
        report.image(plot_labels_per_row(p.y, out / "labels_per_row.png"), "Labels per row")
        report.image(
            plot_cooccurrence(p.labels, p.y, out / "label_cooccurrence.png"), "Label co-occurrence"
        )
    report.heading("Text length")
    report.table(tables[1])
    report.text(max_len_advice(p))
    rows = ~p.empty
    report.image(
        plot_length_histogram(p.words[rows], "words", out / "length_words.png"),
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
        report.image(
            plot_length_by_label(
                p.labels,
                p.y[rows],
                p.tokens[rows],
                out / "length_by_label.png",
                p.suggested_max_len,
            ),
            "Text length in tokens by label",
        )
    return report.write(out)


# ---------------------------------------------------------------- data plots


def plot_label_frequencies(labels: list[str], y: np.ndarray, out_png: Path) -> Path:
    """Horizontal bars: rows per label, most frequent on top."""
    counts = y.sum(axis=0).astype(int)
    order = np.argsort(-counts, kind="stable")[::-1]  # barh draws bottom-up
    colors = label_colors(len(labels))
    fig = Figure(figsize=(9, _bar_height(len(labels))), layout="constrained")
    ax = fig.subplots()
    bars = ax.barh(
        [_wrap(labels[j], 40) for j in order], counts[order], color=[colors[j] for j in order]
    )
    ax.bar_label(bars, [f"{c} ({_pct(c, len(y))})" for c in counts[order]], padding=3, fontsize=9)
    ax.set_xlim(0, counts.max() * 1.25 + 1)
    ax.set_xlabel("rows with the label")
    ax.set_title(f"Label frequencies ({len(y)} rows, {len(labels)} labels)")
    ax.margins(y=0.01)
    return _save(fig, out_png)


def plot_labels_per_row(y: np.ndarray, out_png: Path) -> Path:
    """Bar chart: how many rows carry 0, 1, 2, ... labels."""
    per_row = y.sum(axis=1).astype(int)
    values = np.arange(per_row.max() + 1)
    counts = np.bincount(per_row, minlength=len(values))
    fig = Figure(figsize=(max(6, 0.5 * len(values) + 3), 4.5), layout="constrained")
    ax = fig.subplots()
    bars = ax.bar(values, counts, color="#4c72b0")
    ax.bar_label(bars, [f"{c}" if c else "" for c in counts], padding=2, fontsize=9)
    ax.set_xticks(values)
    ax.set_xlabel("labels on the row")
    ax.set_ylabel("rows")
    ax.set_ylim(0, counts.max() * 1.12 + 1)
    ax.set_title(f"Labels per row (mean {per_row.mean():.2f})")
    return _save(fig, out_png)


def plot_cooccurrence(labels: list[str], y: np.ndarray, out_png: Path) -> Path:
    """Heatmap of rows that carry both labels; the diagonal (grey) holds each label's count."""
    n = len(labels)
    both = (y.T @ y).astype(int)
    off = np.ma.masked_array(both, mask=np.eye(n, dtype=bool))
    size = max(6.0, 0.42 * n + 3.5)
    fig = Figure(figsize=(size + 1.2, size), layout="constrained")
    ax = fig.subplots()
    cmap = matplotlib.colormaps["Blues"].with_extremes(bad="#dddddd")
    image = ax.imshow(off, cmap=cmap, vmin=0, vmax=max(1, off.max() or 1))
    fig.colorbar(image, ax=ax, shrink=0.8, label="rows with both labels")
    names = [_wrap(label, 22) for label in labels]
    ax.set_xticks(range(n), names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), names)
    font = 9 if n <= 12 else 7 if n <= 24 else 6
    ax.tick_params(labelsize=font + 1)
    threshold = 0.6 * max(1, off.max() or 1)
    for i in range(n):
        for j in range(n):
            dark = i != j and both[i, j] > threshold
            weight = "bold" if i == j else "normal"
            ax.text(
                j,
                i,
                f"{both[i, j]}",
                ha="center",
                va="center",
                fontsize=font,
                color="white" if dark else "black",
                fontweight=weight,
            )
    ax.set_title("Label co-occurrence (rows with both labels; diagonal: rows with the label)")
    return _save(fig, out_png)


def plot_length_histogram(
    lengths: np.ndarray, unit: str, out_png: Path, cut: int | None = None, limit: int | None = None
) -> Path:
    """Histogram of text lengths; `cut` defaults to the COVERAGE quantile, `limit` is the model's."""
    cut = _covering_length(lengths) if cut is None else cut
    top = max(1, int(np.quantile(lengths, 0.995))) if len(lengths) else 1
    clipped = np.minimum(lengths, top)
    fig = Figure(figsize=(9, 4.8), layout="constrained")
    ax = fig.subplots()
    width = max(1, -(-top // 60))  # whole-number bins: integer lengths would alias
    ax.hist(clipped, bins=np.arange(0, top + width + 1, width), color="#4c72b0", alpha=0.85)
    share = _pct((lengths <= cut).sum(), len(lengths))
    ax.axvline(
        cut, color="#c44e52", linestyle="--", linewidth=2, label=f"{cut}: {share} of rows fit"
    )
    if limit is not None and limit < top:
        ax.axvline(limit, color="#333333", linestyle=":", linewidth=2, label=f"model limit {limit}")
    ax.legend(loc="upper right")
    note = " (longest 0.5% in the last bin)" if len(lengths) and lengths.max() > top else ""
    ax.set_xlabel(f"length in {unit}{note}")
    ax.set_ylabel("rows")
    ax.set_title(
        f"Text length (median {np.median(lengths):.0f}, max {lengths.max()} {unit.split()[0]})"
    )
    return _save(fig, out_png)


def plot_length_by_label(
    labels: list[str], y: np.ndarray, tokens: np.ndarray, out_png: Path, cut: int | None = None
) -> Path:
    """One horizontal box per label: token lengths of the rows that carry it."""
    colors = label_colors(len(labels))
    groups = [tokens[y[:, j] > 0] for j in range(len(labels))]
    fig = Figure(figsize=(9, _bar_height(len(labels))), layout="constrained")
    ax = fig.subplots()
    positions = np.arange(len(labels))[::-1]  # first label on top
    boxes = ax.boxplot(
        [g if len(g) else [np.nan] for g in groups],
        positions=positions,
        orientation="horizontal",
        patch_artist=True,
        widths=0.6,
        flierprops={"markersize": 2, "alpha": 0.4},
        medianprops={"color": "black"},
    )
    for patch, color in zip(boxes["boxes"], colors):
        patch.set_facecolor(color)
    ax.set_yticks(positions, [f"{_wrap(n, 40)} ({len(g)})" for n, g in zip(labels, groups)])
    if cut is not None:
        ax.axvline(cut, color="#c44e52", linestyle="--", label=f"suggested --max-len {cut}")
        ax.legend(loc="best")
    ax.set_xlabel("length in tokens")
    ax.set_title("Text length by label (rows with the label; count in brackets)")
    return _save(fig, out_png)


# ---------------------------------------------------------------- evaluation report


def find_metrics_jsonl(model_dir: str | Path) -> Path | None:
    """RUN/metrics.jsonl for a model folder RUN/model, when it exists and is not empty."""
    path = Path(model_dir).resolve().parent / "metrics.jsonl"
    return path if path.is_file() and path.stat().st_size else None


def evaluation_tables(result, n_errors: int = N_ERRORS) -> list[TextTable]:
    """Summary, per-label, most confident false positives and false negatives."""
    return [
        _summary_table(result),
        _per_label_table(result),
        *_worst_error_tables(result, n_errors),
    ]


def _summary_table(result) -> TextTable:
    m = result.metrics
    info = result.predictor.info
    rows = [
        ["rows", f"{len(result.examples)}"],
        ["labels", f"{len(result.predictor.labels)}"],
        ["thresholds", _threshold_summary(result.thresholds, info.get("threshold_method", ""))],
        ["engine", result.predictor.engine],
    ]
    names = {
        "micro_f1": "micro-F1",
        "macro_f1": "macro-F1",
        "samples_f1": "samples-F1",
        "micro_precision": "micro precision",
        "micro_recall": "micro recall",
        "subset_accuracy": "subset accuracy",
        "hamming_loss": "Hamming loss",
    }
    rows += [[name, f"{m[key]:.4f}"] for key, name in names.items()]
    return TextTable("Summary", ["", "value"], rows)


def _threshold_summary(thresholds: np.ndarray, method: str) -> str:
    if np.allclose(thresholds, thresholds[0]):
        return f"{thresholds[0]:.2f} for every label" + (f" ({method})" if method else "")
    return f"per label, {thresholds.min():.2f} to {thresholds.max():.2f}" + (
        f" ({method})" if method else ""
    )


def _per_label_table(result) -> TextTable:
    y, probs, labels = result.examples.y, result.probs, result.predictor.labels
    cms = confusion_matrices(y, result.y_pred)
    rows = []
    for j, label in enumerate(labels):
        s = result.metrics["per_label"][label]
        ap = average_precision_score(y[:, j], probs[:, j]) if y[:, j].any() else float("nan")
        rows.append(
            [label, f"{result.thresholds[j]:.2f}", f"{s['precision']:.3f}", f"{s['recall']:.3f}"]
            + [f"{s['f1']:.3f}", f"{ap:.3f}", f"{s['support']}"]
            + [f"{cms[j, 1, 1]}", f"{cms[j, 0, 1]}", f"{cms[j, 1, 0]}"]
        )
    header = ["label", "threshold", "precision", "recall", "F1", "AP", "support", "TP", "FP", "FN"]
    return TextTable("Precision, recall and F1 per label", header, rows)


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
    """PNG plots, report.md and report.html for an Evaluation in `out_dir`; returns the HTML path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    y, probs, t = result.examples.y, result.probs, result.thresholds
    labels = result.predictor.labels
    summary, per_label, false_pos, false_neg = evaluation_tables(result, n_errors)
    report = Report(f"Evaluation: {result.predictor.model_dir.name} on {result.examples.source}")
    report.table(summary)
    report.heading("Per label")
    report.table(per_label)
    cms = confusion_matrices(y, result.y_pred)
    report.image(
        plot_confusion_grid(labels, cms, out / "confusion_matrices.png"),
        "Confusion matrix per label",
    )
    report.image(
        plot_pr_curves(labels, y, probs, t, out / "pr_curves.png"),
        "Precision-recall curve per label",
    )
    report.heading("Thresholds")
    report.image(
        plot_f1_global(y, probs, t, out / "f1_threshold.png"), "Micro-F1 against a single threshold"
    )
    report.image(
        plot_f1_per_label(labels, y, probs, t, out / "f1_threshold_per_label.png"),
        "F1 against threshold per label",
    )
    report.heading("Calibration")
    report.text(
        f"Expected calibration error (all labels pooled, {CALIBRATION_BINS} bins): {expected_calibration_error(y, probs):.4f}"
    )
    report.image(plot_reliability(y, probs, out / "calibration.png"), "Reliability diagram")
    if metrics_jsonl is not None:
        report.heading("Training")
        report.image(
            plot_training_curves(Path(metrics_jsonl), out / "training_curves.png"),
            "Loss and validation metrics per epoch",
        )
    report.heading("Worst errors")
    report.table(false_pos)
    report.table(false_neg)
    return report.write(out)


# ---------------------------------------------------------------- evaluation plots


def plot_confusion_grid(labels: list[str], cms: np.ndarray, out_png: Path) -> Path:
    """One 2x2 matrix per label, coloured by row share (so rare labels are readable too)."""
    fig, axes = _label_grid(
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
        _label_title(ax, label, color)
    return _save(fig, out_png)


def _label_title(ax: Axes, label: str, color, note: str = "") -> None:
    """Panel title (and a note line) with the label's colour as a thick frame, as in other plots."""
    ax.set_title(_wrap(label, 30) + (f"\n{note}" if note else ""), fontsize=9)
    for spine in ax.spines.values():
        spine.set_edgecolor(color)
        spine.set_linewidth(2.5)


def plot_pr_curves(
    labels: list[str], y: np.ndarray, probs: np.ndarray, thresholds: np.ndarray, out_png: Path
) -> Path:
    """Precision-recall curve per label; the dot is the model's threshold."""
    fig, axes = _label_grid(len(labels), "Precision-recall per label (dot: the model's threshold)")
    for j, (ax, color) in enumerate(zip(axes, label_colors(len(labels)))):
        ax.set(xlim=(0, 1.02), ylim=(0, 1.05))
        ax.tick_params(labelsize=8)
        truth, pred = y[:, j] > 0, probs[:, j] >= thresholds[j]
        if not truth.any():
            _label_title(ax, labels[j], color, "no positives in the data")
            continue
        precision, recall, _ = precision_recall_curve(truth, probs[:, j])
        ax.plot(recall, precision, color=color, linewidth=2, drawstyle="steps-post")
        ax.axhline(truth.mean(), color="#999999", linestyle=":", linewidth=1)
        tp = float((truth & pred).sum())
        if pred.any():  # with nothing predicted, precision is undefined: no dot
            ax.plot(tp / truth.sum(), tp / pred.sum(), "o", color="black", markersize=6)
        note = f"AP {average_precision_score(truth, probs[:, j]):.2f}, t={thresholds[j]:.2f}"
        _label_title(ax, labels[j], color, note + ("" if pred.any() else " (none predicted)"))
    fig.supxlabel("recall")
    fig.supylabel("precision")
    return _save(fig, out_png)


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
    return _save(fig, out_png)


def plot_f1_per_label(
    labels: list[str], y: np.ndarray, probs: np.ndarray, thresholds: np.ndarray, out_png: Path
) -> Path:
    """F1 against threshold per label; the dashed line is the model's threshold for that label."""
    _, curves = f1_by_threshold(y, probs)
    fig, axes = _label_grid(
        len(labels), "F1 against threshold per label (dashed: the model's threshold)"
    )
    for j, (ax, color) in enumerate(zip(axes, label_colors(len(labels)))):
        best = int(np.argmax(curves[j]))
        _label_title(
            ax, labels[j], color, f"best {curves[j][best]:.2f} at {THRESHOLD_GRID[best]:.2f}"
        )
        ax.plot(THRESHOLD_GRID, curves[j], color=color, linewidth=2)
        ax.plot(THRESHOLD_GRID[best], curves[j][best], "o", color=color, markersize=5)
        ax.axvline(thresholds[j], color="black", linestyle="--", linewidth=1)
        ax.set(xlim=(0, 1), ylim=(0, 1.05))
        ax.tick_params(labelsize=8)
    fig.supxlabel("threshold")
    fig.supylabel("F1")
    return _save(fig, out_png)


def _calibration_bins(y: np.ndarray, probs: np.ndarray, bins: int = CALIBRATION_BINS):
    """Per equal-width bin: rows, mean predicted probability, observed positive rate."""
    p, t = probs.ravel(), (y.ravel() > 0).astype(float)
    which = np.minimum((p * bins).astype(int), bins - 1)
    count = np.bincount(which, minlength=bins)
    mean_p = np.bincount(which, weights=p, minlength=bins) / np.maximum(count, 1)
    rate = np.bincount(which, weights=t, minlength=bins) / np.maximum(count, 1)
    return count, mean_p, rate


def expected_calibration_error(
    y: np.ndarray, probs: np.ndarray, bins: int = CALIBRATION_BINS
) -> float:
    """Bin-weighted mean |observed rate - mean probability| over all (row, label) pairs."""
    count, mean_p, rate = _calibration_bins(y, probs, bins)
    return float((count * np.abs(rate - mean_p)).sum() / max(count.sum(), 1))


def plot_reliability(y: np.ndarray, probs: np.ndarray, out_png: Path) -> Path:
    """Reliability diagram over all (row, label) pairs, with how many pairs fall in each bin."""
    count, mean_p, rate = _calibration_bins(y, probs)
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
    return _save(fig, out_png)


def read_metrics_jsonl(path: str | Path) -> list[dict]:
    """A run's metrics.jsonl as one dict per epoch (blank lines skipped)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def plot_training_curves(metrics_jsonl: Path, out_png: Path) -> Path:
    """Training/validation loss and validation metrics per epoch, from a run's metrics.jsonl."""
    records = read_metrics_jsonl(metrics_jsonl)
    if not records:
        raise ValueError(f"{metrics_jsonl}: no epochs recorded")
    epochs = [r.get("epoch", i + 1) for i, r in enumerate(records)]
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    loss_ax, metric_ax = fig.subplots(1, 2)
    for ax, keys, title in (
        (loss_ax, ("train_loss", "val_loss"), "Loss"),
        (metric_ax, TRAIN_METRICS, "Validation metrics (tuned thresholds)"),
    ):
        drawn = [k for k in keys if any(k in r for r in records)]
        for k in drawn:
            values = [r.get(k, np.nan) for r in records]
            ax.plot(epochs, values, "o-", label=k.replace("_", " "))
        if drawn:
            ax.legend(fontsize=9)
        else:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
        ax.set(title=title, xlabel="epoch")
        if len(epochs) <= 20:
            ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
    loss_ax.set_ylabel("loss")
    metric_ax.set_ylabel("score")
    metric_ax.set_ylim(0, 1.02)
    fig.suptitle(f"Training curves ({len(records)} epochs)")
    return _save(fig, out_png)
