"""The habitat-sim backend: scanned scenes (Replica, Matterport3D, HM3D) behind avworld's env contract.

habitat-sim renders RGB and depth and moves the agent: its navmesh gives collisions (with
sliding, as habitat-sim's own ``move_forward``) and geodesic distances. avworld's acoustics run
on a floor plan of the same scene (:mod:`avworld.sim.scenes.floorplan`): the outline of habitat-sim's
navmesh pushed out to the walls (``floorplan=navmesh``) or a horizontal slice of the scene mesh
(``floorplan=mesh``), extruded to the scene's height, so that sound and sight share geometry.

``habitat_sim`` is imported only when a :class:`HabitatSimulator` is made; it installs with
conda only (:data:`INSTALL`). Scene files come from ``sim.habitat``; nothing is downloaded.

Frames: habitat-sim's world is y-up with the agent facing -Z at rest. avworld's plan has
x = X, y = -Z and heights above the storey's floor; yaw 0 faces +X and grows counter-clockwise
seen from above, which is habitat-sim's rotation about +Y (``turn_left``) less 90°.
"""

from __future__ import annotations

import math
import os
import sys
from types import ModuleType
from typing import Any

import numpy as np

from avworld.sim.acoustics.sounds import SOUND_SETS
from avworld.sim.backends.base import Action, Pose, SimulatorBackend, wrap_angle
from avworld.sim.config import SimConfig
from avworld.sim.navigation import NavGrid
from avworld.sim.scenes.floorplan import FLOOR_TOLERANCE, FloorPlan, ceiling_height, load_mesh, navmesh_floorplan, slice_floorplan
from avworld.sim.scenes.scene import AgentStart, SceneError, SoundSource

INSTALL = "conda install habitat-sim -c conda-forge -c aihabitat"
"""habitat-sim's official installation (add ``headless`` on machines without a display); it has no PyPI wheel."""
ACTIONS = {Action.FORWARD: "move_forward", Action.TURN_LEFT: "turn_left", Action.TURN_RIGHT: "turn_right"}
COLLISION_EPS = 1e-5
"""A move collided when it went this much (squared metres) less far than asked, as habitat-sim decides."""
EPISODE_TRIES = 200
"""Random navmesh points tried when drawing an episode's start and source."""
ACOUSTIC_GRID_RADIUS = 0.5
"""The floor plan's grid (acoustics, distractors, map) uses this fraction of the agent radius: the navmesh's
edge is the agent radius from the walls, and a cell on it must stay free despite the grid's rounding."""


def require_habitat() -> ModuleType:
    """The ``habitat_sim`` module, or an ImportError saying how to install it."""
    try:
        import habitat_sim
    except ImportError as e:
        raise ImportError(
            f"sim.backend=habitat needs habitat-sim, which this Python ({sys.executable}) cannot import ({e}). "
            f"habitat-sim is not on PyPI; install it the official way, with conda: {INSTALL} "
            "(add `headless` on a machine without a display). See docs/habitat.md."
        ) from e
    return habitat_sim


