"""Speed settings shared by training and imagination: where bf16 arithmetic pays (CUDA, and CPUs that do it in hardware),
and ``torch.compile`` guarded so that a failure to compile costs speed, never the run."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch


def cpu_has_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic in hardware (x86 ``amx_bf16`` or ``avx512_bf16`` in ``/proc/cpuinfo``).

    Elsewhere bf16 is emulated and slower than float32, so ``cpu_amp`` keeps float32 there. On a 2-core Xeon with AMX,
    bf16 autocast trains the small video autoencoder 1.4x faster (docs/benchmarks.md)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def bf16_pays(device: torch.device) -> bool:
    """Whether bf16 autocast on ``device`` runs in hardware: CUDA, or a CPU for which :func:`cpu_has_bf16` holds."""
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())


def compiled(fn: Callable[..., Any], mode: str | None = None, what: str = "function") -> Callable[..., Any]:
    """``torch.compile(fn, mode=mode)`` that falls back to ``fn`` for good, with a warning, when compiling fails.

    torch.compile compiles at the first call (and again for new shapes), so the guard sits around the calls: when the compiled
    call raises, the call runs eagerly; if that succeeds, the compiler was at fault and ``fn`` runs eagerly from then on, else
    the error is ``fn``'s own and raises. A compiled backward pass compiles at its first call, after this guard: a caller
that trains catches that itself. ``mode="reduce-overhead"`` also records CUDA graphs of fixed-shape calls.
    """
    state: dict[str, Any] = {"fn": torch.compile(fn, mode=mode)}

    def call(*args: Any, **kwargs: Any) -> Any:
        if state["fn"] is fn:
            return fn(*args, **kwargs)
        try:
            return state["fn"](*args, **kwargs)
        except Exception as error:
            result = fn(*args, **kwargs)
            warnings.warn(f"torch.compile of {what} failed ({type(error).__name__}: {error}); running it eagerly", stacklevel=2)
            state["fn"] = fn
            return result

    return call
