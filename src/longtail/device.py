"""Choosing the device, the precision and the thread count."""

from __future__ import annotations

import contextlib
from functools import lru_cache

import torch

from longtail.config import PRECISIONS
from longtail.errors import LongtailError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise LongtailError("--device cuda was asked for, but PyTorch sees no CUDA device here")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise LongtailError(f"device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


@lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True where the CPU multiplies bf16 natively (AVX512-BF16 or AMX): only there does
    bf16 autocast speed training up; elsewhere it is emulated and slower than fp32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(name: str, device: torch.device) -> str:
    if name in PRECISIONS:
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock timings measure work done, not work queued."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
