"""The GPU paths, checked in one short run: whoever has a GPU at hand runs this first.

    .venv/bin/python bench/gpu_check.py [--rows 200]

Trains a tiny random BERT on real abstracts with bf16 autocast and with fp16 + GradScaler on CUDA,
predicts with the torch and bf16 engines on the GPU (compared with fp32 on the CPU), trains with
two torchrun processes over NCCL when there are two GPUs, and runs Ray batch prediction with GPU
actors (`--actor-gpus 0.5`). It also trains a MiniLM-shaped random encoder (6 layers, 384 wide)
on 1,000 abstracts at 256 tokens twice, as shipped (attention without cuDNN's kernels, which
build a plan for every new batch length) and with every attention backend: it fails if the
shipped choice is more than 10% slower, so a torch whose cuDNN attention stops costing that
shows up.
One line per check (PASS, FAIL or SKIP and why), then a summary; the exit status is 1 when a
check failed. On a machine without a GPU every check says SKIP.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import benchkit
import numpy as np
import torch
from benchkit import TEXT_COLS
from transformers import AutoTokenizer, BertConfig, BertModel

from mlabel import training
from mlabel.classifier import fit_model
from mlabel.config import TrainConfig
from mlabel.model import resolve_encoder
from mlabel.predict import Predictor


class Skip(Exception):
    """A check that cannot run here, with the reason."""


def tiny_encoder(folder: Path) -> str:
    """A 2-layer, 32-wide random BERT with the default model's vocabulary (as the tests build)."""
    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37
    )
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    AutoTokenizer.from_pretrained(resolve_encoder("default")).save_pretrained(folder)
    return str(folder)


def settings(encoder: str, precision: str) -> TrainConfig:
    return TrainConfig(
        model=encoder,
        text_cols=TEXT_COLS,
        max_len=64,
        epochs=1,
        batch_size=16,
        lr=1e-3,
        val_frac=0.25,
        seed=1,
        precision=precision,
        ensemble=None,
    )


def need_gpus(n: int = 1) -> None:
    if torch.cuda.device_count() < n:
        raise Skip(f"needs {n} GPU(s), found {torch.cuda.device_count()}")


def check_training(work: Path, encoder: str, data: Path, precision: str) -> str:
    need_gpus()
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise Skip("this GPU has no bf16")
    result = fit_model(settings(encoder, precision), data, work / f"train-{precision}")
    loss = result.history[-1]["train_loss"]
    assert np.isfinite(loss), f"train loss {loss}"
    return f"loss {loss:.4f}, micro-F1 {result.metrics['micro_f1']:.3f}"


def check_prediction(work: Path, texts: list[str], engine: str) -> str:
    need_gpus()
    model = work / "train-bf16" / "model"
    if not model.is_dir():
        raise Skip("no model (the bf16 training check did not run)")
    gpu = Predictor(model, engine, device="cuda")
    assert gpu.device.type == "cuda", f"ran on {gpu.device}"
    diff = np.abs(
        gpu.predict_proba(texts) - Predictor(model, "torch", device="cpu").predict_proba(texts)
    )
    assert diff.max() < (1e-3 if engine == "torch" else 0.03), f"max |dp| {diff.max():.4f}"
    return f"engine {gpu.engine} on {gpu.device}, max |dp| vs CPU fp32 {diff.max():.5f}"


def check_nccl(work: Path, encoder: str, data: Path) -> str:
    need_gpus(2)
    out = work / "torchrun"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "-m",
        "mlabel",
        "train",
        str(data),
        "--model",
        encoder,
        "--text-cols",
        *TEXT_COLS,
        "--max-len",
        "64",
        "--epochs",
        "1",
        "--ensemble",
        "none",
        "--out",
        str(out),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1:]
    return f"2 ranks over NCCL, model in {out / 'model'}"


def check_attention_kernels(work: Path) -> str:
    """Training speed as shipped (no cuDNN attention) against every attention backend."""
    need_gpus()
    folder = work / "minilm-shaped"
    torch.manual_seed(0)
    config = BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12)
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    AutoTokenizer.from_pretrained(resolve_encoder("default")).save_pretrained(folder)
    data = work / "speed.csv"
    benchkit.arxiv().head(1000).to_csv(data, index=False)
    cfg = settings(str(folder), "auto").replace(max_len=256, epochs=2, lr=5e-5)
    every = mock.patch.object(training, "attention_kernels", lambda _: contextlib.nullcontext())
    speed = {}
    # Every backend first, while cuDNN has built no plans for these shapes (as in a user's fresh
    # process); the shipped run second, with the GPU as warm as it then is.
    for name, patch in (("every backend", every), ("shipped", contextlib.nullcontext())):
        with patch:
            history = fit_model(cfg, data, work / f"speed-{name}").history
        speed[name] = len(history) / sum(1 / r["samples_per_s"] for r in history)
    ratio = speed["shipped"] / speed["every backend"]
    detail = ", ".join(
        f"{name} {speed[name]:.0f} samples/s" for name in ("shipped", "every backend")
    )
    assert ratio >= 0.9, f"{detail}: cuDNN attention is faster now ({ratio:.2f}x)"
    return f"{detail} ({ratio:.2f}x)"


def check_ray(work: Path, data: Path) -> str:
    need_gpus()
    from mlabel.ray_predict import predict_ray

    model = work / "train-bf16" / "model"
    if not model.is_dir():
        raise Skip("no model (the bf16 training check did not run)")
    n = predict_ray(model, str(data), str(work / "ray.csv"), num_actors=2, gpus_per_actor=0.5)
    return f"{n} rows by 2 actors on half a GPU each"


def run(name: str, check: Callable[[], str]) -> str:
    try:
        detail, status = check(), "PASS"
    except Skip as why:
        detail, status = str(why), "SKIP"
    except Exception as error:  # a check's failure is a result, not the end of the run
        detail, status = f"{type(error).__name__}: {error}", "FAIL"
        traceback.print_exc(file=sys.stderr)
    print(f"{status} {name}: {detail}", flush=True)
    return status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200, help="abstracts to train on")
    args = parser.parse_args()
    print(benchkit.machine())
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, GPUs: {gpus or 'none'}")
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    data = work / "data.csv"
    rows = benchkit.arxiv().head(args.rows)
    rows.to_csv(data, index=False)
    texts = benchkit.texts_of(rows.head(64))
    encoder = tiny_encoder(work / "encoder")
    checks = {
        "train bf16 autocast": lambda: check_training(work, encoder, data, "bf16"),
        "train fp16 + GradScaler": lambda: check_training(work, encoder, data, "fp16"),
        "predict engine torch on GPU": lambda: check_prediction(work, texts, "torch"),
        "predict engine bf16 on GPU": lambda: check_prediction(work, texts, "bf16"),
        "attention without cuDNN is not slower": lambda: check_attention_kernels(work),
        "torchrun 2 ranks over NCCL": lambda: check_nccl(work, encoder, data),
        "Ray GPU actors": lambda: check_ray(work, data),
    }
    statuses = [run(name, check) for name, check in checks.items()]
    counts = {s: statuses.count(s) for s in ("PASS", "FAIL", "SKIP")}
    print(f"gpu check: {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped")
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
