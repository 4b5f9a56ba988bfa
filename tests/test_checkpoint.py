"""Checkpoints: exact round trip, atomic writes, pruning, and no unpickling anywhere."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from mlabel import checkpoint as ckpt
from mlabel import training
from mlabel.config import TrainConfig
from mlabel.data import Examples
from mlabel.errors import CheckpointError, ModelError
from mlabel.predict import load_predictor


class Payload:
    """Unpickling this creates `marker`: proof that a pickle was run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def _plant_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps({"state": Payload(marker)}))


def _parts(seed: int = 0):
    """A small model with an AdamW optimizer and a warmup schedule, as the trainer builds them."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 3))
    optimizer = torch.optim.AdamW(
        [
            {"params": model[0].parameters(), "lr": 1e-3, "weight_decay": 0.01},
            {"params": [*model[1].parameters(), *model[2].parameters()], "lr": 2e-3},
        ]
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (step + 1))
    return model, optimizer, scheduler


def _train_steps(model, optimizer, scheduler, n: int) -> None:
    for _ in range(n):
        loss = model(torch.randn(5, 4)).pow(2).mean()
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()


def _save(directory: Path, name: str, step: int) -> Path:
    model, optimizer, scheduler = _parts()
    return ckpt.save_checkpoint(directory, name, model, optimizer, scheduler, {"global_step": step})


def test_round_trip_continues_exactly(tmp_path):
    """Training on from a loaded checkpoint gives the same weights as never stopping."""
    model, optimizer, scheduler = _parts()
    _train_steps(model, optimizer, scheduler, 3)
    state = {"global_step": 3, "history": [{"epoch": 1, "train_loss": 0.5}]}
    path = ckpt.save_checkpoint(tmp_path, "step-0000003", model, optimizer, scheduler, state)
    _train_steps(model, optimizer, scheduler, 2)

    copy, copy_optimizer, copy_scheduler = _parts(seed=1)
    assert ckpt.load_checkpoint(path, copy, copy_optimizer, copy_scheduler) == state
    assert copy_scheduler.last_epoch == 3
    _train_steps(copy, copy_optimizer, copy_scheduler, 2)  # the same random batches (RNG restored)
    for mine, theirs in zip(copy.state_dict().values(), model.state_dict().values()):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=0)
    assert copy_scheduler.get_last_lr() == scheduler.get_last_lr()


def test_each_rank_gets_its_own_random_state_back(tmp_path):
    """rank 0 writes every rank's generator state; a rank the checkpoint lacks gets rank 0's."""
    states = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        states.append(ckpt.rng_state())
    path = ckpt.save_checkpoint(tmp_path, "epoch-001", *_parts(), {"global_step": 1}, states)
    for rank, expected in ((1, states[1]), (0, states[0]), (3, states[0])):
        torch.manual_seed(99)
        ckpt.load_checkpoint(path, *_parts(), rank=rank)
        assert torch.equal(torch.get_rng_state(), expected["torch"])


def test_checkpoint_files_are_safetensors_and_json(tmp_path):
    path = _save(tmp_path, "epoch-001", 1)
    names = {p.name for p in path.iterdir()}
    assert names == {
        "model.safetensors",
        "optimizer.safetensors",
        "optimizer.json",
        "scheduler.json",
        "rng.safetensors",
        "state.json",
    }


def test_list_checkpoints_orders_by_step_and_skips_unfinished(tmp_path):
    _save(tmp_path, "epoch-002", 8)
    _save(tmp_path, "step-0000006", 6)
    _save(tmp_path, "epoch-001", 4)
    shutil.copytree(tmp_path / "epoch-002", tmp_path / ".tmp-epoch-003")  # crash before the rename
    shutil.copytree(tmp_path / "epoch-002", tmp_path / "epoch-004")
    (tmp_path / "epoch-004" / "state.json").unlink()  # a folder without its completion mark
    names = [p.name for p in ckpt.list_checkpoints(tmp_path)]
    assert names == ["epoch-001", "step-0000006", "epoch-002"]
    assert ckpt.list_checkpoints(tmp_path / "missing") == []


def test_crash_while_saving_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    first = _save(tmp_path, "epoch-001", 4)

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(ckpt, "save_file", disk_full)
    with pytest.raises(OSError):
        _save(tmp_path, "epoch-002", 8)
    assert (tmp_path / ".tmp-epoch-002").is_dir()
    assert ckpt.list_checkpoints(tmp_path) == [first]


def test_saving_again_under_a_name_replaces_the_checkpoint(tmp_path):
    _save(tmp_path, "epoch-001", 4)
    _save(tmp_path, "epoch-001", 5)
    (path,) = ckpt.list_checkpoints(tmp_path)
    assert json.loads((path / "state.json").read_text()) == {"global_step": 5}
    assert not any(p.name.startswith(".tmp") for p in tmp_path.iterdir())


def test_prune_keeps_the_newest_and_the_best(tmp_path):
    for step in range(1, 6):
        _save(tmp_path, f"epoch-{step:03d}", step)
    ckpt.prune_checkpoints(tmp_path, keep=2, best="epoch-002")
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == [
        "epoch-002",
        "epoch-004",
        "epoch-005",
    ]


def test_a_checkpoint_missing_any_file_is_not_listed(tmp_path):
    """Such as one that an older mlabel was killed while removing (state.json still there)."""
    _save(tmp_path, "epoch-001", 4)
    latest = _save(tmp_path, "epoch-002", 8)
    (latest / "optimizer.safetensors").unlink()
    _save(tmp_path, "epoch-003", 12)
    (tmp_path / "epoch-003" / "state.json").write_text('{"global_step": ')  # cut short
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["epoch-001"]


def test_a_pruned_checkpoint_disappears_at_once(tmp_path, monkeypatch):
    """Removal starts with a rename to a hidden name: a kill halfway leaves nothing listed."""
    for step in (1, 2):
        _save(tmp_path, f"epoch-{step:03d}", step)
    monkeypatch.setattr(ckpt.shutil, "rmtree", lambda *args, **kwargs: None)  # killed mid-way
    ckpt.prune_checkpoints(tmp_path, keep=1, best=None)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["epoch-002"]
    assert (tmp_path / ".trash-epoch-001" / "state.json").is_file()
    monkeypatch.undo()
    _save(tmp_path, "epoch-003", 3)  # the next save clears what the kill left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-002", "epoch-003"]


def test_incomplete_checkpoint_is_refused(tmp_path):
    path = _save(tmp_path, "epoch-001", 1)
    (path / "state.json").unlink()
    with pytest.raises(CheckpointError, match="state.json"):
        ckpt.load_checkpoint(path, *_parts())


# ---------------------------------------------------------------- never unpickle


def test_planted_pickle_would_run_if_loaded(tmp_path):
    """The payload is real: plain unpickling creates the marker (so the tests below mean something)."""
    marker = tmp_path / "ran"
    _plant_pickle(tmp_path / "optimizer.pt", marker)
    pickle.loads((tmp_path / "optimizer.pt").read_bytes())
    assert marker.exists()


def test_pickle_in_a_checkpoint_is_refused(tmp_path):
    path = _save(tmp_path / "checkpoints", "epoch-001", 1)
    marker = tmp_path / "ran"
    _plant_pickle(path / "optimizer.pt", marker)
    with pytest.raises(ModelError, match="optimizer.pt"):
        ckpt.load_checkpoint(path, *_parts())
    assert not marker.exists()


def test_resume_refuses_a_checkpoint_with_a_pickle(tiny_encoder, tmp_path):
    path = _save(tmp_path / "checkpoints", "epoch-001", 1)
    marker = tmp_path / "ran"
    _plant_pickle(path / "scheduler.pt", marker)
    cfg = TrainConfig(model=tiny_encoder, text_cols=["text"], max_len=16, epochs=1, threads=2)
    data = Examples(["1", "2"], ["a text", "another text"], ["x"], torch.ones(2, 1).numpy(), "")
    with pytest.raises(ModelError, match="refusing to load pickle"):
        training.train(cfg, data, data, tmp_path, resume=True)
    assert not marker.exists()


def test_pickle_in_a_model_folder_is_refused(trained_tiny, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(trained_tiny, model_dir)
    marker = tmp_path / "ran"
    _plant_pickle(model_dir / "pytorch_model.bin", marker)
    with pytest.raises(ModelError, match="pytorch_model.bin"):
        load_predictor(model_dir, engine="torch")
    assert not marker.exists()
