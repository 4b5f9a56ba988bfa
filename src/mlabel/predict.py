"""The prediction engine: one tokenization pass, length-sorted batches, input order restored."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlabel.config import ENGINES
from mlabel.encoding import (
    Encoded,
    collate,
    encode,
    inference_batches,
    load_tokenizer,
    pool_windows,
)
from mlabel.export import missing_package, onnx_path, require_onnx
from mlabel.model import EncoderClassifier, ModelError, read_meta
from mlabel.runtime import cpu_has_fast_bf16

MAX_TOKENS = 8192  # padded tokens per inference batch (torch engines)
# ONNX Runtime's int8 kernels run fastest on small batches (measured on 2 Zen 4 cores: 92 docs/s
# at 2,048 tokens against 77 at 8,192; 512 to 2,048 were within noise; bench/RESULTS.md).
ONNX_MAX_TOKENS = 1024


def batched_logits(
    model: torch.nn.Module,
    encoded: Encoded,
    rows: np.ndarray | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device = torch.device("cpu"),
) -> np.ndarray:
    """Logits for the selected windows (all by default), in their original order."""
    rows = np.arange(len(encoded.lengths)) if rows is None else rows
    out = np.zeros((len(rows), model.head.out_features), dtype=np.float32)
    autocast = (
        torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    )
    with torch.inference_mode(), autocast:
        for batch in inference_batches(encoded.lengths[rows], MAX_TOKENS):
            inputs = {k: v.to(device) for k, v in collate(encoded, rows[batch]).items()}
            out[batch] = model(**inputs).float().cpu().numpy()
    return out


def onnx_logits(session, encoded: Encoded, n_labels: int) -> np.ndarray:
    """Logits from an ONNX Runtime session, batched and ordered like `batched_logits`."""
    out = np.zeros((len(encoded.lengths), n_labels), dtype=np.float32)
    for batch in inference_batches(encoded.lengths, ONNX_MAX_TOKENS):
        inputs = {k: v.numpy() for k, v in collate(encoded, batch).items()}
        out[batch] = session.run(None, inputs)[0]
    return out


def onnx_session(path: Path):
    """An ONNX Runtime CPU session using torch's thread count and every graph optimization."""
    require_onnx(f"running {path.name}", ("onnxruntime",))
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Every batch has its own shape, so a memory pattern is never reused. The arena stays on
    # (without it every batch maps fresh pages: int8 ran at 42 docs/s instead of 71); small
    # batches (ONNX_MAX_TOKENS) keep it from growing with the number of rows.
    options.enable_mem_pattern = False
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def inference_device(device: str, engine: str) -> torch.device:
    """`auto`: the first GPU for the torch engines when there is one, else the CPU (the ONNX
    engines run on the CPU)."""
    if device == "auto":
        gpu = torch.cuda.is_available() and not engine.startswith("onnx")
        return torch.device("cuda" if gpu else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise ModelError(f"device {device!r} is not auto, cpu, cuda or cuda:N") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {device!r}: no GPU is available here")
    if chosen.type != "cpu" and engine.startswith("onnx"):
        raise ModelError(
            f"engine {engine!r} runs on the CPU; use --engine torch or bf16 on {device}"
        )
    return chosen


class Predictor:
    """Probabilities for raw texts from a saved model folder, with the engine of choice.

    Engines: `torch` (fp32), `bf16` (encoder weights in bf16, head in fp32; on CPUs with fast
    bf16 and GPUs that support it), `onnx` and `onnx-int8` (after `mlabel export --onnx [--int8]`,
    CPU only). `auto` on a GPU is bf16 where supported, else torch; on a CPU it takes the choice
    `mlabel export` measured and recorded, else bf16 where the CPU is fast at it, else torch.
    """

    def __init__(self, model_dir: str | Path, engine: str = "auto", device: str = "auto"):
        self.model_dir = Path(model_dir)
        self.info: dict[str, Any] = read_meta(self.model_dir)
        self.labels: list[str] = self.info["labels"]
        self.thresholds = np.asarray(self.info["thresholds"], dtype=np.float32)
        self.text_cols: list[str] = self.info["text_cols"]
        self.max_len: int = self.info.get("max_len", 0)
        if engine not in ENGINES:
            raise ModelError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")
        self.device = inference_device(device, engine)  # checked for every kind of model
        if self.info["kind"] != "transformer":
            self.device = torch.device("cpu")  # scikit-learn models run on the CPU
        self.engine = self._pick_engine(engine)
        self._tfidf = self._load_tfidf()
        self._model = None
        self._session = None
        self._tokenizer = None
        if self.info["kind"] == "transformer":
            self._tokenizer = load_tokenizer(str(self.model_dir))
            if self.engine.startswith("onnx"):
                self._session = onnx_session(onnx_path(self.model_dir, self.engine))
            else:
                self._model = EncoderClassifier.load(
                    self.model_dir, self.info["pooling"], len(self.labels)
                ).to(self.device)
                if self.engine == "bf16":
                    # Weights cast once: autocast would re-cast every weight on every batch.
                    self._model.encoder.to(torch.bfloat16)

    def _pick_engine(self, engine: str) -> str:
        if self.info["kind"] != "transformer":
            return "tfidf"
        if engine == "auto" and self.device.type != "cpu":
            return "bf16" if self._fast_bf16() else "torch"
        if engine == "auto":
            return self._recorded_engine() or ("bf16" if cpu_has_fast_bf16() else "torch")
        if engine.startswith("onnx") and not onnx_path(self.model_dir, engine).is_file():
            flags = "--onnx --int8" if engine == "onnx-int8" else "--onnx"
            raise ModelError(f"engine {engine!r} needs `mlabel export {self.model_dir} {flags}`")
        if engine == "bf16" and not self._fast_bf16():
            warnings.warn(
                f"no fast bf16 on {self.device} (a CPU needs AMX or AVX-512 bf16); using fp32 torch",
                stacklevel=3,
            )
            return "torch"
        return engine

    def _fast_bf16(self) -> bool:
        if self.device.type == "cuda":
            return torch.cuda.is_bf16_supported()
        return cpu_has_fast_bf16()

    def _recorded_engine(self) -> str | None:
        """The engine `mlabel export` chose, if this folder and CPU can still run it."""
        choice = (self.info.get("engine") or {}).get("choice")
        if choice is None or (choice == "bf16" and not cpu_has_fast_bf16()):
            return None
        if choice.startswith("onnx") and (
            not onnx_path(self.model_dir, choice).is_file() or missing_package(("onnxruntime",))
        ):
            return None
        return choice

    def _load_tfidf(self):
        if self.info["kind"] != "tfidf" and not self.info.get("ensemble"):
            return None
        from mlabel.baseline import TfidfModel

        return TfidfModel.load(self.model_dir / "tfidf")

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """An (n, labels) array of probabilities; rows need not sum to 1."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        if self.info["kind"] != "transformer":
            return self._tfidf.predict_proba(texts).astype(np.float32)
        probs = self._encoder_proba(texts)
        if self._tfidf is not None:
            weight = self.info["ensemble"]["weight"]
            probs = (1 - weight) * probs + weight * self._tfidf.predict_proba(texts)
        return probs.astype(np.float32)

    def _encoder_proba(self, texts: list[str]) -> np.ndarray:
        chunk = self.info.get("long", "truncate") == "chunk"
        enc = encode(self._tokenizer, texts, self.max_len, chunk, self.info.get("stride", 64))
        if self._session is not None:
            logits = onnx_logits(self._session, enc, len(self.labels))
        else:
            logits = batched_logits(self._model, enc, device=self.device)
        return pool_windows(
            sigmoid(logits), enc.owner, len(texts), self.info.get("long_pool", "max")
        )

    def decision_thresholds(self, threshold: float | None = None) -> np.ndarray:
        """One threshold per label: the stored ones, or `threshold` for every label."""
        return self.thresholds if threshold is None else np.full(len(self.labels), threshold)

    def predict(self, texts: list[str], threshold: float | None = None) -> list[list[str]]:
        """Label lists, using the stored thresholds unless `threshold` overrides them."""
        hits = self.predict_proba(texts) >= self.decision_thresholds(threshold)
        return [[label for label, on in zip(self.labels, row) if on] for row in hits]


def load_predictor(model_dir: str | Path, engine: str = "auto", device: str = "auto") -> Predictor:
    return Predictor(model_dir, engine, device)


def predict_file(
    predictor: Predictor,
    src: str | Path,
    dst: str | Path,
    proba: bool = False,
    threshold: float | None = None,
    id_col: str = "ID",
    chunk_rows: int = 5000,
) -> int:
    """Read, classify and write a table chunk by chunk (memory does not grow with rows)."""
    from mlabel.data import id_spellings, iter_table, join_texts, resolve_id_col
    from mlabel.output import TableWriter

    cut = predictor.decision_thresholds(threshold)
    n = 0
    with TableWriter(dst) as writer:
        for chunk in iter_table(
            src, chunk_rows=chunk_rows, str_cols=[*id_spellings(id_col), *predictor.text_cols]
        ):
            texts = join_texts(chunk, predictor.text_cols, Path(src).name)
            probs = predictor.predict_proba(texts)
            col = resolve_id_col(chunk.columns, id_col)
            ids = chunk[col].astype(str).tolist() if col in chunk else [str(i) for i in chunk.index]
            values = probs if proba else (probs >= cut).astype(np.int8)
            writer.write(ids, col, predictor.labels, values)
            n += len(ids)
    return n
