"""Where code runs: device, torchrun process group, CPU features, threads, mixed precision and
how the C library hands out memory."""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

import torch
import torch.distributed as dist
from torch.nn.attention import SDPBackend, sdpa_kernel

from mlabel.errors import ConfigError


@dataclass(frozen=True)
class Runtime:
    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def setup(threads: int | None = None) -> Runtime:
    """Set the thread count, pick this rank's device and, under torchrun, join the process group
    (gloo on CPU, NCCL on GPU)."""
    if threads:
        torch.set_num_threads(threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Runtime(rank=rank, world=world, device=device)


def teardown(runtime: Runtime) -> None:
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


# Instruction sets that decide how fast bf16 and int8 matrix products run on a CPU.
MATRIX_ISA = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


@cache
def cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def matrix_isa() -> list[str]:
    """This CPU's matrix instruction sets, from MATRIX_ISA."""
    return [flag for flag in MATRIX_ISA if flag in cpu_flags()]


# CPU flags of exact u8 x s8 dot products: VNNI or AMX int8 (AVX2's vpmaddubsw sums pairs of
# them in int16, and saturates).
INT8_DOT_ISA = frozenset({"avx_vnni", "avx512_vnni", "amx_int8"})


def cpu_has_int8_dot() -> bool:
    """True on CPUs with exact int8 dot products (INT8_DOT_ISA)."""
    return bool(INT8_DOT_ISA & cpu_flags())


def cpu_has_fast_bf16() -> bool:
    """True on CPUs with AMX or AVX-512 bf16 units, where bf16 autocast is a real speed-up."""
    return bool({"amx_bf16", "avx512_bf16"} & cpu_flags())


def attention_kernels(device: torch.device) -> contextlib.AbstractContextManager:
    """On a GPU, torch's attention kernels without cuDNN's: it builds a plan for every new shape
    (0.1-0.3 s on an H200) and every length-sorted batch has a length of its own; training ran
    4.3x faster without it (bench/RESULTS.md, GPU). Elsewhere nothing changes."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    return sdpa_kernel(
        [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    )


# glibc's mallopt() parameters and its defaults for them (malloc.h, mallopt(3)).
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
DEFAULT_TRIM_THRESHOLD, DEFAULT_MMAP_MAX = 128 * 1024, 65536
NEVER_TRIM = 2**31 - 1  # the largest trim threshold mallopt takes (an int)
_held = 0  # how many reuse_freed_memory blocks are open
_held_lock = threading.Lock()


@cache
def _glibc() -> ctypes.CDLL | None:
    """The process's C library where it is glibc (its mallopt and malloc_trim are used)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    return ctypes.CDLL(None)


@contextlib.contextmanager
def reuse_freed_memory(device: torch.device) -> Iterator[None]:
    """On a CPU with glibc, freed memory stays in the process while the block runs, so the next
    tensor of that size reuses it: glibc otherwise maps large blocks (all over 32 MiB) afresh and
    unmaps them when freed, and every new activation tensor faults in and zeroes its pages again,
    which made softmax and attention dropout 2-3x slower than their work and torch-engine
    inference 1.3x slower (bench/RESULTS.md, Training and Inference). On leaving, glibc's
    defaults come back (its mmap threshold stops adapting, as after any mallopt) and the kept
    memory is returned."""
    global _held
    libc = _glibc()
    if libc is None or device.type != "cpu":
        yield
        return
    with _held_lock:
        if _held == 0:
            libc.mallopt(M_MMAP_MAX, 0)
            libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM)
        _held += 1
    try:
        yield
    finally:
        with _held_lock:
            _held -= 1
            if _held == 0:
                libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
                libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
                libc.malloc_trim(0)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a precision setting (`auto` picks what the hardware does fast)."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        if precision == "fp16" or not torch.cuda.is_bf16_supported():
            return torch.float16
        return torch.bfloat16
    check_precision(precision, device)
    return torch.bfloat16 if cpu_has_fast_bf16() else None


def checked_autocast(
    model: torch.nn.Module,
    inputs: dict[str, torch.Tensor],
    dtype: torch.dtype | None,
    precision: str = "auto",
) -> tuple[torch.dtype | None, str | None]:
    """`dtype`, or None (fp32) with the line that says why, where the model's code fails under
    that autocast (DeBERTa v1 fills bf16 scores with float32's minimum); an explicit
    `precision` is a ConfigError instead. Tried on `inputs` in eval mode: no random draws."""
    if dtype is None:
        return None, None
    training = model.training
    model.eval()
    try:
        with torch.no_grad(), torch.autocast(next(iter(inputs.values())).device.type, dtype=dtype):
            model(**inputs)
    except RuntimeError as exc:
        name, reason = str(dtype).removeprefix("torch."), str(exc).splitlines()[0]
        failure = f"the encoder fails under {name} autocast ({reason})"
        if precision != "auto":
            raise ConfigError(f"precision {precision}: {failure}; use fp32") from None
        return None, f"precision auto: {failure}; running in fp32"
    finally:
        model.train(training)
    return dtype, None


def check_precision(precision: str, device: torch.device | None = None) -> None:
    """Refuse fp16 where it cannot run (a CPU; by default this machine), before any work."""
    on_gpu = device.type == "cuda" if device is not None else torch.cuda.is_available()
    if precision == "fp16" and not on_gpu:
        raise ConfigError("precision fp16 needs a GPU; use bf16 or fp32 on a CPU")
