"""runtime.reuse_freed_memory: large freed tensors stay in the process while training and
torch-engine inference run (no fresh pages to fault in), and go back to the system afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_training import _config, split  # noqa: F401 (a fixture)

from mlabel import engines, runtime, training
from mlabel.encoding import encode, load_tokenizer
from mlabel.model import EncoderClassifier

CPU = torch.device("cpu")
MIB = 2**20
pytestmark = pytest.mark.skipif(runtime._glibc() is None, reason="needs Linux with glibc")


def resident_mib() -> float:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MIB


def freed_mib(size: int = 64) -> float:
    """How much resident memory freeing a touched tensor of `size` MiB (over any mmap threshold
    glibc picks by itself) gives back to the system."""
    x = torch.ones(size * MIB // 4)
    before = resident_mib()
    del x
    return before - resident_mib()


def test_freed_memory_stays_inside_and_goes_back_after():
    """In a process of its own: whether glibc serves a large block from a free chunk of the heap
    depends on what earlier tests in the worker left there."""
    tests = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}
    code = "import test_memory; test_memory.stays_inside_and_goes_back_after()"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]


def stays_inside_and_goes_back_after() -> None:
    assert freed_mib() > 60  # glibc's default: unmapped at once
    with runtime.reuse_freed_memory(CPU):
        assert freed_mib() < 4  # kept for the next tensor
        with runtime.reuse_freed_memory(CPU):  # nested: the outer block still holds
            pass
        assert freed_mib() < 4
        x = torch.ones(16 * MIB)
        del x
        inside = resident_mib()
    assert inside - resident_mib() > 60  # returned on leaving
    # and the defaults are back: a block larger than any the heap kept is mapped and unmapped
    # again (a 64 MiB one may be served from a free chunk left inside the heap, whose pages
    # malloc_trim gave back but which glibc keeps in its bins: then it stays when freed)
    assert freed_mib(256) > 240


def test_gpu_blocks_leave_the_allocator_alone():
    with runtime.reuse_freed_memory(torch.device("cuda")):
        assert freed_mib() > 60


def test_training_epochs_run_inside_it(tiny_encoder, split, tmp_path, monkeypatch):  # noqa: F811
    seen: list[str] = []
    real = runtime.reuse_freed_memory

    def recorder(device: torch.device):
        seen.append(device.type)
        return real(device)

    epoch = training._Run._train_epoch

    def inside_epoch(self):
        assert runtime._held == 1  # the block is open while the epoch trains
        return epoch(self)

    monkeypatch.setattr(training, "reuse_freed_memory", recorder)
    monkeypatch.setattr(training._Run, "_train_epoch", inside_epoch)
    cpu = runtime.Runtime(rank=0, world=1, device=CPU)
    training.train(_config(tiny_encoder, epochs=2), *split, tmp_path, runtime=cpu)
    assert seen == ["cpu"]
    assert runtime._held == 0


def test_torch_engine_batches_run_inside_it(tiny_encoder, monkeypatch):
    model = EncoderClassifier.from_encoder(tiny_encoder, 3, "mean", 0.1).eval()
    encoded = encode(load_tokenizer(tiny_encoder), ["a short text", "another one"] * 20, 32)
    held: list[int] = []
    real = model.forward

    def forward(**inputs):
        held.append(runtime._held)
        return real(**inputs)

    monkeypatch.setattr(model, "forward", forward)
    logits = engines.batched_logits(model, encoded)
    assert logits.shape == (40, 3) and held and set(held) == {1}
    assert runtime._held == 0
