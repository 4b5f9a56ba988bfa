"""Atomic checkpoints (safetensors + JSON, never pickle) and exact resume.

A checkpoint is written into a hidden `.tmp-NAME` folder and renamed into place once complete;
one is removed by renaming it to a hidden `.trash-NAME` first. Hidden folders are never read,
so a kill at any instant leaves each checkpoint whole or invisible (tests/test_kill_matrix.py)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from mlabel import faults
from mlabel.errors import CheckpointError
from mlabel.model import refuse_pickles

STATE_FILE = "state.json"
FILES = (
    "model.safetensors",
    "optimizer.safetensors",
    "optimizer.json",
    "scheduler.json",
    "rng.safetensors",
    STATE_FILE,
)
TEMP_PREFIX, TRASH_PREFIX = ".tmp-", ".trash-"


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state as tensors (safetensors) plus the structure (JSON)."""
    tensors, scalars = {}, {}
    for pid, slots in state["state"].items():
        for name, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{name}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{pid}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, value in [*tensors.items(), *meta["scalars"].items()]:
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def rng_state() -> dict[str, torch.Tensor]:
    """CPU and current-GPU generator states (each torchrun rank owns one device)."""
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def set_rng_state(states: dict[str, torch.Tensor], rank: int = 0) -> None:
    """Restore `rank`'s generators (rank 0's when the checkpoint holds fewer ranks)."""
    if f"torch.{rank}" not in states:
        rank = 0
    torch.set_rng_state(states[f"torch.{rank}"])
    if f"cuda.{rank}" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states[f"cuda.{rank}"])


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    directory: Path,
    name: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: dict[str, Any],
    rng_states: list[dict[str, torch.Tensor]] | None = None,
) -> Path:
    """Write to a temporary folder, fsync every file, then rename: a crash never leaves a half
    checkpoint. `rng_states` holds every rank's generators (default: this process's)."""
    directory.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(directory)
    tmp, final = directory / f"{TEMP_PREFIX}{name}", directory / name
    tmp.mkdir()
    weights = {k: v.detach().contiguous().cpu().clone() for k, v in model.state_dict().items()}
    save_file(weights, str(tmp / "model.safetensors"))
    faults.point("checkpoint.weights")
    opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "optimizer.json").write_text(json.dumps(opt_meta))
    faults.point("checkpoint.optimizer")
    sched = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
    (tmp / "scheduler.json").write_text(json.dumps(sched))
    ranks = rng_states or [rng_state()]
    rng = {f"{name}.{rank}": t for rank, states in enumerate(ranks) for name, t in states.items()}
    save_file(rng, str(tmp / "rng.safetensors"))
    (tmp / STATE_FILE).write_text(json.dumps(state))  # written last: marks the folder complete
    faults.point("checkpoint.state")
    for path in tmp.iterdir():
        _fsync(path)
    faults.point("checkpoint.commit")
    if final.exists():  # saved again under its name (a resumed run): the old one goes first
        _discard(final)
    os.replace(tmp, final)
    _fsync(directory)
    return final


def _remove_leftovers(directory: Path) -> None:
    """Hidden folders a killed save or removal left behind."""
    for path in directory.iterdir():
        if path.name.startswith((TEMP_PREFIX, TRASH_PREFIX)) and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)


def _discard(path: Path) -> None:
    """Remove a checkpoint, renamed to a hidden name first: a kill halfway through removing it
    never leaves a folder that looks complete and lacks a file."""
    trash = path.with_name(f"{TRASH_PREFIX}{path.name}")
    shutil.rmtree(trash, ignore_errors=True)
    path.rename(trash)
    faults.point("checkpoint.discard")
    shutil.rmtree(trash)


def _global_step(path: Path) -> int | None:
    """The step of a complete checkpoint; None for a hidden, partial or unreadable folder."""
    if path.name.startswith(".") or not all((path / f).is_file() for f in FILES):
        return None
    try:
        return int(json.loads((path / STATE_FILE).read_text())["global_step"])
    except (ValueError, KeyError, TypeError):  # ValueError covers broken JSON and text
        return None


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoints, oldest first (by global step)."""
    if not directory.is_dir():
        return []
    steps = {p: _global_step(p) for p in directory.iterdir()}
    return sorted((p for p, step in steps.items() if step is not None), key=steps.__getitem__)


def load_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    rank: int = 0,
) -> dict[str, Any]:
    """Restore weights, optimizer, scheduler and `rank`'s RNG; return the trainer state."""
    if not (path / STATE_FILE).is_file():
        raise CheckpointError(f"{path}: incomplete checkpoint ({STATE_FILE} missing)")
    refuse_pickles(path)
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    opt_meta = json.loads((path / "optimizer.json").read_text())
    optimizer.load_state_dict(
        _unflatten_optimizer(load_file(str(path / "optimizer.safetensors")), opt_meta)
    )
    sched = json.loads((path / "scheduler.json").read_text())
    scheduler.load_state_dict({**scheduler.state_dict(), **sched})
    set_rng_state(load_file(str(path / "rng.safetensors")), rank)
    return json.loads((path / STATE_FILE).read_text())


def prune_checkpoints(directory: Path, keep: int, best: str | None) -> None:
    """Keep the newest `keep` checkpoints and the best one."""
    done = list_checkpoints(directory)
    for path in done[:-keep]:
        if path.name != best:
            _discard(path)
