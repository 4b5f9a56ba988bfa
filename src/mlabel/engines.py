"""The engines that score texts: each model kind (encoder on torch or ONNX Runtime, TF-IDF, their
blend) answers `proba(texts)`, and `load_scorer` picks and loads one for a model folder."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from mlabel import extras
from mlabel.encoding import (
    MAX_BATCH_ROWS,
    Encoded,
    collate,
    encode,
    inference_batches,
    load_tokenizer,
    pool_windows,
)
from mlabel.errors import ModelError
from mlabel.folder import ONNX_FILES, ModelInfo, check_files, onnx_path, tfidf_dir
from mlabel.model import first_line
from mlabel.runtime import (
    attention_kernels,
    cpu_has_fast_bf16,
    cpu_has_int8_dot,
    matrix_isa,
    reuse_freed_memory,
)

MAX_TOKENS = 8192  # padded tokens per inference batch (torch engines)
# ONNX Runtime ran faster on small batches: on 2 Xeon cores 1,024 tokens per batch against 4,096
# gave int8 110-120 docs/s against 90 (fp32 53-55 against 47-48), scratch run with its log in
# bench/logs/onnx-batch-budget-2026-11-30.log (earlier Zen 4 runs agreed; their logs are lost).
ONNX_MAX_TOKENS = 1024
# int8 runs one text per run: dynamic int8 quantizes each run's activations with one scale, so in
# shared batches a text's probabilities moved with its batchmates and padding (6 decisions of
# 3,000 flipped on bench/infer.py's model). On abstracts that cost nothing (median 63.2 docs/s
# against 58.9 for 1,024-token batches, bench/logs/onnx-one-text-per-run-xeon-2026-12-01.log),
# on 2,000 tweets 22% (median 345 docs/s against 444; bench/logs/onnx-short-texts-xeon-2026-12-01.log):
# the price of scoring a text the same whatever comes with it. fp32 keeps its batches (batchmates
# move it by under 5e-5, as in the torch engines): 1.32x one text per run on those tweets (263
# against 200 docs/s), the same on abstracts (44.15 against 45.2).
ONNX_INT8_BATCH = 1
# OpenVINO's throughput mode runs one batch per stream (one stream per thread on 2 cores): 2,048
# to 4,096 tokens per batch ran at 127-150 docs/s on 2 Xeon cores against 80-109 for one 2-thread
# stream at 1,024-8,192 (bench/logs/openvino-streams-2026-11-30.log, on bench/infer.py's model).
# A single text is slower that way (18 ms against 13 on one 2-thread stream), 4 or more faster.
OPENVINO_MAX_TOKENS = 4096
# Batch widths rounded up to a multiple of 32 tokens (fewer shapes, whole AMX tiles): 156-162
# docs/s against 128-148 unrounded (same log).
OPENVINO_WIDTH_MULTIPLE = 32


class Scorer(Protocol):
    def proba(self, texts: list[str]) -> np.ndarray:
        """An (n, labels) float32 array of probabilities; rows need not sum to 1."""


def sigmoid(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """1 / (1 + exp(-x)) in `out` (a new array, or `x` itself) without temporaries: the logits
    of many texts x subjects are large (9,000 x 18,645: 0.6 GiB)."""
    out = np.negative(x, out=out)
    np.exp(out, out=out)
    out += 1.0
    return np.reciprocal(out, out=out)


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
    with torch.inference_mode(), autocast, attention_kernels(device), reuse_freed_memory(device):
        for batch in inference_batches(encoded.lengths[rows], MAX_TOKENS):
            inputs = {k: v.to(device) for k, v in collate(encoded, rows[batch]).items()}
            out[batch] = model(**inputs).float().cpu().numpy()
    return out


def onnx_session(path: Path, threads: int):
    """An ONNX Runtime CPU session running each call on `threads` threads, every graph
    optimization on."""
    extras.require("onnx", f"running {path.name}", ("onnxruntime",))
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Texts differ in length, so a memory pattern is never reused. The arena stays on
    # (without it every batch maps fresh pages: int8 ran at 42 docs/s instead of 71); small
    # batches (ONNX_MAX_TOKENS, ONNX_INT8_BATCH) keep it from growing with the number of rows.
    options.enable_mem_pattern = False
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's errors derive from Exception alone
        raise ModelError(f"{path}: not a usable ONNX model ({first_line(exc)})") from None


class TorchLogits:
    """The encoder classifier in torch, fp32 or with its encoder's weights in bf16."""

    def __init__(self, model_dir: Path, info: ModelInfo, engine: str, device: torch.device):
        from mlabel.model import EncoderClassifier

        self.device = device
        self.model = EncoderClassifier.load(model_dir, info.pooling, len(info.labels)).to(device)
        if engine == "bf16":
            # Weights cast once: autocast would re-cast every weight on every batch.
            self.model.encoder.to(torch.bfloat16)

    def __call__(self, encoded: Encoded) -> np.ndarray:
        return batched_logits(self.model, encoded, device=self.device)


