"""Faster dropout for CPU training, and the eager attention that uses it.

torch's CPU dropout draws one Bernoulli sample per element from a serial generator; the attention
probabilities alone hold batch x heads x length^2 elements per layer, so dropout took about a
third of a MiniLM training step here (bench/RESULTS.md, Training). This one draws 16 random bits
per element, four elements per 64-bit draw, from the same seeded torch generator, and drops an
element when its bits fall under round(p * 2^16) of the 2^16 values (p = 0.1 becomes 0.100006).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

ATTENTION = "mlabel_eager"


class _ZeroOut(torch.autograd.Function):
    """Zero each element with probability p (no rescaling: callers scale where it is cheapest)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        n = x.numel()
        bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device)
        bits.random_(-(2**63), 2**63 - 1)
        keep = bits.view(torch.int16)[:n].view(x.shape) >= round(p * 65536) - 32768
        ctx.save_for_backward(keep)
        return torch.where(keep, x, 0.0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (keep,) = ctx.saved_tensors
        return torch.where(keep, grad, 0.0), None


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Zero each element with probability `p` and scale the rest by 1/(1-p), as F.dropout does."""
    if not training or p == 0.0:
        return x
    if p >= 1.0:
        return torch.zeros_like(x)
    return _ZeroOut.apply(x, p) * (1.0 / (1.0 - p))


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
    the mask is added in the scores' dtype (bf16 under autocast, not fp32) and dropout's
    1/(1-p) multiplies the output (length x head size) rather than the probabilities (length^2)."""
    scaling = query.size(-1) ** -0.5 if scaling is None else scaling
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask.to(weights.dtype)
    weights = torch.softmax(weights, dim=-1)
    if module.training and dropout >= 1.0:
        weights = torch.zeros_like(weights)
    if module.training and 0.0 < dropout < 1.0:
        weights = _ZeroOut.apply(weights, dropout)
        output = torch.matmul(weights, value) * (1.0 / (1.0 - dropout))
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
