"""``avworld bench sim``: real-env steps per second (vision only, and with sound), render and impulse-response times."""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from typing import Any

import numpy as np

from avworld.envs.audio_nav import AudioNavEnv
from avworld.sim.acoustics.responses import SceneAcoustics
from avworld.sim.config import SimConfig


def run(
    sim: SimConfig, steps: int = 2000, render_frames: int = 500, audio_steps: int = 300, rirs: int = 20, seed: int = 0
) -> dict[str, Any]:
    """Step the env with random actions in one process; time the renderer and the acoustics alone too."""
    env = AudioNavEnv(split="train", sim=sim, sensors=("rgb",))
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    actions = rng.integers(1, 4, size=steps)  # no STOP: episodes then last until truncation
    resets = 0
    start = time.perf_counter()
    reset_time = 0.0
    for a in actions:
        _, _, terminated, truncated, _ = env.step(int(a))
        if terminated or truncated:
            t = time.perf_counter()
            env.reset()
            reset_time += time.perf_counter() - t
            resets += 1
    elapsed = time.perf_counter() - start
    sim_ = env.sim
    assert sim_ is not None
    poses = [(sim_.pose.x, sim_.pose.y, yaw) for yaw in rng.uniform(-np.pi, np.pi, render_frames)]
    t = time.perf_counter()
    for x, y, yaw in poses:
        sim_.renderer.render(x, y, yaw)
    render_ms = (time.perf_counter() - t) / render_frames * 1e3
    audio = _audio(sim, audio_steps, rirs, seed) if sim.acoustics.enabled else {}
    return {
        "target": "sim",
        "steps": steps,
        "steps_per_s": steps / (elapsed - reset_time),
        "steps_per_s_with_resets": steps / elapsed,
        "resets": resets,
        "reset_ms": reset_time / max(resets, 1) * 1e3,
        "render_ms": render_ms,
        **audio,
        "resolution": [sim.render.height, sim.render.width],
        "processes": 1,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": os.cpu_count(),
    }


def _audio(sim: SimConfig, steps: int, rirs: int, seed: int) -> dict[str, Any]:
    """Full steps (render + sound) over one episode's actions, cold then warm cache; cold impulse responses."""
    env = AudioNavEnv(split="train", sim=sim, sensors=("rgb", "audio"))
    actions = np.random.default_rng(seed).integers(1, 4, size=steps)
    rates = []
    for _ in range(2):  # the first pass fills the caches, the second finds every response there
        env.reset(seed=seed)
        start = time.perf_counter()
        for a in actions:
            env.step(int(a))
        rates.append(steps / (time.perf_counter() - start))
    sim_ = env.sim
    assert sim_ is not None
    acoustics = SceneAcoustics(sim_.scene, dataclasses.replace(sim.acoustics, cache_dir=None), sim.agent.height, sim_.grid)
    ii, jj = np.nonzero(sim_.grid.free)
    picks = np.random.default_rng(seed + 1).choice(len(ii), size=rirs, replace=False)
    source = (*sim_.scene.sources[0].position, sim_.scene.sources[0].height)
    times = []
    for k in picks:
        x, y = sim_.grid.to_world(ii[k], jj[k]).tolist()
        t = time.perf_counter()
        acoustics.impulse_response(source, x, y, 0.0)
        times.append((time.perf_counter() - t) * 1e3)
    return {
        "steps_per_s_audio": rates[1],
        "steps_per_s_audio_cold": rates[0],
        "audio_samples_per_step": sim_.step_samples,
        "rir_ms": float(np.mean(times)),
        "rir_ms_p95": float(np.percentile(times, 95)),
        "ism_order": sim.acoustics.ism_order,
    }
