"""The scikit-learn style front door: `Classifier(...).fit(data).predict(texts)`."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlabel.callbacks import Callback, default_callbacks
from mlabel.config import TrainConfig, from_dict
from mlabel.data import Examples, as_frame, join_texts, load_examples
from mlabel.errors import ConfigError, DataError
from mlabel.finalize import TrainResult
from mlabel.predict import Predictor
from mlabel.runtime import Runtime
from mlabel.split import split_examples


def prepare_data(cfg: TrainConfig, data: Any, val: Any = None) -> tuple[Examples, Examples | None]:
    """Read and validate the training table and its validation split (file, fraction, or none)."""
    columns = dict(
        text_cols=cfg.text_cols,
        id_col=cfg.id_col,
        label_cols=cfg.label_cols,
        labels_col=cfg.labels_col,
        label_sep=cfg.label_sep,
    )
    train_ex = load_examples(data, **columns)
    val = val if val is not None else cfg.val
    if cfg.all_data:
        return train_ex, None
    if val is not None:
        return train_ex, load_examples(val, **columns, labels=train_ex.labels)
    return split_examples(train_ex, cfg.val_frac, cfg.seed)


def fit_model(
    cfg: TrainConfig,
    data: Any,
    out: str | Path,
    val: Any = None,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    runtime: Runtime | None = None,
) -> TrainResult:
    """Train the model `cfg.model` names (an encoder, or `tfidf`) into `out/model`. An encoder's
    epochs are printed and its curves drawn (`default_callbacks`) before `callbacks` hear of them.
    `runtime` is the process's `mlabel.runtime.setup()` (made in training when not given).
    With `cfg.unlabeled`, the encoder is first adapted to those texts in `out/adapted`."""
    from mlabel.adapt import adapted_config
    from mlabel.training import train, train_tfidf

    train_ex, val_ex = prepare_data(cfg, data, val)
    if cfg.model == "tfidf" and not cfg.unlabeled:
        return train_tfidf(cfg, train_ex, val_ex, out)
    cfg = adapted_config(cfg, Path(out), resume)
    callbacks = (*default_callbacks(out), *callbacks)
    return train(cfg, train_ex, val_ex, out, resume=resume, callbacks=callbacks, runtime=runtime)


def texts_and_labels(
    texts: Any, y: Any, text_cols: Sequence[str]
) -> tuple[pd.DataFrame, str | None]:
    """scikit-learn's `(X, y)` as a table, and its list column (None: 0/1 columns). `y` is a
    0/1 matrix (a DataFrame's columns name the labels; an array's are "0", "1", ...; sparse
    too), or each text's label names (lists, or one name each: classes)."""
    if isinstance(texts, str | pd.DataFrame):
        raise TypeError("with `y`, the texts are a list of strings (a table holds its labels)")
    if len(text_cols) != 1:
        raise ConfigError(f"texts given as a list fill one text column; text_cols is {text_cols}")
    texts = list(texts)
    y = y.toarray() if callable(getattr(y, "toarray", None)) else y
    if len(y) != len(texts):
        raise DataError(f"y has {len(y)} rows and there are {len(texts)} texts")
    frame = pd.DataFrame({"ID": [str(i) for i in range(len(texts))], text_cols[0]: texts})
    if isinstance(y, pd.DataFrame):
        labels = y.reset_index(drop=True).rename(columns=str)
    elif _is_matrix(y):
        labels = pd.DataFrame(np.asarray(y)).rename(columns=str)
    else:
        names = [[item] if np.ndim(item) == 0 else list(item) for item in y]
        return frame.assign(labels=[[str(n) for n in row] for row in names]), "labels"
    if set(labels.columns) & set(frame.columns):
        raise DataError(f"y's columns include {sorted(set(labels.columns) & set(frame.columns))}")
    return pd.concat([frame, labels], axis=1), None


def _is_matrix(y: Any) -> bool:
    """Whether `y` is a 2-D array of numbers or booleans (not label names, not ragged lists)."""
    try:
        array = np.asarray(y)
    except ValueError:  # rows of different lengths: lists of names
        return False
    return array.ndim == 2 and array.dtype.kind in "biuf"


