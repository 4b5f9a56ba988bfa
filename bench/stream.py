"""Streaming prediction: peak memory of `predict_file` must not grow with the number of rows.

    python bench/stream.py          # 20,000 and 200,000 rows
    python bench/stream.py --quick  # 6,000 and 12,000 rows

The tables are real arXiv abstracts repeated (unique IDs), written to CSV under bench/_work.
The model is a tiny randomly initialised BERT (2 layers, 32 wide, the default model's
vocabulary) saved as a real mlabel model folder, so every row goes through the real code path
(chunked reading, fast tokenizer, length-sorted batches, the ONNX engine after `export_onnx`,
chunked writing) while the encoder itself costs little. Each run is a fresh subprocess that reports its own peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from benchkit import LABELS, TEXT_COLS, WORK, arxiv, machine

STREAM = WORK / "stream"
TOLERANCE = 0.10  # the big table's peak RSS may exceed the small one's by at most this share


def tiny_model(directory: Path) -> Path:
    """A random 2-layer BERT as an mlabel model folder (built once)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from mlabel import folder
    from mlabel.export import export_onnx
    from mlabel.model import EncoderClassifier, resolve_encoder

    if (directory / "mlabel.json").is_file():
        return directory
    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37
    )
    EncoderClassifier(BertModel(config, add_pooling_layer=False), len(LABELS), "mean", 0.0).save(
        directory
    )
    AutoTokenizer.from_pretrained(resolve_encoder("default")).save_pretrained(directory)
    info = folder.ModelInfo(
        labels=LABELS, thresholds=[0.5] * len(LABELS), text_cols=TEXT_COLS, max_len=128
    )
    folder.write(info, directory)
    export_onnx(directory)
    return directory


def table(rows: int) -> Path:
    """`rows` real abstracts, repeated with fresh IDs, as a CSV (written once, in chunks)."""
    path = STREAM / f"abstracts-{rows}.csv"
    if path.is_file():
        return path
    source = arxiv()[["ID", *TEXT_COLS]]
    tmp = path.with_suffix(".tmp")
    for start in range(0, rows, len(source)):
        part = source.iloc[: min(len(source), rows - start)].copy()
        part["ID"] = [f"r{start + i}" for i in range(len(part))]
        part.to_csv(tmp, mode="a" if start else "w", header=not start, index=False)
    tmp.rename(path)
    return path


def child(model_dir: str, src: str, dst: str) -> None:
    """Predict one table and print rows, seconds and this process's peak RSS as JSON."""
    from mlabel.predict import load_predictor, predict_file

    start = time.perf_counter()
    rows = predict_file(load_predictor(model_dir, "onnx"), src, dst)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"rows": rows, "seconds": time.perf_counter() - start, "peak_mib": peak_mib}))


def measure(model_dir: Path, rows: int) -> dict:
    src = table(rows)
    cmd = [sys.executable, __file__, "--child", str(model_dir), str(src), str(src) + ".out.csv"]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "SRC", "DST"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0
    STREAM.mkdir(parents=True, exist_ok=True)
    model_dir = tiny_model(STREAM / "tiny-model")
    small, big = (6_000, 12_000) if args.quick else (20_000, 200_000)
    print(f"machine: {machine()}")
    print("model: tiny random BERT (2 layers, 32 wide), engine onnx, chunks of 5,000 rows")
    results = {rows: measure(model_dir, rows) for rows in (small, big)}
    for rows, r in results.items():
        print(
            f"{rows:>8,} rows: peak RSS {r['peak_mib']:7.1f} MiB, "
            f"{r['seconds']:6.1f} s ({r['rows'] / r['seconds']:,.0f} rows/s)"
        )
    growth = results[big]["peak_mib"] / results[small]["peak_mib"] - 1
    verdict = "ok" if growth <= TOLERANCE else f"FAIL (limit {TOLERANCE:.0%})"
    print(f"peak RSS growth from {small:,} to {big:,} rows: {growth:+.1%} {verdict}")
    return 0 if growth <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
