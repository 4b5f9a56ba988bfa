"""The classic baseline: TF-IDF word 1-2 grams + one logistic regression per label."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from joblib import Parallel, cpu_count, delayed
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file
from scipy.special import expit
from sklearn.exceptions import NotFittedError
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from tqdm.auto import tqdm

from mlabel.errors import DataError, ModelError

FORMAT = 1
SETTINGS_FILE = "settings.json"
VOCABULARY_FILE = "vocabulary.json"
WEIGHTS_FILE = "weights.safetensors"

# A label seen with a single class in training gets this fixed logit: probability ~1e-13 (or ~1).
CONSTANT_LOGIT = 30.0
# Below this many training texts a term seen once is kept; above it, terms must occur twice.
MIN_DF_ROWS = 100
# The weights (labels x terms, float32) stay within this many numbers (1 GiB): with thousands of
# labels the vocabulary keeps fewer of the most frequent terms (53,687 terms at 5,000 labels).
MAX_WEIGHTS = 2**28
# Labels are fitted in blocks of this many; with more than two blocks and at least PARALLEL_WORK
# labels x stored TF-IDF values (about 8 s in one process on the Xeon of bench/RESULTS.md,
# where starting the workers costs 2-3 s), the blocks go to worker processes. Each fit is
# independent and seeded alike, so the weights do not depend on them (bench/subjects_scale.py).
LABEL_BLOCK = 32
PARALLEL_WORK = 10**8

# Tokenization settings shared by fit and load, so a loaded model transforms text identically.
VECTORIZER_SETTINGS = {
    "ngram_range": [1, 2],
    "sublinear_tf": True,
    "strip_accents": "unicode",
    "lowercase": True,
}


class NoTerms(DataError):
    """The training texts hold no term the TF-IDF vectorizer keeps."""


class TfidfModel:
    """TF-IDF features with one class-balanced logistic regression per label, fitted on up to
    `workers` processes (by default one per physical core, as torch's threads)."""

    def __init__(
        self, C: float = 4.0, max_features: int | None = 200_000, workers: int | None = None
    ):
        self.C = C
        self.max_features = max_features
        self.workers = workers

    def fit(self, texts: list[str], y: np.ndarray) -> TfidfModel:
        """Fit on texts and a 0/1 label matrix y of shape (n_texts, n_labels)."""
        y = _check_targets(texts, y)
        min_df = 2 if len(texts) >= MIN_DF_ROWS else 1
        self.vectorizer_ = _make_vectorizer(min_df=min_df, max_features=self._terms(y.shape[1]))
        try:
            features = self.vectorizer_.fit_transform(texts)
        except ValueError as err:  # "empty vocabulary", "After pruning, no terms remain"
            raise NoTerms(
                "TF-IDF finds no terms in the texts (it keeps words of two or more letters or "
                f"digits found in at least {min_df} text{'s' * (min_df > 1)}): {err}"
            ) from None
        self.coef_, self.intercept_ = self._fit_labels(features, y)
        return self

    def _fit_labels(self, features, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(coef, intercept) of every label, blocks of labels in parallel where there are many."""
        n_labels = y.shape[1]
        coef = np.zeros((n_labels, features.shape[1]), dtype=np.float32)
        intercept = np.zeros(n_labels, dtype=np.float32)
        blocks = [slice(k, k + LABEL_BLOCK) for k in range(0, n_labels, LABEL_BLOCK)]
        workers = self.workers or cpu_count(only_physical_cores=True)
        many = len(blocks) > 2 and n_labels * features.nnz >= PARALLEL_WORK
        workers = min(workers, len(blocks)) if many else 1
        # joblib hands large arrays to workers as memory maps; copy-on-write ones, since
        # scikit-learn's liblinear check (`np.max` of a sparse matrix) writes to them
        fitted = Parallel(n_jobs=workers, return_as="generator", mmap_mode="c")(
            delayed(_fit_block)(features, y[:, block].astype(np.int8), self.C) for block in blocks
        )
        # the bar shows after 2 s: thousands of labels take minutes
        with tqdm(total=n_labels, desc="TF-IDF labels", unit="label", leave=False, delay=2) as bar:
            for block, (block_coef, block_intercept) in zip(blocks, fitted, strict=True):
                coef[block], intercept[block] = block_coef, block_intercept
                bar.update(len(block_intercept))
        return coef, intercept

    def _terms(self, n_labels: int) -> int:
        """The most terms the vocabulary keeps: `max_features`, fewer for thousands of labels."""
        within = MAX_WEIGHTS // max(n_labels, 1)
        return within if self.max_features is None else min(self.max_features, within)

    def decision_function(self, texts: list[str]) -> np.ndarray:
        """Logits of shape (n_texts, n_labels)."""
        if not hasattr(self, "coef_"):
            raise NotFittedError("TfidfModel is not fitted; call fit() or TfidfModel.load() first")
        features = self.vectorizer_.transform(list(texts))
        return np.asarray(features @ self.coef_.T) + self.intercept_

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Independent per-label probabilities of shape (n_texts, n_labels), float32."""
        return expit(self.decision_function(texts)).astype(np.float32)

    def save(self, directory: Path) -> None:
        """Write settings/vocabulary as JSON and idf/coef/intercept as safetensors; no pickle."""
        if not hasattr(self, "coef_"):
            raise NotFittedError("TfidfModel is not fitted; nothing to save")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        settings = {
            "format": FORMAT,
            "C": self.C,
            "max_features": self.max_features,
            "min_df": self.vectorizer_.min_df,
            "n_labels": int(self.coef_.shape[0]),
            "vectorizer": VECTORIZER_SETTINGS,
        }
        vocabulary = {term: int(i) for term, i in self.vectorizer_.vocabulary_.items()}
        _write_json(directory / SETTINGS_FILE, settings)
        _write_json(directory / VOCABULARY_FILE, vocabulary)
        weights = {
            "idf": self.vectorizer_.idf_.astype(np.float64),
            "coef": self.coef_,
            "intercept": self.intercept_,
        }
        save_file(weights, str(directory / WEIGHTS_FILE))

    @classmethod
    def load(cls, directory: Path, n_labels: int | None = None) -> TfidfModel:
        """Rebuild a fitted model from a folder written by save(); a damaged or mismatched file
        (or one with other than `n_labels` labels, when given) is a ModelError naming it."""
        directory = Path(directory)
        settings = _read_settings(directory / SETTINGS_FILE)
        vocabulary = _read_vocabulary(directory / VOCABULARY_FILE)
        weights = _read_weights(directory / WEIGHTS_FILE, len(vocabulary), n_labels)
        model = cls(C=settings["C"], max_features=settings["max_features"])
        model.vectorizer_ = _make_vectorizer(min_df=settings["min_df"], vocabulary=vocabulary)
        model.vectorizer_.idf_ = weights["idf"]
        model.coef_, model.intercept_ = weights["coef"], weights["intercept"]
        return model


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: cannot read ({exc})") from None
    if not isinstance(value, dict):
        raise ModelError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def _read_settings(path: Path) -> dict:
    settings = _read_json(path)
    if settings.get("format") != FORMAT:
        raise ModelError(
            f"{path}: format {settings.get('format')!r} is not supported (expected {FORMAT})"
        )
    if settings.get("vectorizer") != VECTORIZER_SETTINGS:
        raise ModelError(
            f"{path}: vectorizer settings {settings.get('vectorizer')} "
            f"differ from this version's {VECTORIZER_SETTINGS}"
        )
    missing = [k for k in ("C", "max_features", "min_df") if k not in settings]
    if missing:
        raise ModelError(f"{path}: missing {', '.join(missing)}")
    return settings


def _read_vocabulary(path: Path) -> dict[str, int]:
    """Terms numbered 0 to n-1, each number once (they index the columns of coef)."""
    vocabulary = _read_json(path)
    numbers = [i for i in vocabulary.values() if isinstance(i, int) and not isinstance(i, bool)]
    if len(numbers) != len(vocabulary) or sorted(numbers) != list(range(len(numbers))):
        raise ModelError(f"{path}: expected terms numbered 0 to {len(vocabulary) - 1}, once each")
    return vocabulary


def _read_weights(path: Path, n_terms: int, n_labels: int | None) -> dict[str, np.ndarray]:
    """idf (terms), coef (labels x terms) and intercept (labels), their shapes checked."""
    try:
        weights = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ModelError(f"{path}: cannot load ({exc})") from None
    rows = n_labels if n_labels is not None else len(weights.get("intercept", ()))
    expected = {"idf": (n_terms,), "coef": (rows, n_terms), "intercept": (rows,)}
    found = {k: tuple(v.shape) for k, v in weights.items()}
    if found != expected:
        raise ModelError(
            f"{path}: holds {found}, expected {expected} ({n_terms} terms, {rows} labels)"
        )
    return weights


def _make_vectorizer(
    min_df: int, max_features: int | None = None, vocabulary: dict[str, int] | None = None
) -> TfidfVectorizer:
    """The one place the TF-IDF settings are turned into a vectorizer."""
    settings = dict(VECTORIZER_SETTINGS, ngram_range=tuple(VECTORIZER_SETTINGS["ngram_range"]))
    return TfidfVectorizer(
        **settings, min_df=min_df, max_features=max_features, vocabulary=vocabulary
    )


def _fit_block(features, targets: np.ndarray, C: float) -> tuple[np.ndarray, np.ndarray]:
    """(coef, intercept) of each column of a 0/1 block of targets."""
    fits = [_fit_label(features, targets[:, k], C) for k in range(targets.shape[1])]
    return np.stack([c for c, _ in fits]), np.array([i for _, i in fits], dtype=np.float32)


def _fit_label(features, target: np.ndarray, C: float) -> tuple[np.ndarray, float]:
    """Return (coef, intercept) for one label; a constant label gets a fixed logit."""
    if target.min() == target.max():
        sign = 1.0 if target[0] == 1 else -1.0
        return np.zeros(features.shape[1], dtype=np.float32), sign * CONSTANT_LOGIT
    # with more terms than texts liblinear's dual solver gives the same fit: 1.66x sooner
    # than the primal on the arXiv abstracts (bench/tfidf_solver.py, its log in bench/logs),
    # a little slower on short tweets, where it may need over 100 passes (SemEval: 1 label
    # of 11); RESULTS, "TF-IDF: liblinear's dual solver". Its passes visit rows in a random
    # order: seeded, so that a fit is the same in whichever process it runs
    dual = features.shape[1] > features.shape[0]
    clf = LogisticRegression(
        C=C, class_weight="balanced", solver="liblinear", dual=dual, max_iter=1000, random_state=0
    )
    clf.fit(features, target)
    return clf.coef_[0], float(clf.intercept_[0])


def _check_targets(texts: list[str], y: np.ndarray) -> np.ndarray:
    """Return y as a bool array (no copy when it is one) after checking its shape and that it
    holds only 0 and 1."""
    y = np.asarray(y)
    if y.ndim != 2 or y.shape[0] != len(texts):
        raise ValueError(f"y has shape {y.shape}, expected ({len(texts)}, n_labels)")
    if y.dtype != bool and not np.isin(y, (0, 1)).all():
        bad = y[~np.isin(y, (0, 1))][0].item()
        raise ValueError(f"y holds the value {bad!r}, expected only 0 or 1")
    return y.astype(bool, copy=False)


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=1), encoding="utf-8")
