"""``avworld bench sim``: real-env steps per second and render time per frame."""

from __future__ import annotations

import os
import platform
import time
from typing import Any

import numpy as np

from avworld.envs.audio_nav import AudioNavEnv
from avworld.sim.simulator import SimConfig


def run(sim: SimConfig, steps: int = 2000, render_frames: int = 500, seed: int = 0) -> dict[str, Any]:
    """Step the env with random actions in one process; time the renderer alone too."""
    env = AudioNavEnv(split="train", sim=sim)
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
    return {
        "target": "sim",
        "steps": steps,
        "steps_per_s": steps / (elapsed - reset_time),
        "steps_per_s_with_resets": steps / elapsed,
        "resets": resets,
        "reset_ms": reset_time / max(resets, 1) * 1e3,
        "render_ms": render_ms,
        "resolution": [sim.render.height, sim.render.width],
        "processes": 1,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": os.cpu_count(),
    }
