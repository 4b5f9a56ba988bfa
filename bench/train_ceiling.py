"""How close mlabel's CPU training step is to this machine's matrix-multiply limit.

    python bench/train_ceiling.py

Runs one epoch of `bench/train.py`'s training data (1,000 abstracts, batch 16, max length 256)
through the same step `mlabel train` takes on a CPU (fast dropout, eager attention, autocast in the
precision `--precision auto` picks here: bf16 with AMX or AVX-512 bf16, else fp32; fused AdamW,
gradient clipping, freed memory kept for reuse) under torch.profiler, then prints the time in
matrix multiplies against everything else, the FLOP rate the linear layers reach against the
same shapes multiplied alone, and two floors: the epoch's seconds if every operation but the
matrix multiplies were free, and if only the element-wise work every implementation needs
(softmax, GELU, LayerNorm, AdamW) were added back. `bench/train.py` measures the second floor in its own run (`floor_profile`).
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from benchkit import arxiv, machine, texts_of
from torch.profiler import ProfilerActivity, profile

from mlabel import dropout
from mlabel.encoding import collate, encode, load_tokenizer, training_batches
from mlabel.model import EncoderClassifier, attention, resolve_encoder
from mlabel.runtime import autocast_dtype, reuse_freed_memory

ROWS, BATCH, MAX_LEN = 1000, 16, 256
MATMULS = ("aten::mm", "aten::addmm", "aten::bmm")
# Element-wise work any implementation of the recipe does, however fused (dropout's masks aside).
ESSENTIAL = (
    "aten::_softmax",
    "aten::_softmax_backward_data",
    "aten::gelu",
    "aten::gelu_backward",
    "aten::native_layer_norm",
    "aten::native_layer_norm_backward",
    "aten::_fused_adamw_",
)


@dataclass(frozen=True)
class FloorProfile:
    """One profiled epoch: wall seconds, self seconds per operator, and the batches' shapes."""

    rows: int
    steps: int
    padded: int  # tokens after padding, summed over the batches
    tokens: int  # real tokens
    wall: float
    seconds: dict[str, float]
    dtype: torch.dtype | None  # autocast dtype; None: fp32

    @property
    def matmul(self) -> float:
        """The epoch's seconds in matrix multiplies: the floor with every other operation free."""
        return sum(self.seconds.get(k, 0.0) for k in MATMULS)

    @property
    def floor(self) -> float:
        """The epoch's seconds in matrix multiplies, softmax, GELU, LayerNorm and AdamW."""
        return self.matmul + sum(self.seconds.get(k, 0.0) for k in ESSENTIAL)


def precision_name(dtype: torch.dtype | None) -> str:
    return {torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}.get(dtype, "fp32")


def isolated_gflops(
    m: int, k: int, n: int, dtype: torch.dtype, rounds: int = 5, reps: int = 10
) -> float:
    """GFLOP/s of one (m x k) @ (k x n) product: the best of `rounds` (the machine drifts)."""
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * m * k * n * reps / best / 1e9


def floor_profile(rows: int, dtype: torch.dtype | None) -> FloorProfile:
    """Profile one epoch of mlabel's CPU training step on the first `rows` abstracts, in the
    batches mlabel's first epoch takes (seed 0)."""
    torch.manual_seed(0)
    enc = encode(load_tokenizer(resolve_encoder("default")), texts_of(arxiv().iloc[:rows]), MAX_LEN)
    batch_rows = training_batches(enc.lengths, BATCH, torch.Generator().manual_seed(0))
    batches = [collate(enc, b) for b in batch_rows]
    model = EncoderClassifier.from_encoder("default", 6, "mean", 0.1)
    dropout.use_fast_dropout(model)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    target = torch.rand(BATCH, 6).round()

    def step(inputs: dict[str, torch.Tensor]) -> None:
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            logits = model(**inputs)
        y = target[: len(logits)]
        torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    with attention(model.encoder, dropout.ATTENTION), reuse_freed_memory(torch.device("cpu")):
        for inputs in batches[:2]:
            step(inputs)
        start = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for inputs in batches:
                step(inputs)
        wall = time.perf_counter() - start
    padded = sum(len(b) * int(enc.lengths[b].max()) for b in batch_rows)
    seconds = {e.key: e.self_cpu_time_total / 1e6 for e in prof.key_averages()}
    return FloorProfile(rows, len(batches), padded, int(enc.lengths.sum()), wall, seconds, dtype)


def report(fp: FloorProfile) -> None:
    """Print where the profiled epoch's time went, the linear layers' FLOP rate and the floors."""
    total = sum(fp.seconds.values())
    cfg = EncoderClassifier.from_encoder("default", 6, "mean", 0.1).encoder.config
    hidden, inner, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    linear = fp.seconds.get("aten::mm", 0.0) + fp.seconds.get("aten::addmm", 0.0)
    linear_flop = 6 * layers * (4 * hidden * hidden + 2 * hidden * inner) * fp.padded
    print(
        f"{fp.steps} steps, {fp.rows} abstracts, {fp.padded} padded tokens "
        f"({fp.padded / fp.tokens - 1:.1%} padding), {precision_name(fp.dtype)}"
    )
    print(f"epoch under the profiler: {fp.wall:.1f} s ({fp.rows / fp.wall:.2f} samples/s)")
    print(f"matrix multiplies: {fp.matmul:.1f} s ({fp.matmul / total:.1%} of the step's time)")
    for key, value in sorted(fp.seconds.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {key:40s} {value:6.2f} s {value / total:6.1%}")
    tokens = int(np.ceil(fp.padded / fp.steps))
    shapes = [(tokens, hidden, inner), (tokens, inner, hidden), (tokens, hidden, hidden)]
    alone = [isolated_gflops(*shape, fp.dtype or torch.float32) for shape in shapes]
    print(
        f"linear layers in the step: {linear_flop / linear / 1e9:.0f} GFLOP/s; the same shapes "
        f"alone ({tokens} tokens): {', '.join(f'{g:.0f}' for g in alone)} GFLOP/s"
    )
    print(
        f"floor (every other operation free): {fp.matmul:.1f} s per epoch, "
        f"{fp.rows / fp.matmul:.1f} samples/s"
    )
    print(
        f"floor with softmax, GELU, LayerNorm and AdamW at today's speed: {fp.floor:.1f} s per "
        f"epoch, {fp.rows / fp.floor:.1f} samples/s"
    )


def main() -> int:
    warnings.filterwarnings("ignore")
    print(f"machine: {machine()}")
    report(floor_profile(ROWS, autocast_dtype("auto", torch.device("cpu"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
