"""Why a label was given: a weight per word of a text, from the model that gave the label.

The encoder is explained by integrated gradients (Captum's `LayerIntegratedGradients` on its
input embeddings): the label's logit is followed from a baseline of the same length, whose word
tokens are all [PAD] (special tokens kept), to the text, and each token gets its share of the
change; a word gets the sum of its pieces. The TF-IDF model explains itself exactly: a term adds
its tf-idf value times the label's coefficient to the logit; a word gets its unigram's share and
half of each bigram it is in.

Weights are in probability points, so the two members compare and blend: a member's logit
attributions are scaled by the slope of the sigmoid between its baseline and the text
((sigmoid(z) - sigmoid(z_base)) / (z - z_base)), which makes them add up to the member's change
in probability from the baseline (an empty text) to the text. A blended model weighs the
encoder's by 1 - w and the TF-IDF member's by w, as it weighs their probabilities, so its words'
weights add up to `probability - baseline`, exactly for TF-IDF and up to integrated gradients'
approximation for the encoder. A positive weight pushed the label's probability up.

Only the first `max_len` tokens of a long text are explained: words past them get no weight.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlabel import extras
from mlabel.atomic import replace_on_success
from mlabel.baseline import TfidfModel
from mlabel.decision import DecisionRule
from mlabel.engines import BlendScorer, EncoderScorer, TfidfScorer, sigmoid
from mlabel.errors import DataError, UsageError
from mlabel.predict import Predictor

WORD = re.compile(r"\w+|[^\w\s]")  # the words reported: runs of letters/digits, or one symbol
TABLE_FORMATS = (".csv", ".jsonl")
TABLE_COLUMNS = ("label", "word", "start", "end", "weight")  # after the id column
FLAT_SLOPE = 1e-4  # below this logit change the sigmoid's slope at the text is used


@dataclass(frozen=True)
class Word:
    """A word of the text (`text[start:end]`) and how much it moved the label's probability."""

    text: str
    start: int
    end: int
    weight: float


@dataclass
class Explanation:
    """One label for one text: its probability, its probability for an empty text (the
    baseline) and every word's weight, in text order; the weights add up to about
    `probability - baseline`."""

    label: str
    probability: float
    baseline: float
    words: list[Word]

    def strongest(self, top: int | None = None) -> list[Word]:
        """The words that moved the probability, strongest first (all, or the `top` first)."""
        ranked = sorted((w for w in self.words if w.weight), key=lambda w: -abs(w.weight))
        return ranked if top is None else ranked[:top]

    def record(self, top: int | None = None) -> dict[str, Any]:
        """A JSON object: label, probability, baseline and the words (in text order, or the
        `top` strongest first) with weight and character span."""
        words = self.words if top is None else self.strongest(top)
        return {
            "label": self.label,
            "probability": round(self.probability, 6),
            "baseline": round(self.baseline, 6),
            "words": [
                {"word": w.text, "start": w.start, "end": w.end, "weight": round(w.weight, 6)}
                for w in words
            ],
        }


def word_spans(text: str) -> list[tuple[int, int]]:
    """The (start, end) of each word of `text`: a run of letters and digits, or one symbol."""
    return [m.span() for m in WORD.finditer(text)]


def word_of_char(text: str, spans: list[tuple[int, int]]) -> np.ndarray:
    """For each character of `text`, the word it belongs to (-1 for white space)."""
    owner = np.full(len(text), -1, dtype=np.int64)
    for i, (start, end) in enumerate(spans):
        owner[start:end] = i
    return owner


@dataclass
class MemberWeights:
    """One member's logit attributions (labels x words), its logits for the text and the
    baseline; `probability_weights` turns them into probability points."""

    logit_weights: np.ndarray
    logit: np.ndarray
    logit_base: np.ndarray

    def probability_weights(self) -> np.ndarray:
        change = self.logit - self.logit_base
        p, p_base = sigmoid(self.logit), sigmoid(self.logit_base)
        flat = np.abs(change) < FLAT_SLOPE
        slope = np.where(flat, p * (1 - p), (p - p_base) / np.where(flat, 1.0, change))
        return self.logit_weights * slope[:, None]

    def baseline(self) -> np.ndarray:
        return sigmoid(self.logit_base)


