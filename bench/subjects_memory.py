"""Peak memory of `mlabel train` on a library-sized table, against an earlier commit in the
same run.

    .venv/bin/python bench/subjects_memory.py [--rows 60000] [--subjects 20000] [--before COMMIT]

The table is bench/subjects_scale.py's synthetic corpus (each text holds marker words of its
1-6 Zipf-drawn subjects among random words), written as a CSV of id, text and labels joined by
'|'. Training: a tiny random BERT (2 layers, 32 wide, the default model's tokenizer), 1 epoch,
`--thresholds fixed:0.5 --ensemble none`: the encoder's path alone (read, split, tokenize, the
epoch, validation, the model folder). Each run is a process of its own whose resident memory
(with any children's) is sampled every 0.2 s: the bench prints the peak and the time. With
`--before`, the same run at that commit too (checked out by `git worktree` under bench/_work,
its `src` first on PYTHONPATH), and the ratio of the peaks.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import torch
from benchkit import ROOT, WORK, machine
from subjects_scale import corpus
from transformers import AutoTokenizer, BertConfig, BertModel

from mlabel.model import resolve_encoder

GIB = 2**30


def write_table(rows: int, subjects: int, path: Path) -> int:
    """The corpus as a CSV; returns the number of subjects in use."""
    texts, y = corpus(rows, subjects)
    labels = ["|".join(f"s{j}" for j in y[i].indices) for i in range(rows)]
    ids = [f"d{i}" for i in range(rows)]
    pd.DataFrame({"id": ids, "text": texts, "labels": labels}).to_csv(path, index=False)
    return y.shape[1]


def tiny_encoder(path: Path) -> Path:
    """A 2-layer, 32-wide random BERT with the default model's tokenizer (as the tests')."""
    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=37)  # fmt: skip
    BertModel(config, add_pooling_layer=False).save_pretrained(path)
    AutoTokenizer.from_pretrained(resolve_encoder("default")).save_pretrained(path)
    return path


def checkout(commit: str) -> Path:
    """`commit`'s tree under bench/_work (a git worktree), made once."""
    path = WORK / f"before-{commit}"
    if not path.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(path), commit], check=True)  # fmt: skip
    return path


def peak_of(command: list[str], env: dict[str, str], log: Path) -> tuple[float, float]:
    """Run `command` (its output to `log`); its peak resident memory in GiB (children
    included) and its seconds."""
    start = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        watched, peak = psutil.Process(proc.pid), 0
        while proc.poll() is None:
            try:
                family = [watched, *watched.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in family))
            except psutil.NoSuchProcess:
                pass
            time.sleep(0.2)
    if proc.returncode:
        sys.exit(f"{' '.join(command)} failed: see {log}")
    return peak / GIB, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--subjects", type=int, default=20_000)
    parser.add_argument("--before", help="an earlier commit to run the same training at")
    args = parser.parse_args()
    print(machine())
    work = WORK / "subjects-memory"
    work.mkdir(parents=True, exist_ok=True)
    table = work / f"table-{args.rows}-{args.subjects}.csv"
    in_use = write_table(args.rows, args.subjects, table)
    encoder = tiny_encoder(work / "tiny-bert")
    print(
        f"{args.rows} texts x {in_use} subjects in use; tiny encoder, 1 epoch, no blend", flush=True
    )
    sides = {"now": ROOT / "src"} | (
        {"before": checkout(args.before) / "src"} if args.before else {}
    )
    peaks = {}
    for name, src in sides.items():
        env = dict(os.environ, PYTHONPATH=str(src), HF_HUB_OFFLINE="1")
        command = [sys.executable, "-c", "from mlabel.cli import main; main()", "train", str(table), "--model", str(encoder),
                   "--epochs", "1", "--thresholds", "fixed:0.5", "--ensemble", "none",
                   "--out", str(work / f"run-{name}")]  # fmt: skip
        peaks[name], seconds = peak_of(command, env, work / f"run-{name}.log")
        label = f"{name} ({args.before})" if name == "before" else "now"
        print(f"{label}: peak {peaks[name]:.2f} GiB, {seconds:.0f} s", flush=True)
    if args.before:
        print(f"peak memory ratio (before / now): {peaks['before'] / peaks['now']:.2f}")


if __name__ == "__main__":
    main()
