"""Procedural apartments: seeded, varied multi-room floor plans with furniture and an episode.

A footprint (a rectangle, or an L with one corner left out) is cut by binary splits
into rectangular rooms. Every partition wall gets a door, so the rooms form a
connected tree; some walls get a second door, which makes loops. Furniture boxes
stand mostly against the walls, never in front of a door, and pieces that cut the
navigable space apart are dropped. The start and the sound source are then sampled
as SoundSpaces does (:func:`avworld.sim.episodes.sample_episode`).

All randomness comes from ``np.random.default_rng([seed, attempt])``: a seed gives
the same scene on every machine (NumPy may change a sampling method between major
versions; the bit stream itself is fixed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from itertools import pairwise
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from avworld.sim.acoustics.sounds import sound_set
from avworld.sim.config import SimConfig
from avworld.sim.episodes import EpisodeConfig, EpisodeSamplingError, sample_episode
from avworld.sim.navigation import NavGrid, Solids
from avworld.sim.scenes.loading import validate_scene
from avworld.sim.scenes.materials import CEILING_MATERIALS, FLOOR_MATERIALS, MATERIALS, WALL_MATERIALS
from avworld.sim.scenes.scene import AgentStart, Color, Door, Furniture, Scene, SceneError, SoundSource, Vec2, Wall

Rect = tuple[float, float, float, float]
"""Axis-aligned rectangle (x0, y0, x1, y1), metres."""
Segment = tuple[Vec2, Vec2]
Style = tuple[str, Color]
"""A material and its colour."""

DEFAULT_SOUNDS = ("telephone", "alarm", "music", "speech", "fan", "dog", "piano", "kettle", "clock", "radio")
SPLITS: dict[str, range] = {"train": range(0, 1_000_000), "val": range(1_000_000, 1_010_000), "test": range(1_010_000, 1_020_000)}
"""Disjoint seed ranges: a scene's split is a function of its seed."""

MAX_ATTEMPTS = 32
_TRIES = 8  # draws of a cut position or of a furniture piece before giving up on it
_MIN_OFFSET = 0.4  # m: parallel walls whose ends do not line up are offset by at least this much (no slivers)
_DOOR_CLEAR = 0.8  # m: furniture keeps this far from a door's wall face, on both sides
_MAX_POCKET = 1.0  # m²: the largest navigable area that furniture may cut off from the rest


class _Kind(NamedTuple):
    """A kind of furniture: ranges of length (along the wall), depth and height, and how it stands."""

    length: tuple[float, float]
    depth: tuple[float, float]
    height: tuple[float, float]
    wall_prob: float
    materials: tuple[str, ...]


FURNITURE: dict[str, _Kind] = {
    "bed": _Kind((1.9, 2.1), (0.9, 1.6), (0.4, 0.6), 1.0, ("fabric", "wood")),
    "sofa": _Kind((1.5, 2.2), (0.8, 0.95), (0.7, 0.9), 0.8, ("fabric", "leather")),
    "table": _Kind((0.8, 1.6), (0.7, 1.0), (0.7, 0.78), 0.2, ("wood", "glass", "metal")),
    "armchair": _Kind((0.7, 0.9), (0.7, 0.9), (0.7, 0.9), 0.3, ("fabric", "leather")),
    "shelf": _Kind((0.6, 1.2), (0.3, 0.45), (1.2, 2.0), 1.0, ("wood", "metal")),
    "wardrobe": _Kind((0.8, 1.6), (0.55, 0.65), (1.8, 2.0), 1.0, ("wood",)),
    "cabinet": _Kind((0.4, 1.0), (0.4, 0.5), (0.5, 0.9), 0.9, ("wood", "metal")),
}


