"""Floor plans of triangle meshes: the walls of one storey, for avworld's acoustics on scanned scenes.

avworld's acoustics and navigation grid work on a 2.5-D plan: wall segments extruded from the
floor to one height (:mod:`avworld.sim.scenes.scene`). A scanned scene (Replica, Matterport3D, HM3D, as
habitat-sim loads them) is a triangle mesh; this module makes such a plan of one storey of it, in
one of two ways:

- :func:`slice_floorplan` cuts the scene mesh with a horizontal plane ``slice_height`` above the
  floor (1 m by default: above tables, beds and sofas, so that mostly walls, doors and tall
  furniture are cut). Each triangle crossing the plane gives a segment, oriented with the air
  (the side its normal faces) on the left. The wall built on a segment lies behind it, so that
  the wall's face is the scanned surface.
- :func:`navmesh_floorplan` outlines a navmesh (the triangles of the navigable floor, such as
  habitat-sim's ``pathfinder.build_navmesh_vertices()``). The storey's triangles are rasterised
  and the outline of the navigable area is traced with the free side on the left. The outline is
  pushed outward by the radius the navmesh was eroded by, plus half a wall thickness. It is closed
  by construction, where a slice of a scan may leave gaps (windows, unscanned patches).

Both then chain the oriented segments into polylines, simplify them (Douglas–Peucker within
``tolerance``), offset them with mitred corners, merge collinear pieces that overlap or touch,
and drop polylines smaller than ``min_length`` (clutter) and pieces lying inside other walls.

Plan coordinates: a z-up mesh's (x, y, z) are plan (x, y) and height z. A y-up mesh (glTF,
habitat-sim's world frame) maps (X, Y, Z) to plan (X, −Z) and height Y. That is the rotation
habitat-sim itself applies to a z-up scene, so plan coordinates agree whichever way a file is
stored. Inputs are plain arrays (vertices (V, 3), faces (F, 3)), a triangle soup (every three
vertices a triangle), or any object with ``vertices`` and ``faces`` (a ``trimesh.Trimesh``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from avworld.sim.scenes.polylines import chains, drop_covered, merge_collinear, offset, simplify
from avworld.sim.scenes.scene import AgentStart, Scene, SoundSource, Wall

UP_AXES = ("y", "z")
MIN_WALL = 0.05
"""Shortest wall kept, metres: the scene format refuses shorter ones."""
MIN_HEIGHT, MAX_HEIGHT = 1.5, 20.0
"""Scene heights the scene format accepts, metres."""
FLOOR_PERCENTILE = 1.0
"""The floor, when not given, is this percentile of vertex heights: the lowest storey, robust to a few stray vertices."""
FLOOR_TOLERANCE = 0.3
"""Navmesh triangles within this height (m) of the floor are on its storey: furniture tops and stairs above are not."""
MAX_CEILING = 4.0
"""Ceilings are looked for at most this far above the floor, so that an upper storey's ceiling is not taken."""
WELD = 1e-6
"""Vertices closer than this (m) are one vertex: meshes stored per face repeat their vertices."""


class FloorPlanError(ValueError):
    """A mesh gives no floor plan: empty, degenerate, or nothing at the slice height."""


@dataclass(frozen=True)
class FloorPlan:
    """The walls of one storey in plan coordinates, and the height they are extruded to."""

    walls: tuple[Wall, ...]
    height: float
    """Floor-to-ceiling height, metres."""
    floor: float
    """Height of the storey's floor along the mesh's up axis, in the mesh's coordinates."""

    def scene(self, start: AgentStart, sources: Sequence[SoundSource], name: str = "", meta: Mapping[str, Any] | None = None) -> Scene:
        """The avworld scene of this plan with an agent start and sound sources (plan coordinates)."""
        return Scene(walls=self.walls, start=start, sources=tuple(sources), height=self.height, name=name, meta=dict(meta or {}))


