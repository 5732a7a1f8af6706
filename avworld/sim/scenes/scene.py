"""Scenes: 2.5D floor plans that the renderer, the navigation and the acoustics share.

A scene lies in the x-y plane (metres, z up, floor at z = 0). Walls are segments
with a thickness; doors are gaps cut into the walls they lie on; furniture are
(possibly rotated) boxes standing on the floor; sound sources are points with a
sound id. ``Scene.from_dict`` checks every field and raises :class:`SceneError`
naming the first bad one; geometric checks (inside a wall, reachability) need
the navigation grid and live in :func:`avworld.sim.scenes.loading.validate_scene`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from avworld.sim.scenes.materials import MATERIALS

SCENE_FORMAT_VERSION = 1
MAX_COORD = 1000.0
"""Coordinates beyond ±1 km are refused: they are a unit mistake, not a house."""

MAX_WALLS = 64
"""Walls a scene may have: the image-source acoustics grows with walls to the power of its order (a 200-wall scene took
91 s to reset and 43 s a step with sound); procedural apartments have at most 16."""
MAX_EXTENT = 50.0
"""Largest side (m) of a scene's bounding box: the navigation grid at 5 cm then holds ~1 M cells (2.8 s and ~0.5 GB to
build with one distance field; a 200 m room took 8.5 GB and 50 s); procedural apartments span at most ~14 m."""

Vec2 = tuple[float, float]
Color = tuple[int, int, int]


def check_size(scene: Scene, source: str | None = None) -> None:
    """Refuse a scene beyond :data:`MAX_WALLS` or :data:`MAX_EXTENT`, naming the limit and the scene's value; decided when
    the scene is loaded or first used, before anything costly is built."""
    if len(scene.walls) > MAX_WALLS:
        raise SceneError("walls", f"{len(scene.walls)} walls is over the limit of {MAX_WALLS} (MAX_WALLS; see docs/scenes.md)", source)
    pts = np.asarray([p for w in scene.walls for p in (w.start, w.end)], float)  # (2 W, 2)
    extent = float(np.max(pts.max(axis=0) - pts.min(axis=0))) if len(pts) else 0.0
    if extent > MAX_EXTENT:
        raise SceneError(
            "walls", f"the walls span {extent:.1f} m, over the limit of {MAX_EXTENT:g} m (MAX_EXTENT; see docs/scenes.md)", source
        )


class SceneError(ValueError):
    """A scene is malformed; ``field`` names the offending field (e.g. ``walls[3].material``)."""

    def __init__(self, field: str, message: str, source: str | None = None) -> None:
        self.field = field
        self.source = source
        where = ": ".join(part for part in (source, field) if part)
        super().__init__(f"{where}: {message}" if where else message)


@dataclass(frozen=True)
class Wall:
    """A straight wall from ``start`` to ``end`` (its centre line), ``thickness`` metres thick."""

    start: Vec2
    end: Vec2
    thickness: float = 0.1
    material: str = "plaster"
    color: Color | None = None


@dataclass(frozen=True)
class Door:
    """An opening of ``width`` metres centred at ``position``, cut into every wall it lies on."""

    position: Vec2
    width: float = 0.9


@dataclass(frozen=True)
class Furniture:
    """A box standing on the floor: ``size`` = (length along yaw, width, height) in metres."""

    center: Vec2
    size: tuple[float, float, float]
    yaw: float = 0.0
    material: str = "wood"
    color: Color | None = None


@dataclass(frozen=True)
class SoundSource:
    """A sounding object at ``position`` (emitter ``height`` metres above the floor) playing ``sound``."""

    position: Vec2
    sound: str
    height: float = 1.0


@dataclass(frozen=True)
class AgentStart:
    """Where an episode starts: position and yaw (radians, 0 faces +x, counter-clockwise positive)."""

    position: Vec2
    yaw: float = 0.0


@dataclass(frozen=True)
class WallPiece:
    """A solid wall rectangle after door cuts: centre line ``a``→``b`` (end caps included)."""

    a: Vec2
    b: Vec2
    thickness: float
    material: str
    color: Color | None
    wall: int
    """Index of the wall it was cut from."""

    def corners(self) -> np.ndarray:
        """The rectangle's 4 corners, (4, 2), counter-clockwise."""
        a, b = np.asarray(self.a), np.asarray(self.b)
        d = (b - a) / max(np.linalg.norm(b - a), 1e-12)
        n = np.array([-d[1], d[0]]) * self.thickness / 2
        return np.stack([a - n, b - n, b + n, a + n])