@dataclass
class ApartmentConfig:
    """What apartments look like. Ranges are (low, high) pairs; lengths in metres."""

    min_rooms: int = 1
    max_rooms: int = 6
    room_area: tuple[float, float] = (11.0, 20.0)
    """Footprint area per room, m² (an L-shaped footprint then loses its left-out corner)."""
    min_area: float = 22.0
    """Smallest footprint area, m², so that a 4 m geodesic episode fits in one room."""
    aspect: tuple[float, float] = (1.0, 1.6)
    max_size: tuple[float, float] = (14.0, 12.0)
    """Largest footprint: (long side, short side)."""
    min_room_size: float = 2.0
    """Smallest room side, wall centre to wall centre."""
    irregular_prob: float = 0.4
    """Probability of an L-shaped footprint (2 rooms or more)."""
    exterior_thickness: float = 0.2
    interior_thickness: float = 0.1
    door_width: tuple[float, float] = (0.8, 1.2)
    jamb_clearance: float = 0.3
    """Least distance from a door jamb to the face of a crossing wall."""
    loop_door_prob: float = 0.3
    """Probability that a partition wall gets a second door (a loop between rooms)."""
    furniture_per_room: tuple[int, int] = (0, 4)
    max_furniture_yaw: float = 0.35
    """Free-standing pieces turn by at most this many radians."""
    ceiling_height: tuple[float, float] = (2.4, 3.2)
    source_height: tuple[float, float] = (0.5, 1.5)
    color_jitter: int = 20
    """Colours are the material's colour plus up to ± this much per channel."""

    def __post_init__(self) -> None:
        for f in fields(self):  # lists (e.g. from Hydra) become tuples
            if isinstance(getattr(self, f.name), Sequence):
                setattr(self, f.name, tuple(getattr(self, f.name)))
        tallest = max(k.height[1] for k in FURNITURE.values())
        limits = (
            ("min_rooms", 1, 100),
            ("max_rooms", self.min_rooms, 100),
            ("room_area", 1.0, 1000.0),
            ("min_area", 0.0, 10_000.0),
            ("aspect", 1.0, 10.0),
            ("irregular_prob", 0.0, 1.0),
            ("exterior_thickness", 0.01, 1.0),
            ("interior_thickness", 0.01, 1.0),
            ("door_width", 0.5, 3.0),
            ("jamb_clearance", 0.0, 2.0),
            ("min_room_size", self.door_width[0] + 2 * self.jamb_clearance + self.exterior_thickness, min(self.max_size) / 2),
            ("loop_door_prob", 0.0, 1.0),
            ("furniture_per_room", 0, 20),
            ("max_furniture_yaw", 0.0, math.pi),
            ("ceiling_height", tallest, 20.0),
            ("source_height", 0.0, self.ceiling_height[0]),
            ("color_jitter", 0, 255),
        )
        for name, lo, hi in limits:
            value = getattr(self, name)
            a, b = value if isinstance(value, tuple) else (value, value)
            if not lo <= a <= b <= hi:
                kind = "a range (low ≤ high) within" if isinstance(value, tuple) else "in"
                raise ValueError(f"apartment.{name} must be {kind} [{lo:g}, {hi:g}], got {value!r}")


class _LayoutError(RuntimeError):
    """A random draw led nowhere; the next attempt draws again."""


def split_of(seed: int) -> str:
    """The split ("train", "val" or "test") whose seed range holds ``seed``."""
    for name, seeds in SPLITS.items():
        if seed in seeds:
            return name
    raise ValueError(f"seed {seed!r} is in no split: " + ", ".join(f"{k} {v.start}..{v.stop - 1}" for k, v in SPLITS.items()))



class ProceduralScenes:
    """Procedural apartments as a scene source: a split's ids are its seed range, and a seed makes its scene with the
    agent's radius, the episode settings and the sound set of ``config`` (``sim.acoustics.sounds``)."""

    generated = True

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.sounds = sound_set(config.acoustics.sounds, config.acoustics.user_sounds)

    def ids(self, split: str | None = None) -> Sequence[int]:
        if split is None:
            return range(min(r.start for r in SPLITS.values()), max(r.stop for r in SPLITS.values()))
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        return SPLITS[split]

    def scene(self, scene_id: int) -> Scene:
        return generate_apartment(scene_id, agent_radius=self.config.agent.radius, episode=self.config.episode, sounds=self.sounds)

    def split_of(self, scene_id: int) -> str:
        return split_of(scene_id)


