"""How torchrun ranks share a training run: DDP wrapping, each rank's rows of a global batch, and
what is summed or gathered over the ranks. Every function here is a no-op for a single process;
the gathering ones are collectives, called by every rank."""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from mlabel.checkpoint import rng_state
from mlabel.runtime import Runtime


def wrap(model: torch.nn.Module, rt: Runtime) -> torch.nn.Module:
    """The model in DistributedDataParallel under torchrun; itself otherwise."""
    if not rt.distributed:
        return model
    ids = [rt.device.index] if rt.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def share(batch: np.ndarray, rt: Runtime) -> tuple[np.ndarray, float]:
    """This rank's rows of a global batch, and their weight in the loss.

    A batch smaller than the world leaves some ranks without rows; they run its first row with
    weight 0 instead, so that every rank joins DDP's gradient all-reduce (else it would hang).
    """
    mine = batch[rt.rank :: rt.world]
    return (mine, 1.0) if len(mine) else (batch[:1], 0.0)


def global_sum(values: torch.Tensor, rt: Runtime) -> list[float]:
    """The sum over ranks, leaving `values` as it is."""
    if not rt.distributed:
        return values.tolist()
    total = values.clone().to(rt.device)  # NCCL reduces only GPU tensors
    dist.all_reduce(total)
    return total.cpu().tolist()


def gather_rows(rows: np.ndarray, values: np.ndarray, rt: Runtime) -> tuple[np.ndarray, np.ndarray]:
    """Every rank's `rows` and their `values`, concatenated in rank order."""
    if not rt.distributed:
        return rows, values
    parts: list = [None] * rt.world
    dist.all_gather_object(parts, (rows, values))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def rng_states(rt: Runtime) -> list[dict[str, torch.Tensor]]:
    """Every rank's generator states, for rank 0's checkpoint: each rank draws its own dropout."""
    mine = rng_state()
    if not rt.distributed:
        return [mine]
    states: list = [None] * rt.world
    dist.all_gather_object(states, {k: v.cpu() for k, v in mine.items()})
    return states