class OnnxLogits:
    """An exported graph (`onnx` or `onnx-int8`) in ONNX Runtime, on the CPU: length-sorted
    batches of up to ONNX_MAX_TOKENS in fp32, one text per run in int8 (ONNX_INT8_BATCH), so that
    a text's int8 probabilities do not depend on the others in the call. A call's batches run
    side by side, one per thread, on one-thread runs of a shared session (on 2 Zen 3 cores, with
    1,024-token batches: 1.12x one two-thread run in fp32, 1.09x in int8, scratch sweep in
    bench/logs/onnx-side-by-side-zen3-2026-12-01.log); a call of one batch, or any call on one
    thread, runs on every thread, in a second session made on first use (the same one when
    there is one thread)."""

    def __init__(self, model_dir: Path, info: ModelInfo, engine: str):
        self.path, self.threads = onnx_path(model_dir, engine), torch.get_num_threads()
        self.max_batch = ONNX_INT8_BATCH if engine == "onnx-int8" else MAX_BATCH_ROWS
        self.session = onnx_session(self.path, 1)
        self.whole: Any = self.session if self.threads == 1 else None  # every thread's session
        self.n_labels = len(info.labels)
        outputs = self.session.get_outputs()[0].shape
        if len(outputs) != 2 or outputs[1] != self.n_labels:
            raise ModelError(
                f"{self.path}: outputs {outputs}, expected [batch, {self.n_labels}] (one per label)"
            )

    def __call__(self, encoded: Encoded) -> np.ndarray:
        out = np.zeros((len(encoded.lengths), self.n_labels), dtype=np.float32)
        batches = inference_batches(encoded.lengths, ONNX_MAX_TOKENS, self.max_batch)
        if len(batches) < 2 or self.threads == 1:
            if self.whole is None:
                self.whole = onnx_session(self.path, self.threads)
            for rows in batches:
                self._run(self.whole, encoded, rows, out)
            return out
        # onnxruntime releases the GIL in run(), and a session may run calls concurrently.
        with ThreadPoolExecutor(min(self.threads, len(batches))) as pool:
            list(pool.map(lambda rows: self._run(self.session, encoded, rows, out), batches))
        return out

    def _run(self, session, encoded: Encoded, rows: np.ndarray, out: np.ndarray) -> None:
        inputs = {k: v.numpy() for k, v in collate(encoded, rows).items()}
        out[rows] = session.run(None, inputs)[0]


