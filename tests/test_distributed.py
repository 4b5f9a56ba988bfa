"""Training under torchrun: two CPU processes (gloo) match one process with the same global batch."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mlabel.classifier import prepare_data
from mlabel.cli import main
from mlabel.config import TrainConfig


@pytest.fixture(scope="module")
def tiny_no_dropout(tiny_encoder, tmp_path_factory) -> str:
    """The tiny encoder with its hidden and attention dropout off (the head's is set by --dropout)."""
    path = tmp_path_factory.mktemp("tiny-no-dropout") / "bert"
    shutil.copytree(tiny_encoder, path)
    config = json.loads((path / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (path / "config.json").write_text(json.dumps(config))
    return str(path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _options(model: str, small_csv: Path) -> list[str]:
    """Settings whose training split ends in a batch of one row: rank 1's share of it is empty."""
    for val_frac in (0.25, 0.2, 0.3, 0.35):
        cfg = TrainConfig(model=model, text_cols=["TITLE", "ABSTRACT"], val_frac=val_frac, seed=1)
        n_train = len(prepare_data(cfg, small_csv)[0])
        sizes = [b for b in range(6, 33) if n_train % b == 1]
        if sizes:
            break
    return [
        str(small_csv),
        *("--model", model, "--text-cols", "TITLE", "ABSTRACT", "--val-frac", str(val_frac)),
        *("--max-len", "48", "--epochs", "2", "--batch-size", str(sizes[0]), "--grad-accum", "2"),
        *("--lr", "1e-3", "--dropout", "0", "--seed", "1", "--precision", "fp32"),
    ]


def _torchrun(*args: str) -> str:
    """`mlabel train ARGS` on 2 CPU ranks; its stdout."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    command = [*torchrun, "--master_port", str(_free_port()), "-m", "mlabel", "train", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-8000:]
    return done.stdout


def _history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_match_one(tiny_no_dropout, small_csv, tmp_path):
    """Same validation metrics, epoch by epoch, from 2 ranks as from 1 process.

    Each rank trains on its half of every global batch and DDP averages the gradients, so the
    updates equal one process's up to float summation order. Dropout is off everywhere because
    each rank would draw its own masks; the remaining differences come from reductions in another
    order (about 1e-7), hence val_loss within 1e-3 and micro-F1 within 0.02 (one borderline
    prediction). Only rank 0 writes the run folder and prints.
    """
    options = _options(tiny_no_dropout, small_csv)
    assert main(["train", *options, "--threads", "2", "--out", str(tmp_path / "one")]) == 0
    stdout = _torchrun(*options, "--threads", "1", "--out", str(tmp_path / "two"))
    assert stdout.count("model saved to") == 1
    one, two = _history(tmp_path / "one"), _history(tmp_path / "two")
    assert len(one) == len(two) == 2
    for a, b in zip(one, two):
        assert b["val_loss"] == pytest.approx(a["val_loss"], abs=1e-3)
        assert b["micro_f1"] == pytest.approx(a["micro_f1"], abs=0.02)
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-3)
    assert (tmp_path / "two" / "model" / "mlabel.json").is_file()


def test_resume_with_two_processes_matches_the_uninterrupted_run(tiny_encoder, small_csv, tmp_path):
    """With dropout on, every rank draws its own masks: resuming must give each rank back its own
    random state, so that the resumed run ends with the uninterrupted run's weights."""
    options = _options(tiny_encoder, small_csv)
    options[options.index("--dropout") + 1] = "0.1"
    # untruncated texts: the ranks' shares differ in length, so their generators drift apart
    options[options.index("--max-len") + 1] = "512"
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    _torchrun(*options, "--threads", "1", "--out", str(full))
    # a crash just after epoch 1's checkpoint: its files, nothing of epoch 2
    resumed.mkdir()
    shutil.copytree(full / "checkpoints" / "epoch-001", resumed / "checkpoints" / "epoch-001")
    shutil.copytree(full / "model", resumed / "model")
    for name in ("config.yaml", "val_probs.npy"):
        shutil.copy(full / name, resumed / name)
    lines = (full / "metrics.jsonl").read_text().splitlines()
    (resumed / "metrics.jsonl").write_text(lines[0] + "\n")
    _torchrun(*options, "--threads", "1", "--out", str(resumed), "--resume")
    last = Path("checkpoints") / "epoch-002" / "model.safetensors"
    mine, theirs = load_file(str(resumed / last)), load_file(str(full / last))
    for key in theirs:
        torch.testing.assert_close(mine[key], theirs[key], rtol=0, atol=1e-6, msg=key)
    assert _history(resumed)[1]["val_loss"] == _history(full)[1]["val_loss"]
