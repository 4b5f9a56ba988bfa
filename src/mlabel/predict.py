"""Prediction from a model folder: probabilities from its engine, decisions from its thresholds
and rule, and one output form shared by files, Ray actors and the server."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlabel import folder
from mlabel.config import ENGINES
from mlabel.decision import DecisionRule, decide, label_lists
from mlabel.engines import inference_device, load_scorer, pick_engine
from mlabel.errors import ModelError, UsageError

CHUNK_ROWS = 5000  # rows a table is read and scored in (memory does not grow with rows)


@dataclass
class Predictions:
    """Probabilities and the decisions taken from them, for one batch of texts."""

    labels: list[str]
    probs: np.ndarray
    thresholds: np.ndarray
    hits: np.ndarray

    def values(self, proba: bool) -> np.ndarray:
        """The table cells: probabilities, or 0/1 decisions."""
        return self.probs if proba else self.hits

    def unscored(self, rows: list[int]) -> Predictions:
        """These `rows` (texts without text) marked as not scored: no label, no probability."""
        if rows:
            self.hits[rows] = 0
            self.probs = self.probs.astype(np.float32, copy=True)
            self.probs[rows] = np.nan
        return self

    def label_lists(self) -> list[list[str]]:
        return label_lists(self.labels, self.hits)

    def long_rows(self, ids: list[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(id, label, score) for each label that is on, a text's labels best first: the long
        table indexers exchange, as three columns."""
        rows, cols = np.nonzero(self.hits)
        scores = self.probs[rows, cols]
        order = np.lexsort((-scores, rows))
        rows, cols = rows[order], cols[order]
        ids_col = np.asarray(ids, dtype=object)[rows]
        return ids_col, np.asarray(self.labels, dtype=object)[cols], scores[order]

    def records(self, ids: list[Any]) -> list[dict[str, Any]]:
        """One JSON object per text: its id, its labels and every label's probability."""
        return [
            {
                "id": item_id,
                "labels": chosen,
                "probabilities": {label: round(p, 6) for label, p in zip(self.labels, row)},
            }
            for item_id, chosen, row in zip(ids, self.label_lists(), self.probs.tolist())
        ]


