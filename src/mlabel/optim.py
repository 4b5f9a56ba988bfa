"""What training optimizes and how: the loss, the optimizer with layer-wise learning-rate decay
and the warmup-then-linear-decay schedule, each built from a `TrainConfig`."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from mlabel.config import TrainConfig
from mlabel.model import EncoderClassifier

LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _layer_index(name: str, n_layers: int) -> int:
    """0 for embeddings, 1..n for encoder layers, n+1 for anything above them (the head)."""
    if name.startswith("head."):
        return n_layers + 1
    found = re.search(r"\.(?:layer|layers)\.(\d+)\.", name)
    if found:
        return int(found.group(1)) + 1
    return 0 if "embeddings" in name else n_layers


def build_optimizer(model: EncoderClassifier, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Parameter groups with layer-wise learning-rate decay and no weight decay on biases/norms."""
    n_layers = getattr(model.encoder.config, "num_hidden_layers", 12)
    groups: dict[tuple[int, bool], list] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            decay = param.ndim > 1 and cfg.optimizer == "adamw"
            groups.setdefault((_layer_index(name, n_layers), decay), []).append(param)
    param_groups = []
    for (depth, decay), params in sorted(groups.items()):
        lr = (
            cfg.lr * cfg.layer_decay ** (n_layers - depth)
            if depth <= n_layers
            else cfg.head_lr or cfg.lr
        )
        wd = cfg.weight_decay if decay else 0.0
        param_groups.append({"params": params, "lr": lr, "weight_decay": wd})
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    try:
        return cls(param_groups, lr=cfg.lr, fused=True)
    except (RuntimeError, TypeError):  # no fused kernel for this device or torch build
        return cls(param_groups, lr=cfg.lr)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, total: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup for `warmup` of the `total` steps, then linear decay to zero."""
    warm = int(cfg.warmup * total)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / (warm + 1)
        return max(0.0, (total - step) / max(1, total - warm))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def loss_function(cfg: TrainConfig, y: np.ndarray, device: torch.device) -> LossFunction:
    """Per-element loss (summed by the caller): BCE with optional pos_weight, or focal.

    `pos_weight auto` weighs each label's positives by sqrt(negatives / positives) in the
    training labels `y`, clipped to [1, 50]."""
    pos_weight = None
    if cfg.pos_weight == "auto":
        pos = y.sum(0).clip(min=1)
        pos_weight = torch.tensor(
            np.sqrt((len(y) - pos) / pos).clip(1.0, 50.0), dtype=torch.float32, device=device
        )

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bce = F.binary_cross_entropy_with_logits(
            logits, target, pos_weight=pos_weight, reduction="none"
        )
        if cfg.loss == "focal":
            p = torch.sigmoid(logits)
            p_t = p * target + (1 - p) * (1 - target)
            bce = bce * (1 - p_t) ** cfg.focal_gamma
        return bce

    return loss
