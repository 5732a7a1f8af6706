"""``avworld bench model``: AV-CDiT parameters, training samples/s and imagined steps/s per preset, with FLOPs and MFU.

Inputs are random latents of the default shapes (video 4×8×8 per frame for 64×64
frames, audio 16×20 per step, m = 4 context steps): speed does not depend on values.
GPU timings wait for the device (``torch.cuda.synchronize``) before reading the clock.
Model FLOPs utilisation (MFU, as in PaLM, Chowdhery et al. 2022) divides the model's
matmul FLOPs per second (:func:`avworld.models.av_cdit.forward_flops`: a training step
counts 3× a forward pass, an imagined step the context once and the target at each
sampler step) by the chip's dense peak at that precision.
"""

from __future__ import annotations

import os
import platform
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch

from avworld.models.av_cdit import AV_CDIT_PRESETS, AVCDiT, count_parameters, forward_flops
from avworld.models.flow import FlowConfig, WorldModel, sample
from avworld.models.imagination import choose_device
from avworld.models.precision import compiled

PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H200": {"bf16": 989.0, "fp32": 67.0},
    "H100": {"bf16": 989.0, "fp32": 67.0},
    "A100": {"bf16": 312.0, "fp32": 19.5},
    "L40S": {"bf16": 362.0, "fp32": 91.6},
    "L4": {"bf16": 121.0, "fp32": 30.3},
}
"""Dense (no sparsity) peak TFLOP/s per chip (SXM parts) from the vendors' data sheets, by a name in ``torch.cuda.get_device_name``.
fp32 is plain fp32 (torch leaves TF32 off for matmuls by default)."""
PRECISIONS = ("fp32", "bf16")


def chip_peak(device: torch.device, precision: str, given: float | None = None) -> float | None:
    """The dense peak of ``device`` at ``precision``: ``given`` when set, else :data:`PEAK_TFLOPS`'s entry; None if unknown (CPUs)."""
    if given is not None:
        return given
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peaks[precision] for chip, peaks in PEAK_TFLOPS.items() if chip in name), None)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on CPU), so a clock read after it times the work itself."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], repeats: int, device: torch.device, warmup: int = 1) -> float:
    """Seconds per call of ``fn`` over ``repeats`` calls after ``warmup`` untimed ones, the device synchronised at both ends."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / repeats


def autocast(device: torch.device, precision: str) -> Any:
    """bf16 autocast for ``precision`` "bf16", else nothing."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()


