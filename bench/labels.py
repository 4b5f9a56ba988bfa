"""Many labels, measured: every command of the CLI at 50, 500 and 5,000 labels, with the time and
peak memory of each step.

    .venv/bin/python bench/labels.py [--rows 1000] [--test-rows 300] [--labels 50 500 5000]
                                     [--model tiny|default]

Labels are derived from the shipped arXiv abstracts themselves, so a model can learn them: the
terms of a text are its title's lower-cased words of three or more characters that are not
English stop words (scikit-learn's list), plus each pair of such adjacent words ("neural
network"). Ranked by how many training titles hold them (then alphabetically), the N most
frequent terms are the N labels, and a text carries label "w" when its title holds w (so every
label has a positive in training; test rows keep the labels among the N). Titles give a few
labels per text (1.0, 3.3 and 8.5 per training text at 50, 500 and 5,000 labels on 1,000 rows);
whole abstracts would give tens (6, 22 and 45 over all 3,907 texts). The model reads title and
abstract intact (nothing is removed), so every label it should give is in its input; at 5,000
labels most have a single positive (the long tail of a subject vocabulary).

Per label count, each step is one `mlabel` process: `inspect --out`, `train` (1 epoch, `--max-len
64`, `--ensemble none` so the figures are the encoder's, `--thresholds shrunk` so per-label
threshold tuning runs), `evaluate --report`, `predict -o` (wide, 0/1),
`predict --format long --top-k 5`, and `serve` answering GET /labels, GET /info and one POST
/predict. Peak memory is the process's maximum resident set (`os.wait4`'s ru_maxrss, which
covers its own children too); time is wall time including the start of Python and torch.

The encoder: `--model default` is all-MiniLM-L6-v2; `tiny` (the default here) is a 2-layer,
32-wide BERT with its vocabulary, randomly initialised as in the tests, so a run takes minutes on
a loaded 2-core machine and what grows with the label count (head, thresholds, metrics,
reports, responses) is not hidden behind the encoder's fixed cost.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import benchkit
import pandas as pd
from benchkit import TEXT_COLS, WORK
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

WORD = re.compile(r"[a-z][a-z0-9-]*[a-z0-9]")
TRAIN_ARGS = [
    *("--epochs", "1", "--max-len", "64", "--ensemble", "none", "--thresholds", "shrunk"),
    *("--batch-size", "16", "--seed", "0"),
]


def terms(title: str) -> set[str]:
    """A title's content words (3+ characters, no stop words) and pairs of adjacent ones."""
    words = [w for w in WORD.findall(title.lower()) if len(w) > 2 and w not in ENGLISH_STOP_WORDS]
    return set(words) | {f"{a} {b}" for a, b in zip(words, words[1:])}


def label_sets(titles: list[str], n_labels: int, rows: int) -> list[list[str]]:
    """Each title's labels: its terms among the n most frequent in the first `rows` titles."""
    per_title = [terms(t) for t in titles]
    df = Counter(term for s in per_title[:rows] for term in s)
    if len(df) < n_labels:
        sys.exit(f"{rows} training titles hold {len(df)} terms, fewer than {n_labels} labels")
    chosen = set(sorted(df, key=lambda term: (-df[term], term))[:n_labels])
    return [sorted(s & chosen) for s in per_title]


def write_tables(n_labels: int, rows: int, test_rows: int, folder: Path) -> tuple[Path, Path]:
    """train.csv and test.csv (ID, TITLE, ABSTRACT, labels 'a|b') with n_labels labels."""
    df = benchkit.arxiv()[["ID", *TEXT_COLS]].copy()
    lists = label_sets(df["TITLE"].tolist(), n_labels, rows)
    df["labels"] = ["|".join(ls) for ls in lists]
    folder.mkdir(parents=True, exist_ok=True)
    train, test = folder / "train.csv", folder / "test.csv"
    df.iloc[:rows].to_csv(train, index=False)
    df.iloc[rows : rows + test_rows].to_csv(test, index=False)
    per_text = sum(map(len, lists[:rows])) / rows
    print(f"{n_labels} labels: {per_text:.2f} per training text", flush=True)
    return train, test