class OpenVinoLogits:
    """The exported fp32 graph in OpenVINO's CPU runtime at its default precision (bf16 on a CPU
    with AMX or AVX-512 bf16, fp32 otherwise), in throughput mode: length-sorted batches run
    side by side, one per stream, each on its own asynchronous request."""

    def __init__(self, model_dir: Path, info: ModelInfo, engine: str):
        path = onnx_path(model_dir, engine)
        extras.require("openvino", f"running {path.name} in OpenVINO")
        import openvino as ov

        self.queue_of, self.core, self.path = ov.AsyncInferQueue, ov.Core(), path
        self.model = self._compile("THROUGHPUT")
        self.lone: Any = None  # a latency-mode model for calls of one row, compiled on first use
        self.requests = int(self.model.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.n_labels = len(info.labels)
        outputs = self.model.outputs[0].partial_shape
        if len(outputs) != 2 or str(outputs[1]) != str(self.n_labels):
            raise ModelError(
                f"{path}: outputs {outputs}, expected [batch, {self.n_labels}] (one per label)"
            )

    def _compile(self, hint: str) -> Any:
        config = {"PERFORMANCE_HINT": hint, "INFERENCE_NUM_THREADS": str(torch.get_num_threads())}
        try:
            return self.core.compile_model(str(self.path), "CPU", config)
        except Exception as exc:  # OpenVINO raises plain RuntimeError/Exception on bad graphs
            raise ModelError(f"{self.path}: not a usable ONNX model ({first_line(exc)})") from None

    def __call__(self, encoded: Encoded) -> np.ndarray:
        return self._alone(encoded) if len(encoded.lengths) == 1 else self._streams(encoded)

    def _streams(self, encoded: Encoded) -> np.ndarray:
        """Batches side by side on the throughput streams."""
        out = np.zeros((len(encoded.lengths), self.n_labels), dtype=np.float32)
        # A queue of this call's own requests, read back on this thread whenever one is idle: no
        # Python callback runs on OpenVINO's threads (one that waited for the GIL while a
        # compiled model was being freed deadlocked a test run).
        queue = self.queue_of(self.model, self.requests)
        pending: dict[int, np.ndarray] = {}
        # About four batches per stream, so that the streams finish together on small calls too
        # (16 to 256 abstracts: 9-11% faster than batches of up to 4,096 tokens; scratch run, log
        # bench/logs/openvino-small-calls-2026-11-30.log).
        budget = int(encoded.lengths.sum()) // (4 * self.requests)
        batches = inference_batches(encoded.lengths, max(1, min(OPENVINO_MAX_TOKENS, budget)))
        for batch in batches:
            slot = queue.get_idle_request_id()  # start_async runs the next batch on this one
            _read_back(queue[slot], pending.pop(slot, None), out)
            inputs = collate(encoded, batch, OPENVINO_WIDTH_MULTIPLE)
            queue.start_async({k: v.numpy() for k, v in inputs.items()})
            pending[slot] = batch
        for slot, rows in pending.items():
            _read_back(queue[slot], rows, out)
        return out

    def _alone(self, encoded: Encoded) -> np.ndarray:
        """One row on every thread: a throughput stream has one thread (a lone abstract, as
        `serve` gets at low load, took 18-21 ms there against 11-13 here; bench/RESULTS.md)."""
        if self.lone is None:
            self.lone = self._compile("LATENCY")
        inputs = collate(encoded, np.arange(1), OPENVINO_WIDTH_MULTIPLE)
        result = self.lone.create_infer_request().infer({k: v.numpy() for k, v in inputs.items()})
        return np.array(result[0], dtype=np.float32)


def _read_back(request, rows: np.ndarray | None, out: np.ndarray) -> None:
    """Wait for `request` and copy its logits into `rows` of `out` (nothing if it ran none)."""
    if rows is not None:
        request.wait()
        out[rows] = request.get_output_tensor(0).data


class EncoderScorer:
    """Tokenize once, run the engine's logits over length-sorted batches, pool long texts' windows."""

    def __init__(self, info: ModelInfo, tokenizer, logits: Callable[[Encoded], np.ndarray]):
        self.info, self.tokenizer, self.logits = info, tokenizer, logits

    def proba(self, texts: list[str]) -> np.ndarray:
        info = self.info
        enc = encode(self.tokenizer, texts, info.max_len, info.long == "chunk", info.stride)
        return pool_windows(sigmoid(self.logits(enc)), enc.owner, len(texts), info.long_pool)


class TfidfScorer:
    def __init__(self, model_dir: Path, n_labels: int):
        from mlabel.baseline import TfidfModel

        self.model = TfidfModel.load(tfidf_dir(model_dir), n_labels)

    def proba(self, texts: list[str]) -> np.ndarray:
        return self.model.predict_proba(texts)


class BlendScorer:
    """The encoder's probabilities blended with the TF-IDF member's by the recorded weight(s)."""

    def __init__(self, encoder: Scorer, tfidf: Scorer, weight: float | list[float]):
        self.encoder, self.tfidf = encoder, tfidf
        self.weight = np.asarray(weight, dtype=np.float32)

    def proba(self, texts: list[str]) -> np.ndarray:
        return (1 - self.weight) * self.encoder.proba(texts) + self.weight * self.tfidf.proba(texts)


def load_scorer(model_dir: Path, info: ModelInfo, engine: str, device: torch.device) -> Scorer:
    """The scorer of a folder's model kind, running `engine` (already picked) on `device`."""
    check_files(model_dir)
    if info.kind == "tfidf":
        return TfidfScorer(model_dir, len(info.labels))
    if engine == "openvino":
        logits = OpenVinoLogits(model_dir, info, engine)
    elif engine.startswith("onnx"):
        logits = OnnxLogits(model_dir, info, engine)
    else:
        logits = TorchLogits(model_dir, info, engine, device)
    scorer = EncoderScorer(info, _tokenizer(model_dir), logits)
    if info.ensemble is None:
        return scorer
    return BlendScorer(scorer, TfidfScorer(model_dir, len(info.labels)), info.ensemble.weight)


def _tokenizer(model_dir: Path):
    """The folder's tokenizer; a damaged tokenizer file is a ModelError naming the folder."""
    try:
        return load_tokenizer(str(model_dir))
    except Exception as exc:  # the tokenizers library raises plain Exception on a bad file
        raise ModelError(f"{model_dir}: cannot load its tokenizer ({first_line(exc)})") from None


# ----------------------------------------------------------------------------- choosing


def inference_device(device: str, engine: str) -> torch.device:
    """`auto`: the first GPU for the torch engines when there is one, else the CPU (the ONNX
    and OpenVINO engines run on the CPU)."""
    if device == "auto":
        gpu = torch.cuda.is_available() and engine not in ONNX_FILES
        return torch.device("cuda" if gpu else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise ModelError(f"device {device!r} is not auto, cpu, cuda or cuda:N") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {device!r}: no GPU is available here")
    if chosen.type != "cpu" and engine in ONNX_FILES:
        raise ModelError(
            f"engine {engine!r} runs on the CPU; use --engine torch or bf16 on {device}"
        )
    return chosen


def fast_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return cpu_has_fast_bf16()


def pick_engine(model_dir: Path, info: ModelInfo, engine: str, device: torch.device) -> str:
    """The engine to run: `auto` resolved for this device and folder, a named one checked."""
    if info.kind != "transformer":
        return "tfidf"
    if engine == "auto" and device.type != "cpu":
        return "bf16" if fast_bf16(device) else "torch"
    if engine == "auto":
        return recorded_engine(model_dir, info) or ("bf16" if cpu_has_fast_bf16() else "torch")
    if engine in ONNX_FILES and not onnx_path(model_dir, engine).is_file():
        flags = "--onnx --int8" if engine == "onnx-int8" else "--onnx"
        raise ModelError(f"engine {engine!r} needs `mlabel export {model_dir} {flags}`")
    if engine == "onnx-int8" and _saturates(model_dir):
        warnings.warn(SATURATES.format(model_dir=model_dir), stacklevel=3)
    if engine == "bf16" and not fast_bf16(device):
        warnings.warn(
            f"no fast bf16 on {device} (a CPU needs AMX or AVX-512 bf16); using fp32 torch",
            stacklevel=3,
        )
        return "torch"
    return engine


SATURATES = (
    "{model_dir}'s int8 graph was quantized on a CPU with VNNI (int8 weights) and this one has "
    "no exact int8 dot products: its products can saturate and its decisions drift from fp32's "
    "(re-quantize here with `mlabel export {model_dir} --onnx --int8`)"
)


def _saturates(model_dir: Path) -> bool:
    """Whether the folder's int8 graph holds int8 weights, which `export.int8_settings` gives on
    CPUs with exact int8 dot products (VNNI, AVX-VNNI, AMX), and this CPU lacks them. Read from
    the graph: the engine record's instruction sets do not name AVX-VNNI. Without the `onnx`
    package the graph cannot be read, and nothing is said."""
    if cpu_has_int8_dot():
        return False
    try:
        import onnx
    except ImportError:
        return False
    graph = onnx.load(str(onnx_path(model_dir, "onnx-int8")), load_external_data=False).graph
    return any(w.data_type == onnx.TensorProto.INT8 for w in graph.initializer)


def recorded_engine(model_dir: Path, info: ModelInfo) -> str | None:
    """The engine `mlabel export` chose, if this folder and CPU can still run it well: a choice
    measured on a CPU with other matrix instruction sets, or an int8 graph whose weights would
    saturate here, is dropped with a one-line warning."""
    if info.engine is None:
        return None
    choice, measured_on = info.engine.choice, info.engine.machine.get("isa")
    if measured_on is not None and measured_on != matrix_isa():
        warnings.warn(
            f"engine {choice!r} was measured on a CPU with [{' '.join(measured_on)}], this one "
            f"has [{' '.join(matrix_isa())}]; using the default engine (re-measure here with "
            f"`mlabel export {model_dir} --onnx --int8`)",
            stacklevel=4,
        )
        return None
    if choice == "bf16" and not cpu_has_fast_bf16():
        return None
    if choice in ONNX_FILES and (not onnx_path(model_dir, choice).is_file() or _missing(choice)):
        return None
    if choice == "onnx-int8" and _saturates(model_dir):
        warnings.warn(
            f"{SATURATES.format(model_dir=model_dir)}; using the default engine", stacklevel=4
        )
        return None
    return choice


def _missing(engine: str) -> str | None:
    """The runtime package a graph engine needs and this environment lacks."""
    if engine == "openvino":
        return extras.missing("openvino")
    return extras.missing("onnx", ("onnxruntime",))


def available_engines(model_dir: Path) -> list[str]:
    """The engines this model folder and this CPU can run, fp32 torch first."""
    engines = ["torch"] + (["bf16"] if cpu_has_fast_bf16() else [])
    graphs = [e for e in ONNX_FILES if onnx_path(model_dir, e).is_file() and not _missing(e)]
    return engines + graphs