def _batch(net: AVCDiT, b: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    c = net.config
    vc, vh, vw = c.video_latent
    ac, an = c.audio_latent
    return {
        "ctx_video": torch.randn(b, c.context, vc, vh, vw, generator=g),
        "ctx_audio": torch.randn(b, c.context, ac, an, generator=g),
        "video": torch.randn(b, vc, vh, vw, generator=g),
        "audio": torch.randn(b, ac, an, generator=g),
        "action": torch.randint(0, c.actions, (b,), generator=g),
        "reward": torch.randn(b, generator=g),
        "termination": torch.zeros(b),
    }


def _mfu(flops_per_s: float, peak: float | None) -> float | None:
    return flops_per_s / (peak * 1e12) if peak else None


def _timings(
    name: str,
    precision: str,
    train_batch: int,
    batches: tuple[int, ...],
    sampler_steps: int,
    repeats: int,
    device: torch.device,
    compile: bool,
) -> dict[str, float]:
    """Seconds of a training step at ``train_batch`` ("train") and of an imagined step at each batch b ("imagine<b>")."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = AVCDiT(AV_CDIT_PRESETS[name]).to(device)
    model = WorldModel(net, FlowConfig())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, **({"fused": True} if device.type == "cuda" else {}))
    batch = {k: v.to(device) for k, v in _batch(net, train_batch, g).items()}
    step = {"loss": compiled(model, what=f"the {name} training step") if compile else model}
    warmup = 3 if compile else 1  # compiling, then recording CUDA graphs, takes the first calls

    def train_step() -> None:
        with autocast(device, precision):
            loss, _ = step["loss"](batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    if compile:  # the backward pass compiles at its first call, outside the guard of ``compiled``
        try:
            train_step()
        except Exception as error:
            warnings.warn(f"the compiled {name} training step failed ({type(error).__name__}: {error}); timing it eagerly", stacklevel=1)
            step["loss"] = model
    seconds = {"train": time_call(train_step, repeats, device, warmup)}
    net.eval()
    sampler = compiled(sample, "reduce-overhead", f"the {name} sampler") if compile else sample
    for b in batches:
        x = {k: v.to(device) for k, v in _batch(net, b, g).items()}

        def imagine(x: dict[str, torch.Tensor] = x) -> None:
            with torch.no_grad(), autocast(device, precision):
                sampler(net, x["ctx_video"], x["ctx_audio"], x["action"], steps=sampler_steps)

        seconds[f"imagine{b}"] = time_call(imagine, repeats, device, warmup)
    return seconds


def _figures(
    name: str,
    train_batch: int,
    batches: tuple[int, ...],
    sampler_steps: int,
    repeats: int,
    device: torch.device,
    precisions: tuple[str, ...],
    compile: bool,
    peak: float | None,
) -> dict[str, Any]:
    config = AV_CDIT_PRESETS[name]
    flops = forward_flops(config)
    train_flops = 3 * (flops["context"] + flops["target"])
    step_flops = flops["context"] + sampler_steps * flops["target"]
    out: dict[str, Any] = {
        "parameters": count_parameters(config),
        "flops_per_sample": {"train_step": train_flops, "imagined_step": step_flops},
    }
    for precision in precisions:
        suffix = "" if precision == "fp32" else f"_{precision}"
        chip = chip_peak(device, precision, peak)
        seconds = _timings(name, precision, train_batch, batches, sampler_steps, repeats, device, compile)
        out[f"train_samples_per_s{suffix}"] = train_batch / seconds["train"]
        out[f"train_mfu{suffix}"] = _mfu(train_batch * train_flops / seconds["train"], chip)
        for b in batches:
            out[f"imagined_steps_per_s_batch{b}{suffix}"] = b / seconds[f"imagine{b}"]
            out[f"imagined_step_ms_batch{b}{suffix}"] = 1e3 * seconds[f"imagine{b}"]
            out[f"imagined_mfu_batch{b}{suffix}"] = _mfu(b * step_flops / seconds[f"imagine{b}"], chip)
    return out


def run(
    presets: tuple[str, ...] = ("tiny", "small"),
    train_batch: int = 16,
    batches: tuple[int, ...] = (1, 64),
    sampler_steps: int = 4,
    repeats: int = 3,
    precisions: tuple[str, ...] = ("fp32",),
    compile: bool = False,
    peak_tflops: float | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Time a training step (forward, backward, AdamW) and one imagined step (``sampler_steps`` Euler steps) per preset.

    ``precisions``: "fp32" and/or "bf16" (autocast); fp32 figures keep the plain key names, others get a ``_<precision>``
    suffix. ``compile``: ``torch.compile`` the training step and the sampler (CUDA graphs), falling back to eager on failure.
    ``peak_tflops``: the chip's dense peak for MFU, instead of :data:`PEAK_TFLOPS` (MFU is null where neither gives one).
    ``device``: "auto" (CUDA when present), "cpu" or "cuda".
    """
    dev = choose_device(device)
    results = {
        name: _figures(name, train_batch, batches, sampler_steps, repeats, dev, tuple(precisions), compile, peak_tflops) for name in presets
    }
    return {
        "target": "model",
        "presets": results,
        "sampler_steps": sampler_steps,
        "train_batch": train_batch,
        "batches": list(batches),
        "precisions": list(precisions),
        "compile": compile,
        "peak_tflops": {p: chip_peak(dev, p, peak_tflops) for p in precisions},
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": os.cpu_count(),
    }
