"""ONNX export (fp32 and dynamic int8) and the measured choice of the fastest faithful engine."""

from __future__ import annotations

import platform
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlabel import extras, faults, folder
from mlabel.atomic import replace_on_success
from mlabel.decision import decide
from mlabel.engines import available_engines
from mlabel.errors import ModelError
from mlabel.folder import EngineChoice, onnx_path
from mlabel.model import EncoderClassifier, attention
from mlabel.predict import Predictor
from mlabel.runtime import cpu_has_int8_dot, matrix_isa

AGREEMENT = 0.995  # an engine qualifies when its decisions match fp32's with micro-F1 >= this
OPSET = 17


def export_onnx(model_dir: str | Path, int8: bool = False) -> list[Path]:
    """Write onnx/model.onnx (and onnx/model-int8.onnx) into a transformer model folder."""
    extras.require("onnx", "ONNX export")
    model_dir = Path(model_dir)
    info = folder.read(model_dir)
    if info.kind != "transformer":
        raise ModelError(f"{model_dir}: only transformer models export to ONNX, not {info.kind}")
    model = EncoderClassifier.load(model_dir, info.pooling, len(info.labels))
    fp32 = onnx_path(model_dir, "onnx")
    fp32.parent.mkdir(exist_ok=True)
    # Traced with eager attention: plain MatMul/Softmax nodes, which ONNX Runtime runs (and
    # quantizes) faster than the graph torch's SDPA traces to (bench/RESULTS.md, Inference).
    with attention(model.encoder, "eager"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with replace_on_success(fp32) as tmp:
            _trace(model, tmp)
            faults.point("export.traced")
    written = [fp32]
    if int8:
        written.append(quantize_int8(fp32, onnx_path(model_dir, "onnx-int8")))
    return written


def _trace(model: EncoderClassifier, path: Path) -> None:
    """Trace with a padded row so that the attention-mask path is part of the graph."""
    ids = torch.full((2, 8), 101, dtype=torch.long)
    mask = torch.ones((2, 8), dtype=torch.long)
    mask[1, 4:] = 0
    axes = {0: "batch", 1: "tokens"}
    # The TorchScript exporter: the dynamo one needs onnxscript and gains nothing here.
    torch.onnx.export(
        model,
        (ids, mask),
        str(path),
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_axes={"input_ids": axes, "attention_mask": axes, "logits": {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,
    )


def quantize_int8(src: Path, dst: Path) -> Path:
    """Dynamic quantization: 8-bit weights for this CPU (`int8_settings`), activations quantized
    per batch at run time. The graph is pre-processed first, as onnxruntime advises at every
    quantization otherwise (shape inference and graph optimisation; symbolic shape inference
    cannot follow the dynamic lengths, so it is skipped). On MiniLM here: the same outputs and
    speed (bench/RESULTS.md, Inference), and no advice printed."""
    from onnxruntime.quantization import quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with replace_on_success(dst) as tmp, tempfile.TemporaryDirectory() as work:
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(prepared, tmp, **int8_settings(prepared))
        faults.point("export.quantized")
    return dst


def int8_settings(graph: Path) -> dict[str, Any]:
    """quantize_dynamic's settings for this CPU. The feed-forward output projections stay in fp32
    (`narrowing_matmuls`) on every CPU: decisions agreed with fp32's at 0.9962 against 0.9780
    with every MatMul in 8 bits on a Xeon with VNNI, 0.9975 against 0.9908 on Zen 3 (1,000 fresh
    abstracts each; bench/RESULTS.md, Inference). Weights: int8 where VNNI multiplies uint8
    activations by int8 weights exactly; without it those products saturate, so uint8 weights
    per channel (Optimum's avx2 choice; int8 weights: 0.9740)."""
    from onnxruntime.quantization import QuantType

    keep_fp32 = {"nodes_to_exclude": narrowing_matmuls(graph)}
    if cpu_has_int8_dot():
        return {"weight_type": QuantType.QInt8} | keep_fp32
    return {"weight_type": QuantType.QUInt8, "per_channel": True} | keep_fp32


def narrowing_matmuls(path: Path) -> list[str]:
    """The MatMuls whose constant weight maps more features to fewer: in BERT-family encoders
    the feed-forward blocks' output projections, whose inputs (GELU's outputs, skewed, with
    outliers) lose most to an 8-bit scale per batch."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    shapes = {w.name: list(w.dims) for w in graph.initializer}
    return [
        node.name
        for node in graph.node
        if node.op_type == "MatMul"
        and len(shape := shapes.get(node.input[1], [])) == 2
        and shape[0] > shape[1]
    ]


def measure_engines(model_dir: str | Path, texts: list[str], repeats: int = 2) -> dict[str, Any]:
    """Speed (docs/s, best of `repeats`) and agreement with fp32 of every available engine. The
    engines take turns in each round, so that the machine's drift during the measurement falls
    on all of them rather than on whichever ran last."""
    engines = {
        e: Predictor(model_dir, e, device="cpu")  # the choice is for CPUs
        for e in available_engines(Path(model_dir))
    }
    for predictor in engines.values():
        predictor.predict_proba(texts[:8])  # warm-up: allocations, kernel selection
    seconds: dict[str, list[float]] = {e: [] for e in engines}
    probs: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for engine, predictor in engines.items():
            start = time.perf_counter()
            probs[engine] = predictor.predict_proba(texts)
            seconds[engine].append(time.perf_counter() - start)
    fp32 = next(iter(engines))  # torch comes first
    reference = decide(probs[fp32], engines[fp32].thresholds)
    return {
        engine: {
            "docs_per_s": round(len(texts) / min(seconds[engine]), 2),
            "agreement_f1": round(
                agreement_f1(reference, decide(probs[engine], predictor.thresholds)), 5
            ),
            "max_abs_diff": round(float(np.abs(probs[engine] - probs[fp32]).max()), 5),
        }
        for engine, predictor in engines.items()
    }


def agreement_f1(reference: np.ndarray, decisions: np.ndarray) -> float:
    """Micro-F1 of `decisions` taking the fp32 decisions as the truth (1.0 when both are empty)."""
    both = np.logical_and(reference, decisions).sum()
    total = reference.sum() + decisions.sum()
    return 1.0 if total == 0 else float(2 * both / total)


def choose_engine(model_dir: str | Path, texts: list[str], source: str) -> EngineChoice:
    """Measure the engines on `texts`, record the fastest faithful one in mlabel.json, return the record."""
    measured = measure_engines(model_dir, texts)
    faithful = [e for e, r in measured.items() if r["agreement_f1"] >= AGREEMENT]
    record = EngineChoice(
        choice=max(faithful, key=lambda e: measured[e]["docs_per_s"]),
        measured=measured,
        sample={"texts": len(texts), "source": source},
        machine={
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "isa": matrix_isa(),
        },
    )
    info = folder.read(model_dir)
    info.engine = record
    folder.write(info, model_dir)
    return record


def synthetic_texts(model_dir: str | Path, n: int = 128, seed: int = 0) -> list[str]:
    """Word sequences of varied lengths drawn from the tokenizer's vocabulary (when no sample is given)."""
    from mlabel.encoding import load_tokenizer

    tokenizer = load_tokenizer(str(model_dir))
    words = [w for w in tokenizer.get_vocab() if w.isalpha() and len(w) > 2]
    words.sort()
    rng = np.random.default_rng(seed)
    lengths = rng.integers(8, 220, size=n)
    return [" ".join(rng.choice(words, size=k)) for k in lengths]