class Predictor:
    """Probabilities for raw texts from a saved model folder, with the engine of choice.

    Engines: `torch` (fp32), `bf16` (encoder weights in bf16, head in fp32; on CPUs with fast
    bf16 and GPUs that support it), `onnx` and `onnx-int8` (after `mlabel export --onnx [--int8]`,
    CPU only). `auto` on a GPU is bf16 where supported, else torch; on a CPU it takes the choice
    `mlabel export` measured and recorded, else bf16 where the CPU is fast at it, else torch.
    """

    def __init__(self, model_dir: str | Path, engine: str = "auto", device: str = "auto"):
        self.model_dir = Path(model_dir)
        self.info = folder.read(self.model_dir)
        if engine not in ENGINES:
            raise ModelError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")
        self.device = inference_device(device, engine)  # checked for every kind of model
        if self.info.kind != "transformer":
            self.device = torch.device("cpu")  # scikit-learn models run on the CPU
        self.engine = pick_engine(self.model_dir, self.info, engine, self.device)
        self.scorer = load_scorer(self.model_dir, self.info, self.engine, self.device)
        self.labels: list[str] = self.info.labels
        self.thresholds = np.asarray(self.info.thresholds, dtype=np.float32)
        self.text_cols: list[str] = self.info.text_cols
        self.id_col: str = self.info.id_col()
        self.max_len: int | None = self.info.max_len

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """An (n, labels) array of probabilities; rows need not sum to 1."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return self.scorer.proba(texts).astype(np.float32)

    def decision_thresholds(self, threshold: float | None = None) -> np.ndarray:
        """One threshold per label: the stored ones, or `threshold` for every label."""
        return self.thresholds if threshold is None else np.full(len(self.labels), threshold)

    def decision_rule(
        self, top_k: int | None = None, min_labels: int | None = None
    ) -> DecisionRule:
        """The stored rule with the values given replacing its own; `top_k=0` lifts its cap."""
        stored = self.info.rule
        if top_k is None and min_labels is None:
            return stored
        cap = stored.top_k if top_k is None else (top_k or None)
        return DecisionRule(cap, stored.min_labels if min_labels is None else min_labels)

    def decisions(
        self, probs: np.ndarray, threshold: float | None = None, rule: DecisionRule | None = None
    ) -> Predictions:
        """Decisions by the stored thresholds and rule unless `threshold` or `rule` override them."""
        cut = self.decision_thresholds(threshold)
        hits = decide(probs, cut, self.info.rule if rule is None else rule)
        return Predictions(self.labels, probs, cut, hits)

    def run(
        self, texts: list[str], threshold: float | None = None, rule: DecisionRule | None = None
    ) -> Predictions:
        """Decisions for `texts`; an empty text (a table row without text) is not scored: it
        gets no label and NaN probabilities."""
        texts = list(texts)
        preds = self.decisions(self.predict_proba(texts), threshold, rule)
        return preds.unscored([i for i, text in enumerate(texts) if not text.strip()])

    def predict(
        self, texts: list[str], threshold: float | None = None, rule: DecisionRule | None = None
    ) -> list[list[str]]:
        """Label lists, by the stored thresholds and rule unless the arguments override them."""
        return self.run(texts, threshold, rule).label_lists()


def proba_in_chunks(predictor: Predictor, texts: list[str], name: str) -> np.ndarray:
    """`predict_proba` of many texts, CHUNK_ROWS at a time as `predict_file` reads a table,
    under a progress bar of the rows done."""
    from mlabel.output import RowsProgress

    parts = [np.zeros((0, len(predictor.labels)), dtype=np.float32)]
    with RowsProgress(name, "scoring", total=len(texts)) as bar:
        for start in range(0, len(texts), CHUNK_ROWS):
            parts.append(predictor.predict_proba(texts[start : start + CHUNK_ROWS]))
            bar.update(len(parts[-1]))
    return np.concatenate(parts)


def load_predictor(model_dir: str | Path, engine: str = "auto", device: str = "auto") -> Predictor:
    return Predictor(model_dir, engine, device)


def predict_file(
    predictor: Predictor,
    src: str | Path,
    dst: str | Path,
    proba: bool = False,
    threshold: float | None = None,
    id_col: str | None = None,
    chunk_rows: int = CHUNK_ROWS,
    rule: DecisionRule | None = None,
    layout: str = "wide",
) -> int:
    """Read, classify and write a table chunk by chunk (memory does not grow with rows).

    `layout` "wide": one column per label (0/1, or probabilities with `proba`); "long": one
    row per (id, label, score) for the labels that are on. `id_col` defaults to the model's
    (`predictor.id_col`). A progress bar counts the rows done, chunk by chunk. A row without
    text gets no label (and empty probability cells), counted in a warning at the end."""
    from mlabel.data import id_spellings
    from mlabel.output import LAYOUTS, RowsProgress, TableWriter
    from mlabel.tables import iter_table

    if layout not in LAYOUTS:
        raise UsageError(f"layout {layout!r} is not one of {', '.join(LAYOUTS)}")
    if layout == "long" and proba:
        raise UsageError("--proba does not apply to --format long: its rows carry the scores")

    id_col = id_col or predictor.id_col
    n, empty = 0, []
    with TableWriter(dst) as writer, RowsProgress(src, "predict") as bar:
        for chunk in iter_table(
            src, chunk_rows=chunk_rows, str_cols=[*id_spellings(id_col), *predictor.text_cols]
        ):
            col, ids, texts = table_rows(chunk, predictor.text_cols, id_col, Path(src).name)
            preds = predictor.run(texts, threshold, rule)
            empty += [n + i for i, text in enumerate(texts) if not text]
            if layout == "long":
                writer.write_long(col, *preds.long_rows(ids))
            else:
                writer.write(ids, col, predictor.labels, preds.values(proba))
            n += len(ids)
            bar.update(len(ids))
    _warn_unscored(empty, predictor.text_cols, Path(src).name)
    return n


def table_rows(
    chunk: Any, text_cols: list[str], id_col: str, source: str
) -> tuple[str, list[str], list[str]]:
    """A chunk of a table to predict: its id column (resolved), ids (row numbers without one)
    and texts ("" for a row without text)."""
    from mlabel.data import join_texts, resolve_id_col

    texts = join_texts(chunk, text_cols, source, empty_ok=True)
    col = resolve_id_col(chunk.columns, id_col)
    ids = chunk[col].astype(str).tolist() if col in chunk else [str(i) for i in chunk.index]
    return col, ids, texts


def _warn_unscored(rows: list[int], text_cols: list[str], source: str) -> None:
    """Say which rows (0-based positions) got no label for want of text."""
    from mlabel.cells import name_list, row_numbers

    if rows:
        warnings.warn(
            f"{source}: {len(rows)} row(s) with empty or missing text in {name_list(text_cols)} "
            f"got no labels (row {row_numbers(rows)})",
            stacklevel=3,
        )
