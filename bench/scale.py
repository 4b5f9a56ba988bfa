"""Local scaling: 1 vs 2 training processes (torchrun) and Ray batch prediction vs plain `predict`.

    python bench/scale.py [--train-rows 200] [--predict-rows 1000]

Everything runs through the CLI, as a user would. On a 2-core machine the processes share the
same cores, so this shows that the paths work and what they cost, not a cluster's speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from benchkit import WORK, arxiv, free_port, machine

MLABEL = [sys.executable, "-m", "mlabel"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]


def _run(command: list[str]) -> float:
    """Wall seconds of one command (its output is discarded unless it fails)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - t0


def _samples_per_s(run) -> float:
    return json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["samples_per_s"]


def bench_train(data, rows: int) -> tuple[list[str], object]:
    options = [str(data), "--model", "default", "--text-cols", "TITLE", "ABSTRACT"]
    options += ["--epochs", "1", "--max-len", "128", "--batch-size", "16", "--seed", "1"]
    one, two = WORK / "scale" / "train-1", WORK / "scale" / "train-2"
    wall_1 = _run([*MLABEL, "train", *options, "--threads", "2", "--out", str(one)])
    port = ["--master_port", str(free_port())]
    command = [*TORCHRUN, *port, "-m", "mlabel", "train", *options, "--threads", "1"]
    wall_2 = _run([*command, "--out", str(two)])
    lines = [
        f"Training, default model, {rows} abstracts (90% train), 1 epoch, max_len 128, batch 16:",
        "",
        "| run | train samples/s | wall s (with startup, validation, saving) |",
        "|---|---|---|",
        f"| 1 process, --threads 2 | {_samples_per_s(one):.1f} | {wall_1:.1f} |",
        f"| torchrun 2 processes, --threads 1 each | {_samples_per_s(two):.1f} | {wall_2:.1f} |",
    ]
    return lines, one / "model"


def bench_predict(model, data, rows: int) -> list[str]:
    plain, out = WORK / "scale" / "plain.csv", WORK / "scale" / "ray.csv"
    wall_plain = _run([*MLABEL, "predict", str(model), str(data), "-o", str(plain)])
    ray = ["--engine", "ray", "--num-actors", "2", "--chunk-rows", "250"]
    wall_ray = _run([*MLABEL, "predict", str(model), str(data), "-o", str(out), *ray])
    same = plain.read_text() == out.read_text()
    return [
        f"Prediction, the model above, {rows} abstracts, whole command (startup included):",
        "",
        "| engine | docs/s | wall s |",
        "|---|---|---|",
        f"| plain `predict` (2 threads) | {rows / wall_plain:.1f} | {wall_plain:.1f} |",
        f"| `--engine ray`, 2 actors x 1 thread | {rows / wall_ray:.1f} | {wall_ray:.1f} |",
        "",
        f"Outputs identical byte for byte: {same}.",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=200)
    parser.add_argument("--predict-rows", type=int, default=1000)
    args = parser.parse_args()
    folder = WORK / "scale"
    folder.mkdir(parents=True, exist_ok=True)
    train_csv, predict_csv = folder / "train.csv", folder / "predict.csv"
    arxiv().iloc[: args.train_rows].to_csv(train_csv, index=False)
    arxiv().iloc[-args.predict_rows :].to_csv(predict_csv, index=False)
    print(f"Machine: {machine()}\n")
    lines, model = bench_train(train_csv, args.train_rows)
    print("\n".join(lines) + "\n")
    print("\n".join(bench_predict(model, predict_csv, args.predict_rows)))


if __name__ == "__main__":
    main()