# ----------------------------------------------------------------------------- the members


class EncoderAttribution:
    """Integrated gradients of label logits over the encoder's input embeddings, per word."""

    def __init__(self, scorer: EncoderScorer, n_steps: int = 32, batch_size: int = 32):
        from captum.attr import LayerIntegratedGradients

        self.model = scorer.logits.model.eval().requires_grad_(False)
        self.tokenizer = scorer.tokenizer
        self.max_len = scorer.info.max_len
        self.n_steps, self.batch_size = n_steps, batch_size
        embeddings = self.model.encoder.get_input_embeddings()
        self.ig = LayerIntegratedGradients(self.model, embeddings)

    def __call__(self, text: str, labels: list[int]) -> MemberWeights:
        enc = self.tokenizer(
            text,
            truncation=True,
            max_length=self.max_len,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
            return_token_type_ids=False,
            return_tensors="pt",
        )
        ids, mask = enc["input_ids"], enc["attention_mask"]
        pad = self.tokenizer.pad_token_id or 0
        base = torch.where(enc["special_tokens_mask"].bool(), ids, pad)
        n = len(labels)
        # One attribute call for every label: the text repeated, one target per copy.
        attributions = self.ig.attribute(
            ids.repeat(n, 1),
            base.repeat(n, 1),
            target=labels,
            additional_forward_args=(mask.repeat(n, 1),),
            n_steps=self.n_steps,
            internal_batch_size=self.batch_size,
        )
        per_token = attributions.sum(-1).detach().numpy()  # (labels, tokens)
        with torch.no_grad():
            logit = self.model(ids, mask)[0, labels].numpy()
            logit_base = self.model(base, mask)[0, labels].numpy()
        owner = word_of_char(text, word_spans(text))
        words = _token_words(enc["offset_mapping"][0].tolist(), owner)
        return MemberWeights(_sum_by_word(per_token, words, owner), logit, logit_base)


def _token_words(offsets: list[list[int]], owner: np.ndarray) -> np.ndarray:
    """The word of each token: the first word its characters touch (-1 for special tokens)."""
    words = np.full(len(offsets), -1, dtype=np.int64)
    for t, (start, end) in enumerate(offsets):
        touched = owner[start:end]
        touched = touched[touched >= 0]
        if len(touched):
            words[t] = touched[0]
    return words


