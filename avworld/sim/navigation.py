"""Navigation: occupancy grid, collision-checked movement, geodesic distances and shortest paths.

The grid stores, for every cell centre, its clearance: the exact distance to the
nearest solid (wall piece or furniture box). A cell is navigable when its
clearance exceeds the agent radius and it lies inside the walls. Geodesic
distances are shortest paths on the 16-connected graph of navigable cells
(Dijkstra; 16 neighbours keep the grid bias under 3 %), so they follow doors,
never walls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from avworld.sim.scenes.scene import Scene, SceneError

MAX_GRID_CELLS = 1_100_000
"""Cells a navigation grid may have (a 50 m square scene at 5 cm: 1,014² cells, 2.8 s and ~0.5 GB with one distance
field; memory and time grow with the cells, a 200 m room took 8.5 GB). Larger grids are refused when the scene is first
used, naming this limit: a finer ``nav_cell`` shrinks the largest scene accepted."""

# Half of the 16-neighbourhood (the other half is the same edges reversed): 4 axial/diagonal + 4 knight moves.
_OFFSETS = ((0, 1), (1, 0), (1, 1), (1, -1), (1, 2), (2, 1), (1, -2), (2, -1))


@dataclass
class AgentConfig:
    """The agent's body and action magnitudes (DESIGN.md defaults)."""

    radius: float = 0.18
    forward_step: float = 0.25
    turn_deg: float = 15.0
    step_time: float = 0.25
    """Seconds of simulated time per step: the length of the step's sound."""
    height: float = 1.5
    """Eye and ear height above the floor, metres."""

    def __post_init__(self) -> None:
        for name in ("radius", "forward_step", "turn_deg", "step_time", "height"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"agent.{name} must be a positive number, got {value!r}")


@dataclass(frozen=True)
class Solids:
    """Every solid of a scene as oriented rectangles, for exact point-distance queries."""

    center: np.ndarray  # (M, 2)
    half: np.ndarray  # (M, 2) half extents along the rectangle's own axes
    axis: np.ndarray  # (M, 2) unit vector of the first axis
    labels: tuple[str, ...]  # e.g. "walls[3]", "furniture[0]"

    @classmethod
    def of(cls, scene: Scene) -> Solids:
        center, half, axis, labels = [], [], [], []
        for p in scene.wall_pieces():
            a, b = np.asarray(p.a), np.asarray(p.b)
            length = float(np.linalg.norm(b - a))
            center.append((a + b) / 2)
            half.append((length / 2, p.thickness / 2))
            axis.append((b - a) / length)
            labels.append(f"walls[{p.wall}]")
        for i, f in enumerate(scene.furniture):
            center.append(f.center)
            half.append((f.size[0] / 2, f.size[1] / 2))
            axis.append((math.cos(f.yaw), math.sin(f.yaw)))
            labels.append(f"furniture[{i}]")
        return cls(
            np.asarray(center, float).reshape(-1, 2),
            np.asarray(half, float).reshape(-1, 2),
            np.asarray(axis, float).reshape(-1, 2),
            tuple(labels),
        )

    def distances(self, points: np.ndarray) -> np.ndarray:
        """Distance from each point (N, 2) to each solid, (N, M); 0 inside."""
        r = points[:, None, :] - self.center[None]  # (N, M, 2)
        u = np.abs((r * self.axis[None]).sum(-1))
        v = np.abs(r[..., 0] * self.axis[None, :, 1] - r[..., 1] * self.axis[None, :, 0])
        return np.hypot(np.maximum(u - self.half[:, 0], 0), np.maximum(v - self.half[:, 1], 0))


