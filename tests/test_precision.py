"""bf16 training, what `--precision auto` picks on CPUs with AMX or AVX-512 bf16: finite losses
and metrics near fp32's, and an exact resume, checked as test_training.py checks fp32."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
from conftest import tiny_encoder_of
from test_training import (  # the fp32 tests' settings, split and comparisons
    Interrupt,
    StopAfterEpoch,
    _assert_same_run,
    _config,
    _history,
    interrupted_before_checkpoint,
    split,  # noqa: F401 (a fixture)
)

import mlabel.engines as engines_mod
import mlabel.runtime as runtime_mod
from mlabel import training
from mlabel.config import TrainConfig
from mlabel.errors import ConfigError
from mlabel.runtime import Runtime, attention_kernels, autocast_dtype

# The CPU's bf16 path, also on a machine with a GPU.
CPU = Runtime(rank=0, world=1, device=torch.device("cpu"))


def test_auto_precision_is_bf16_on_cpus_with_fast_bf16(monkeypatch):
    monkeypatch.setattr(runtime_mod, "cpu_has_fast_bf16", lambda: True)
    assert autocast_dtype("auto", torch.device("cpu")) == torch.bfloat16
    monkeypatch.setattr(runtime_mod, "cpu_has_fast_bf16", lambda: False)
    assert autocast_dtype("auto", torch.device("cpu")) is None
    assert autocast_dtype("bf16", torch.device("cpu")) == torch.bfloat16  # asked for: always


@pytest.mark.parametrize(
    "flags, expected",
    [
        ({"avx2", "fma", "avx_vnni"}, None),  # Zen 3 and other AVX2-only CPUs: no bf16 units
        ({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}, torch.bfloat16),  # Zen 4
        ({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, torch.bfloat16),  # AMX
    ],
)
def test_auto_precision_follows_the_cpu_flags(monkeypatch, flags, expected):
    monkeypatch.setattr(runtime_mod, "cpu_flags", lambda: frozenset(flags))
    assert autocast_dtype("auto", torch.device("cpu")) == expected


def test_an_encoder_failing_under_bf16_autocast_trains_in_fp32_under_auto(
    monkeypatch,
    split,  # noqa: F811 (a fixture)
    tmp_path,
    capsys,
    tiny_encoder,
):
    """DeBERTa v1 fills bf16 attention scores with float32's minimum: `auto` falls back to
    fp32 in one line (the run is fp32's, step for step); an explicit bf16 is an error."""
    monkeypatch.setattr(runtime_mod, "cpu_has_fast_bf16", lambda: True)
    deberta = tiny_encoder_of("deberta", tmp_path / "deberta")
    runs = {}
    for precision in ("auto", "fp32"):
        out = tmp_path / precision
        training.train(_config(deberta, precision=precision), *split, out, runtime=CPU)
        runs[precision] = _history(out)
    said = capsys.readouterr().err
    assert "precision auto: the encoder fails under bfloat16 autocast (value cannot" in said
    assert "; running in fp32" in said
    assert [r["train_loss"] for r in runs["auto"]] == [r["train_loss"] for r in runs["fp32"]]
    with pytest.raises(ConfigError, match=r"^precision bf16: the encoder fails under bfloat16"):
        training.train(_config(deberta, precision="bf16"), *split, tmp_path / "b", runtime=CPU)
    # an encoder that runs under bf16 keeps it, without a word
    training.train(_config(tiny_encoder, precision="auto"), *split, tmp_path / "bert", runtime=CPU)
    assert "precision auto" not in capsys.readouterr().err


@pytest.fixture(scope="module")
def bf16_cfg(tiny_encoder) -> TrainConfig:
    """test_training's resume settings (two epochs of 4 steps, a step checkpoint inside each)."""
    return _config(
        tiny_encoder, epochs=2, save_steps=3, keep=20, thresholds="per-label", precision="bf16"
    )


@pytest.fixture(scope="module")
def runs(bf16_cfg, split, tmp_path_factory) -> dict:  # noqa: F811
    """One uninterrupted run in bf16 and the same run in fp32."""
    out = {}
    for precision, cfg in (("bf16", bf16_cfg), ("fp32", bf16_cfg.replace(precision="fp32"))):
        path = tmp_path_factory.mktemp(precision)
        out[precision] = {"out": path, "result": training.train(cfg, *split, path, runtime=CPU)}
    return out


def test_bf16_training_has_finite_losses_and_metrics_near_fp32(runs):
    bf16, fp32 = _history(runs["bf16"]["out"]), _history(runs["fp32"]["out"])
    assert len(bf16) == len(fp32) == 2
    for ours, theirs in zip(bf16, fp32):
        for key in ("train_loss", "val_loss", "micro_f1", "macro_f1"):
            assert math.isfinite(ours[key]), key
        assert ours["train_loss"] != theirs["train_loss"]  # bf16 really ran
        assert abs(ours["val_loss"] - theirs["val_loss"]) < 0.02
    assert 0.0 <= runs["bf16"]["result"].metrics["micro_f1"] <= 1.0


def test_bf16_resume_after_an_epoch_matches_the_uninterrupted_run(
    runs,
    bf16_cfg,
    split,  # noqa: F811
    tmp_path,
):
    with pytest.raises(Interrupt):
        training.train(bf16_cfg, *split, tmp_path, callbacks=(StopAfterEpoch(1),), runtime=CPU)
    training.train(bf16_cfg, *split, tmp_path, resume=True, runtime=CPU)
    _assert_same_run(tmp_path, runs["bf16"])


def test_bf16_resume_mid_epoch_matches_the_uninterrupted_run(
    runs,
    bf16_cfg,
    split,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    """A crash before epoch 2's checkpoint: resume from the step checkpoint inside it."""
    with interrupted_before_checkpoint("epoch-002", monkeypatch), pytest.raises(Interrupt):
        training.train(bf16_cfg, *split, tmp_path, runtime=CPU)
    training.train(bf16_cfg, *split, tmp_path, resume=True, runtime=CPU)
    _assert_same_run(tmp_path, runs["bf16"])


def test_gpu_attention_leaves_out_cudnn_and_restores_the_flags():
    # cuDNN's attention builds a plan per new shape (bench/RESULTS.md, GPU): off inside, on after
    before = torch.backends.cuda.cudnn_sdp_enabled()
    with attention_kernels(torch.device("cuda")):
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        assert (
            torch.backends.cuda.flash_sdp_enabled()
            and torch.backends.cuda.mem_efficient_sdp_enabled()
        )
    assert torch.backends.cuda.cudnn_sdp_enabled() == before
    with attention_kernels(torch.device("cpu")):
        assert torch.backends.cuda.cudnn_sdp_enabled() == before  # nothing changes on a CPU


def test_each_epoch_and_validation_run_inside_the_attention_kernels(
    bf16_cfg,
    split,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    seen: dict[str, list[str]] = {"epochs": [], "validation": []}

    def recorder(kind: str):
        return lambda device: seen[kind].append(device.type) or contextlib.nullcontext()

    monkeypatch.setattr(training, "attention_kernels", recorder("epochs"))
    monkeypatch.setattr(engines_mod, "attention_kernels", recorder("validation"))
    training.train(bf16_cfg.replace(epochs=2), *split, tmp_path, runtime=CPU)
    assert seen["epochs"] == ["cpu", "cpu"]  # on a GPU these leave cuDNN's attention out
    assert seen["validation"] and set(seen["validation"]) == {"cpu"}
