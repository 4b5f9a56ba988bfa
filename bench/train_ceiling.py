"""How close mlabel's CPU training step is to this machine's matrix-multiply limit.

    python bench/train_ceiling.py

Runs one epoch of `bench/train.py`'s training data (1,000 abstracts, batch 16, max length 256)
through the same step `mlabel train` takes on a CPU (fast dropout, eager attention, bf16 autocast,
fused AdamW, gradient clipping) under torch.profiler, then prints the time in matrix multiplies
against everything else, the FLOP rate the linear layers reach against the same shapes multiplied
alone, and two floors: the epoch's seconds if every operation but the matrix multiplies were free,
and if only the element-wise work every implementation needs (softmax, GELU, LayerNorm, AdamW)
were added back.
"""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np
import torch
from benchkit import arxiv, machine, texts_of
from torch.profiler import ProfilerActivity, profile

from mlabel import dropout
from mlabel.encoding import collate, encode, load_tokenizer, training_batches
from mlabel.model import EncoderClassifier, attention, resolve_encoder

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


def isolated_gflops(m: int, k: int, n: int, rounds: int = 5, reps: int = 10) -> float:
    """bf16 GFLOP/s of one (m x k) @ (k x n) product: the best of `rounds` (the machine drifts)."""
    a, b = torch.randn(m, k, dtype=torch.bfloat16), torch.randn(k, n, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * m * k * n * reps / best / 1e9


def main() -> int:
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    print(f"machine: {machine()}")
    enc = encode(load_tokenizer(resolve_encoder("default")), texts_of(arxiv().iloc[:ROWS]), MAX_LEN)
    rows = training_batches(enc.lengths, BATCH, torch.Generator().manual_seed(0))
    batches = [collate(enc, b) for b in rows]
    model = EncoderClassifier.from_encoder("default", 6, "mean", 0.1)
    dropout.use_fast_dropout(model)
    model.train()
    cfg = model.encoder.config
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    target = torch.rand(BATCH, 6).round()

    def step(inputs: dict[str, torch.Tensor]) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(**inputs)
        y = target[: len(logits)]
        torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    with attention(model.encoder, dropout.ATTENTION):
        for inputs in batches[:2]:
            step(inputs)
        start = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for inputs in batches:
                step(inputs)
        wall = time.perf_counter() - start
    seconds = {e.key: e.self_cpu_time_total / 1e6 for e in prof.key_averages()}
    total = sum(seconds.values())
    matmul = sum(seconds.get(k, 0.0) for k in MATMULS)
    linear = seconds.get("aten::mm", 0.0) + seconds.get("aten::addmm", 0.0)

    hidden, inner, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    padded = sum(len(b) * int(enc.lengths[b].max()) for b in rows)
    params = layers * (4 * hidden * hidden + 2 * hidden * inner)
    linear_flop = 6 * params * padded  # forward 2, backward 4 FLOP per weight and token
    print(
        f"{len(batches)} steps, {ROWS} abstracts, {padded} padded tokens "
        f"({padded / enc.lengths.sum() - 1:.1%} padding)"
    )
    print(f"epoch under the profiler: {wall:.1f} s ({ROWS / wall:.2f} samples/s)")
    print(f"matrix multiplies: {matmul:.1f} s ({matmul / total:.1%} of the step's time)")
    for key, value in sorted(seconds.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {key:40s} {value:6.2f} s {value / total:6.1%}")
    tokens = int(np.ceil(padded / len(rows)))
    alone = [
        isolated_gflops(tokens, hidden, inner),
        isolated_gflops(tokens, inner, hidden),
        isolated_gflops(tokens, hidden, hidden),
    ]
    print(
        f"linear layers in the step: {linear_flop / linear / 1e9:.0f} GFLOP/s; the same shapes "
        f"alone ({tokens} tokens): {', '.join(f'{g:.0f}' for g in alone)} GFLOP/s"
    )
    essential = matmul + sum(seconds.get(k, 0.0) for k in ESSENTIAL)
    print(
        f"floor (every other operation free): {matmul:.1f} s per epoch, "
        f"{ROWS / matmul:.1f} samples/s"
    )
    print(
        f"floor with softmax, GELU, LayerNorm and AdamW at today's speed: {essential:.1f} s per "
        f"epoch, {ROWS / essential:.1f} samples/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