def _sum_by_word(per_token: np.ndarray, words: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """(labels, tokens) -> (labels, words): each word the sum of its pieces."""
    n_words = int(owner.max()) + 1 if len(owner) else 0
    keep = words >= 0
    out = np.zeros((per_token.shape[0], n_words), dtype=np.float64)
    for k in range(per_token.shape[0]):
        out[k] = np.bincount(words[keep], weights=per_token[k, keep], minlength=n_words)
    return out


def tfidf_attribution(model: TfidfModel, text: str, labels: list[int]) -> MemberWeights:
    """Each term's tf-idf value times the label's coefficient, shared among its occurrences
    (a bigram's half to each of its words); exact: they add up to logit - intercept."""
    vectorizer = model.vectorizer_
    features = vectorizer.transform([text]).tocsr()
    value = dict(zip(features.indices.tolist(), features.data.tolist()))
    spans = word_spans(text)
    terms, words, shares = _term_occurrences(vectorizer, text, spans, value)
    coef = model.coef_[labels][:, terms] if terms else np.zeros((len(labels), 0))
    contrib = coef * np.asarray([value[t] for t in terms]) * np.asarray(shares)
    out = np.zeros((len(labels), len(spans)), dtype=np.float64)
    for k in range(len(labels)):
        out[k] = np.bincount(words, weights=contrib[k], minlength=len(spans))
    logit = model.decision_function([text])[0, labels]
    return MemberWeights(out, np.asarray(logit, dtype=np.float64), model.intercept_[labels])


def _term_occurrences(
    vectorizer, text: str, spans: list[tuple[int, int]], value: dict[int, float]
) -> tuple[list[int], np.ndarray, list[float]]:
    """(term, word, share) for each word's part in each term the text holds."""
    preprocess = vectorizer.build_preprocessor()
    vocabulary = vectorizer.vocabulary_
    # The vectorizer's tokens are the runs of two or more word characters: our words of that kind.
    # (A symbol is one character long.)
    tokens = [(i, preprocess(text[s:e])) for i, (s, e) in enumerate(spans) if e - s > 1]
    occurrences: list[tuple[str, list[int]]] = [(term, [i]) for i, term in tokens]
    occurrences += [(f"{a[1]} {b[1]}", [a[0], b[0]]) for a, b in zip(tokens, tokens[1:])]
    counts: dict[str, int] = {}
    for term, _ in occurrences:
        counts[term] = counts.get(term, 0) + 1
    terms, words, shares = [], [], []
    for term, owners in occurrences:
        index = vocabulary.get(term)
        if index is None or index not in value:
            continue
        for word in owners:
            terms.append(index)
            words.append(word)
            shares.append(1.0 / (counts[term] * len(owners)))
    return terms, np.asarray(words, dtype=np.int64), shares


# ----------------------------------------------------------------------------- the model


class Explainer:
    """Explanations from a model folder, whatever its kind: encoder, TF-IDF, or their blend.

    The model runs in fp32 torch on the CPU (the engine `mlabel predict` chose may differ, and
    the probabilities with it, slightly). `n_steps`: integrated gradients' steps per label;
    `batch_size`: steps run in one forward and backward pass. `member` ("encoder" or "tfidf")
    explains one member of a blended model alone, with that member's probabilities.
    """

    def __init__(
        self,
        model_dir: str | Path,
        n_steps: int = 32,
        batch_size: int = 32,
        member: str | None = None,
    ):
        if n_steps < 1 or batch_size < 1:
            raise UsageError(f"n_steps ({n_steps}) and batch_size ({batch_size}) must be 1 or more")
        self.predictor = Predictor(model_dir, engine="torch", device="cpu")
        self.labels = self.predictor.labels
        scorer = self.predictor.scorer
        blend = isinstance(scorer, BlendScorer)
        if member not in (None, "encoder", "tfidf") or (member and not blend):
            raise UsageError(f"member {member!r}: only a blended model has an encoder or tfidf one")
        encoder = scorer.encoder if blend and member != "tfidf" else scorer
        tfidf = scorer.tfidf if blend and member != "encoder" else scorer
        self.encoder: EncoderAttribution | None = None
        if isinstance(encoder, EncoderScorer):
            extras.require("explain", "mlabel explain")
            self.encoder = EncoderAttribution(encoder, n_steps, batch_size)
        self.tfidf = tfidf.model if isinstance(tfidf, TfidfScorer) else None
        weight = scorer.weight if blend and member is None else float(self.encoder is None)
        self.tfidf_weight = np.broadcast_to(np.asarray(weight, np.float64), (len(self.labels),))
        self.scorer = {"encoder": encoder, "tfidf": tfidf}.get(member, scorer)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """The probabilities explained: the model's, or its member's (with `member`)."""
        return self.scorer.proba(texts).astype(np.float32)

    def label_indices(self, labels: Sequence[str]) -> list[int]:
        """Label names to their columns; an unknown name is a UsageError listing the labels."""
        where = {label: i for i, label in enumerate(self.labels)}
        unknown = [label for label in labels if label not in where]
        if unknown:
            known = ", ".join(self.labels[:10]) + (", ..." if len(self.labels) > 10 else "")
            raise UsageError(f"label {unknown[0]!r} is not one of the model's labels ({known})")
        return [where[label] for label in dict.fromkeys(labels)]

    def explain(
        self,
        texts: list[str],
        labels: Sequence[str] | None = None,
        threshold: float | None = None,
        rule: DecisionRule | None = None,
    ) -> list[list[Explanation]]:
        """For each text, one explanation per label: the `labels` asked for, else the labels
        the model gives the text (by `threshold` and `rule` where given), else its best one."""
        asked = None if labels is None else self.label_indices(labels)
        preds = self.predictor.decisions(self.predict_proba(texts), threshold, rule)
        out = []
        for text, probs, hits in zip(texts, preds.probs, preds.hits):
            chosen = asked or (np.flatnonzero(hits).tolist() or [int(np.argmax(probs))])
            out.append(self.explain_one(text, chosen, probs))
        return out

    def explain_one(self, text: str, labels: list[int], probs: np.ndarray) -> list[Explanation]:
        """Explanations of the label columns `labels` for one text whose probabilities are
        `probs` (one per label of the model)."""
        w = self.tfidf_weight[labels][:, None]
        spans = word_spans(text)
        weights, baseline = np.zeros((len(labels), len(spans))), np.zeros(len(labels))
        for member, share in ((self._encoder(text, labels), 1 - w), (self._tfidf(text, labels), w)):
            if member is not None:
                weights += share * member.probability_weights()
                baseline += share[:, 0] * member.baseline()
        return [
            Explanation(
                self.labels[k],
                float(probs[k]),
                float(baseline[j]),
                [Word(text[s:e], s, e, float(x)) for (s, e), x in zip(spans, weights[j])],
            )
            for j, k in enumerate(labels)
        ]

    def _encoder(self, text: str, labels: list[int]) -> MemberWeights | None:
        return None if self.encoder is None else self.encoder(text, labels)

    def _tfidf(self, text: str, labels: list[int]) -> MemberWeights | None:
        return None if self.tfidf is None else tfidf_attribution(self.tfidf, text, labels)


# ----------------------------------------------------------------------------- tables


def explain_file(
    explainer: Explainer,
    src: str | Path,
    dst: str | Path,
    labels: Sequence[str] | None = None,
    top: int | None = None,
    id_col: str | None = None,
    chunk_rows: int = 64,
) -> int:
    """Explain every row of a table, chunk by chunk, into a CSV or JSONL table with one row per
    (id, label, word, start, end, weight), the `top` strongest words of each label (default:
    every word that moved it). The file appears only once complete. Returns the rows read.
    `id_col` defaults to the model's. A progress bar counts the rows done, chunk by chunk."""
    from mlabel.data import id_spellings, join_texts, resolve_id_col
    from mlabel.output import RowsProgress
    from mlabel.tables import iter_table

    dst = Path(dst)
    if dst.suffix.lower() not in TABLE_FORMATS:
        raise DataError(f"{dst.name}: output must end in {', '.join(TABLE_FORMATS)}")
    text_cols = explainer.predictor.text_cols
    id_col = id_col or explainer.predictor.id_col
    dst.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with replace_on_success(dst) as tmp, RowsProgress(src, "explain") as bar:
        tmp.touch()
        for chunk in iter_table(
            src, chunk_rows=chunk_rows, str_cols=[*id_spellings(id_col), *text_cols]
        ):
            texts = join_texts(chunk, text_cols, Path(src).name)
            col = resolve_id_col(chunk.columns, id_col)
            ids = chunk[col].astype(str).tolist() if col in chunk else [str(i) for i in chunk.index]
            rows = explanation_rows(ids, explainer.explain(texts, labels), top)
            _append_rows(tmp, col, rows, header=n == 0)
            n += len(ids)
            bar.update(len(ids))
    return n


def explanation_rows(
    ids: list[str], explanations: list[list[Explanation]], top: int | None = None
) -> list[tuple[Any, ...]]:
    """(id, label, word, start, end, weight) for each label's `top` strongest words."""
    return [
        (item_id, e.label, w.text, w.start, w.end, round(w.weight, 6))
        for item_id, per_label in zip(ids, explanations)
        for e in per_label
        for w in e.strongest(top)
    ]


def _append_rows(path: Path, id_col: str, rows: list[tuple[Any, ...]], header: bool) -> None:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=[id_col, *TABLE_COLUMNS])
    frame[id_col] = frame[id_col].astype("string")
    if path.suffix.lower() == ".csv":
        frame.to_csv(path, mode="a", header=header, index=False)
    elif rows:  # pandas would write a blank line for no rows
        with open(path, "a", encoding="utf-8") as f:
            frame.to_json(f, orient="records", lines=True, force_ascii=False)
