"""Episode sampling as SoundSpaces does it: a navigable source, a start far enough by geodesic
distance, and a geodesic/Euclidean ratio above a threshold so that most episodes need
more than a straight walk."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from avworld.sim.navigation import NavGrid


@dataclass
class EpisodeConfig:
    """Constraints on sampled episodes and on success (DESIGN.md defaults)."""

    min_geodesic: float = 4.0
    """Minimum geodesic start-to-source distance, metres."""
    min_ratio: float = 1.1
    """Preferred minimum geodesic/Euclidean ratio; easier episodes are kept with ``easy_prob``."""
    easy_prob: float = 0.1
    success_distance: float = 1.0
    max_steps: int = 500

    def __post_init__(self) -> None:
        if self.min_geodesic < 0 or self.success_distance <= 0 or self.max_steps < 1 or not 0 <= self.easy_prob <= 1:
            raise ValueError(f"invalid episode config {self}")


SLACK_REWARD = -0.01
SUCCESS_REWARD = 10.0


def step_reward(progress: float, success: bool) -> float:
    """The reward of one step (DESIGN.md): the slack, the progress in geodesic distance (m), and the success bonus."""
    return SLACK_REWARD + progress + (SUCCESS_REWARD if success else 0.0)


class EpisodeSamplingError(RuntimeError):
    """No episode satisfying the constraints exists in a scene."""


def sample_episode(grid: NavGrid, rng: np.random.Generator, config: EpisodeConfig, tries: int = 8) -> tuple[np.ndarray, np.ndarray, float]:
    """Sample (source (2,), start (2,), start yaw) on ``grid``.

    The source is a random navigable cell; the start is drawn among navigable cells at
    least ``min_geodesic`` away. With probability ``1 - easy_prob`` the start is also
    required to have geodesic/Euclidean ratio ≥ ``min_ratio`` when such cells exist.
    """
    free = np.flatnonzero(grid.free)
    if free.size == 0:
        raise EpisodeSamplingError("the scene has no navigable cell")
    nx = grid.shape[1]
    for _ in range(tries):
        s = int(rng.choice(free))
        source = grid.to_world(s // nx, s % nx)
        field = grid.goal_field((float(source[0]), float(source[1])))
        geo = field.field.ravel()[free]  # (F,)
        far = np.isfinite(geo) & (geo >= config.min_geodesic)
        if not far.any():
            continue
        pts = grid.to_world(free // nx, free % nx)  # (F, 2)
        ratio = geo / np.maximum(np.linalg.norm(pts - source, axis=1), 1e-9)
        hard = far & (ratio >= config.min_ratio)
        pool = hard if hard.any() and rng.random() >= config.easy_prob else far
        k = int(rng.choice(np.flatnonzero(pool)))
        yaw = float(rng.uniform(-math.pi, math.pi))
        return source, pts[k], yaw
    raise EpisodeSamplingError(f"no start at least {config.min_geodesic} m (geodesic) from a source after {tries} tries")
