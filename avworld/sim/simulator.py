"""The built-in simulator backend: one scene's navigation, rendering and the agent's state.

A backend owns the physics of one scene: it places the agent, applies actions with
collision, renders what the agent sees and measures geodesic distances to the
episode's source. The Gymnasium env composes a backend (:func:`make_simulator` picks the
one ``sim.backend`` names); it never does physics itself. What all backends share is in
:mod:`avworld.sim.backend`; habitat-sim's backend is :mod:`avworld.sim.habitat`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from avworld.sim.acoustics import AcousticsConfig
from avworld.sim.backend import Action, Pose, SimulatorBackend, wrap_angle
from avworld.sim.episodes import EpisodeConfig
from avworld.sim.habitat import HabitatConfig, HabitatSimulator
from avworld.sim.navigation import AgentConfig, GoalField, NavGrid
from avworld.sim.renderer import RenderConfig, Renderer
from avworld.sim.scene import Scene
from avworld.sim.sounds import SoundLibrary

__all__ = ["BACKENDS", "Action", "BuiltinSimulator", "Pose", "ShortestPathFollower", "SimConfig", "make_simulator", "wrap_angle"]

BACKENDS = ("builtin", "habitat")


@dataclass
class SimConfig:
    """Everything that defines the real world's physics and sensors."""

    agent: AgentConfig = field(default_factory=AgentConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    episode: EpisodeConfig = field(default_factory=EpisodeConfig)
    acoustics: AcousticsConfig = field(default_factory=AcousticsConfig)
    nav_cell: float = 0.05
    """Occupancy grid resolution, metres (≤ 0.05)."""
    backend: str = "builtin"
    """Which simulator does the physics and the rendering: ``builtin`` or ``habitat`` (habitat-sim, docs/habitat.md)."""
    habitat: HabitatConfig = field(default_factory=HabitatConfig)
    """Settings of the habitat-sim backend; unused by the built-in one."""

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"sim.backend: unknown simulator backend {self.backend!r}; available: {', '.join(map(repr, BACKENDS))}")
        if self.backend == "habitat" and not self.habitat.scene:
            raise ValueError("sim.habitat.scene: required with sim.backend=habitat (a scene file, or a scene id of sim.habitat.dataset)")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SimConfig:
        """Build from a nested mapping (e.g. env kwargs); unknown keys raise naming them."""
        parts = {
            "agent": AgentConfig,
            "render": RenderConfig,
            "episode": EpisodeConfig,
            "acoustics": AcousticsConfig,
            "habitat": HabitatConfig,
        }
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in parts:
                known = {f.name for f in fields(parts[key])}
                unknown = sorted(set(value) - known)
                if unknown:
                    raise ValueError(f"sim.{key}.{unknown[0]}: unknown field; known: {', '.join(sorted(known))}")
                kwargs[key] = parts[key](**value)
            elif key in {f.name for f in fields(cls)}:
                kwargs[key] = value
            else:
                raise ValueError(f"sim.{key}: unknown field")
        return cls(**kwargs)


