"""The peers of bench/infer.py: Optimum ONNX Runtime and OpenVINO behind Optimum's pipeline.

Runs in its own venv, `.venv-bench` (torch 2.13.0, onnxruntime 1.32.0 as in `.venv`, plus
optimum-onnx, optimum-intel, openvino and nncf, which pin transformers < 4.58 while mlabel needs
transformers >= 5): bench/infer.py starts it and drives it over stdin/stdout, one JSON line each
way, so that mlabel's engines and the peers take turns in one run.

    python3 -m venv .venv-bench && .venv-bench/bin/pip install torch==2.13.0 \
        onnxruntime==1.32.0 onnx optimum-onnx optimum-intel openvino nncf \
        sentence-transformers transformers==4.57.6

Optimum cannot load mlabel's model (mean pooling, own head file), so the peers get a
BertForSequenceClassification built from the same encoder weights. BERT's head reads the pooled
[CLS] vector through a pooler the folder does not have, so its pooler and classifier are fitted
(encoder frozen) to mlabel fp32's logits on the abstracts the bench model was trained on
(`fit_head`): the peers' probabilities then spread around the cuts as mlabel's do, rather than
as a random pooler's would. The work is the same encoder; their accuracy guard is agreement with
their own fp32 decisions.

sentence-transformers, as SetFit users run this encoder, loads the same encoder through its ONNX
and OpenVINO backends (Optimum underneath) and sorts texts by length before batching; mean
pooling and mlabel's own head on its embeddings make it mlabel's network exactly, so its guard is
agreement with mlabel fp32 at the model's thresholds.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import AutoTokenizer, BertForSequenceClassification  # noqa: E402

BATCHES = (1, 8, 32)
FIT_RECORD = "head_fit.json"  # written once the head is fitted
FIT_STEPS = 300  # full-batch Adam steps: more fit the training abstracts closer, others worse


def cpu_flags() -> set[str]:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        return set(next(line for line in f if line.startswith("flags")).split(":")[1].split())


def hf_model(model_dir: Path, work: Path, labels: list[str], fit: dict | None) -> Path:
    """mlabel's encoder as a BertForSequenceClassification folder (multi-label) whose pooler and
    classifier are fitted to mlabel's logits (`fit`: texts and logits; needed on the first run)."""
    out = work / "hf"
    if (out / FIT_RECORD).is_file():
        return out
    for old in work.iterdir():  # exports of an earlier head
        if old.is_dir():
            shutil.rmtree(old)
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(
        model_dir,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        problem_type="multi_label_classification",
    )
    tok = AutoTokenizer.from_pretrained(model_dir)
    record = fit_head(model, tok, fit["texts"], torch.tensor(fit["logits"]), fit["max_len"])
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / FIT_RECORD).write_text(json.dumps(record))
    return out