class HabitatSimulator(SimulatorBackend):
    """A scanned scene simulated by habitat-sim; avworld's acoustics on its floor plan. See the module docstring.

    ``floor`` is habitat-sim's Y of the storey the episode is on; ``plan`` its floor plan.
    """

    def __init__(self, config: SimConfig) -> None:
        hs = require_habitat()
        h = config.habitat
        if not h.dataset and not os.path.isfile(h.scene):
            raise FileNotFoundError(f"sim.habitat.scene: no such scene file {h.scene!r}")
        self.config, self._hs = config, hs
        self._sim = hs.Simulator(_configuration(hs, config))
        try:
            self._agent = self._sim.get_agent(0)
            self.pathfinder = self._sim.pathfinder
            _ensure_navmesh(hs, self._sim, config)
            rng = np.random.default_rng(h.seed)
            start, source = self._draw_episode(rng)
            self.floor = float(start[1])
            self.plan = self._floorplan()
            yaw = float(rng.uniform(-math.pi, math.pi)) if h.start_yaw is None else wrap_angle(h.start_yaw)
            pool = SOUND_SETS.get(config.acoustics.sounds, tuple(config.acoustics.user_sounds))
            sound = h.sound or pool[int(rng.integers(len(pool)))]
            start_xy, source_xy = (float(start[0]), float(-start[2])), (float(source[0]), float(-source[2]))
            scene = self.plan.scene(
                AgentStart(start_xy, yaw),
                [SoundSource(source_xy, sound)],
                name=os.path.basename(h.scene),
                meta={"backend": "habitat", "scene": h.scene, "floor": self.floor},
            )
            grid = NavGrid(scene, config.agent.radius * ACOUSTIC_GRID_RADIUS, config.nav_cell)
            for name, xy in (("start", start_xy), ("source", source_xy)):
                i, j = grid.to_cell(np.asarray(xy))
                if grid.outside[i, j]:
                    raise SceneError(
                        f"sim.habitat.{name}",
                        f"{xy} (plan coordinates) lies outside the floor plan's walls: the plan does not enclose habitat-sim's navmesh "
                        "there (with floorplan=mesh, check sim.habitat.mesh and mesh_up, or use floorplan=navmesh)",
                    )
            super().__init__(scene, config, grid)
            self.set_episode(Pose(*start_xy, yaw), source_xy)
        except BaseException:
            self._sim.close()
            raise

    def _draw_episode(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Start and source, habitat-sim world points (3,) on the navmesh: from the config, or drawn on one storey."""
        h, pf = self.config.habitat, self.pathfinder
        pf.seed(int(rng.integers(2**31)))
        given = h.start is not None and h.source is not None
        for _ in range(1 if given else EPISODE_TRIES):
            start = _on_navmesh(pf, h.start, "start") if h.start is not None else np.asarray(pf.get_random_navigable_point(), float)
            source = _on_navmesh(pf, h.source, "source") if h.source is not None else np.asarray(pf.get_random_navigable_point(), float)
            if not given and abs(source[1] - start[1]) > FLOOR_TOLERANCE:
                continue
            geodesic = self._geodesic(start, source)
            if math.isfinite(geodesic) and (given or geodesic >= self.config.episode.min_geodesic):
                return start, source
        if given:
            raise ValueError(f"sim.habitat: the start {h.start} and the source {h.source} are not connected on habitat-sim's navmesh")
        raise ValueError(
            f"sim.habitat: found no start and source on one storey at least sim.episode.min_geodesic = "
            f"{self.config.episode.min_geodesic} m apart in {EPISODE_TRIES} tries; give sim.habitat.start and source"
        )

    def _floorplan(self) -> FloorPlan:
        h, agent = self.config.habitat, self.config.agent
        mesh: tuple[np.ndarray, np.ndarray] | None = None
        if h.floorplan == "mesh" or h.scene_height is None:
            path = h.mesh or h.scene
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"sim.habitat.mesh: no mesh file {path!r} to read the {'walls' if h.floorplan == 'mesh' else 'ceiling height'} from"
                    + ("" if h.floorplan == "mesh" else "; set sim.habitat.mesh or sim.habitat.scene_height")
                )
            mesh = load_mesh(path)
        if h.scene_height is not None:
            height = h.scene_height
        else:
            assert mesh is not None
            height = ceiling_height(*mesh, up=h.mesh_up, floor=self.floor, above=h.slice_height)
        if h.floorplan == "mesh":
            assert mesh is not None
            return slice_floorplan(
                *mesh,
                up=h.mesh_up,
                slice_height=h.slice_height,
                floor=self.floor,
                height=height,
                thickness=h.wall_thickness,
                tolerance=h.simplify,
            )
        vertices = np.asarray(self.pathfinder.build_navmesh_vertices(), float).reshape(-1, 3)
        indices = np.asarray(self.pathfinder.build_navmesh_vertex_indices(), np.int64).reshape(-1, 3)
        return navmesh_floorplan(
            vertices,
            indices if indices.size else None,
            up="y",
            offset=agent.radius,
            floor=self.floor,
            height=height,
            thickness=h.wall_thickness,
            tolerance=h.simplify,
        )

    def _point(self, x: float, y: float) -> np.ndarray:
        """The navmesh point (3,) nearest plan point (x, y) on this storey."""
        p = np.asarray(self.pathfinder.snap_point(np.array([x, self.floor, -y], np.float32)), float)
        if not np.isfinite(p).all():
            raise ValueError(f"({x:.3f}, {y:.3f}) is not near habitat-sim's navmesh")
        return p

    def _geodesic(self, a: np.ndarray, b: np.ndarray) -> float:
        path = self._hs.ShortestPath()
        path.requested_start, path.requested_end = np.asarray(a, np.float32), np.asarray(b, np.float32)
        return float(path.geodesic_distance) if self.pathfinder.find_path(path) else math.inf

    def _read_pose(self) -> Pose:
        from habitat_sim.utils.common import quat_rotate_vector

        state = self._agent.get_state()
        ahead = quat_rotate_vector(state.rotation, np.array([0.0, 0.0, -1.0]))
        return Pose(float(state.position[0]), float(-state.position[2]), wrap_angle(math.atan2(-ahead[2], ahead[0])))

    def set_episode(self, start: Pose, source: tuple[float, float]) -> None:
        """Place habitat-sim's agent at ``start`` (snapped to the navmesh) and the target source."""
        from habitat_sim.utils.common import quat_from_angle_axis

        position = self._point(start.x, start.y)
        if not self.pathfinder.is_navigable(position.astype(np.float32)):
            raise ValueError(f"start ({start.x:.3f}, {start.y:.3f}) is not navigable")
        state = self._hs.AgentState()
        state.position = position
        state.rotation = quat_from_angle_axis(wrap_angle(start.yaw) - math.pi / 2, np.array([0.0, 1.0, 0.0]))
        self._agent.set_state(state)
        self._observations: dict[str, Any] = self._sim.get_sensor_observations()
        self.source = np.asarray(source, float)
        self._source = self._point(*source)
        self.pose = self._read_pose()

    def forward(self, pose: Pose) -> tuple[Pose, bool]:
        """The pose after a forward step on habitat-sim's navmesh, with sliding, and whether it collided."""
        a = self._point(pose.x, pose.y)
        b = a + self.config.agent.forward_step * np.array([math.cos(pose.yaw), 0.0, -math.sin(pose.yaw)])
        end = np.asarray(self.pathfinder.try_step(a.astype(np.float32), b.astype(np.float32)), float)
        collided = float(np.sum((end - a) ** 2)) + COLLISION_EPS < float(np.sum((b - a) ** 2))
        return Pose(float(end[0]), float(-end[2]), pose.yaw), collided

    def step(self, action: Action) -> bool:
        """Apply one action with habitat-sim's agent; return whether a forward move collided."""
        if action == Action.STOP:
            return False
        self._observations = self._sim.step(ACTIONS[action])
        self.pose = self._read_pose()
        return bool(self._observations["collided"])

    def geodesic_distance(self, pose: Pose | None = None) -> float:
        """Geodesic distance (m) on habitat-sim's navmesh from the agent (or ``pose``) to the source."""
        p = pose or self.pose
        return self._geodesic(self._point(p.x, p.y), self._source)

    def shortest_path(self, xy: tuple[float, float]) -> np.ndarray:
        """habitat-sim's shortest path (N, 2) from ``xy`` to the source, both ends included; empty if unreachable."""
        path = self._hs.ShortestPath()
        path.requested_start, path.requested_end = self._point(*xy).astype(np.float32), self._source.astype(np.float32)
        if not self.pathfinder.find_path(path):
            return np.zeros((0, 2))
        corners = np.array([[p[0], -p[2]] for p in path.points], float).reshape(-1, 2)
        return np.concatenate([[xy], corners[1:-1], [self.source]])

    def clear_line(self, a: np.ndarray, b: np.ndarray) -> bool:
        """Whether habitat-sim's navmesh lets the agent walk straight from ``a`` to ``b`` (each (2,)) without sliding."""
        start = self._point(float(a[0]), float(a[1]))
        end = np.array([b[0], start[1], -b[1]])
        reached = np.asarray(self.pathfinder.try_step_no_sliding(start.astype(np.float32), end.astype(np.float32)), float)
        return bool(math.hypot(reached[0] - end[0], reached[2] - end[2]) < 1e-3)

    def render(self) -> tuple[np.ndarray, np.ndarray]:
        """rgb uint8 (H, W, 3) and depth float32 (H, W) (metres, clipped to ``sim.render.max_depth``) of habitat-sim's sensors."""
        obs = self._observations
        rgb = np.ascontiguousarray(np.asarray(obs["rgb"])[..., :3], dtype=np.uint8)
        depth = np.clip(np.asarray(obs["depth"], np.float32), 0.0, self.config.render.max_depth)
        return rgb, depth

    def close(self) -> None:
        super().close()
        self._sim.close()


def _on_navmesh(pathfinder: Any, point: list[float], name: str) -> np.ndarray:
    """A configured habitat-sim world point (3,) snapped to the navmesh."""
    p = np.asarray(pathfinder.snap_point(np.asarray(point, np.float32)), float)
    if not np.isfinite(p).all() or math.dist(p, point) > 0.5:
        raise ValueError(f"sim.habitat.{name}: {list(point)} is not on habitat-sim's navmesh (nearest navigable point: {p.tolist()})")
    return p


def _configuration(hs: ModuleType, config: SimConfig) -> Any:
    """habitat-sim's configuration: the scene, one agent with avworld's body and actions, RGB and depth cameras."""
    h, a, r = config.habitat, config.agent, config.render
    sim_cfg = hs.SimulatorConfiguration()
    sim_cfg.scene_id = h.scene
    if h.dataset:
        sim_cfg.scene_dataset_config_file = h.dataset
    sim_cfg.enable_physics = False
    sim_cfg.allow_sliding = True
    sim_cfg.gpu_device_id = h.gpu_device_id
    sim_cfg.random_seed = h.seed
    sensors = []
    for uuid, kind in (("rgb", hs.SensorType.COLOR), ("depth", hs.SensorType.DEPTH)):
        spec = hs.CameraSensorSpec()
        spec.uuid, spec.sensor_type, spec.sensor_subtype = uuid, kind, hs.SensorSubType.PINHOLE
        spec.resolution = [r.height, r.width]
        spec.position = [0.0, a.height, 0.0]
        spec.hfov = r.hfov_deg
        sensors.append(spec)
    actuation = {"move_forward": a.forward_step, "turn_left": a.turn_deg, "turn_right": a.turn_deg}
    agent = hs.AgentConfiguration(
        height=a.height,
        radius=a.radius,
        sensor_specifications=sensors,
        action_space={name: hs.ActionSpec(name, hs.ActuationSpec(amount=amount)) for name, amount in actuation.items()},
    )
    return hs.Configuration(sim_cfg, [agent])


def _ensure_navmesh(hs: ModuleType, sim: Any, config: SimConfig) -> None:
    """Recompute habitat-sim's navmesh unless it was built for avworld's agent radius and height."""
    a, pf = config.agent, sim.pathfinder
    built = getattr(pf, "nav_mesh_settings", None)  # absent in older habitat-sim: then always rebuild
    if pf.is_loaded and built is not None and np.allclose([built.agent_radius, built.agent_height], [a.radius, a.height], atol=1e-3):
        return
    settings = hs.NavMeshSettings()
    settings.set_defaults()
    settings.agent_radius, settings.agent_height = a.radius, a.height
    if not sim.recompute_navmesh(pf, settings) or not pf.is_loaded:
        raise RuntimeError(f"habitat-sim could not build a navmesh of {config.habitat.scene!r} for agent radius {a.radius} m")
