"""Memory of training in one process: flat across epochs and across repeated fits.

    python bench/train_memory.py            # 4 fits of 2 epochs on 300 abstracts, max length 128
    python bench/train_memory.py --quick    # 2 fits of 1 epoch on 64 abstracts

A notebook or a tuning loop trains many times in one process; the article's recipe
grew its validation buffers every epoch. This trains the embedded encoder (with its TF-IDF member,
through `fit_model`, the core of `mlabel train` and `Classifier.fit`) `--fits` times in a row, and prints the process's resident memory after
each epoch and each fit (after garbage collection), the peak, and the tensors still alive once a
fit's result is dropped. The last line, `rss growth over the last fits: X MiB`, compares the
last fit's end with the second's (the first fit warms up allocator pools and caches).
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import threading
import time
import warnings
from typing import Any

import psutil
import torch
from benchkit import LABELS, TEXT_COLS, WORK, arxiv, machine

from mlabel.callbacks import Callback
from mlabel.classifier import fit_model
from mlabel.config import TrainConfig

MIB = 2**20


class Peak:
    """The process's peak resident memory, sampled every 20 ms in a thread."""

    def __init__(self) -> None:
        self.proc, self.peak, self.running = psutil.Process(), 0, True
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.02)

    def rss(self) -> float:
        return self.proc.memory_info().rss / MIB


class EpochRss(Callback):
    """Print the resident memory at each epoch's end."""

    def __init__(self, peak: Peak):
        self.peak = peak

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        print(f"  epoch {record['epoch']}: rss {self.peak.rss():.0f} MiB", flush=True)


def live_tensors() -> tuple[int, float]:
    """Tensors reachable by the garbage collector: (count, MiB)."""
    tensors = [o for o in gc.get_objects() if isinstance(o, torch.Tensor)]
    return len(tensors), sum(t.numel() * t.element_size() for t in tensors) / MIB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--fits", type=int, default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    rows, epochs, fits = (64, 1, 2) if args.quick else (300, 2, 4)
    fits = args.fits or fits
    df = arxiv().iloc[:rows]
    print(f"machine: {machine()}")
    print(f"{fits} fits of {epochs} epochs on {rows} abstracts, max length 128, batch 16")
    peak = Peak()
    print(f"before: rss {peak.rss():.0f} MiB")
    ends = []
    WORK.mkdir(parents=True, exist_ok=True)
    for i in range(fits):
        cfg = TrainConfig(text_cols=TEXT_COLS, label_cols=LABELS, epochs=epochs, patience=0)
        with tempfile.TemporaryDirectory(dir=WORK, prefix="memory-") as out:
            result = fit_model(cfg, df, out, callbacks=[EpochRss(peak)])
        del result
        gc.collect()
        count, size = live_tensors()
        ends.append(peak.rss())
        print(f"fit {i + 1}: rss {ends[-1]:.0f} MiB, {count} tensors alive ({size:.1f} MiB)")
    peak.running = False
    print(f"peak rss: {peak.peak / MIB:.0f} MiB")
    print(f"rss growth over the last fits: {ends[-1] - ends[min(1, fits - 1)]:+.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
