"""The real world's settings: :class:`SimConfig` and its parts (``sim.*`` in the Hydra tree, ``configs/sim/``).

Each part's dataclass lives beside the code it configures (:class:`AgentConfig` with navigation, :class:`RenderConfig`
with the renderer, :class:`EpisodeConfig` with episode sampling, :class:`AcousticsConfig` with the acoustics);
:class:`HabitatConfig` is here so that the backends can take a :class:`SimConfig` without importing each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from avworld.sim.acoustics.responses import AcousticsConfig
from avworld.sim.episodes import EpisodeConfig
from avworld.sim.navigation import AgentConfig
from avworld.sim.renderer import RenderConfig

__all__ = ["BACKENDS", "FLOORPLANS", "HabitatConfig", "SimConfig"]

FLOORPLANS = ("navmesh", "mesh")
BACKENDS = ("builtin", "habitat")


@dataclass
class HabitatConfig:
    """The habitat-sim backend (``sim.backend=habitat``): which scanned scene, and how its floor plan is made."""

    scene: str = ""
    """Scene file habitat-sim loads (.glb, .ply), or a scene id of ``dataset``."""
    dataset: str = ""
    """Optional ``*.scene_dataset_config.json`` (HM3D, Matterport3D); empty: habitat-sim's default."""
    floorplan: str = "navmesh"
    """Walls the acoustics run on: ``navmesh`` (habitat-sim's navmesh outline, closed) or ``mesh`` (slice of ``mesh``)."""
    mesh: str = ""
    """Mesh file read with trimesh for ``floorplan=mesh`` and to measure the ceiling; empty: ``scene``."""
    mesh_up: str = "y"
    """Up axis of ``mesh`` as stored: ``y`` (glTF, HM3D) or ``z`` (Replica's mesh.ply, Matterport3D); docs/habitat.md."""
    slice_height: float = 1.0
    """Height (m) above the floor where ``floorplan=mesh`` cuts the mesh."""
    scene_height: float | None = None
    """Floor to ceiling (m) the walls are extruded to; None: measured on ``mesh``."""
    wall_thickness: float = 0.1
    simplify: float = 0.05
    """Tolerance (m) of the outline's simplification and of merging collinear walls."""
    start: list[float] | None = None
    """Start position [X, Y, Z] in habitat-sim's world frame (as in habitat episode files); None: drawn with ``seed``."""
    start_yaw: float | None = None
    """Start yaw (radians, avworld's convention: 0 faces habitat +X, counter-clockwise seen from above); None: drawn."""
    source: list[float] | None = None
    """Sound source [X, Y, Z] in habitat-sim's world frame; None: drawn at least ``sim.episode.min_geodesic`` away."""
    sound: str = ""
    """Sound id of the source; empty: drawn from the categories of ``sim.acoustics.sounds``."""
    seed: int = 0
    """Seed of what is drawn: start, source, sound."""
    gpu_device_id: int = 0

    def __post_init__(self) -> None:
        checks = {
            "floorplan": self.floorplan in FLOORPLANS,
            "mesh_up": self.mesh_up in ("y", "z"),
            "slice_height": 0.1 <= self.slice_height <= 3.0,
            "scene_height": self.scene_height is None or 1.5 <= self.scene_height <= 20.0,
            "wall_thickness": 0.0 < self.wall_thickness <= 2.0,
            "simplify": 0.0 < self.simplify <= 0.5,
            "start": self.start is None or len(self.start) == 3,
            "source": self.source is None or len(self.source) == 3,
            "seed": self.seed >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"sim.habitat.{name}: invalid value {getattr(self, name)!r}")


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
