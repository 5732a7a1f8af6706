"""Navigation protocol: run a policy for N episodes and aggregate SoundSpaces' metrics.

- SR: fraction of episodes that end with STOP within the success distance.
- SPL: success weighted by (shortest geodesic length / max(path length, shortest)).
- SNA: success weighted by (optimal number of actions / max(actions taken, optimal)).
- DTG: geodesic distance to the source at episode end (metres).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from avworld.policies.base import Policy

METRICS = ("success", "spl", "sna", "dtg")


@dataclass
class NavigationResult:
    """Per-episode metrics and their means."""

    episodes: list[dict[str, float]]

    def summary(self) -> dict[str, float]:
        """Mean of each metric (keys SR, SPL, SNA, DTG) and the episode count."""
        names = {"success": "SR", "spl": "SPL", "sna": "SNA", "dtg": "DTG"}
        out = {names[m]: float(np.mean([e[m] for e in self.episodes])) for m in METRICS}
        out["episodes"] = float(len(self.episodes))
        return out


def evaluate_navigation(
    env: gym.Env[Any, Any],
    policy: Policy,
    episodes: int,
    seed: int = 0,
    on_episode: Callable[[int, dict[str, float]], None] | None = None,
    done: Sequence[dict[str, float]] = (),
) -> NavigationResult:
    """Run ``episodes`` episodes; episode ``i`` resets with ``seed + i`` (so results are reproducible). ``done``: the
    metrics of the first episodes, already run (an interrupted evaluation resumed): the run continues after them, and
    as every policy is seeded per episode (``policy.reset(env, seed=seed + i)``) it ends as an uninterrupted one."""
    if episodes < 1:
        raise ValueError(f"episodes must be ≥ 1, got {episodes}")
    results = [dict(e) for e in done[:episodes]]
    for i in range(len(results), episodes):
        obs, info = env.reset(seed=seed + i)
        policy.reset(env, seed=seed + i)
        while True:
            obs, _, terminated, truncated, info = env.step(policy.act(obs, info))
            if terminated or truncated:
                break
        metrics = dict(info["metrics"], scene_seed=info.get("scene_seed"))
        results.append(metrics)
        if on_episode is not None:
            on_episode(i, metrics)
    return NavigationResult(results)