def mesh_arrays(mesh: Any, faces: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V, 3) float64 and faces (F, 3) int64 of ``mesh``, checked.

    ``mesh`` is a vertex array with ``faces``, a triangle soup (``faces`` None: every three
    vertices a triangle), or an object with ``vertices`` and ``faces``.
    """
    if faces is None and hasattr(mesh, "vertices") and hasattr(mesh, "faces"):
        mesh, faces = mesh.vertices, mesh.faces
    v = np.asarray(mesh, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 3:
        raise FloorPlanError(f"vertices must have shape (V, 3), got {v.shape}")
    if not np.isfinite(v).all():
        raise FloorPlanError("vertices must be finite")
    if faces is None:
        if len(v) % 3:
            raise FloorPlanError(f"a triangle soup needs a multiple of 3 vertices, got {len(v)}")
        f = np.arange(len(v)).reshape(-1, 3)
    else:
        f = np.asarray(faces)
        if f.ndim != 2 or f.shape[1] != 3 or (f.size and not np.issubdtype(f.dtype, np.integer)):
            raise FloorPlanError(f"faces must be integer indices of shape (F, 3), got {f.dtype} {f.shape}")
        if f.size and (f.min() < 0 or f.max() >= len(v)):
            raise FloorPlanError(f"face indices must lie in [0, {len(v)}), got [{f.min()}, {f.max()}]")
    if len(f) == 0:
        raise FloorPlanError("the mesh has no triangles")
    return v, f.astype(np.int64)


def to_plan(vertices: np.ndarray, up: str) -> np.ndarray:
    """Plan coordinates (V, 3) = (x, y, height) of mesh vertices (V, 3) whose up axis is ``up``."""
    v = np.asarray(vertices, dtype=np.float64)
    if up == "z":
        return v.copy()
    if up == "y":
        return np.stack([v[:, 0], -v[:, 2], v[:, 1]], axis=1)
    raise FloorPlanError(f"up must be one of {', '.join(map(repr, UP_AXES))}, got {up!r}")


def _plan_mesh(mesh: Any, faces: Any, up: str) -> tuple[np.ndarray, np.ndarray]:
    """Plan vertices (V, 3) and the faces (F, 3) of non-zero area."""
    v, f = mesh_arrays(mesh, faces)
    p = to_plan(v, up)
    tri = p[f]  # (F, 3, 3)
    area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    f = f[area > 1e-12]
    if len(f) == 0:
        raise FloorPlanError("every triangle of the mesh is degenerate (zero area)")
    return p, f


def _floor(p: np.ndarray, floor: float | None) -> float:
    """``floor``, or else the lowest storey's: the :data:`FLOOR_PERCENTILE` percentile of the heights of plan vertices (V, 3)."""
    return float(np.percentile(p[:, 2], FLOOR_PERCENTILE)) if floor is None else float(floor)


def ceiling_height(mesh: Any, faces: Any = None, *, up: str = "z", floor: float | None = None, above: float = 1.0) -> float:
    """Floor-to-ceiling height (m) of the storey whose floor is at ``floor``.

    The ceiling is the area-weighted median height of the near-horizontal, downward-facing
    triangles between ``above`` and :data:`MAX_CEILING` metres over the floor; a mesh with no
    such surface (no ceiling) gives the height of its highest vertex in that range.
    """
    p, f = _plan_mesh(mesh, faces, up)
    base = _floor(p, floor)
    tri = p[f]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # (F, 3), length = 2 × area
    area = np.linalg.norm(normal, axis=1)
    level = tri[:, :, 2].mean(axis=1) - base
    down = (normal[:, 2] < -0.9 * area) & (level > above) & (level <= MAX_CEILING)
    if down.any():
        order = np.argsort(level[down])
        cumulative = np.cumsum(area[down][order])
        return float(level[down][order][np.searchsorted(cumulative, cumulative[-1] / 2)])
    heights = p[:, 2] - base
    heights = heights[(heights > above) & (heights <= MAX_CEILING)]
    if heights.size == 0:
        raise FloorPlanError(f"no surface between {above} and {MAX_CEILING} m above the floor at {base:.3f}: pass the scene height")
    return float(heights.max())


def _check_height(height: float) -> float:
    if not MIN_HEIGHT <= height <= MAX_HEIGHT:
        raise FloorPlanError(f"scene height {height:.3f} m is outside [{MIN_HEIGHT}, {MAX_HEIGHT}] m; pass the height explicitly")
    return float(height)


def slice_floorplan(
    mesh: Any,
    faces: Any = None,
    *,
    up: str = "z",
    slice_height: float = 1.0,
    floor: float | None = None,
    height: float | None = None,
    thickness: float = 0.1,
    tolerance: float = 0.05,
    min_length: float = 0.25,
    material: str = "plaster",
) -> FloorPlan:
    """The floor plan cut from a scene mesh ``slice_height`` metres above its floor.

    ``floor`` (mesh up coordinate) defaults to the lowest storey's (:func:`_floor`); ``height`` (floor to
    ceiling) to :func:`ceiling_height`. Each wall is ``thickness`` thick and lies behind the
    surface it was cut from.
    """
    p, f = _plan_mesh(mesh, faces, up)
    base = _floor(p, floor)
    level = base + slice_height
    lo, hi = float(p[:, 2].min()), float(p[:, 2].max())
    if not lo < level < hi:
        raise FloorPlanError(
            f"slice height {level:.3f} (floor {base:.3f} + {slice_height}) is outside the mesh's heights [{lo:.3f}, {hi:.3f}]"
        )
    ceiling = ceiling_height(p, f, floor=base, above=slice_height) if height is None else height
    lines = _cross_section(p, f, level)
    if not lines:
        raise FloorPlanError(f"no surface of the mesh crosses the slice plane at height {level:.3f}")
    walls = _walls(lines, thickness / 2, thickness, tolerance, min_length, material)
    return FloorPlan(walls, _check_height(ceiling), base)


