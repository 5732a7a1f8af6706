"""``avworld bench dream``: imagined steps/s of the Dream-v0 vector env per preset, batch, mode and device, against the real env.

The world models are untrained presets with tiny (untrained) tokenizers, built in memory:
speed does not depend on weights. Each vector env starts from random context (no real
episode) and steps with moves only (never STOP) under a long horizon, so no world
restarts while timed: the figures are pure imagination (noise, one batched sampler call
of ``sampler_steps`` net evaluations, context update and, in decoded mode, decoding and
the copy-out of observations). GPU timings wait for the device before each clock read.
``net_mfu`` counts the world model's matmul FLOPs alone (its context once and the target at
each sampler step, :func:`avworld.models.av_cdit.forward_flops`), not the tokenizers'.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from typing import Any

import numpy as np
import torch

from avworld.bench.model import chip_peak, synchronize
from avworld.envs.audio_nav import AudioNavEnv
from avworld.envs.dream_vector import DreamVectorEnv
from avworld.models.av_cdit import forward_flops
from avworld.models.flow import WorldModel
from avworld.models.imagination import TOKENIZERS, Imagination
from avworld.models.precision import compiled
from avworld.models.registry import build, encode, preset
from avworld.sim.acoustics.responses import ACOUSTICS_VERSION
from avworld.sim.config import SimConfig

MODES = ("decoded", "latent")


def imagination(name: str, tokenizers: str, sim: SimConfig, device: torch.device, amp: bool = False, compile: bool = False) -> Imagination:
    """An untrained world model of AV-CDiT preset ``name`` with untrained ``tokenizers``-sized tokenizers, for ``sim``'s shapes.

    ``amp``: decode under bf16 autocast where it pays; ``compile``: ``torch.compile`` the sampler's net
    (:meth:`AVCDiT.compile_velocity`, CUDA graphs) and the decoders, each falling back to eager if it fails.
    """
    torch.manual_seed(0)
    n = round(sim.agent.step_time * sim.acoustics.fs)
    rgb_shape, audio_shape = [sim.render.height, sim.render.width, 3], [2, n]
    video = build("video_vae", preset("video_vae", tokenizers, image_size=sim.render.height)).eval()
    audio = build("audio_codec", preset("audio_codec", tokenizers, samples=n)).eval()
    with torch.no_grad():
        video_latent = tuple(encode(video, TOKENIZERS["video"], torch.zeros(1, *rgb_shape, dtype=torch.uint8)).shape[1:])
        audio_latent = tuple(encode(audio, TOKENIZERS["audio"], torch.zeros(1, *audio_shape)).shape[1:])
    config = preset("world_model", name)
    config = dataclasses.replace(config, net=dataclasses.replace(config.net, video_latent=video_latent, audio_latent=audio_latent))
    model = build("world_model", config)
    assert isinstance(model, WorldModel)
    meta = {
        "latent": {m: {"mean": 0.0, "std": 1.0} for m in ("video", "audio")},
        "rgb_shape": rgb_shape,
        "audio_shape": audio_shape,
        "sample_rate": sim.acoustics.fs,
        "sim": dataclasses.asdict(sim),
        "acoustics_version": ACOUSTICS_VERSION,
    }
    world = Imagination(model, {"video": video, "audio": audio}, meta, device, amp=amp)
    if compile:
        world.net.compile_velocity()
        for m, tokenizer in world.tokenizers.items():
            tokenizer.decode = compiled(tokenizer.decode, "max-autotune-no-cudagraphs", f"the {m} decoder")  # type: ignore[method-assign]
    return world


def _imagined_steps_per_s(world: Imagination, batch: int, latent: bool, sampler_steps: int, repeats: int, warmup: int = 1) -> float:
    """World-steps per second of a ``batch``-world vector env over ``repeats`` timed steps (after ``warmup`` untimed ones)."""
    envs = DreamVectorEnv(batch, checkpoint=world, sampler_steps=sampler_steps, latent=latent, max_steps=10**9)
    rng = np.random.default_rng(0)
    m = world.context
    h, w, _ = world.meta["rgb_shape"]
    context = {
        "rgb": rng.integers(0, 256, (batch, m, h, w, 3), dtype=np.uint8),
        "audio": rng.uniform(-0.1, 0.1, (batch, m, *world.meta["audio_shape"])).astype(np.float32),
    }
    envs.reset(seed=0, options={"context": context})
    actions = rng.integers(1, 4, size=(repeats + warmup, batch))  # moves only: no episode ends while timed
    for a in actions[:warmup]:
        envs.step(a)
    synchronize(world.device)
    start = time.perf_counter()
    for a in actions[warmup:]:
        envs.step(a)
    synchronize(world.device)
    return batch * repeats / (time.perf_counter() - start)


def real_steps_per_s(sim: SimConfig, steps: int, seed: int = 0) -> float:
    """Steps per second of ``AudioNav-v0`` with rgb and audio under random moves (resets included, the first excluded)."""
    env = AudioNavEnv(split="test", sensors=("rgb", "audio"), sim=sim)
    env.reset(seed=seed)
    actions = np.random.default_rng(seed).integers(1, 4, size=steps)
    start = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = env.step(int(a))
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def run(
    sim: SimConfig,
    presets: tuple[str, ...] = ("tiny", "small"),
    tokenizers: str = "tiny",
    batches: tuple[int, ...] = (1, 16, 64, 256),
    sampler_steps: int = 4,
    world_steps: int = 256,
    min_repeats: int = 2,
    max_repeats: int = 30,
    real_steps: int = 200,
    devices: tuple[str, ...] = ("auto",),
    modes: tuple[str, ...] = MODES,
    amp: bool = False,
    compile: bool = False,
    peak_tflops: float | None = None,
) -> dict[str, Any]:
    """Time the Dream-v0 vector env per preset, device, mode and batch, and the real env (``real_steps`` > 0).

    A batch of B is timed over clip(world_steps // B, min_repeats, max_repeats) steps: fewer repeats for large batches.
    ``devices``: "auto" is cpu, and cuda when present; or name them ("cuda" alone skips the slow CPU rows on a GPU machine).
    ``modes``: "decoded" and/or "latent". ``amp``: decode under bf16 autocast where it pays (CUDA, CPUs with bf16
    hardware; :class:`Imagination`'s ``amp``). ``compile``: see :func:`imagination`. ``peak_tflops``: as ``avworld bench
    model``'s.
    """
    real = real_steps_per_s(sim, real_steps) if real_steps > 0 else None
    names = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])] if tuple(devices) == ("auto",) else list(devices)
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"modes must be among {MODES}, got {unknown}")
    results: dict[str, Any] = {}
    for name in presets:
        entry: dict[str, Any] = {}
        for device in map(torch.device, names):
            world = imagination(name, tokenizers, sim, device, amp, compile)
            flops = forward_flops(world.net.config)
            step_flops = flops["context"] + sampler_steps * flops["target"]
            peak = chip_peak(device, "fp32", peak_tflops)  # the world model samples in float32
            entry["parameters"] = sum(p.numel() for p in world.net.parameters())
            entry["net_flops_per_step"] = step_flops
            per_mode: dict[str, Any] = {}
            for mode in modes:
                per_batch = {}
                for b in batches:
                    repeats = int(np.clip(world_steps // b, min_repeats, max_repeats))
                    speed = _imagined_steps_per_s(world, b, mode == "latent", sampler_steps, repeats, 3 if compile else 1)
                    per_batch[f"batch{b}"] = {
                        "steps_per_s": speed,
                        "vs_real": speed / real if real else None,
                        "net_mfu": speed * step_flops / (peak * 1e12) if peak else None,
                    }
                per_mode[mode] = per_batch
            entry[device.type] = per_mode
        results[name] = entry
    n = round(sim.agent.step_time * sim.acoustics.fs)
    return {
        "target": "dream",
        "real_steps_per_s": real,
        "presets": results,
        "tokenizers": tokenizers,
        "sampler_steps": sampler_steps,
        "batches": list(batches),
        "amp": amp,
        "compile": compile,
        "device_name": torch.cuda.get_device_name() if "cuda" in names else platform.processor() or platform.machine(),
        "observation": {"rgb": [sim.render.height, sim.render.width, 3], "audio": [2, n]},
        "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": os.cpu_count(),
    }