class NavGrid:
    """Occupancy and navigability of a scene for an agent of a given radius.

    Cell (i, j) has its centre at ``origin + (j, i) * cell``: rows follow y, columns x.
    """

    def __init__(self, scene: Scene, radius: float, cell: float = 0.05) -> None:
        if not 0 < cell <= 0.05:
            raise ValueError(f"nav cell size must be in (0, 0.05] m, got {cell}")
        self.scene, self.radius, self.cell = scene, radius, cell
        self.solids = Solids.of(scene)
        lo, hi = scene.bounds()
        margin = 2 * cell
        self.origin = lo - margin
        nx, ny = (np.ceil((hi + margin - self.origin) / cell).astype(int) + 1).tolist()
        if nx * ny > MAX_GRID_CELLS:
            raise SceneError(
                "walls",
                f"the navigation grid would have {nx} x {ny} = {nx * ny:,} cells of {cell} m, over the limit of {MAX_GRID_CELLS:,} "
                f"(MAX_GRID_CELLS; the walls span {float(np.max(hi - lo)):.1f} m; see docs/scenes.md)",
            )
        self.shape = (ny, nx)
        self.clearance = self._clearance()  # (ny, nx)
        solid = self.clearance <= 0
        labels, _ = ndimage.label(~solid)
        border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        self.outside = np.isin(labels, border[border > 0])  # (ny, nx)
        self.free = (self.clearance > radius) & ~self.outside  # (ny, nx)
        self._graph = None

    def _clearance(self, reach: float = 1.0) -> np.ndarray:
        """Exact distance of every cell centre to the nearest solid, capped at ``reach`` metres."""
        ny, nx = self.shape
        out = np.full(self.shape, reach)
        s = self.solids
        extent = np.abs(s.axis) * s.half[:, :1] + np.abs(s.axis[:, ::-1]) * s.half[:, 1:]  # (M, 2) AABB half sizes
        for m in range(len(s.labels)):
            lo = np.floor((s.center[m] - extent[m] - reach - self.origin) / self.cell).astype(int)
            hi = np.ceil((s.center[m] + extent[m] + reach - self.origin) / self.cell).astype(int) + 1
            j0, i0 = np.maximum(lo, 0)
            j1, i1 = np.minimum(hi, (nx, ny))
            ys, xs = np.mgrid[i0:i1, j0:j1]
            pts = self.origin + np.stack([xs, ys], -1).reshape(-1, 2) * self.cell
            d = Solids(s.center[m : m + 1], s.half[m : m + 1], s.axis[m : m + 1], ()).distances(pts)[:, 0]
            np.minimum(out[i0:i1, j0:j1], d.reshape(i1 - i0, j1 - j0), out=out[i0:i1, j0:j1])
        return out

    def to_cell(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest cell (rows, cols) of world points (..., 2), clipped to the grid."""
        c = np.rint((np.asarray(xy, float) - self.origin) / self.cell).astype(int)
        return np.clip(c[..., 1], 0, self.shape[0] - 1), np.clip(c[..., 0], 0, self.shape[1] - 1)

    def to_world(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Cell centres (..., 2) of cells (rows, cols)."""
        return self.origin + np.stack([cols, rows], -1) * self.cell

    def navigable(self, xy: np.ndarray) -> np.ndarray:
        """Whether the agent may stand at each point (..., 2)."""
        i, j = self.to_cell(xy)
        return self.free[i, j]

    def move(self, x: float, y: float, yaw: float, distance: float) -> tuple[float, float, bool]:
        """Move ``distance`` metres along ``yaw`` with collision; returns (x, y, collided).

        A blocked move goes as far as it can, then slides along the obstacle: the rest
        of the displacement is tried along x alone and along y alone, and the
        longer of the two is kept.
        """
        start = np.array([x, y])
        delta = distance * np.array([math.cos(yaw), math.sin(yaw)])
        reached = self._advance(start, delta)
        if reached is None:
            end = start + delta
            return float(end[0]), float(end[1]), False
        rest = start + delta - reached
        ends = []
        for axis in (np.array([1.0, 0.0]), np.array([0.0, 1.0])):
            slid = self._advance(reached, rest * axis)
            ends.append(reached + rest * axis if slid is None else slid)
        best = max(ends, key=lambda e: float(np.linalg.norm(e - reached)))
        return float(best[0]), float(best[1]), True

    def _advance(self, start: np.ndarray, delta: np.ndarray) -> np.ndarray | None:
        """Last navigable point on the way ``start → start + delta``; None if the whole way is free.

        The way is sampled every half cell, so consecutive points lie in the same or neighbouring cells; a diagonal
        step between cells also needs both cells beside it free, as the goal field's edges do: the agent never slips
        through a corner where two blocked cells touch (it could reach pockets the field calls unreachable)."""
        n = max(1, math.ceil(float(np.linalg.norm(delta)) / (self.cell / 2)))
        pts = start + np.linspace(0.0, 1.0, n + 1)[:, None] * delta  # (n + 1, 2), the start first
        i, j = self.to_cell(pts)
        di, dj = np.diff(i), np.diff(j)
        corner_free = self.free[i[:-1] + di, j[:-1]] & self.free[i[:-1], j[:-1] + dj]
        ok = self.free[i[1:], j[1:]] & ((di == 0) | (dj == 0) | corner_free)  # (n,)
        if ok.all():
            return None
        return pts[int(np.argmin(ok))]  # the point before the first blocked step (the start if it is the first)

    def _edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """16-neighbour edges between navigable cells: (src, dst, length), flat cell indices."""
        free, (ny, nx) = self.free, self.shape
        src, dst, w = [], [], []
        idx = np.arange(ny * nx).reshape(ny, nx)
        for di, dj in _OFFSETS:
            i0, i1 = max(0, -di), ny - max(0, di)
            j0, j1 = max(0, -dj), nx - max(0, dj)
            ok = free[i0:i1, j0:j1] & free[i0 + di : i1 + di, j0 + dj : j1 + dj]
            # The straight line between the two cells must not cut a blocked corner.
            for ci, cj in _passed_cells(di, dj):
                ok &= free[i0 + ci : i1 + ci, j0 + cj : j1 + cj]
            src.append(idx[i0:i1, j0:j1][ok])
            dst.append(idx[i0 + di : i1 + di, j0 + dj : j1 + dj][ok])
            w.append(np.full(int(ok.sum()), math.hypot(di, dj) * self.cell))
        return np.concatenate(src), np.concatenate(dst), np.concatenate(w)

    def goal_field(self, goal: tuple[float, float]) -> GoalField:
        """Geodesic distance from every cell to ``goal`` (Dijkstra on the 16-connected grid)."""
        if self._graph is None:
            src, dst, w = self._edges()
            n = self.shape[0] * self.shape[1]
            self._graph = coo_matrix((w, (src, dst)), shape=(n, n)).tocsr()
        gi, gj = self.to_cell(np.asarray(goal, float))
        goal_idx = int(gi * self.shape[1] + gj)
        dist, pred = dijkstra(self._graph, directed=False, indices=goal_idx, return_predecessors=True)
        offset = float(np.linalg.norm(np.asarray(goal, float) - self.to_world(gi, gj)))
        field = (dist + offset).reshape(self.shape)
        if not self.free[gi, gj]:
            field[:] = np.inf
        return GoalField(self, np.asarray(goal, float), field, pred)


def _passed_cells(di: int, dj: int) -> list[tuple[int, int]]:
    """Cells (besides the ends) that the segment from (0,0) to (di, dj) passes near."""
    if max(abs(di), abs(dj)) == 1 and di and dj:
        return [(di, 0), (0, dj)]
    if abs(di) == 2:
        return [(1, 0), (1, dj)]
    if abs(dj) == 2:
        return [(0, dj // 2), (di, dj // 2)]
    return []


@dataclass
class GoalField:
    """Geodesic distances to one goal over a grid, and the shortest-path tree behind them."""

    grid: NavGrid
    goal: np.ndarray  # (2,)
    field: np.ndarray  # (ny, nx), inf where unreachable
    predecessors: np.ndarray  # (ny * nx,), Dijkstra tree towards the goal

    def distance(self, xy: np.ndarray) -> np.ndarray | float:
        """Geodesic distance of points (..., 2) to the goal; never below the Euclidean distance."""
        xy = np.asarray(xy, float)
        i, j = self.grid.to_cell(xy)
        d = self.field[i, j] + np.linalg.norm(xy - self.grid.to_world(i, j), axis=-1)
        return float(d) if d.ndim == 0 else d

    def path(self, xy: tuple[float, float]) -> np.ndarray:
        """Shortest path (N, 2) from ``xy`` to the goal, both ends included; empty if unreachable."""
        i, j = self.grid.to_cell(np.asarray(xy, float))
        if not np.isfinite(self.field[i, j]):
            return np.zeros((0, 2))
        nx = self.grid.shape[1]
        node, nodes = int(i * nx + j), []
        while node >= 0:
            nodes.append(node)
            node = int(self.predecessors[node])
        cells = np.asarray(nodes)
        return np.concatenate([[xy], self.grid.to_world(cells // nx, cells % nx)[1:], [self.goal]])