def fit_head(model, tok, texts: list[str], target: torch.Tensor, max_len: int) -> dict:
    """Fit `model`'s pooler and classifier (encoder frozen, fp32) to `target` logits by least
    squares on the [CLS] vectors of `texts`; returns the fit's R^2 on those texts."""
    model.eval()
    with torch.no_grad():
        cls = torch.cat(
            [
                model.bert(
                    **tok(
                        texts[i : i + 16],
                        padding=True,
                        truncation=True,
                        max_length=max_len,
                        return_tensors="pt",
                    )
                ).last_hidden_state[:, :1]
                for i in range(0, len(texts), 16)
            ]
        )
    head = torch.nn.Sequential(model.bert.pooler, model.classifier)
    params = [*model.bert.pooler.parameters(), *model.classifier.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    for _ in range(FIT_STEPS):
        loss = torch.nn.functional.mse_loss(head(cls), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        residual = float(torch.nn.functional.mse_loss(head(cls), target))
    return {"texts": len(texts), "r2": 1 - residual / float(target.var(dim=0).mean())}


def ort_models(hf_dir: Path, work: Path, threads: int) -> dict:
    """Optimum's ONNX export, fp32, and ORTQuantizer's dynamic int8 for this CPU's instructions."""
    import onnxruntime as ort
    from optimum.onnxruntime import ORTModelForSequenceClassification, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    fp32_dir, int8_dir = work / "ort-fp32", work / "ort-int8"
    if not (fp32_dir / "model.onnx").is_file():
        ORTModelForSequenceClassification.from_pretrained(hf_dir, export=True).save_pretrained(
            fp32_dir
        )
    flags = cpu_flags()
    isa = "avx512_vnni" if "avx512_vnni" in flags else "avx512" if "avx512f" in flags else "avx2"
    if not (int8_dir / "model_quantized.onnx").is_file():
        qconfig = getattr(AutoQuantizationConfig, isa)(is_static=False, per_channel=False)
        ORTQuantizer.from_pretrained(fp32_dir).quantize(
            save_dir=int8_dir, quantization_config=qconfig
        )
    load = ORTModelForSequenceClassification.from_pretrained
    return {
        "optimum ort fp32": load(fp32_dir, session_options=options),
        f"optimum ort int8 ({isa})": load(
            int8_dir, file_name="model_quantized.onnx", session_options=options
        ),
    }


def ov_models(hf_dir: Path, work: Path, threads: int, tok, calibration: list[str]) -> dict:
    """OpenVINO through optimum-intel at its defaults, and int8 by NNCF's static quantization;
    where its default precision is bf16, also at f32 (for decisions closer to fp32's)."""
    import nncf
    import openvino as ov
    from optimum.intel import OVModelForSequenceClassification

    fp32_dir, int8_dir = work / "ov-fp32", work / "ov-int8"
    if not (fp32_dir / "openvino_model.xml").is_file():
        OVModelForSequenceClassification.from_pretrained(hf_dir, export=True).save_pretrained(
            fp32_dir
        )
    if not (int8_dir / "openvino_model.xml").is_file():
        model = ov.Core().read_model(fp32_dir / "openvino_model.xml")
        names = {i.get_any_name() for i in model.inputs}
        feeds = [
            {
                k: v
                for k, v in tok(t, truncation=True, max_length=256, return_tensors="np").items()
                if k in names
            }
            for t in calibration
        ]
        quantized = nncf.quantize(
            model,
            nncf.Dataset(feeds),
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(feeds),
        )
        int8_dir.mkdir(parents=True, exist_ok=True)
        ov.save_model(quantized, int8_dir / "openvino_model.xml")
        for f in fp32_dir.iterdir():
            if f.suffix == ".json":
                (int8_dir / f.name).write_bytes(f.read_bytes())
    ov_config = {"INFERENCE_NUM_THREADS": str(threads)}
    load = OVModelForSequenceClassification.from_pretrained
    models = {
        "openvino fp32 (default precision)": load(fp32_dir, ov_config=ov_config),
        "openvino int8 (nncf static)": load(int8_dir, ov_config=ov_config),
    }
    if cpu_flags() & {"avx512_bf16", "amx_bf16"}:  # the default precision is bf16 here
        f32_config = {**ov_config, "INFERENCE_PRECISION_HINT": "f32"}
        models["openvino fp32 (precision hint f32)"] = load(fp32_dir, ov_config=f32_config)
    return models


def st_models(model_dir: Path, work: Path, threads: int, max_len: int) -> dict:
    """sentence-transformers' ONNX and OpenVINO backends (at their defaults) with mean pooling,
    on a copy of the encoder without mlabel's own `onnx/` graphs (which they would load)."""
    import onnxruntime as ort
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    src = work / "st-encoder"
    src.mkdir(exist_ok=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(model_dir / name, src / name)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    backends = {
        "onnx": {"session_options": options},
        "openvino": {"ov_config": {"INFERENCE_NUM_THREADS": str(threads)}},
    }
    models = {}
    for backend, kwargs in backends.items():
        encoder = Transformer(
            str(src), backend=backend, max_seq_length=max_len, model_kwargs=kwargs
        )
        pooling = Pooling(encoder.get_word_embedding_dimension(), "mean")
        models[f"sentence-transformers {backend}"] = SentenceTransformer(
            modules=[encoder, pooling], device="cpu"
        )
    return models


def st_runner(model, head: dict[str, np.ndarray]):
    """Embeddings in `model.encode`'s length-sorted batches, then mlabel's head and a sigmoid."""

    def run(texts: list[str], batch: int) -> np.ndarray:
        embeddings = model.encode(texts, batch_size=batch, convert_to_numpy=True)
        return 1 / (1 + np.exp(-(embeddings @ head["weight"].T + head["bias"])))

    return run


def pipeline_runner(model, tok, labels: list[str], max_len: int):
    """Optimum's model behind `pipeline("text-classification")`, sigmoid scores per label."""
    from transformers import pipeline

    pipe = pipeline(
        "text-classification", model=model, tokenizer=tok, top_k=None, function_to_apply="sigmoid"
    )
    return runner(pipe, labels, max_len)


def runner(pipe, labels: list[str], max_len: int):
    def run(texts: list[str], batch: int) -> np.ndarray:
        with torch.inference_mode():
            out = pipe(texts, batch_size=batch, truncation=True, max_length=max_len)
        return np.array(
            [[{d["label"]: d["score"] for d in row}[lab] for lab in labels] for row in out]
        )

    return run


def timed(fn, *args) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


# Replies go to the real stdout; everything else written there (NNCF's progress bars) to stderr.
REPLIES = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)


def reply(obj: dict) -> None:
    REPLIES.write(json.dumps(obj) + "\n")
    REPLIES.flush()


def main() -> int:
    import warnings

    from safetensors.numpy import load_file
    from transformers.utils import logging as hf_logging

    warnings.filterwarnings("ignore")
    hf_logging.set_verbosity_error()

    job = json.loads(sys.stdin.readline())
    torch.set_num_threads(job["threads"])
    model_dir, work = Path(job["model_dir"]), Path(job["work"])
    labels, texts, sweep = job["labels"], job["texts"], job["sweep"]
    hf_dir = hf_model(model_dir, work, labels, job.get("fit"))
    tok = AutoTokenizer.from_pretrained(hf_dir)
    models = ort_models(hf_dir, work, job["threads"])
    models.update(ov_models(hf_dir, work, job["threads"], tok, sweep[:64]))
    runners = {n: pipeline_runner(m, tok, labels, job["max_len"]) for n, m in models.items()}
    head = load_file(model_dir / "head.safetensors")
    st = st_models(model_dir, work, job["threads"], job["max_len"])
    runners.update({name: st_runner(model, head) for name, model in st.items()})
    runs, swept = {}, {}
    for name, run in runners.items():
        run(sweep[:32], 8)  # first calls allocate and pick kernels
        rates = {b: len(sweep) / timed(run, sweep, b)[0] for b in BATCHES}
        best = max(rates, key=rates.get)
        swept[name] = {str(b): r for b, r in rates.items()}
        runs[f"{name} batch {best}"] = (run, best)
    fitted = json.loads((hf_dir / FIT_RECORD).read_text())
    reply({"ready": list(runs), "sweep": swept, "versions": versions(), "head_fit": fitted})
    for line in sys.stdin:
        run, batch = runs[json.loads(line)["run"]]
        seconds, probs = timed(run, texts, batch)
        reply({"seconds": seconds, "probs": probs.tolist()})
    return 0


def versions() -> str:
    import onnxruntime
    import openvino
    import optimum.version
    import sentence_transformers
    import transformers

    return (
        f"transformers {transformers.__version__}, optimum {optimum.version.__version__}, "
        f"onnxruntime {onnxruntime.__version__}, openvino {openvino.__version__}, "
        f"sentence-transformers {sentence_transformers.__version__}"
    )


if __name__ == "__main__":
    sys.exit(main())