def generate_apartment(
    seed: int,
    config: ApartmentConfig | None = None,
    agent_radius: float = 0.18,
    episode: EpisodeConfig | None = None,
    sounds: Sequence[str] = DEFAULT_SOUNDS,
) -> Scene:
    """A valid apartment scene with one sound source; the same seed and config give the same scene.

    Attempt ``k`` draws from ``np.random.default_rng([seed, k])``; a draw that leads nowhere
    (no start far enough, rooms cut apart) is redrawn by the next attempt, so the result
    always passes :func:`validate_scene`.
    """
    split = split_of(seed)
    if not sounds:
        raise ValueError("sounds must not be empty")
    config, episode = config or ApartmentConfig(), episode or EpisodeConfig()
    for attempt in range(MAX_ATTEMPTS):
        try:
            scene = _attempt(np.random.default_rng([seed, attempt]), config, agent_radius, episode, tuple(sounds))
        except (_LayoutError, EpisodeSamplingError, SceneError):
            continue
        meta = {"generator": "apartment", "seed": int(seed), "split": split, **scene.meta}
        return replace(scene, name=f"apartment-{seed}", meta=meta)
    raise RuntimeError(f"no valid apartment for seed {seed} in {MAX_ATTEMPTS} attempts; is the config feasible?")


def _attempt(rng: np.random.Generator, c: ApartmentConfig, radius: float, episode: EpisodeConfig, sounds: tuple[str, ...]) -> Scene:
    """One draw of a whole scene (``meta`` holds only the room count); raises if it leads nowhere."""
    rooms, partitions, outline = _layout(rng, c)
    styles = [_style(rng, WALL_MATERIALS, c.color_jitter) for _ in rooms]
    walls = _exterior_walls(outline, partitions, rooms, styles, c.exterior_thickness)
    for seg in partitions:  # a partition wall takes the style of the room on a random side
        a, u, length = _frame(seg)
        inside = a + length / 2 * u + (0.01 if rng.random() < 0.5 else -0.01) * np.array([-u[1], u[0]])
        walls.append(Wall(seg[0], seg[1], c.interior_thickness, *styles[_room_at(rooms, _round_mm(inside))]))
    doors = _doors(rng, partitions, c)
    furniture = _furniture(rng, rooms, doors, c)
    floor, ceiling = _style(rng, FLOOR_MATERIALS, c.color_jitter), _style(rng, CEILING_MATERIALS, c.color_jitter)
    scene = Scene(
        walls=tuple(walls),
        start=AgentStart((0.0, 0.0)),  # placeholders until the episode is sampled
        sources=(SoundSource((0.0, 0.0), sounds[0]),),
        doors=tuple(d for d, _ in doors),
        height=round(float(rng.uniform(*c.ceiling_height)), 2),
        floor_material=floor[0],
        floor_color=floor[1],
        ceiling_material=ceiling[0],
        ceiling_color=ceiling[1],
    )
    step = c.interior_thickness / 2 + radius + 0.1
    approaches = [np.asarray(d.position) + s * step * n for d, n in doors for s in (-1, 1)]
    while True:
        grid = NavGrid(replace(scene, furniture=tuple(furniture)), radius)
        cut = _cut_off(grid, approaches)
        if not cut.any():
            break
        if not furniture:
            raise _LayoutError("the rooms are not connected")
        furniture.pop(_blocker(grid, cut, len(furniture)))
    source, start, yaw = sample_episode(grid, rng, episode)
    scene = replace(
        scene,
        furniture=tuple(furniture),
        sources=(SoundSource(_round_mm(source), sounds[int(rng.integers(len(sounds)))], round(float(rng.uniform(*c.source_height)), 2)),),
        start=AgentStart(_round_mm(start), round(yaw, 3)),
        meta={"rooms": len(rooms)},
    )
    validate_scene(scene, radius)  # rounding moved the start and the source by < 1 mm: check again
    return scene


