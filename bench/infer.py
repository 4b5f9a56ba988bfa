"""Inference speed: mlabel's engines against the engines users pick instead, on the same model.

    .venv/bin/python bench/infer.py          # 500 held-out abstracts, best of 2 rounds
    .venv/bin/python bench/infer.py --docs 200 --rounds 1  # what a loaded 2-core machine allows
    .venv/bin/python bench/infer.py --quick  # smoke run: 48 abstracts

Runs in `.venv`; the Optimum, OpenVINO and sentence-transformers peers run in `.venv-bench`
(bench/infer_peers.py says how to build it: Optimum pins transformers < 4.58), driven from here so
that every configuration takes turns in one run. Without `.venv-bench` only the plain pipeline is compared.

Every side runs the same trained mlabel model (embedded all-MiniLM-L6-v2 encoder, mean pooling,
linear head), max length 256 with truncation, and the same thread count. The plain
`pipeline("text-classification")` gets the model through a thin PreTrainedModel wrapper, so the
compute is the same network. Optimum ONNX Runtime (fp32, dynamic int8 for this CPU) and
OpenVINO (default precision, NNCF int8) serve a BertForSequenceClassification built from the
same encoder weights, its [CLS] head fitted to mlabel fp32's logits on the bench model's
training abstracts (see bench/infer_peers.py); their decisions are checked against
Optimum ORT fp32's, cut per label where it has as many positives as mlabel fp32 (`report`).
sentence-transformers (ONNX and OpenVINO backends, length-sorted batches) runs the same encoder
with mean pooling and mlabel's own head, so it is checked against mlabel fp32 like mlabel's engines.
`infer speedup` is against the fastest peer keeping the bar; when a faster peer misses it, the
ratio against that one prints on the line before.
Each pipeline runs at its best batch size, swept on 48 other abstracts. `mlabel export`'s engine choice is measured on 64 other
abstracts unless the folder holds one measured on this CPU kind. The model is trained once (1 epoch on 500 abstracts) and
cached under bench/_work.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from benchkit import LABELS, ROOT, TEXT_COLS, WORK, arxiv, interleaved, machine, texts_of
from transformers import PreTrainedModel, pipeline
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import logging as hf_logging

from mlabel import folder
from mlabel.classifier import fit_model
from mlabel.config import TrainConfig
from mlabel.encoding import load_tokenizer
from mlabel.export import AGREEMENT, agreement_f1, choose_engine, export_onnx
from mlabel.metrics import multilabel_metrics
from mlabel.model import EncoderClassifier
from mlabel.predict import Predictor
from mlabel.runtime import matrix_isa

MAX_LEN = 256
PIPELINE_BATCHES = (1, 8, 32)
PEER_PYTHON = ROOT / ".venv-bench" / "bin" / "python"


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


def training_rows(quick: bool) -> int:
    """How many leading abstracts the bench model is trained on (its validation share aside)."""
    return 150 if quick else 500


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
        fit_model(cfg, arxiv().iloc[: training_rows(quick)], out)
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


class Peers:
    """bench/infer_peers.py in `.venv-bench`: each call runs one peer configuration over the
    held-out texts there and returns its probabilities (one JSON line each way)."""

    def __init__(self, fp32: Predictor, texts: list[str], sweep: list[str], trained: list[str]):
        model_dir = fp32.model_dir
        work = model_dir.parent / "peers"
        work.mkdir(exist_ok=True)
        self.log = work / "stderr.log"  # Optimum's and NNCF's chatter
        self.proc = subprocess.Popen(
            [str(PEER_PYTHON), str(Path(__file__).with_name("infer_peers.py"))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log.open("w"),
            text=True,
        )
        job = {
            "model_dir": str(model_dir),
            "work": str(work),
            "labels": LABELS,
            "texts": texts,
            "sweep": sweep,
            "max_len": MAX_LEN,
            "threads": torch.get_num_threads(),
        }
        # The peers fit their head once (infer_peers.FIT_RECORD marks it; importing that module
        # here would redirect this process's stdout).
        if not (work / "hf" / "head_fit.json").is_file():
            probs = np.clip(fp32.predict_proba(trained), 1e-6, 1 - 1e-6)
            logits = np.log(probs) - np.log1p(-probs)
            job["fit"] = {"texts": trained, "logits": logits.tolist(), "max_len": MAX_LEN}
        self.ready = self._ask(job)

    def _ask(self, message: dict) -> dict:
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"bench/infer_peers.py exited ({self.proc.wait()}), see {self.log}")
        return json.loads(line)

    def run(self, name: str):
        return lambda: np.array(self._ask({"run": name})["probs"])

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def best_batch(pipe, sweep: list[str]) -> tuple[int, dict[int, float]]:
    """The plain pipeline's fastest batch size on the sweep texts, and each size's docs/s."""
    pipeline_run(pipe, sweep[:32], 8)()  # first calls allocate and pick kernels
    rates = {}
    for b in PIPELINE_BATCHES:
        start = time.perf_counter()
        pipeline_run(pipe, sweep, b)()
        rates[b] = len(sweep) / (time.perf_counter() - start)
    return max(rates, key=rates.get), rates


def sweep_line(name: str, rates: dict) -> str:
    return f"  {name}: " + ", ".join(f"batch {b} {r:.1f}" for b, r in rates.items())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--docs", type=int, default=500, help="held-out abstracts timed")
    parser.add_argument("--rounds", type=int, default=2, help="each configuration's best counts")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    hf_logging.set_verbosity(hf_logging.CRITICAL)  # "PipelineModel is not a known classifier"
    n_docs, n_sample, rounds = (48, 48, 1) if args.quick else (args.docs, 64, args.rounds)
    model_dir = trained_model(args.quick)
    df = arxiv()
    held_out = df.iloc[-n_docs:]
    texts, y = texts_of(held_out), held_out[LABELS].to_numpy()
    sample = texts_of(df.iloc[-n_docs - n_sample : -n_docs])
    sweep = sample[:48]
    print(f"machine: {machine()}")
    record = folder.read(model_dir).engine
    if record is None or record.machine.get("isa") != matrix_isa():
        record = choose_engine(model_dir, sample, "arXiv sample")
        print(f"export measured the engines now on {len(sample)} other abstracts")
    engines = {e: Predictor(model_dir, e) for e in record.measured}
    fp32 = engines["torch"]
    print(f"model: {model_dir} ({len(texts)} held-out abstracts, max_len {MAX_LEN})")
    measured = ", ".join(f"{e} {r['docs_per_s']:.1f}" for e, r in record.measured.items())
    print(f"mlabel auto engine (recorded by export): {record.choice} (docs/s: {measured})")
    runs = {f"mlabel {e}": (lambda p=p: p.predict_proba(texts)) for e, p in engines.items()}
    pipe = peer_pipeline(fp32)
    batch, rates = best_batch(pipe, sweep)
    print(f"batch sweep, docs/s on {len(sweep)} other abstracts:")
    print(sweep_line("pipeline", rates))
    runs[f"pipeline batch {batch}"] = pipeline_run(pipe, texts, batch)
    trained = texts_of(df.iloc[: training_rows(args.quick)])
    peers = Peers(fp32, texts, sweep, trained) if PEER_PYTHON.is_file() else None
    if peers:
        for name, peer_rates in peers.ready["sweep"].items():
            print(sweep_line(name, peer_rates))
        print(f"peers: {peers.ready['versions']}")
        fit = peers.ready["head_fit"]
        print(
            f"peers' head (pooler and classifier on [CLS]) fitted to mlabel fp32's logits on the "
            f"{fit['texts']} training abstracts: R^2 {fit['r2']:.3f}"
        )
        runs.update({name: peers.run(name) for name in peers.ready["ready"]})
    else:
        print(f"no {PEER_PYTHON}: Optimum and OpenVINO peers skipped")
    for predictor in engines.values():  # first calls allocate and pick kernels
        predictor.predict_proba(texts[:32])
    seconds, outputs = interleaved(runs, rounds)
    if peers:
        peers.close()
    report(outputs, {name: len(texts) / s for name, s in seconds.items()}, y, fp32, record.choice)
    return 0


def report(outputs: dict, rates: dict, y: np.ndarray, fp32: Predictor, choice: str) -> None:
    """The table, then the ratios; `infer speedup` against the fastest faithful peer is last.

    mlabel's rows, the plain pipeline and sentence-transformers (same network) are cut at the
    model's thresholds and checked against mlabel fp32's decisions. The Optimum and OpenVINO rows (CLS-pooled head) are
    checked against Optimum ORT fp32's, each label cut where Optimum ORT fp32 has as many
    positives as mlabel fp32 (`matched_cuts`): the model's thresholds suit its own head, and
    decisions far from any cut would show no quantization error. Those old agreements print
    after the table."""
    own = next((n for n in outputs if n.startswith("optimum ort fp32")), None)
    ours = outputs["mlabel torch"] >= fp32.thresholds
    peer_cuts = matched_cuts(outputs[own], ours.sum(axis=0)) if own else None

    def mlabels(name: str) -> bool:  # mlabel's network: its head, its thresholds
        return name.startswith(("mlabel", "pipeline", "sentence-transformers"))

    decisions = {n: p >= (fp32.thresholds if mlabels(n) else peer_cuts) for n, p in outputs.items()}
    print(f"\n{'configuration':<44}{'docs/s':>9}{'micro-F1':>10}{'agree fp32':>12}")
    agreements = {}
    for name, dec in decisions.items():
        agreements[name] = agreement_f1(decisions["mlabel torch" if mlabels(name) else own], dec)
        f1 = multilabel_metrics(y, dec.astype(int), LABELS)["micro_f1"]
        print(f"{name:<44}{rates[name]:>9.1f}{f1:>10.4f}{agreements[name]:>12.4f}")
    faithful = [name for name, agree in agreements.items() if agree >= AGREEMENT]
    if own:
        print(f"{own} against mlabel torch, logits' R^2 on these texts: {r2(outputs, own):.3f}")
        old = {n: outputs[n] >= fp32.thresholds for n in outputs if not mlabels(n)}
        at_ours = ", ".join(f"{n} {agreement_f1(old[own], d):.4f}" for n, d in old.items())
        print(f"peers' agreement at mlabel's thresholds instead: {at_ours}")
    ours = f"mlabel {choice}"
    plain = next(n for n in rates if n.startswith("pipeline"))
    peer = max((n for n in faithful if not n.startswith("mlabel")), key=rates.get)
    best = max((n for n in rates if n.startswith("mlabel")), key=rates.get)
    print(f"\nmlabel auto: {ours} ({rates[ours]:.1f} docs/s); fastest measured here: {best}")
    print(f"against the plain pipeline ({plain}): {rates[ours] / rates[plain]:.2f}")
    print(f"fastest peer keeping agreement >= {AGREEMENT}: {peer} ({rates[peer]:.1f} docs/s)")
    fastest = max((n for n in rates if not n.startswith("mlabel")), key=rates.get)
    if fastest != peer:  # a peer just under the bar would otherwise leave a flattering ratio
        print(
            f"fastest peer whatever its agreement: {fastest} ({rates[fastest]:.1f} docs/s, "
            f"agreement {agreements[fastest]:.4f}): {rates[ours] / rates[fastest]:.2f}"
        )
    if agreements[ours] < AGREEMENT:  # export judged it on its own sample; these are other texts
        kept = max((n for n in faithful if n.startswith("mlabel")), key=rates.get)
        print(
            f"{ours} agrees with fp32 at {agreements[ours]:.4f} on these texts, under {AGREEMENT};"
            f" the fastest mlabel engine keeping it, {kept}: {rates[kept] / rates[peer]:.2f}"
        )
    print(f"infer speedup: {rates[ours] / rates[peer]:.2f}")


def r2(outputs: dict, name: str) -> float:
    """How much of mlabel fp32's logits' variance `name`'s logits follow (1 - MSE / variance)."""
    ours, theirs = (np.log(p) - np.log1p(-p) for p in (outputs["mlabel torch"], outputs[name]))
    return 1 - float(((theirs - ours) ** 2).mean() / ours.var(axis=0).mean())


def matched_cuts(probs: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """Per label, the cut midway between the `positives`-th and the next highest of `probs`, so
    that `positives` rows are at or above it and no row sits on it (a cut on a row's value would
    flip that row at the least rounding)."""
    edge = np.full((1, probs.shape[1]), np.inf)
    ranked = np.vstack([edge, -np.sort(-probs, axis=0), -edge])
    columns = np.arange(probs.shape[1])
    return (ranked[positives, columns] + ranked[positives + 1, columns]) / 2


if __name__ == "__main__":
    sys.exit(main())
