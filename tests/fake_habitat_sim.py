"""A stand-in for the part of habitat-sim's Python API that :mod:`avworld.sim.backends.habitat` uses, for machines without it.

It is not habitat-sim: its world is an avworld :class:`Scene`, its navmesh avworld's grid, its
cameras avworld's renderer. It follows habitat-sim's conventions as its source states them: a
y-up world (habitat X = plan x, Z = -plan y); an agent facing -Z at rest; ``move_forward`` moves
along the agent's -Z and goes through ``pathfinder.try_step`` (sliding), a collision being a move
shorter than asked by more than 1e-5 m²; ``turn_left`` rotates by +amount degrees about +Y;
RGBA colour observations and depth in metres. Tests run the backend against it here, and
against habitat-sim where that works (tests/test_habitat.py).
"""

from __future__ import annotations

import math
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from avworld.sim.navigation import GoalField, NavGrid
from avworld.sim.renderer import RenderConfig, Renderer
from avworld.sim.scenes.scene import Scene


def to_plan(p: Any) -> np.ndarray:
    p = np.asarray(p, float)
    return np.array([p[0], -p[2]])


def to_world(xy: np.ndarray, height: float = 0.0) -> np.ndarray:
    return np.array([xy[0], height, -xy[1]], np.float32)


@dataclass
class Rotation:
    """A rotation by ``angle`` radians about +Y (what an upright agent needs of a quaternion)."""

    angle: float


def quat_from_angle_axis(angle: float, axis: np.ndarray) -> Rotation:
    assert np.allclose(axis, [0.0, 1.0, 0.0]), "the stand-in rotates about +Y only"
    return Rotation(float(angle))


def quat_rotate_vector(q: Rotation, v: np.ndarray) -> np.ndarray:
    c, s = math.cos(q.angle), math.sin(q.angle)
    return np.array([c * v[0] + s * v[2], v[1], -s * v[0] + c * v[2]])


class Bag:
    """Settings objects: attributes set freely."""

    def __init__(self, **kwargs: Any) -> None:
        self.__dict__.update(kwargs)


class NavMeshSettings(Bag):
    def set_defaults(self) -> None:
        self.agent_radius, self.agent_height = 0.1, 1.5


@dataclass
class ActuationSpec:
    amount: float


@dataclass
class ActionSpec:
    name: str
    actuation: ActuationSpec


@dataclass
class AgentState:
    position: np.ndarray = field(default_factory=lambda: np.zeros(3))
    rotation: Rotation = field(default_factory=lambda: Rotation(0.0))


@dataclass
class ShortestPath:
    requested_start: Any = None
    requested_end: Any = None
    geodesic_distance: float = math.inf
    points: list[np.ndarray] = field(default_factory=list)


class PathFinder:
    """A navmesh made of avworld's occupancy grid of the scene."""

    def __init__(self, scene: Scene) -> None:
        self.scene, self.grid = scene, None
        self._fields: dict[tuple[float, float], GoalField] = {}
        self._rng = np.random.default_rng(0)

    def build(self, radius: float) -> None:
        self.grid, self._fields = NavGrid(self.scene, radius), {}

    @property
    def is_loaded(self) -> bool:
        return self.grid is not None

    def seed(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def get_random_navigable_point(self) -> np.ndarray:
        i, j = np.nonzero(self.grid.free)
        k = int(self._rng.integers(len(i)))
        return to_world(self.grid.to_world(i[k], j[k]))

    def is_navigable(self, p: Any) -> bool:
        return bool(self.grid.navigable(to_plan(p)))

    def snap_point(self, p: Any) -> np.ndarray:
        xy = to_plan(p)
        if self.grid.navigable(xy):
            return to_world(xy, float(np.asarray(p)[1]))
        i, j = np.nonzero(self.grid.free)
        cells = self.grid.to_world(i, j)
        return to_world(cells[int(np.argmin(np.linalg.norm(cells - xy, axis=1)))])

    def try_step(self, start: Any, end: Any) -> np.ndarray:
        a, d = to_plan(start), to_plan(end) - to_plan(start)
        x, y, _ = self.grid.move(a[0], a[1], math.atan2(d[1], d[0]), float(np.hypot(*d)))
        return to_world(np.array([x, y]), float(np.asarray(start)[1]))

    def try_step_no_sliding(self, start: Any, end: Any) -> np.ndarray:
        reached = self.grid._advance(to_plan(start), to_plan(end) - to_plan(start))
        return np.asarray(end, np.float32) if reached is None else to_world(reached, float(np.asarray(start)[1]))

    def find_path(self, path: ShortestPath) -> bool:
        goal = to_plan(path.requested_end)
        key = (float(goal[0]), float(goal[1]))
        if key not in self._fields:
            self._fields[key] = self.grid.goal_field(key)
        f = self._fields[key]
        path.geodesic_distance = float(f.distance(to_plan(path.requested_start)))
        start = to_plan(path.requested_start)
        path.points = [to_world(p) for p in f.path((float(start[0]), float(start[1])))]
        return math.isfinite(path.geodesic_distance)

    def build_navmesh_vertices(self) -> list[np.ndarray]:
        """Triangles (every three vertices) covering the free cells, a rectangle per run of free cells in a row."""
        g, half = self.grid, self.grid.cell / 2
        vertices = []
        for i in range(g.shape[0]):
            row = np.concatenate([[0], g.free[i].astype(np.int8), [0]])
            starts, ends = np.nonzero(np.diff(row) == 1)[0], np.nonzero(np.diff(row) == -1)[0] - 1
            for j0, j1 in zip(starts, ends, strict=True):
                (x0, y0), (x1, y1) = g.to_world(i, j0) - half, g.to_world(i, j1) + half
                corners = [to_world(np.array(c)) for c in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))]
                vertices += [corners[k] for k in (0, 1, 2, 0, 2, 3)]
        return vertices

    def build_navmesh_vertex_indices(self) -> list[int]:
        return list(range(len(self.build_navmesh_vertices())))


