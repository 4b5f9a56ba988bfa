"""SetFit, a peer of bench/quality.py: train on a job's texts, save the probabilities it asks for.

    .venv-setfit/bin/python bench/setfit_peer.py JOB.json

Runs in its own venv (setfit pins its own sentence-transformers and transformers), made with

    python3 -m venv .venv-setfit && .venv-setfit/bin/pip install torch==2.13.0 \
        && .venv-setfit/bin/pip install setfit==1.2.0

The job (written by bench/quality.py) names the body (a sentence-transformers folder), the
training texts and 0/1 label rows, the texts to score, the threads, the seed, the body's
`max_length` (mlabel's max_len) and the budget: `num_iterations` pairs per text and at most
`max_steps` contrastive steps. Everything else is SetFit's default (batch 16, one epoch of pairs, the one-vs-rest logistic-regression head).
Writes `out` (.npz): seconds (model load and training) and one probability array per text set.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from setfit import SetFitModel, Trainer, TrainingArguments  # noqa: E402


def main(job_path: str) -> None:
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    torch.set_num_threads(job["threads"])
    start = time.perf_counter()
    model = SetFitModel.from_pretrained(job["model"], multi_target_strategy="one-vs-rest")
    model.model_body.max_seq_length = job["max_length"]  # in training and prediction
    args = TrainingArguments(
        output_dir=str(Path(job["out"]).parent / "checkpoints"),
        save_strategy="no",
        num_iterations=job["num_iterations"],
        max_steps=job["max_steps"],
        seed=job["seed"],
    )
    train = Dataset.from_dict({"text": job["train_texts"], "label": job["train_y"]})
    Trainer(model=model, args=args, train_dataset=train).train()
    seconds = time.perf_counter() - start
    probs = {
        name: model.predict_proba(texts, as_numpy=True) for name, texts in job["score"].items()
    }
    np.savez(job["out"], seconds=seconds, **{k: np.asarray(v) for k, v in probs.items()})


if __name__ == "__main__":
    main(sys.argv[1])
