"""Faster dropout for CPU training, and the eager attention that uses it.

torch's CPU dropout draws one Bernoulli sample per element from a serial generator; the attention
probabilities alone hold batch x heads x length^2 elements per layer, so dropout took about a
third of a MiniLM training step here (bench/RESULTS.md, Training). This one draws 8 random bits
per element, eight elements per 64-bit draw, from the same seeded torch generator, and drops an
element when its bits fall under round(p * 2^8) of the 2^8 values: p = 0.1 becomes 26/256 =
0.1016, and the kept elements are scaled by 1 / (1 - 0.1016), so expectations are exact. Where
2^8 levels would move p by more than 2% of itself (p under about 0.05, or between levels), it
draws 16 bits per element (p = 0.01 becomes 0.009995).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

ATTENTION = "mlabel_eager"


# Random bits drawn per element, fewest first, and the signed integer type that holds them.
BIT_TYPES = ((8, torch.int8), (16, torch.int16))
P_TOLERANCE = 0.02  # the largest relative change of p that fewer bits may cause


def _levels(p: float) -> tuple[int, torch.dtype, int]:
    """The fewest random bits per element that give p within P_TOLERANCE of itself, their signed
    type, and how many of the 2^bits values drop (under 2^bits, so that some elements survive)."""
    for bits, dtype in BIT_TYPES:
        level = min(round(p * 2**bits), 2**bits - 1)
        if abs(level / 2**bits - p) <= P_TOLERANCE * p:
            return bits, dtype, level
    return bits, dtype, level  # the most bits there are


def effective_p(p: float) -> float:
    """The rate the sampler drops at: p rounded to its levels (0.1 -> 26/256)."""
    bits, _, level = _levels(p)
    return level / 2**bits


def _keep_mask(x: torch.Tensor, p: float) -> torch.Tensor:
    """1 where an element of `x` is kept, 0 where it drops, in the random bits' integer type
    (callers skip rates whose effective_p is 0). Made by clamping and shifting the bits:
    comparing them into a bool mask and torch.where on it took about 3x as long as the integer
    ops and a multiply on CPU (bench/RESULTS.md, Training)."""
    n, (bits, dtype, level) = x.numel(), _levels(p)
    per_word = 64 // bits
    words = torch.empty((n + per_word - 1) // per_word, dtype=torch.int64, device=x.device)
    words.random_(-(2**63), 2**63 - 1)
    lowest_kept = level - 2 ** (bits - 1)
    drawn = words.view(dtype)[:n].view(x.shape)
    return drawn.clamp(lowest_kept - 1, lowest_kept) - (lowest_kept - 1)


class _ZeroOut(torch.autograd.Function):
    """Zero each element with probability effective_p(p) (no rescaling: callers scale where it
    is cheapest)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        keep = _keep_mask(x, p)
        ctx.save_for_backward(keep)
        return x * keep

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (keep,) = ctx.saved_tensors
        return grad * keep, None


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Zero each element with probability `p` (as `effective_p` rounds it) and scale the rest by
    1/(1 - that rate), as F.dropout does with its exact p."""
    if not training or effective_p(p) == 0.0:
        return x
    if p >= 1.0:
        return torch.zeros_like(x)
    return _ZeroOut.apply(x, p) * (1.0 / (1.0 - effective_p(p)))


class Dropout(nn.Dropout):
    """nn.Dropout with the faster sampler."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


def eager_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Transformers' eager attention, dropout(softmax(QK^T * scaling + mask)) V, made cheaper:
    the scaling multiplies the queries (length x head size) rather than the scores (length^2),
    the mask is added in the scores' dtype (bf16 under autocast, not fp32) and dropout's
    1/(1-p) multiplies the output rather than the probabilities."""
    scaling = query.size(-1) ** -0.5 if scaling is None else scaling
    weights = torch.matmul(query * scaling, key.transpose(2, 3))
    if attention_mask is not None:
        weights = weights + attention_mask.to(weights.dtype)
    weights = torch.softmax(weights, dim=-1)
    if module.training and dropout >= 1.0:
        weights = torch.zeros_like(weights)
    if module.training and effective_p(dropout) > 0.0 and dropout < 1.0:
        weights = _ZeroOut.apply(weights, dropout)
        output = torch.matmul(weights, value) * (1.0 / (1.0 - effective_p(dropout)))
    else:
        output = torch.matmul(weights, value)
    return output.transpose(1, 2).contiguous(), weights


def use_fast_dropout(model: nn.Module) -> None:
    """Swap every nn.Dropout in `model` for the faster one (same p, same modes)."""
    for name, child in model.named_children():
        if type(child) is nn.Dropout:
            setattr(model, name, Dropout(child.p))
        else:
            use_fast_dropout(child)


AttentionInterface.register(ATTENTION, eager_attention)
AttentionMaskInterface.register(ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["eager"])