class BuiltinSimulator(SimulatorBackend):
    """Simulator of one scene: grid navigation, ray-cast rendering, room acoustics (numpy, scipy, pyroomacoustics)."""

    def __init__(self, scene: Scene, config: SimConfig, grid: NavGrid | None = None, library: SoundLibrary | None = None) -> None:
        super().__init__(scene, config, grid if grid is not None else NavGrid(scene, config.agent.radius, config.nav_cell), library)
        self.renderer = Renderer(scene, config.render, eye_height=config.agent.height)
        self.pose = Pose(*scene.start.position, wrap_angle(scene.start.yaw))
        self.source = np.asarray(scene.sources[0].position, float)
        self.field: GoalField = self.grid.goal_field(scene.sources[0].position)

    def set_episode(self, start: Pose, source: tuple[float, float]) -> None:
        """Place the agent and the target source; recompute the geodesic field if the source moved."""
        if not self.grid.navigable(np.array([start.x, start.y])):
            raise ValueError(f"start ({start.x:.3f}, {start.y:.3f}) is not navigable")
        if not np.array_equal(self.source, np.asarray(source, float)):
            self.source = np.asarray(source, float)
            self.field = self.grid.goal_field((float(source[0]), float(source[1])))
        self.pose = Pose(start.x, start.y, wrap_angle(start.yaw))

    def forward(self, pose: Pose) -> tuple[Pose, bool]:
        """The pose after a forward step on the grid (blocked moves slide along the obstacle), and whether it collided."""
        x, y, collided = self.grid.move(pose.x, pose.y, pose.yaw, self.config.agent.forward_step)
        return Pose(x, y, pose.yaw), collided

    def step(self, action: Action) -> bool:
        """Apply one action; return whether a forward move collided."""
        self.pose, collided = self.transition(self.pose, action)
        return collided

    def geodesic_distance(self, pose: Pose | None = None) -> float:
        """Geodesic distance (m) from the agent (or ``pose``) to the source."""
        p = pose or self.pose
        return float(self.field.distance(np.array([p.x, p.y])))

    def shortest_path(self, xy: tuple[float, float]) -> np.ndarray:
        """Shortest path (N, 2) from ``xy`` to the source on the grid, both ends included; empty if unreachable."""
        return self.field.path(xy)

    def clear_line(self, a: np.ndarray, b: np.ndarray) -> bool:
        """Whether every point of the segment a → b (each (2,)) is navigable, sampled every half cell."""
        n = max(2, int(np.linalg.norm(b - a) / (self.grid.cell / 2)))
        return bool(self.grid.navigable(a + np.linspace(0, 1, n)[:, None] * (b - a)).all())

    def render(self) -> tuple[np.ndarray, np.ndarray]:
        """rgb uint8 (H, W, 3) and depth float32 (H, W) from the agent's eyes."""
        return self.renderer.render(self.pose.x, self.pose.y, self.pose.yaw)


class ShortestPathFollower:
    """Greedy follower of the geodesic shortest path (the oracle behaviour).

    Aims at the farthest point of the shortest path, up to ``lookahead`` metres ahead,
    that is in straight navigable sight; turns while that aim is more than half a turn
    away, otherwise moves forward; stops once within the success distance, and at once
    where the source cannot be reached from the pose (no path to follow).
    """

    def __init__(self, sim: SimulatorBackend, lookahead: float = 1.5) -> None:
        self.sim, self.lookahead = sim, lookahead

    def action(self, pose: Pose | None = None) -> Action:
        sim = self.sim
        p = pose or sim.pose
        distance = sim.geodesic_distance(p)
        if distance <= sim.config.episode.success_distance or not math.isfinite(distance):
            return Action.STOP
        aim = self._aim(np.array([p.x, p.y]))
        error = wrap_angle(math.atan2(aim[1] - p.y, aim[0] - p.x) - p.yaw)
        half_turn = math.radians(sim.config.agent.turn_deg) / 2
        if error > half_turn:
            return Action.TURN_LEFT
        if error < -half_turn:
            return Action.TURN_RIGHT
        return Action.FORWARD

    def _aim(self, xy: np.ndarray) -> np.ndarray:
        path = self.sim.shortest_path((float(xy[0]), float(xy[1])))  # (N, 2)
        along = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])
        candidates = path[(along <= self.lookahead) & (along > 0)][::-1]
        for c in candidates:
            if self.sim.clear_line(xy, c):
                return c
        return path[min(1, len(path) - 1)]

    def count_actions(self, start: Pose, max_steps: int) -> int:
        """Number of actions (STOP included) the follower takes from ``start``; runs on a scratch pose."""
        pose = start
        for n in range(1, max_steps + 1):
            act = self.action(pose)
            if act == Action.STOP:
                return n
            pose, _ = self.sim.transition(pose, act)
        return max_steps


def make_simulator(scene: Scene | None, config: SimConfig) -> SimulatorBackend:
    """The simulator backend ``config.backend`` names.

    ``builtin`` simulates ``scene``; ``habitat`` simulates the scanned scene of
    ``sim.habitat.scene`` with habitat-sim (imported only then), so ``scene`` must be None.
    """
    if config.backend == "habitat":
        if scene is not None:
            raise ValueError("sim.backend=habitat simulates the scene of sim.habitat.scene; pass no avworld scene")
        return HabitatSimulator(config)
    if scene is None:
        raise ValueError("the built-in simulator needs a scene")
    return BuiltinSimulator(scene, config)