class Classifier:
    """Multi-label text classifier. Constructor arguments are `TrainConfig` settings."""

    def __init__(self, model: str = "default", **settings: Any):
        self.model = model
        self.settings = settings

    def fit(
        self,
        data: Any,
        y: Any = None,
        *,
        val: Any = None,
        out: str | Path | None = None,
        resume: bool = False,
    ) -> Classifier:
        """Train on a table (path, DataFrame, Hugging Face Dataset or pyarrow Table), or, as in
        scikit-learn, on a list of texts and their labels `y` (see `texts_and_labels`); `val` is
        a table, or a `(texts, y)` pair. The model folder lands in `out/model`."""
        cfg = from_dict({"model": self.model, **self.settings})
        if y is None and isinstance(data, list | tuple):
            raise TypeError("a list of texts needs its labels: fit(texts, y), or give a table")
        if y is not None:
            data, labels_col = texts_and_labels(data, y, cfg.text_cols)
            cfg = cfg.replace(labels_col=labels_col, label_cols=None, id_col="ID")
        if isinstance(val, tuple):
            val = texts_and_labels(*val, cfg.text_cols)[0]
        out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="mlabel-"))
        result = fit_model(cfg, data, out, val=val, resume=resume)
        self.history_ = result.history
        self._use(Predictor(result.model_dir))
        return self

    def _use(self, predictor: Predictor) -> None:
        self.predictor_ = predictor
        self.labels_ = predictor.labels
        self.thresholds_ = predictor.thresholds
        self.model_dir_ = predictor.model_dir

    def _texts(self, texts: Any) -> list[str]:
        texts = as_frame(texts)  # a Hugging Face Dataset or pyarrow Table: its DataFrame
        if isinstance(texts, pd.DataFrame):
            return join_texts(texts, self.predictor_.text_cols, "DataFrame", empty_ok=True)
        if isinstance(texts, str):
            raise TypeError("expected a list of texts, got one string; wrap it in a list")
        return list(texts)

    def predict_proba(self, texts: Any) -> np.ndarray:
        """(n, n_labels) probabilities; `texts` is a list of strings or a table with the text
        columns (a DataFrame, or a Hugging Face Dataset or pyarrow Table: see `as_frame`)."""
        return self.predictor_.predict_proba(self._texts(texts))

    def predict(
        self,
        texts: Any,
        threshold: float | None = None,
        top_k: int | None = None,
        min_labels: int | None = None,
    ) -> list[list[str]]:
        """Label lists per text, by the stored thresholds and rule (`top_k`, `min_labels`) unless
        the arguments override them; `top_k=0` lifts a stored cap. An empty text gets none."""
        rule = self.predictor_.decision_rule(top_k, min_labels)
        return self.predictor_.predict(self._texts(texts), threshold, rule)

    def evaluate(
        self,
        data: Any,
        threshold: float | None = None,
        top_k: int | None = None,
        min_labels: int | None = None,
    ) -> dict[str, Any]:
        """The metrics `mlabel evaluate --json` prints (micro/macro-F1, ranking, "per_label", ...)
        on a labelled table (path or DataFrame) with the columns the model was trained on, or
        on a `(texts, y)` pair as `fit` takes it."""
        from mlabel.evaluation import evaluate

        if isinstance(data, tuple):
            data = texts_and_labels(*data, self.predictor_.text_cols)[0]

        return evaluate(
            self.predictor_, data, threshold, top_k=top_k, min_labels=min_labels
        ).metrics

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        if directory.resolve() != self.model_dir_.resolve():
            shutil.copytree(self.model_dir_, directory, dirs_exist_ok=True)
        return directory

    @classmethod
    def load(cls, directory: str | Path, engine: str = "auto") -> Classifier:
        predictor = Predictor(directory, engine)
        clf = cls(predictor.info.config.get("model", "default"))
        clf._use(predictor)
        return clf