def navmesh_floorplan(
    mesh: Any,
    faces: Any = None,
    *,
    height: float,
    up: str = "y",
    offset: float = 0.18,
    floor: float | None = None,
    floor_tolerance: float = FLOOR_TOLERANCE,
    thickness: float = 0.1,
    cell: float = 0.02,
    tolerance: float = 0.05,
    min_length: float = 0.25,
    material: str = "plaster",
) -> FloorPlan:
    """The floor plan outlining a navmesh's storey at ``floor`` (default: the lowest, as :func:`_floor`).

    Triangles whose centre lies within ``floor_tolerance`` of the floor belong to the storey
    (furniture tops and other storeys do not). The outline is traced on a ``cell``-metre raster
    (so T-junctions and overlaps of the navmesh do not matter), then pushed out by ``offset``
    (the agent radius the navmesh was built for) and half a wall ``thickness``, so that the
    walls' faces are where the agent's body would touch. ``height`` is floor to ceiling.
    """
    p, f = _plan_mesh(mesh, faces, up)
    base = _floor(p, floor)
    tri = p[f]
    tri = tri[np.abs(tri[:, :, 2].mean(axis=1) - base) <= floor_tolerance]
    if len(tri) == 0:
        raise FloorPlanError(f"no navmesh triangle lies within {floor_tolerance} m of the floor height {base:.3f}")
    free, origin = _rasterise(tri[:, :, :2], cell)
    lines = _outline(free, origin, cell)
    walls = _walls(lines, offset + thickness / 2, thickness, tolerance, min_length, material)
    return FloorPlan(walls, _check_height(height), base)


def load_mesh(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V, 3) and faces (F, 3) of a mesh file (.glb, .gltf, .ply, .obj) in the file's coordinates; needs trimesh."""
    try:
        import trimesh
    except ImportError as e:
        raise ImportError("reading a scene mesh needs trimesh: pip install 'avworld[mesh]' (or pip install trimesh)") from e
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{os.fspath(path)}: no such mesh file")
    mesh = trimesh.load(os.fspath(path), force="mesh", process=False)
    if not hasattr(mesh, "faces") or len(mesh.faces) == 0:
        raise FloorPlanError(f"{os.fspath(path)}: the file holds no triangles")
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)


def _cross_section(p: np.ndarray, f: np.ndarray, level: float) -> list[tuple[np.ndarray, bool]]:
    """Polylines (N, 2) of the mesh cut at ``level``, air on the left, with whether each is closed."""
    for _ in range(8):  # keep every vertex off the plane: crossing points then lie strictly inside edges
        if not np.any(np.abs(p[:, 2] - level) < 2 * WELD):
            break
        level += 3 * WELD
    above = p[:, 2][f] > level  # (F, 3)
    n_above = above.sum(axis=1)
    cut = (n_above == 1) | (n_above == 2)
    f, above, n_above = f[cut], above[cut], n_above[cut]
    if len(f) == 0:
        return []
    rows = np.arange(len(f))
    k = np.where(n_above == 1, np.argmax(above, axis=1), np.argmin(above, axis=1))  # the vertex alone on its side
    edges = np.stack([np.stack([f[rows, k], f[rows, (k + j) % 3]], axis=1) for j in (1, 2)])  # (2, S, 2) the two crossed edges
    # Weld vertices, so that the triangles on either side of an edge share its crossing point (one node).
    used, local = np.unique(edges, return_inverse=True)
    _, weld = np.unique(np.round(p[used] / WELD).astype(np.int64), axis=0, return_inverse=True)
    weld = weld.reshape(-1)
    nodes, node_of = np.unique(np.sort(weld[local.reshape(-1)].reshape(-1, 2), axis=1), axis=0, return_inverse=True)
    node_of = node_of.reshape(2, -1)
    representative = np.zeros(len(used), np.int64)
    representative[weld] = used
    a, b = p[representative[nodes[:, 0]]], p[representative[nodes[:, 1]]]
    t = (level - a[:, 2]) / (b[:, 2] - a[:, 2])
    points = a[:, :2] + t[:, None] * (b[:, :2] - a[:, :2])  # (N, 2)
    tri = p[f]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])[:, :2]  # the air's side, horizontally
    start, end = node_of[0], node_of[1]
    e = points[end] - points[start]
    flip = (-e[:, 1] * normal[:, 0] + e[:, 0] * normal[:, 1]) < 0
    start, end = np.where(flip, end, start), np.where(flip, start, end)
    # Faces of touching solids meet back to back with no air between: such opposite pairs cancel.
    key, back = start * len(points) + end, end * len(points) + start
    key, first = np.unique(key, return_index=True)
    start, end = start[first], end[first]
    keep = (start != end) & ~np.isin(back[first], key)
    return [(points[c], c[0] == c[-1] and len(c) > 2) for c in chains(start[keep], end[keep])]


