"""Inference speed: mlabel's engines against a Hugging Face `pipeline` serving the same model.

    python bench/infer.py          # 500 held-out abstracts, after a warm-up on 32
    python bench/infer.py --quick  # smoke run: 48 abstracts

Both sides run the same trained mlabel model (embedded all-MiniLM-L6-v2 encoder, mean pooling,
linear head), max length 256 with truncation, and the same thread count. The pipeline gets the
model through a thin PreTrainedModel wrapper, so the compute is the same encoder. The model is
trained once (1 epoch on 500 abstracts) and cached under bench/_work.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from benchkit import LABELS, TEXT_COLS, WORK, arxiv, interleaved, machine, texts_of
from transformers import PreTrainedModel, pipeline
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import logging as hf_logging

from mlabel.classifier import fit_model
from mlabel.config import TrainConfig
from mlabel.encoding import load_tokenizer
from mlabel.export import agreement_f1, choose_engine, export_onnx
from mlabel.metrics import multilabel_metrics
from mlabel.model import EncoderClassifier
from mlabel.predict import Predictor

MAX_LEN = 256
PIPELINE_BATCHES = (1, 8, 32, 64)


class PipelineModel(PreTrainedModel):
    """Our EncoderClassifier behind the interface `pipeline("text-classification")` calls."""

    _supports_sdpa = True  # the wrapped encoder picks its own attention implementation

    def __init__(self, predictor: Predictor):
        classifier = EncoderClassifier.load(
            predictor.model_dir, predictor.info.pooling, len(predictor.labels)
        )
        config = copy.deepcopy(classifier.encoder.config)
        config.id2label = dict(enumerate(predictor.labels))
        config.label2id = {label: i for i, label in enumerate(predictor.labels)}
        config.problem_type = "multi_label_classification"
        super().__init__(config)
        self.classifier = classifier

    def forward(self, input_ids, attention_mask, **unused) -> SequenceClassifierOutput:
        return SequenceClassifierOutput(logits=self.classifier(input_ids, attention_mask))


def trained_model(quick: bool) -> Path:
    """A real mlabel model folder (trained once, then cached), exported to ONNX fp32 and int8."""
    out = WORK / ("infer-quick" if quick else "infer")
    model_dir = out / "model"
    if not (model_dir / "onnx" / "model-int8.onnx").is_file():
        shutil.rmtree(out, ignore_errors=True)
        # Encoder alone (no TF-IDF blend): the pipeline serves the same network, nothing else.
        cfg = TrainConfig(
            text_cols=TEXT_COLS, max_len=MAX_LEN, epochs=1, val_frac=0.15, seed=0, ensemble=None
        )
        fit_model(cfg, arxiv().iloc[: 150 if quick else 500], out)
        export_onnx(model_dir, int8=True)
    return model_dir


def peer_pipeline(predictor: Predictor):
    """The Hugging Face pipeline over the same network and tokenizer as `predictor`."""
    return pipeline(
        "text-classification",
        model=PipelineModel(predictor).eval(),
        tokenizer=load_tokenizer(str(predictor.model_dir)),
        top_k=None,
        function_to_apply="sigmoid",
        device="cpu",
    )


def pipeline_run(pipe, texts: list[str], batch: int):
    def run() -> np.ndarray:
        with torch.inference_mode():
            out = pipe(texts, batch_size=batch, truncation=True, max_length=MAX_LEN)
        return np.array(
            [[{d["label"]: d["score"] for d in row}[lab] for lab in LABELS] for row in out]
        )

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    hf_logging.set_verbosity(hf_logging.CRITICAL)  # "PipelineModel is not a known classifier"
    n_docs, n_sample, rounds = (48, 48, 1) if args.quick else (500, 256, 2)
    model_dir = trained_model(args.quick)
    df = arxiv()
    held_out = df.iloc[-n_docs:]
    texts, y = texts_of(held_out), held_out[LABELS].to_numpy()
    record = choose_engine(
        model_dir, texts_of(df.iloc[-n_docs - n_sample : -n_docs]), "arXiv sample"
    )
    engines = {e: Predictor(model_dir, e) for e in record["measured"]}
    fp32 = engines["torch"]
    print(f"machine: {machine()}")
    print(f"model: {model_dir} ({len(texts)} held-out abstracts, max_len {MAX_LEN})")
    print(f"mlabel auto engine (recorded by export): {record['choice']}")
    runs = {f"mlabel {e}": (lambda p=p: p.predict_proba(texts)) for e, p in engines.items()}
    pipe = peer_pipeline(fp32)
    runs.update({f"pipeline batch {b}": pipeline_run(pipe, texts, b) for b in PIPELINE_BATCHES})
    for predictor in engines.values():  # first calls allocate and pick kernels
        predictor.predict_proba(texts[:32])
    for b in PIPELINE_BATCHES:
        pipeline_run(pipe, texts[:32], b)()
    seconds, outputs = interleaved(runs, rounds)
    rates = {name: len(texts) / s for name, s in seconds.items()}
    reference = fp32.predict_proba(texts) >= fp32.thresholds
    print(f"\n{'configuration':<22}{'docs/s':>9}{'micro-F1':>10}{'agree fp32':>12}")
    for name, probs in outputs.items():
        decisions = probs >= fp32.thresholds
        f1 = multilabel_metrics(y, decisions.astype(int), LABELS)["micro_f1"]
        print(
            f"{name:<22}{rates[name]:>9.1f}{f1:>10.4f}{agreement_f1(reference, decisions):>12.4f}"
        )
    peer = max((n for n in rates if n.startswith("pipeline")), key=rates.get)
    ours = f"mlabel {record['choice']}"
    best = max((n for n in rates if n.startswith("mlabel")), key=rates.get)
    print(f"\nbest peer: {peer} ({rates[peer]:.1f} docs/s)")
    print(f"mlabel auto: {ours} ({rates[ours]:.1f} docs/s); fastest measured here: {best}")
    print(f"infer speedup: {rates[ours] / rates[peer]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
