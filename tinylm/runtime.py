"""The runtime: which device, which precision, how many processes — decided once, passed around.

Nothing is decided at import time. `Runtime.create()` reads the config (and the torchrun
environment variables when they are set) and every stage receives the resulting object.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import time
from dataclasses import dataclass

import numpy as np
import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}

# Dense bf16 tensor-core peaks (FLOP/s, no sparsity) for MFU on known GPUs. Unknown GPUs and every
# CPU use a matmul ceiling measured at start-up instead of a guess.
GPU_PEAK_BF16 = {
    "H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12,
    "A10": 125e12, "RTX 4090": 165e12, "RTX 3090": 71e12,
}


def resolve_dtype(name: str, device: torch.device) -> str:
    """Resolve the autocast dtype name "auto" for `device`; other names pass through.

    CUDA: bf16 where the GPU supports it, else fp16. CPU: bf16 only when oneDNN has native bf16
    kernels (AVX512-BF16 or AMX). On an AVX2-only CPU bf16 is emulated: a 1m training step ran 14x
    slower than fp32 on an AMD EPYC Zen 3 (bench/results/cpu_choices_avx2.log), so fp32 there. MPS: fp32.
    """
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu":
        try:
            native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            native = False
        return "bf16" if native else "fp32"
    return "fp32"


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def measure_matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 1024, seconds: float = 0.5,
                        rounds: int = 3) -> float:
    """Achieved FLOP/s of a square matmul in `dtype`: the ceiling MFU is quoted against.

    The best of `rounds` timings: another job holding the CPU for a moment can only make a round
    slower, and a ceiling measured too low would report an impossible MFU. The operands come from a
    private generator, so measuring never moves the global RNG (a resumed run must draw exactly the
    numbers the uninterrupted one draws)."""
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=g)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=g)
    for _ in range(3):
        a @ b
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    best = 0.0
    for _ in range(rounds):
        sync()
        t0, k = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds / rounds:
            a @ b
            k += 1
        sync()
        best = max(best, 2 * n**3 * k / (time.perf_counter() - t0))
    return best


@functools.lru_cache(maxsize=None)
def peak_flops(device: torch.device, dtype: torch.dtype) -> tuple[float, str]:
    """(peak FLOP/s, where the number came from), measured once per process and device."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, flops in GPU_PEAK_BF16.items():
            if key in name and dtype in (torch.bfloat16, torch.float16):
                return flops, f"datasheet bf16 dense peak of {name}"
    n = 2048 if device.type == "cuda" else 1024
    return measure_matmul_peak(device, dtype, n=n), f"measured {n}x{n} {str(dtype).replace('torch.', '')} matmul"


def remeasure_peak(device: torch.device, dtype: torch.dtype, old: float) -> tuple[float, str]:
    """A measured peak that an observed throughput exceeds was measured while something else held
    the machine: measure again and keep the larger."""
    peak_flops.cache_clear()
    new, src = peak_flops(device, dtype)
    return max(new, old), src + " (re-measured)"


@dataclass
class Runtime:
    device: torch.device
    dtype: torch.dtype  # autocast dtype (fp32 = autocast off)
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @classmethod
    def create(cls, device: str = "auto", dtype: str = "auto", threads: int = 0) -> "Runtime":
        if dtype != "auto" and dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; choose from auto, {', '.join(DTYPES)}")
        if threads > 0:
            torch.set_num_threads(threads)
        rank = int(os.environ.get("RANK", 0))
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        world = int(os.environ.get("WORLD_SIZE", 1))
        dev = resolve_device(device)
        if dev.type == "cuda" and world > 1:
            dev = torch.device("cuda", local_rank)
            torch.cuda.set_device(dev)
        dt = DTYPES[resolve_dtype(dtype, dev)]
        if dt == torch.float16 and dev.type == "cpu":
            raise ValueError("fp16 autocast is for GPUs; use bf16 on CPU")
        if dev.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        if world > 1:  # launched by torchrun: one process per device (or per CPU slice, with gloo)
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        return cls(dev, dt, rank, local_rank, world)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