def _rasterise(tri: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Cells (ny, nx) whose centre lies in a triangle of ``tri`` (T, 3, 2), and the grid's origin (2,)."""
    origin = tri.min(axis=(0, 1)) - 2 * cell
    nx, ny = (np.ceil((tri.max(axis=(0, 1)) + 2 * cell - origin) / cell).astype(int)).tolist()
    free = np.zeros((ny, nx), bool)
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    ab, ac = b - a, c - a
    cw = ab[:, 0] * ac[:, 1] - ab[:, 1] * ac[:, 0] < 0
    b, c = np.where(cw[:, None], c, b), np.where(cw[:, None], b, c)  # counter-clockwise: the inside is left of every edge
    lo = np.ceil((tri.min(axis=1) - origin) / cell - 0.5).astype(int)  # (T, 2) first column / row inside the box
    hi = np.floor((tri.max(axis=1) - origin) / cell - 0.5).astype(int)
    for t in range(len(tri)):
        (j0, i0), (j1, i1) = lo[t], hi[t]
        if j1 < j0 or i1 < i0:
            continue
        xs = origin[0] + (np.arange(j0, j1 + 1) + 0.5) * cell
        ys = origin[1] + (np.arange(i0, i1 + 1) + 0.5) * cell
        inside = np.ones((len(ys), len(xs)), bool)
        for p0, p1 in ((a[t], b[t]), (b[t], c[t]), (c[t], a[t])):
            d = p1 - p0
            side = d[0] * (ys[:, None] - p0[1]) - d[1] * (xs[None, :] - p0[0])
            inside &= side >= -1e-6 * max(float(np.hypot(*d)), 1e-12)
        free[i0 : i1 + 1, j0 : j1 + 1] |= inside
    return free, origin


def _outline(free: np.ndarray, origin: np.ndarray, cell: float) -> list[tuple[np.ndarray, bool]]:
    """Closed polylines along the cell edges between free and blocked cells, free on the left."""
    pad = np.pad(free, 1)  # cell (r, c) covers [c, c+1] × [r, r+1] in cell units from origin - cell
    width = pad.shape[1] + 1
    corner = np.arange((pad.shape[0] + 1) * width).reshape(pad.shape[0] + 1, width)  # corner (r, c) at (c, r)
    starts, ends = [], []
    up, down = pad[1:] & ~pad[:-1], pad[:-1] & ~pad[1:]  # edge between rows r-1 and r: free above / below
    starts += [corner[1:-1, :-1][up], corner[1:-1, 1:][down]]
    ends += [corner[1:-1, 1:][up], corner[1:-1, :-1][down]]
    left, right = pad[:, :-1] & ~pad[:, 1:], pad[:, 1:] & ~pad[:, :-1]  # edge between columns c-1 and c: free left / right
    starts += [corner[:-1, 1:-1][left], corner[1:, 1:-1][right]]
    ends += [corner[1:, 1:-1][left], corner[:-1, 1:-1][right]]
    rows, cols = np.divmod(np.arange(corner.size), width)
    points = origin - cell + np.stack([cols, rows], axis=1) * cell
    return [(points[c], c[0] == c[-1]) for c in chains(np.concatenate(starts), np.concatenate(ends))]


def _walls(
    lines: list[tuple[np.ndarray, bool]], shift: float, thickness: float, tolerance: float, min_length: float, material: str
) -> tuple[Wall, ...]:
    """Walls on the edges of oriented polylines (air on the left), their centre lines ``shift`` to the right."""
    pieces = []
    for points, closed in lines:
        if np.linalg.norm(points.max(axis=0) - points.min(axis=0)) < min_length:
            continue
        simple = simplify(points, tolerance, closed)
        moved = offset(simple, shift, closed)
        for k in range(len(simple) - 1):
            a, b = moved[k], moved[k + 1]
            if (b - a) @ (simple[k + 1] - simple[k]) > 0 and np.linalg.norm(b - a) >= MIN_WALL:  # offsets may fold short edges over
                pieces.append(np.stack([a, b]))
    merged = drop_covered(merge_collinear(pieces, tolerance), thickness)
    walls = tuple(Wall((float(a[0]), float(a[1])), (float(b[0]), float(b[1])), thickness, material) for a, b in merged)
    if len(walls) < 3:
        raise FloorPlanError(f"the floor plan has {len(walls)} walls; a scene needs at least 3 to enclose a space")
    return walls
