"""What the benchmarks share: the arXiv data, a work folder, machine facts and interleaved timing."""

from __future__ import annotations

import os
import platform
import socket
import sys
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TypeVar

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pandas as pd  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "arxiv_topics.csv.gz"
WORK = ROOT / "bench" / "_work"
TEXT_COLS = ["TITLE", "ABSTRACT"]
T = TypeVar("T")
LABELS = [
    "Computer Science",
    "Physics",
    "Mathematics",
    "Statistics",
    "Quantitative Biology",
    "Quantitative Finance",
]


@cache
def arxiv() -> pd.DataFrame:
    """The table in a fixed random order: the file is sorted by label, so slices would not mix."""
    return pd.read_csv(DATA, dtype={"ID": str}).sample(frac=1.0, random_state=0)


def texts_of(df: pd.DataFrame) -> list[str]:
    """The model input: title and abstract joined exactly as mlabel joins text columns."""
    from mlabel.data import join_texts

    return join_texts(df, TEXT_COLS, DATA.name)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on (for a server or torchrun's master)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(proc, url: str, seconds: float = 300):
    """(proc, url) once `url/health` answers 200; exits if the server dies or never answers."""
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the server did not start; see its output above")


def machine() -> str:
    """The CPU, its matrix instruction sets (bf16 and int8 speed depend on them), threads, load."""
    from mlabel.runtime import MATRIX_ISA, matrix_isa

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    isa = " ".join(matrix_isa()) or "none of " + " ".join(MATRIX_ISA)
    return (
        f"{cpu} [{isa}], {os.cpu_count()} cores, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}"
    )


def interleaved(
    runs: dict[str, Callable[[], T]], rounds: int
) -> tuple[dict[str, float], dict[str, T]]:
    """Best (shortest) seconds per run over `rounds`, and each run's last result.

    The runs take turns, round after round, so load from other processes hits them alike.
    """
    best = {name: float("inf") for name in runs}
    results = {}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            results[name] = run()
            best[name] = min(best[name], time.perf_counter() - start)
            print(f"  {name}: {time.perf_counter() - start:.2f} s", file=sys.stderr, flush=True)
    return best, results
