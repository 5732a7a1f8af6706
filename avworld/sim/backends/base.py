"""What every simulator backend shares: the actions, the agent's pose, the episode's sound, the shortest-path follower.

A backend owns the physics of one scene: it places the agent, applies actions with collision,
renders what the agent sees and measures geodesic distances to the episode's source. The
Gymnasium env composes a backend through :class:`SimulatorBackend`'s methods and attributes
only, so the built-in simulator (:mod:`avworld.sim.backends.builtin`) and habitat-sim
(:mod:`avworld.sim.backends.habitat`) are interchangeable under it. Both hear through avworld's
acoustics on the backend's floor plan (``scene``), which this base class runs.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from avworld.sim.acoustics.audio import AudioRenderer, Emitter
from avworld.sim.acoustics.responses import SceneAcoustics
from avworld.sim.acoustics.sounds import SOUND_SETS, SoundLibrary
from avworld.sim.config import SimConfig
from avworld.sim.navigation import NavGrid
from avworld.sim.scenes.scene import Scene

DISTRACTOR_HEIGHT = 1.0


class Action(IntEnum):
    """The discrete actions of DESIGN.md."""

    STOP = 0
    FORWARD = 1
    TURN_LEFT = 2
    TURN_RIGHT = 3


def to_action(value: object) -> Action:
    """The action of an env's ``step`` argument: an int (Python or NumPy, 0-d integer arrays included) in [0, 4).

    Anything else (a float, a 0-d float array, a bool, a string) is refused with a ValueError rather than rounded to
    an action: ``int(np.array(-0.4))`` would be STOP and end the episode."""
    integer = isinstance(value, int | np.integer) or (isinstance(value, np.ndarray) and value.shape == () and value.dtype.kind in "iu")
    if integer and not isinstance(value, bool) and 0 <= int(value) < len(Action):  # type: ignore[call-overload]
        return Action(int(value))  # type: ignore[call-overload]
    raise ValueError(f"invalid action {value!r}: expected an int in [0, {len(Action)}) (0 STOP, 1 FORWARD, 2 TURN_LEFT, 3 TURN_RIGHT)")


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


def agent_events(action: Action, collided: bool) -> tuple[str, ...]:
    """The agent's own sounds in a step: a footstep on FORWARD, a bump where a forward move collided."""
    return (("footstep",) if action == Action.FORWARD else ()) + (("bump",) if collided else ())


class SimulatorBackend(ABC):
    """One scene's simulator as the env sees it; subclasses do the physics and the rendering.

    Attributes every backend sets: ``scene`` (the floor plan the acoustics and the top-down map
    use), ``config``, ``grid`` (a :class:`NavGrid` of ``scene``), ``pose`` and ``source`` (2,).
    """

    scene: Scene
    config: SimConfig
    grid: NavGrid
    pose: Pose
    source: np.ndarray

    def __init__(self, scene: Scene, config: SimConfig, grid: NavGrid, library: SoundLibrary | None = None) -> None:
        self.scene, self.config, self.grid = scene, config, grid
        ac = config.acoustics
        self.library = library if library is not None else SoundLibrary(ac.fs, user_files=dict(ac.user_sounds))
        self.step_samples = round(config.agent.step_time * ac.fs)
        self.audio: AudioRenderer | None = None
        """Built on the first :meth:`start_audio`: a world nobody listens to costs no acoustics."""

    @abstractmethod
    def set_episode(self, start: Pose, source: tuple[float, float]) -> None:
        """Place the agent and the target source."""

    def transition(self, pose: Pose, action: Action) -> tuple[Pose, bool]:
        """The pose after ``action`` from ``pose`` and whether a forward move collided; changes nothing."""
        if action == Action.FORWARD:
            return self.forward(pose)
        if action in (Action.TURN_LEFT, Action.TURN_RIGHT):
            sign = 1.0 if action == Action.TURN_LEFT else -1.0
            return Pose(pose.x, pose.y, wrap_angle(pose.yaw + sign * math.radians(self.config.agent.turn_deg))), False
        return pose, False

    @abstractmethod
    def forward(self, pose: Pose) -> tuple[Pose, bool]:
        """The pose after moving ``sim.agent.forward_step`` ahead from ``pose`` (collision and sliding), and whether it collided."""

    @abstractmethod
    def step(self, action: Action) -> bool:
        """Apply one action; return whether a forward move collided."""

    @abstractmethod
    def geodesic_distance(self, pose: Pose | None = None) -> float:
        """Geodesic distance (m) from the agent (or ``pose``) to the source; inf if unreachable."""

    @abstractmethod
    def shortest_path(self, xy: tuple[float, float]) -> np.ndarray:
        """Shortest path (N, 2) from ``xy`` to the source, both ends included; empty if unreachable."""

    @abstractmethod
    def clear_line(self, a: np.ndarray, b: np.ndarray) -> bool:
        """Whether the agent can walk the straight line from ``a`` (2,) to ``b`` (2,) without touching anything."""

    @abstractmethod
    def render(self) -> tuple[np.ndarray, np.ndarray]:
        """rgb uint8 (H, W, 3) and depth float32 (H, W) from the agent's eyes."""

    def close(self) -> None:
        """Release what the backend holds: its acoustics' caches (and, for habitat-sim, its GPU context)."""
        self.audio = None

    def start_audio(self, rng: np.random.Generator) -> np.ndarray:
        """Start the episode's sound (source loop variation, distractors); the first step's audio (2, N) float32."""
        ac = self.config.acoustics
        if not ac.enabled:
            raise RuntimeError("acoustics are disabled (sim.acoustics.enabled=false)")
        if self.audio is None:
            self.audio = AudioRenderer(SceneAcoustics(self.scene, ac, self.config.agent.height, self.grid), self.step_samples)
        target = self.scene.sources[0]
        emitters = [Emitter((*target.position, target.height), self.library.signal(target.sound, int(rng.integers(2**31))))]
        pool = [c for c in SOUND_SETS.get(ac.sounds, tuple(ac.user_sounds)) if c != target.sound]
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
        return self.audio.step(self._head(), agent_events(action, collided))

    def _head(self) -> tuple[float, float, float]:
        return (self.pose.x, self.pose.y, self.pose.yaw)


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