@dataclass(frozen=True)
class Scene:
    """A 2.5D indoor scene. Immutable; build a new one with ``dataclasses.replace``."""

    walls: tuple[Wall, ...]
    start: AgentStart
    sources: tuple[SoundSource, ...]
    doors: tuple[Door, ...] = ()
    furniture: tuple[Furniture, ...] = ()
    height: float = 2.7
    floor_material: str = "wood_floor"
    ceiling_material: str = "ceiling_plaster"
    floor_color: Color | None = None
    ceiling_color: Color | None = None
    name: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict, hash=False)
    """Free-form provenance (e.g. generator seed and split); not used by the simulator."""

    def wall_pieces(self) -> list[WallPiece]:
        """Walls as solid rectangles with the door gaps removed.

        Original wall ends are extended by half the thickness so that walls meeting
        at a corner close it; edges made by a door cut are not.
        """
        pieces: list[WallPiece] = []
        for i, w in enumerate(self.walls):
            a, b = np.asarray(w.start, float), np.asarray(w.end, float)
            length = float(np.linalg.norm(b - a))
            d = (b - a) / length
            half = w.thickness / 2
            keep = [(-half, length + half)]
            for door in self.doors:
                t, off = _along_across(a, d, np.asarray(door.position, float))
                if abs(off) <= half + 1e-6 and -half <= t <= length + half:
                    cut = (t - door.width / 2, t + door.width / 2)
                    keep = [seg for lo, hi in keep for seg in ((lo, min(hi, cut[0])), (max(lo, cut[1]), hi)) if seg[1] - seg[0] > 1e-6]
            for lo, hi in keep:
                pa, pb = a + lo * d, a + hi * d
                pieces.append(WallPiece((float(pa[0]), float(pa[1])), (float(pb[0]), float(pb[1])), w.thickness, w.material, w.color, i))
        return pieces

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounds (lo, hi) of all wall geometry, each (2,)."""
        pts = np.concatenate([p.corners() for p in self.wall_pieces()] or [np.zeros((1, 2))])
        return pts.min(axis=0), pts.max(axis=0)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``from_dict`` inverts it exactly)."""

        def opt_color(c: Color | None) -> list[int] | None:
            return None if c is None else list(c)

        return {
            "version": SCENE_FORMAT_VERSION,
            "name": self.name,
            "height": self.height,
            "floor_material": self.floor_material,
            "floor_color": opt_color(self.floor_color),
            "ceiling_material": self.ceiling_material,
            "ceiling_color": opt_color(self.ceiling_color),
            "walls": [
                {"start": list(w.start), "end": list(w.end), "thickness": w.thickness, "material": w.material, "color": opt_color(w.color)}
                for w in self.walls
            ],
            "doors": [{"position": list(d.position), "width": d.width} for d in self.doors],
            "furniture": [
                {"center": list(f.center), "size": list(f.size), "yaw": f.yaw, "material": f.material, "color": opt_color(f.color)}
                for f in self.furniture
            ],
            "sources": [{"position": list(s.position), "sound": s.sound, "height": s.height} for s in self.sources],
            "start": {"position": list(self.start.position), "yaw": self.start.yaw},
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, data: Any, source: str | None = None) -> Scene:
        """Parse and check a scene dict; raise :class:`SceneError` naming the first bad field."""
        return _Parser(source).scene(data)


