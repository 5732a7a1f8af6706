"""The built-in simulator backend: one scene's navigation, rendering and the agent's state.

A backend owns the physics of one scene: it places the agent, applies actions with
collision, renders what the agent sees and measures geodesic distances to the
episode's source. The Gymnasium env composes a backend; it never does physics itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import Any

import numpy as np

from avworld.sim.acoustics import AcousticsConfig, SceneAcoustics
from avworld.sim.audio import AudioRenderer, Emitter
from avworld.sim.episodes import EpisodeConfig
from avworld.sim.navigation import AgentConfig, GoalField, NavGrid
from avworld.sim.renderer import RenderConfig, Renderer
from avworld.sim.scene import Scene
from avworld.sim.sounds import HEARD, UNHEARD, SoundLibrary

DISTRACTOR_HEIGHT = 1.0


class Action(IntEnum):
    """The discrete actions of DESIGN.md."""

    STOP = 0
    FORWARD = 1
    TURN_LEFT = 2
    TURN_RIGHT = 3


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

    def __post_init__(self) -> None:
        if self.backend != "builtin":
            raise ValueError(f"sim.backend: unknown simulator backend {self.backend!r}; available: 'builtin'")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SimConfig:
        """Build from a nested mapping (e.g. env kwargs); unknown keys raise naming them."""
        parts = {"agent": AgentConfig, "render": RenderConfig, "episode": EpisodeConfig, "acoustics": AcousticsConfig}
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


@dataclass
class Pose:
    """Agent pose: position (m) and yaw (radians in (-π, π], 0 faces +x, counter-clockwise positive)."""

    x: float
    y: float
    yaw: float

    def as_array(self) -> np.ndarray:
        return np.array([self.x, self.y, self.yaw], dtype=np.float64)


def wrap_angle(a: float) -> float:
    """Angle wrapped to (-π, π]."""
    a = math.remainder(a, 2 * math.pi)
    return math.pi if a == -math.pi else a


class BuiltinSimulator:
    """Simulator of one scene: grid navigation, ray-cast rendering, room acoustics (numpy, scipy, pyroomacoustics)."""

    def __init__(self, scene: Scene, config: SimConfig, grid: NavGrid | None = None, library: SoundLibrary | None = None) -> None:
        self.scene, self.config = scene, config
        self.grid = grid if grid is not None else NavGrid(scene, config.agent.radius, config.nav_cell)
        self.renderer = Renderer(scene, config.render, eye_height=config.agent.height)
        ac = config.acoustics
        self.library = library if library is not None else SoundLibrary(ac.fs, user_files=dict(ac.user_sounds))
        self.step_samples = round(config.agent.step_time * ac.fs)
        self.audio: AudioRenderer | None = None
        """Built on the first :meth:`start_audio`: a world nobody listens to costs no acoustics."""
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

    def transition(self, pose: Pose, action: Action) -> tuple[Pose, bool]:
        """The pose after ``action`` from ``pose`` and whether a forward move collided; changes nothing."""
        a = self.config.agent
        if action == Action.FORWARD:
            x, y, collided = self.grid.move(pose.x, pose.y, pose.yaw, a.forward_step)
            return Pose(x, y, pose.yaw), collided
        if action in (Action.TURN_LEFT, Action.TURN_RIGHT):
            sign = 1.0 if action == Action.TURN_LEFT else -1.0
            return Pose(pose.x, pose.y, wrap_angle(pose.yaw + sign * math.radians(a.turn_deg))), False
        return pose, False

    def step(self, action: Action) -> bool:
        """Apply one action; return whether a forward move collided."""
        self.pose, collided = self.transition(self.pose, action)
        return collided

    def start_audio(self, rng: np.random.Generator) -> np.ndarray:
        """Start the episode's sound (source loop variation, distractors); the first step's audio (2, N) float32."""
        ac = self.config.acoustics
        if not ac.enabled:
            raise RuntimeError("acoustics are disabled (sim.acoustics.enabled=false)")
        if self.audio is None:
            self.audio = AudioRenderer(SceneAcoustics(self.scene, ac, self.config.agent.height, self.grid), self.step_samples)
        target = self.scene.sources[0]
        emitters = [Emitter((*target.position, target.height), self.library.signal(target.sound, int(rng.integers(2**31))))]
        pool = [c for c in {"heard": HEARD, "unheard": UNHEARD, "all": HEARD + UNHEARD}[ac.sounds] if c != target.sound]
        if ac.distractors:
            ii, jj = np.nonzero(self.grid.free)
            for k in rng.choice(len(ii), size=ac.distractors, replace=False):
                x, y = self.grid.to_world(ii[k], jj[k]).tolist()
                sound = pool[int(rng.integers(len(pool)))]
                emitters.append(Emitter((x, y, DISTRACTOR_HEIGHT), self.library.signal(sound, int(rng.integers(2**31)))))
        return self.audio.start(emitters, self._head(), int(rng.integers(2**31)))

    def hear(self, action: Action, collided: bool) -> np.ndarray:
        """The audio (2, N) float32 of the step just taken: sources, plus a footstep on FORWARD and a bump on collision."""
        if self.audio is None:
            raise RuntimeError("hear() before start_audio()")
        events = (("footstep",) if action == Action.FORWARD else ()) + (("bump",) if collided else ())
        return self.audio.step(self._head(), events)

    def _head(self) -> tuple[float, float, float]:
        return (self.pose.x, self.pose.y, self.pose.yaw)

    def geodesic_distance(self, pose: Pose | None = None) -> float:
        """Geodesic distance (m) from the agent (or ``pose``) to the source."""
        p = pose or self.pose
        return float(self.field.distance(np.array([p.x, p.y])))

    def render(self) -> tuple[np.ndarray, np.ndarray]:
        """rgb uint8 (H, W, 3) and depth float32 (H, W) from the agent's eyes."""
        return self.renderer.render(self.pose.x, self.pose.y, self.pose.yaw)


class ShortestPathFollower:
    """Greedy follower of the geodesic shortest path (the oracle behaviour).

    Aims at the farthest point of the shortest path, up to ``lookahead`` metres ahead,
    that is in straight navigable sight; turns while that aim is more than half a turn
    away, otherwise moves forward; stops once within the success distance.
    """

    def __init__(self, sim: BuiltinSimulator, lookahead: float = 1.5) -> None:
        self.sim, self.lookahead = sim, lookahead

    def action(self, pose: Pose | None = None) -> Action:
        sim = self.sim
        p = pose or sim.pose
        if sim.geodesic_distance(p) <= sim.config.episode.success_distance:
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
        path = self.sim.field.path((float(xy[0]), float(xy[1])))  # (N, 2)
        along = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])
        candidates = path[(along <= self.lookahead) & (along > 0)][::-1]
        for c in candidates:
            n = max(2, int(np.linalg.norm(c - xy) / (self.sim.grid.cell / 2)))
            if self.sim.grid.navigable(xy + np.linspace(0, 1, n)[:, None] * (c - xy)).all():
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
