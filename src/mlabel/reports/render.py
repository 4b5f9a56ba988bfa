"""Drawing and report helpers shared by every report: label colours, per-label panel grids,
PNG output, and tables and reports written as Markdown and self-contained HTML.

Figures are drawn with matplotlib's object API (`Figure`, rendered by Agg), never pyplot, so
making a report changes no global matplotlib state.
"""

from __future__ import annotations

import base64
import html
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from mlabel.atomic import replace_on_success, write_text_atomic

if TYPE_CHECKING:
    from rich.table import Table

DPI = 110
GRID_COLS = 6  # most panels per row in per-label grids


# ---------------------------------------------------------------- colours and layout


def label_colors(n: int) -> list[tuple[float, float, float, float]]:
    """One colour per label, the same in every plot: tab10 up to 10 labels, then tab20/b/c."""
    names = ["tab10"] if n <= 10 else ["tab20", "tab20b", "tab20c"]
    palette = [c for name in names for c in matplotlib.colormaps[name].colors]
    return [(*palette[i % len(palette)][:3], 1.0) for i in range(n)]


def wrap(text: str, width: int = 24) -> str:
    """`text` broken into lines of at most `width` characters (tick labels, panel titles), its
    `$` escaped: labels are drawn as written, never as TeX (a label such as `$\\foo$-modules`
    made matplotlib's math parser fail)."""
    text = str(text).replace("$", r"\$")
    return "\n".join(textwrap.wrap(text, width)) or text


def bar_height(n_labels: int) -> float:
    """Figure height (inches) for one horizontal bar or box per label."""
    return 1.6 + 0.32 * n_labels


def label_grid(
    n: int, title: str, cell: tuple[float, float] = (2.7, 2.4)
) -> tuple[Figure, np.ndarray]:
    """A figure with one small panel per label (at most GRID_COLS a row); unused panels hidden."""
    cols = min(n, 3 if n <= 6 else 4 if n <= 16 else GRID_COLS)  # few labels: bigger panels
    rows = -(-n // cols)
    fig = Figure(figsize=(cell[0] * cols, cell[1] * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=13)
    return fig, axes[:n]


def save_png(fig: Figure, path: Path, dpi: int = DPI) -> Path:
    """Write `fig` as a PNG (whole or not at all: an older plot stays until this one is done)."""
    with replace_on_success(path) as tmp:
        fig.savefig(tmp, dpi=dpi)
    return path


def label_title(ax: Axes, label: str, color: Any, note: str = "") -> None:
    """Panel title (and a note line) with the label's colour as a thick frame, as in other plots."""
    ax.set_title(wrap(label, 30) + (f"\n{note}" if note else ""), fontsize=9)
    for spine in ax.spines.values():
        spine.set_edgecolor(color)
        spine.set_linewidth(2.5)


def pct(part: float, whole: float) -> str:
    """`part` as a percentage of `whole` ("12.5%"), or "-" when `whole` is 0."""
    return f"{100 * part / whole:.1f}%" if whole else "-"


# ---------------------------------------------------------------- tables and report files


@dataclass
class TextTable:
    """A table of formatted cells, shown in the terminal (rich) and in report.md/.html."""

    title: str
    header: list[str]
    rows: list[list[str]]

    def rich(self) -> Table:
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
        write_text_atomic(out_dir / "report.md", self._markdown())
        write_text_atomic(out_dir / "report.html", self._html())
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