def _along_across(a: np.ndarray, d: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """Coordinates of ``p`` along unit direction ``d`` from ``a`` and across it."""
    r = p - a
    return float(r @ d), float(d[0] * r[1] - d[1] * r[0])


class _Parser:
    """Field-by-field checks of a scene dict; every error names its field path."""

    def __init__(self, source: str | None) -> None:
        self.source = source

    def fail(self, path: str, message: str) -> SceneError:
        return SceneError(path, message, self.source)

    def mapping(self, value: Any, path: str, required: Sequence[str], optional: Sequence[str] = ()) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"expected an object, got {type(value).__name__}")
        missing = [k for k in required if k not in value]
        if missing:
            raise self.fail(f"{path}.{missing[0]}" if path else missing[0], "missing required field")
        unknown = sorted(set(value) - set(required) - set(optional))
        if unknown:
            raise self.fail(f"{path}.{unknown[0]}" if path else unknown[0], "unknown field")
        return value

    def number(self, value: Any, path: str, lo: float = -MAX_COORD, hi: float = MAX_COORD, lo_open: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(path, f"expected a number, got {value!r}")
        x = float(value)
        if not math.isfinite(x):
            raise self.fail(path, f"must be finite, got {value!r}")
        if x < lo or x > hi or (lo_open and x == lo):
            bracket = "(" if lo_open else "["
            raise self.fail(path, f"{x} is out of range {bracket}{lo}, {hi}]")
        return x

    def vec(
        self, value: Any, path: str, n: int = 2, lo: float = -MAX_COORD, hi: float = MAX_COORD, lo_open: bool = False
    ) -> tuple[float, ...]:
        if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != n:
            raise self.fail(path, f"expected a list of {n} numbers, got {value!r}")
        return tuple(self.number(v, f"{path}[{i}]", lo, hi, lo_open) for i, v in enumerate(value))

    def material(self, value: Any, path: str) -> str:
        if value not in MATERIALS:
            raise self.fail(path, f"unknown material {value!r}; known: {', '.join(sorted(MATERIALS))}")
        return str(value)

    def color(self, value: Any, path: str) -> Color | None:
        if value is None:
            return None
        if (
            not isinstance(value, Sequence)
            or len(value) != 3
            or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in value)
        ):
            raise self.fail(path, f"expected [r, g, b] integers in 0..255, got {value!r}")
        return (int(value[0]), int(value[1]), int(value[2]))

    def items(self, value: Any, path: str) -> Sequence[Any]:
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise self.fail(path, f"expected a list, got {type(value).__name__}")
        return value

    def scene(self, data: Any) -> Scene:
        top = self.mapping(
            data,
            "",
            required=("walls", "sources", "start"),
            optional=(
                "version",
                "name",
                "height",
                "floor_material",
                "floor_color",
                "ceiling_material",
                "ceiling_color",
                "doors",
                "furniture",
                "meta",
            ),
        )
        version = top.get("version", SCENE_FORMAT_VERSION)
        if version != SCENE_FORMAT_VERSION:
            raise self.fail("version", f"unsupported scene format version {version!r} (this avworld reads {SCENE_FORMAT_VERSION})")
        height = self.number(top.get("height", 2.7), "height", 1.5, 20.0)
        walls = tuple(self.wall(w, f"walls[{i}]") for i, w in enumerate(self.items(top["walls"], "walls")))
        if len(walls) < 3:
            raise self.fail("walls", f"a scene needs at least 3 walls to enclose a space, got {len(walls)}")
        doors = tuple(self.door(d, f"doors[{i}]") for i, d in enumerate(self.items(top.get("doors", []), "doors")))
        furniture = tuple(
            self.furniture(f, f"furniture[{i}]", height) for i, f in enumerate(self.items(top.get("furniture", []), "furniture"))
        )
        sources = tuple(self.sound_source(s, f"sources[{i}]", height) for i, s in enumerate(self.items(top["sources"], "sources")))
        if not sources:
            raise self.fail("sources", "a scene needs at least one sound source")
        st = self.mapping(top["start"], "start", required=("position",), optional=("yaw",))
        start = AgentStart(
            self.vec(st["position"], "start.position"), self.number(st.get("yaw", 0.0), "start.yaw", -4 * math.pi, 4 * math.pi)
        )
        meta = top.get("meta", {})
        if not isinstance(meta, Mapping):
            raise self.fail("meta", "expected an object")
        name = top.get("name", "")
        if not isinstance(name, str):
            raise self.fail("name", f"expected a string, got {name!r}")
        scene = Scene(
            walls=walls,
            start=start,
            sources=sources,
            doors=doors,
            furniture=furniture,
            height=height,
            floor_material=self.material(top.get("floor_material", "wood_floor"), "floor_material"),
            ceiling_material=self.material(top.get("ceiling_material", "ceiling_plaster"), "ceiling_material"),
            floor_color=self.color(top.get("floor_color"), "floor_color"),
            ceiling_color=self.color(top.get("ceiling_color"), "ceiling_color"),
            name=name,
            meta=dict(meta),
        )
        check_size(scene, self.source)
        return scene

    def wall(self, w: Any, path: str) -> Wall:
        w = self.mapping(w, path, required=("start", "end"), optional=("thickness", "material", "color"))
        start, end = self.vec(w["start"], f"{path}.start"), self.vec(w["end"], f"{path}.end")
        if math.dist(start, end) < 0.05:
            raise self.fail(f"{path}.end", f"wall is shorter than 5 cm (start {start}, end {end})")
        return Wall(
            start,  # type: ignore[arg-type]
            end,  # type: ignore[arg-type]
            thickness=self.number(w.get("thickness", 0.1), f"{path}.thickness", 0.0, 2.0, lo_open=True),
            material=self.material(w.get("material", "plaster"), f"{path}.material"),
            color=self.color(w.get("color"), f"{path}.color"),
        )

    def door(self, d: Any, path: str) -> Door:
        d = self.mapping(d, path, required=("position",), optional=("width",))
        return Door(self.vec(d["position"], f"{path}.position"), self.number(d.get("width", 0.9), f"{path}.width", 0.0, 10.0, lo_open=True))  # type: ignore[arg-type]

    def furniture(self, f: Any, path: str, height: float) -> Furniture:
        f = self.mapping(f, path, required=("center", "size"), optional=("yaw", "material", "color"))
        return Furniture(
            self.vec(f["center"], f"{path}.center"),  # type: ignore[arg-type]
            self.vec(f["size"], f"{path}.size", 3, 0.0, height, lo_open=True),  # type: ignore[arg-type]
            yaw=self.number(f.get("yaw", 0.0), f"{path}.yaw", -4 * math.pi, 4 * math.pi),
            material=self.material(f.get("material", "wood"), f"{path}.material"),
            color=self.color(f.get("color"), f"{path}.color"),
        )

    def sound_source(self, s: Any, path: str, height: float) -> SoundSource:
        s = self.mapping(s, path, required=("position", "sound"), optional=("height",))
        if not isinstance(s["sound"], str) or not s["sound"]:
            raise self.fail(f"{path}.sound", f"expected a non-empty sound id, got {s['sound']!r}")
        return SoundSource(
            self.vec(s["position"], f"{path}.position"),  # type: ignore[arg-type]
            s["sound"],
            height=self.number(s.get("height", 1.0), f"{path}.height", 0.0, height),
        )