class Agent:
    def __init__(self, actions: dict[str, ActionSpec]) -> None:
        self.actions, self.state = actions, AgentState()

    def get_state(self) -> AgentState:
        return AgentState(self.state.position.copy(), Rotation(self.state.rotation.angle))

    def set_state(self, state: AgentState) -> None:
        self.state = AgentState(np.asarray(state.position, float).copy(), Rotation(state.rotation.angle))


class Simulator:
    """One agent with an RGB and a depth camera in ``WORLD`` (set by the test), whatever the scene file."""

    WORLD: Scene | None = None

    def __init__(self, config: Bag) -> None:
        assert self.WORLD is not None, "set fake_habitat_sim.Simulator.WORLD to the scene the stand-in simulates"
        agent_cfg = config.agents[0]
        cameras = {s.uuid: s for s in agent_cfg.sensor_specifications}
        height, width = cameras["rgb"].resolution
        self.eye = float(cameras["rgb"].position[1])
        self.renderer = Renderer(self.WORLD, RenderConfig(width=width, height=height, hfov_deg=float(cameras["rgb"].hfov)), self.eye)
        self.pathfinder = PathFinder(self.WORLD)
        self.agent = Agent(agent_cfg.action_space)
        self.closed = False

    def recompute_navmesh(self, pathfinder: PathFinder, settings: NavMeshSettings) -> bool:
        pathfinder.build(settings.agent_radius)
        return True

    def get_agent(self, index: int) -> Agent:
        return self.agent

    def get_sensor_observations(self) -> dict[str, Any]:
        s = self.agent.state
        ahead = quat_rotate_vector(s.rotation, np.array([0.0, 0.0, -1.0]))
        x, y = to_plan(s.position)
        rgb, depth = self.renderer.render(float(x), float(y), math.atan2(-ahead[2], ahead[0]))
        return {"rgb": np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 255, np.uint8)], axis=-1), "depth": depth}

    def step(self, name: str) -> dict[str, Any]:
        spec, s = self.agent.actions[name], self.agent.state
        collided = False
        if name == "move_forward":
            end = s.position + spec.actuation.amount * quat_rotate_vector(s.rotation, np.array([0.0, 0.0, -1.0]))
            filtered = np.asarray(self.pathfinder.try_step(s.position, end), float)
            collided = float(np.sum((filtered - s.position) ** 2)) + 1e-5 < float(np.sum((end - s.position) ** 2))
            s.position = filtered
        else:
            s.rotation = Rotation(s.rotation.angle + math.radians(spec.actuation.amount) * (1 if name == "turn_left" else -1))
        return self.get_sensor_observations() | {"collided": collided}

    def close(self) -> None:
        self.closed = True


def modules() -> dict[str, types.ModuleType]:
    """``sys.modules`` entries that make ``import habitat_sim`` (and ``habitat_sim.utils.common``) give the stand-in."""
    root, utils, common = (types.ModuleType(n) for n in ("habitat_sim", "habitat_sim.utils", "habitat_sim.utils.common"))
    common.quat_from_angle_axis, common.quat_rotate_vector = quat_from_angle_axis, quat_rotate_vector
    utils.common, root.utils = common, utils
    root.__dict__.update(
        Simulator=Simulator,
        SimulatorConfiguration=Bag,
        Configuration=lambda sim_cfg, agents: Bag(sim_cfg=sim_cfg, agents=agents),
        CameraSensorSpec=Bag,
        SensorType=types.SimpleNamespace(COLOR="color", DEPTH="depth"),
        SensorSubType=types.SimpleNamespace(PINHOLE="pinhole"),
        AgentConfiguration=Bag,
        ActionSpec=ActionSpec,
        ActuationSpec=ActuationSpec,
        AgentState=AgentState,
        NavMeshSettings=NavMeshSettings,
        ShortestPath=ShortestPath,
    )
    return {"habitat_sim": root, "habitat_sim.utils": utils, "habitat_sim.utils.common": common}
