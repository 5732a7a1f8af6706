"""The built-in simulator backend: one scene's navigation, rendering and the agent's state.

A backend owns the physics of one scene: it places the agent, applies actions with
collision, renders what the agent sees and measures geodesic distances to the
episode's source. The Gymnasium env composes a backend (:func:`avworld.sim.backends.make_simulator`
picks the one ``sim.backend`` names); it never does physics itself. What all backends share is in
:mod:`avworld.sim.backends.base`; habitat-sim's backend is :mod:`avworld.sim.backends.habitat`.
"""

from __future__ import annotations

import numpy as np

from avworld.sim.acoustics.sounds import SoundLibrary
from avworld.sim.backends.base import Action, Pose, SimulatorBackend, wrap_angle
from avworld.sim.config import SimConfig
from avworld.sim.navigation import GoalField, NavGrid
from avworld.sim.renderer import Renderer
from avworld.sim.scenes.scene import Scene


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