def _layout(rng: np.random.Generator, c: ApartmentConfig) -> tuple[list[Rect], list[Segment], list[Vec2]]:
    """Rooms, partition walls (centre lines) and the outline polygon of a new footprint."""
    n = int(rng.integers(c.min_rooms, c.max_rooms + 1))
    area = max(c.min_area, n * float(rng.uniform(*c.room_area)))
    aspect, small = float(rng.uniform(*c.aspect)), 2 * c.min_room_size
    w = round(min(max(math.sqrt(area * aspect), small), max(c.max_size)), 2)
    d = round(min(max(math.sqrt(area / aspect), small), min(c.max_size)), 2)
    if rng.random() < 0.5:
        w, d = d, w
    rooms: list[Rect] = [(0.0, 0.0, w, d)]
    partitions: list[Segment] = []
    outline: list[Vec2] = [(0.0, 0.0), (w, 0.0), (w, d), (0.0, d)]
    if n >= 2 and rng.random() < c.irregular_prob:  # an L: the top-right corner is left out, the rest is two rooms
        xn = round(w - float(rng.uniform(c.min_room_size, w / 2)), 2)
        yn = round(d - float(rng.uniform(c.min_room_size, d / 2)), 2)
        outline = [(0.0, 0.0), (w, 0.0), (w, yn), (xn, yn), (xn, d), (0.0, d)]
        if rng.random() < 0.5:
            rooms, partitions = [(0.0, 0.0, xn, d), (xn, 0.0, w, yn)], [((xn, 0.0), (xn, yn))]
        else:
            rooms, partitions = [(0.0, 0.0, w, yn), (0.0, yn, xn, d)], [((0.0, yn), (xn, yn))]
    while len(rooms) < n:  # split the largest room across its longer side
        splittable = [r for r in rooms if max(r[2] - r[0], r[3] - r[1]) >= 2 * c.min_room_size]
        if not splittable:
            raise _LayoutError(f"cannot fit {n} rooms")
        room = max(splittable, key=lambda r: (r[2] - r[0]) * (r[3] - r[1]))
        rooms.remove(room)
        x0, y0, x1, y1 = room
        across_x = x1 - x0 > y1 - y0 or (x1 - x0 == y1 - y0 and rng.random() < 0.5)
        a, b = (x0, x1) if across_x else (y0, y1)
        margin = max(c.min_room_size, 0.3 * (b - a))
        ends = [p[0 if across_x else 1] for p in outline + [q for s in partitions for q in s]]
        for _ in range(_TRIES):  # a wall nearly in line with another wall's end would leave a sliver
            cut = min(max(round(float(rng.uniform(a + margin, b - margin)), 2), a + c.min_room_size), b - c.min_room_size)
            if all(abs(cut - e) < 1e-9 or abs(cut - e) >= _MIN_OFFSET for e in ends):
                break
        else:
            raise _LayoutError("every cut would leave a sliver")
        if across_x:
            rooms += [(x0, y0, cut, y1), (cut, y0, x1, y1)]
            partitions.append(((cut, y0), (cut, y1)))
        else:
            rooms += [(x0, y0, x1, cut), (x0, cut, x1, y1)]
            partitions.append(((x0, cut), (x1, cut)))
    fx, fy = rng.random() < 0.5, rng.random() < 0.5  # mirror, so that any corner of an L may be left out

    def flip(p: Vec2) -> Vec2:
        return (round(w - p[0], 2) if fx else p[0], round(d - p[1], 2) if fy else p[1])

    def flip_rect(r: Rect) -> Rect:
        (ax, ay), (bx, by) = flip((r[0], r[1])), flip((r[2], r[3]))
        return (min(ax, bx), min(ay, by), max(ax, bx), max(ay, by))

    return [flip_rect(r) for r in rooms], [(flip(a), flip(b)) for a, b in partitions], [flip(p) for p in outline]


def _frame(seg: Segment) -> tuple[np.ndarray, np.ndarray, float]:
    """Start point (2,), unit direction (2,) and length of a segment."""
    a, b = np.asarray(seg[0], float), np.asarray(seg[1], float)
    length = float(np.linalg.norm(b - a))
    return a, (b - a) / length, length