def tiny_encoder(folder: Path) -> Path:
    """A 2-layer, 32-wide BERT with the default model's vocabulary (as tests/conftest.py)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from mlabel.model import resolve_encoder

    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37
    )
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    AutoTokenizer.from_pretrained(resolve_encoder("default")).save_pretrained(folder)
    return folder


def mlabel(*args: str) -> list[str]:
    return [sys.executable, "-m", "mlabel", *map(str, args)]


def measured(cmd: list[str], log: Path) -> tuple[float, float]:
    """Run `cmd` to its end: (wall seconds, peak resident MiB); a failure stops the bench."""
    start = time.perf_counter()
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        return _finish(proc, start, cmd, log)


def _finish(proc: subprocess.Popen, start: float, cmd: list[str], log: Path) -> tuple[float, float]:
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        sys.exit(f"{' '.join(cmd[2:])} exited {proc.returncode}:\n{tail}")
    return seconds, usage.ru_maxrss / 1024  # Linux reports KiB


def served(model: Path, texts: list[str], log: Path) -> tuple[float, float, dict]:
    """Start `mlabel serve`, wait for it, GET /labels and /info, POST one /predict, stop it."""
    port = benchkit.free_port()
    cmd = mlabel("serve", model, "--port", port, "--log-level", "warning")
    start = time.perf_counter()
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        sizes = _requests(base, texts, proc)
        proc.terminate()  # SIGTERM: a graceful shutdown that exits 0
        seconds, peak = _finish(proc, start, cmd, log)
    return seconds, peak, sizes


def _requests(base: str, texts: list[str], proc: subprocess.Popen) -> dict:
    """Bytes of /labels and /info, seconds and labels given of one POST /predict."""
    deadline = time.monotonic() + 300
    while True:
        try:
            urllib.request.urlopen(f"{base}/health", timeout=5).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("mlabel serve did not come up") from None
            time.sleep(0.5)
    sizes = {
        name: len(urllib.request.urlopen(f"{base}/{name}").read()) for name in ("labels", "info")
    }
    body = json.dumps({"texts": texts}).encode()
    request = urllib.request.Request(
        f"{base}/predict", body, headers={"Content-Type": "application/json"}
    )
    start = time.perf_counter()
    answer = json.loads(urllib.request.urlopen(request, timeout=300).read())
    sizes["predict_s"] = time.perf_counter() - start
    sizes["tags"] = sum(len(r["labels"]) for r in answer["results"])
    return sizes


def run_count(n_labels: int, args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    """Every step at one label count: {step: (seconds, peak MiB)}."""
    folder = WORK / f"labels-{n_labels}"
    train, test = write_tables(n_labels, args.rows, args.test_rows, folder)
    log = folder / "steps.log"
    log.unlink(missing_ok=True)
    cols = ["--text-cols", *TEXT_COLS, "--labels-col", "labels"]
    run, model = folder / "run", folder / "run" / "model"
    steps = {
        "inspect --out": mlabel(
            "inspect", train, *cols, "--model", args.model, "--out", folder / "inspect"
        ),
        "train": mlabel("train", train, *cols, *TRAIN_ARGS, "--model", args.model, "--out", run),
        "evaluate --report": mlabel("evaluate", model, test, "--report", folder / "report"),
        "predict -o (wide)": mlabel("predict", model, test, "-o", folder / "wide.csv"),
        "predict long top-5": mlabel(
            "predict", model, test, "-o", folder / "long.csv", "--format", "long", "--top-k", "5"
        ),
        "predict --text": mlabel("predict", model, "--text", "Graph neural networks for PDEs"),
    }
    results = {}
    for step, cmd in steps.items():
        if step == "train":
            _clear(run)
        results[step] = measured(cmd, log)
        print(f"  {step}: {results[step][0]:.1f} s, {results[step][1]:.0f} MiB", flush=True)
    texts = pd.read_csv(test)["TITLE"].head(8).tolist()
    seconds, peak, sizes = served(model, texts, log)
    results["serve + 1 request"] = (seconds, peak)
    print(
        f"  serve + 1 request: {seconds:.1f} s, {peak:.0f} MiB; /labels {sizes['labels']} B, "
        f"/info {sizes['info']} B, POST /predict of 8 titles {sizes['predict_s']:.2f} s "
        f"({sizes['tags']} labels given)",
        flush=True,
    )
    return results


def _clear(run: Path) -> None:
    """A fresh run folder: train refuses to overwrite a finished run without --resume."""
    import shutil

    shutil.rmtree(run, ignore_errors=True)


def print_table(results: dict[int, dict[str, tuple[float, float]]]) -> None:
    counts = list(results)
    steps = list(next(iter(results.values())))
    print("\n| step | " + " | ".join(f"{n} labels: s, MiB" for n in counts) + " |")
    print("|---|" + "---|" * len(counts))
    for step in steps:
        cells = [f"{results[n][step][0]:.1f} s, {results[n][step][1]:.0f}" for n in counts]
        print(f"| {step} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000, help="training rows (default 1000)")
    parser.add_argument("--test-rows", type=int, default=300, help="rows to evaluate and predict")
    parser.add_argument("--labels", type=int, nargs="+", default=[50, 500, 5000])
    parser.add_argument("--model", default="tiny", help="tiny (default) or an mlabel --model")
    args = parser.parse_args()
    print(benchkit.machine(), flush=True)
    if args.model == "tiny":
        args.model = str(tiny_encoder(WORK / "labels-tiny-bert"))
    print(f"{args.rows} training rows, {args.test_rows} test rows; train {' '.join(TRAIN_ARGS)}")
    print(f"encoder: {args.model}", flush=True)
    results = {n: run_count(n, args) for n in args.labels}
    print_table(results)


if __name__ == "__main__":
    main()
