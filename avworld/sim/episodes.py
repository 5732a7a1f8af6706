"""Episode sampling as SoundSpaces does it: a navigable source, a start far enough by geodesic
distance, and a geodesic/Euclidean ratio above a threshold so that most episodes need
more than a straight walk."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from avworld.sim.navigation import GoalField, NavGrid


@dataclass
class EpisodeConfig:
    """Constraints on sampled episodes and on success (DESIGN.md defaults)."""

    min_geodesic: float = 4.0
    """Minimum geodesic start-to-source distance, metres."""
    max_geodesic: float | None = None
    """Maximum geodesic start-to-source distance, metres; None (the default, kept by the benchmark) for no limit. A training
    curriculum lowers it. None rather than ∞ keeps every file that records the settings standard JSON."""
    min_ratio: float = 1.1
    """Preferred minimum geodesic/Euclidean ratio; easier episodes are kept with ``easy_prob``."""
    easy_prob: float = 0.1
    success_distance: float = 1.0
    max_steps: int = 500

    def __post_init__(self) -> None:
        if self.max_geodesic == math.inf:
            self.max_geodesic = None
        if self.max_geodesic is not None and not self.max_geodesic >= self.min_geodesic:
            raise ValueError(f"episode.max_geodesic ({self.max_geodesic}) is below episode.min_geodesic ({self.min_geodesic})")
        if self.min_geodesic < 0 or self.success_distance <= 0 or self.max_steps < 1 or not 0 <= self.easy_prob <= 1:
            raise ValueError(f"invalid episode config {self}")


SLACK_REWARD = -0.01
SUCCESS_REWARD = 10.0


def step_reward(progress: float | np.ndarray, success: bool | np.ndarray) -> float | np.ndarray:
    """The reward of one step (DESIGN.md): the slack, the progress in geodesic distance (m), and the success bonus; of
    one step (floats) or of many at once (arrays, elementwise)."""
    return SLACK_REWARD + progress + SUCCESS_REWARD * success


class EpisodeSamplingError(RuntimeError):
    """No episode satisfying the constraints exists in a scene."""


def sample_episode(grid: NavGrid, rng: np.random.Generator, config: EpisodeConfig, tries: int = 8) -> tuple[np.ndarray, np.ndarray, float]:
    """Sample (source (2,), start (2,), start yaw) on ``grid``.

    The source is a random navigable cell; the start comes from :func:`sample_start`. A
    source with no start in range is redrawn, up to ``tries`` times.
    """
    free = np.flatnonzero(grid.free)
    if free.size == 0:
        raise EpisodeSamplingError("the scene has no navigable cell")
    nx = grid.shape[1]
    for _ in range(tries):
        s = int(rng.choice(free))
        source = grid.to_world(s // nx, s % nx)
        try:
            start, yaw = sample_start(grid, grid.goal_field((float(source[0]), float(source[1]))), rng, config)
        except EpisodeSamplingError:
            continue
        return source, start, yaw
    raise EpisodeSamplingError(f"no start {_range(config)} m (geodesic) from a source after {tries} tries")


def sample_start(grid: NavGrid, field: GoalField, rng: np.random.Generator, config: EpisodeConfig) -> tuple[np.ndarray, float]:
    """A start (2,) and yaw for the source of ``field``: a navigable cell whose geodesic distance lies in
    [``min_geodesic``, ``max_geodesic``]; with probability ``1 - easy_prob`` also with geodesic/Euclidean ratio ≥
    ``min_ratio`` when such cells exist. Raises :class:`EpisodeSamplingError` when no cell is in range."""
    free = np.flatnonzero(grid.free)
    nx = grid.shape[1]
    geo = field.field.ravel()[free]  # (F,)
    near = np.isfinite(geo) & (geo >= config.min_geodesic)
    if config.max_geodesic is not None:
        near &= geo <= config.max_geodesic
    if not near.any():
        raise EpisodeSamplingError(f"no navigable start {_range(config)} m (geodesic) from the source")
    pts = grid.to_world(free // nx, free % nx)  # (F, 2)
    ratio = geo / np.maximum(np.linalg.norm(pts - field.goal, axis=1), 1e-9)
    hard = near & (ratio >= config.min_ratio)
    pool = hard if hard.any() and rng.random() >= config.easy_prob else near
    k = int(rng.choice(np.flatnonzero(pool)))
    return pts[k], float(rng.uniform(-math.pi, math.pi))


def _range(config: EpisodeConfig) -> str:
    return f"at least {config.min_geodesic}" if config.max_geodesic is None else f"{config.min_geodesic}-{config.max_geodesic}"