def _stops(seg: Segment, partitions: list[Segment]) -> list[float]:
    """Sorted positions along ``seg`` of its ends and of the partition walls that end on it (T-junctions)."""
    a, u, length = _frame(seg)
    ts = {0.0, length}
    for p in (np.asarray(q, float) for s in partitions for q in s):
        t, off = float((p - a) @ u), float(u[0] * (p - a)[1] - u[1] * (p - a)[0])
        if abs(off) < 1e-6 and 1e-6 < t < length - 1e-6:
            ts.add(round(t, 6))
    return sorted(ts)


def _room_at(rooms: list[Rect], p: Vec2) -> int:
    """Index of the first room containing (or touching) point ``p``."""
    return next(k for k, r in enumerate(rooms) if r[0] - 1e-6 <= p[0] <= r[2] + 1e-6 and r[1] - 1e-6 <= p[1] <= r[3] + 1e-6)


def _exterior_walls(outline: list[Vec2], partitions: list[Segment], rooms: list[Rect], styles: list[Style], thickness: float) -> list[Wall]:
    """Outline walls, cut where partitions meet them so that each room has its own wall style.

    A cut piece stops half a thickness short of the junction: with the end caps that
    :meth:`Scene.wall_pieces` adds, neighbouring pieces abut without overlapping.
    """
    walls, half = [], thickness / 2
    for seg in pairwise([*outline, outline[0]]):
        a, u, length = _frame(seg)
        for lo, hi in pairwise(_stops(seg, partitions)):
            p, q = a + (lo + (half if lo > 0 else 0.0)) * u, a + (hi - (half if hi < length else 0.0)) * u
            room = _room_at(rooms, _round_mm(a + (lo + hi) / 2 * u))
            walls.append(Wall(_round_mm(p), _round_mm(q), thickness, *styles[room]))
    return walls


def _doors(rng: np.random.Generator, partitions: list[Segment], c: ApartmentConfig) -> list[tuple[Door, np.ndarray]]:
    """One door per partition wall (sometimes two), clear of junctions; each with its wall's unit normal (2,)."""
    doors, keep = [], c.exterior_thickness / 2 + c.jamb_clearance
    for seg in partitions:
        a, u, _ = _frame(seg)
        slots = [(lo + keep, hi - keep) for lo, hi in pairwise(_stops(seg, partitions)) if hi - lo - 2 * keep >= c.door_width[0]]
        count = 2 if len(slots) > 1 and rng.random() < c.loop_door_prob else 1
        for k in rng.permutation(len(slots))[:count]:
            lo, hi = slots[k]
            width = min(round(float(rng.uniform(*c.door_width)), 2), math.floor(round((hi - lo) * 100, 6)) / 100)
            t = lo + width / 2 + float(rng.random()) * max(hi - lo - width, 0.0)
            doors.append((Door(_round_mm(a + t * u), width), np.array([-u[1], u[0]])))
    return doors


def _furniture(rng: np.random.Generator, rooms: list[Rect], doors: list[tuple[Door, np.ndarray]], c: ApartmentConfig) -> list[Furniture]:
    """0..n boxes per room, mostly against a wall; none overlap each other or the clear zone of a door."""
    zones: list[Rect] = []
    for door, (nx, ny) in doors:
        along, across = door.width / 2 + 0.15, c.interior_thickness / 2 + _DOOR_CLEAR
        ex, ey = abs(ny) * along + abs(nx) * across, abs(nx) * along + abs(ny) * across
        zones.append((door.position[0] - ex, door.position[1] - ey, door.position[0] + ex, door.position[1] + ey))
    pieces: list[Furniture] = []
    boxes: list[Rect] = []  # bounding boxes of the pieces
    kinds = list(FURNITURE.values())
    inset = c.exterior_thickness / 2 + 0.02
    for x0, y0, x1, y1 in rooms:
        inner = (x0 + inset, y0 + inset, x1 - inset, y1 - inset)
        for _ in range(int(rng.integers(c.furniture_per_room[0], c.furniture_per_room[1] + 1))):
            kind = kinds[int(rng.integers(len(kinds)))]
            for _ in range(_TRIES):
                placed = _place(rng, kind, inner, c)
                if placed and not any(_overlap(placed[1], b, 0.1) for b in boxes) and not any(_overlap(placed[1], z, 0.0) for z in zones):
                    pieces.append(placed[0])
                    boxes.append(placed[1])
                    break
    return pieces


def _place(rng: np.random.Generator, kind: _Kind, inner: Rect, c: ApartmentConfig) -> tuple[Furniture, Rect] | None:
    """A random piece of ``kind`` in ``inner``, backed against one of its sides or free-standing, and its bounding box.

    None if the piece is too big for ``inner``.
    """
    length, depth, height = (round(float(rng.uniform(*r)), 2) for r in (kind.length, kind.depth, kind.height))
    material, color = _style(rng, kind.materials, c.color_jitter)
    against, side = rng.random() < kind.wall_prob, int(rng.integers(4))  # side: 0 bottom, 1 right, 2 top, 3 left
    yaw = 0.0 if against else round(float(rng.uniform(-c.max_furniture_yaw, c.max_furniture_yaw)), 3)
    if against and side % 2:
        length, depth = depth, length
    cs, sn = abs(math.cos(yaw)), abs(math.sin(yaw))
    sx, sy = cs * length + sn * depth, sn * length + cs * depth  # bounding box size
    x0, y0, x1, y1 = inner
    if sx > x1 - x0 or sy > y1 - y0:
        return None
    cx, cy = float(rng.uniform(x0 + sx / 2, x1 - sx / 2)), float(rng.uniform(y0 + sy / 2, y1 - sy / 2))
    if against:
        cx, cy = [(cx, y0 + sy / 2), (x1 - sx / 2, cy), (cx, y1 - sy / 2), (x0 + sx / 2, cy)][side]
    cx, cy = _round_mm((cx, cy))
    return Furniture((cx, cy), (length, depth, height), yaw, material, color), (cx - sx / 2, cy - sy / 2, cx + sx / 2, cy + sy / 2)


def _overlap(a: Rect, b: Rect, gap: float) -> bool:
    """Whether two rectangles come closer than ``gap`` (along x and y)."""
    return a[0] < b[2] + gap and b[0] < a[2] + gap and a[1] < b[3] + gap and b[1] < a[3] + gap


def _cut_off(grid: NavGrid, approaches: list[np.ndarray]) -> np.ndarray:
    """Navigable cells cut off from the main region, (ny, nx) mask: regions at a door, or larger than a pocket."""
    labels, _ = ndimage.label(grid.free)  # 4-connected, as the 16-neighbour graph with its corner checks
    sizes = np.bincount(labels.ravel()) * grid.cell**2  # m² per region; region 0 is not navigable
    sizes[0] = 0.0
    at_doors = np.array([labels[grid.to_cell(p)] for p in approaches], dtype=int)
    if (at_doors == 0).any():
        raise _LayoutError("a door is blocked")
    bad = sizes > _MAX_POCKET
    bad[at_doors] = True
    bad[int(np.argmax(sizes))] = False
    return bad[labels]


def _blocker(grid: NavGrid, cut: np.ndarray, count: int) -> int:
    """Index of the last-placed of the ``count`` furniture pieces that borders the ``cut`` cells (else the last one)."""
    s = grid.solids  # furniture comes after the walls
    pieces = Solids(s.center[-count:], s.half[-count:], s.axis[-count:], s.labels[-count:])
    rim = grid.to_world(*np.nonzero(cut & ~ndimage.binary_erosion(cut)))  # (N, 2)
    near = np.flatnonzero((pieces.distances(rim) <= grid.radius + 2 * grid.cell).any(axis=0))
    return int(near[-1]) if near.size else count - 1


def _style(rng: np.random.Generator, materials: Sequence[str], jitter: int) -> Style:
    """A random material and its colour, jittered per channel."""
    name = materials[int(rng.integers(len(materials)))]
    rgb = np.clip(np.asarray(MATERIALS[name].color) + rng.integers(-jitter, jitter + 1, 3), 0, 255)
    return name, (int(rgb[0]), int(rgb[1]), int(rgb[2]))


def _round_mm(p: Sequence[float] | np.ndarray) -> Vec2:
    """A point rounded to 1 mm, as plain floats."""
    return (round(float(p[0]), 3), round(float(p[1]), 3))
