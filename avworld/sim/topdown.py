"""Top-down map of a scene: walls, furniture, sources, the agent and its path.

The scene's wall bounds, plus a small margin, are fitted into a square image
with +y up. Shapes are rasterised with vectorised tests over the pixel window
around each one (point in convex polygon, distance to a centre); lines are
drawn by sampling them densely.
"""

from __future__ import annotations

import math

import numpy as np

from avworld.sim.scenes.materials import MATERIALS
from avworld.sim.scenes.scene import Scene

FLOOR_RGB = (238, 235, 228)
FREE_RGB = (205, 230, 200)
"""Floor colour of the cells the agent can stand on, when a navigable mask is given."""
WALL_RGB = (45, 45, 52)
SOURCE_RGB, SOURCE_RING_RGB = (215, 30, 30), (255, 150, 0)
SOURCE_RADIUS, SOURCE_RING_RADIUS = 0.2, 0.32
PATH_RGB = (40, 150, 220)
AGENT_RGB, HEADING_RGB = (30, 70, 200), (10, 20, 90)
AGENT_RADIUS, HEADING_LENGTH = 0.25, 0.6
MARGIN = 0.04
"""Margin around the scene bounds, as a fraction of the larger side (plus 0.2 m)."""


class TopdownView:
    """Where the world box ``lo``..``hi`` (each (2,)) lies, with a margin, in a square image of ``size`` pixels."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray, size: int) -> None:
        side = float(np.max(hi - lo))
        side += 2 * (MARGIN * side + 0.2)
        self.size = size
        self.scale = size / side
        """Pixels per metre."""
        self.center = (np.asarray(lo, np.float64) + hi) / 2
        centres = np.arange(size) + 0.5 - size / 2
        self.x = self.center[0] + centres / self.scale  # (size,) world x of each column's pixel centres
        self.y = self.center[1] - centres / self.scale  # (size,) world y of each row's pixel centres

    @classmethod
    def of_scene(cls, scene: Scene, size: int) -> TopdownView:
        """The view that ``render_topdown`` uses for ``scene``."""
        return cls(*scene.bounds(), size)

    def to_pixel(self, points: np.ndarray) -> np.ndarray:
        """Continuous (row, col) image coordinates of world points (..., 2); pixel (i, j) spans [i, i+1) x [j, j+1)."""
        p = np.asarray(points, np.float64)
        col = (p[..., 0] - self.center[0]) * self.scale + self.size / 2
        row = (self.center[1] - p[..., 1]) * self.scale + self.size / 2
        return np.stack([row, col], axis=-1)

    def windows(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Pixel windows (row start, row stop, col start, col stop) covering world boxes lo..hi, (B, 4) int, clipped."""
        top_left = np.floor(self.to_pixel(np.stack([lo[:, 0], hi[:, 1]], axis=-1)))
        bottom_right = np.ceil(self.to_pixel(np.stack([hi[:, 0], lo[:, 1]], axis=-1)))
        bounds = np.stack([top_left[:, 0], bottom_right[:, 0], top_left[:, 1], bottom_right[:, 1]], axis=-1)
        return np.clip(bounds, 0, self.size).astype(int)


def render_topdown(
    scene: Scene,
    pose: tuple[float, float, float] | None = None,
    path: np.ndarray | None = None,
    size: int = 256,
    free: np.ndarray | None = None,
    free_origin: tuple[float, float] | None = None,
    free_cell: float | None = None,
) -> np.ndarray:
    """Map of ``scene`` as uint8 (size, size, 3) with +y up.

    Draws the floor, a faint tint over the navigable cells of ``free`` (ny, nx) bool whose cell [0, 0] is
    centred at ``free_origin`` with side ``free_cell``, furniture, walls (dark), sources (red discs in an
    orange ring), the agent's ``path`` (N, 2) world points as a polyline, and the agent at ``pose`` = (x, y, yaw)
    as a disc with a heading tick.
    """
    if not 8 <= size <= 4096:
        raise ValueError(f"size: expected an image side in 8..4096 pixels, got {size!r}")
    walls = np.stack([p.corners() for p in scene.wall_pieces()])  # (P, 4, 2), as scene.bounds() sees them
    view = TopdownView(walls.reshape(-1, 2).min(axis=0), walls.reshape(-1, 2).max(axis=0), size)
    img = np.empty((size, size, 3), np.uint8)
    img[:] = FLOOR_RGB
    if free is not None:
        if free_origin is None or free_cell is None:
            raise ValueError("free_origin, free_cell: both are required with a navigable mask")
        _paint_free(img, view, np.asarray(free, bool), free_origin, free_cell)
    if scene.furniture:
        half = np.array([f.size[:2] for f in scene.furniture]) / 2  # (F, 2)
        yaw = np.array([f.yaw for f in scene.furniture])
        local = half[:, None, :] * np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]])  # (F, 4, 2) counter-clockwise
        c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
        corners = np.array([f.center for f in scene.furniture])[:, None, :] + np.stack(
            [local[..., 0] * c - local[..., 1] * s, local[..., 0] * s + local[..., 1] * c], axis=-1
        )
        colors = [f.color if f.color is not None else MATERIALS[f.material].color for f in scene.furniture]
        _fill_convex(img, view, corners, colors)
    _fill_convex(img, view, walls, [WALL_RGB] * len(walls))
    for src in scene.sources:
        _fill_disc(img, view, src.position, SOURCE_RING_RADIUS, SOURCE_RING_RGB)
        _fill_disc(img, view, src.position, SOURCE_RADIUS, SOURCE_RGB)
    if path is not None and len(path):
        _draw_polyline(img, view, np.asarray(path, np.float64).reshape(-1, 2), PATH_RGB)
    if pose is not None:
        x, y, yaw = pose
        _fill_disc(img, view, (x, y), AGENT_RADIUS, AGENT_RGB)
        tip = (x + HEADING_LENGTH * math.cos(yaw), y + HEADING_LENGTH * math.sin(yaw))
        _draw_polyline(img, view, np.array([(x, y), tip]), HEADING_RGB)
    return img


def _paint_free(img: np.ndarray, view: TopdownView, free: np.ndarray, origin: tuple[float, float], cell: float) -> None:
    """Paint FREE_RGB where a pixel's centre falls in a free cell (separable nearest-cell lookup)."""
    ny, nx = free.shape
    ix = np.floor((view.x - origin[0]) / cell + 0.5).astype(np.intp)  # (size,) cell column of each pixel column
    iy = np.floor((view.y - origin[1]) / cell + 0.5).astype(np.intp)  # (size,) cell row of each pixel row
    ok_x, ok_y = (ix >= 0) & (ix < nx), (iy >= 0) & (iy < ny)
    mask = free[np.clip(iy, 0, ny - 1)][:, np.clip(ix, 0, nx - 1)] & ok_y[:, None] & ok_x[None, :]  # (size, size)
    img[mask] = FREE_RGB


def _fill_convex(img: np.ndarray, view: TopdownView, corners: np.ndarray, colors: list[tuple[int, int, int]]) -> None:
    """Fill convex polygons with counter-clockwise ``corners`` (B, V, 2), each grown by half a pixel so thin walls never vanish."""
    edge = np.roll(corners, -1, axis=1) - corners  # (B, V, 2)
    slack = np.linalg.norm(edge, axis=-1) * 0.5 / view.scale  # (B, V) half a pixel, scaled like the cross product
    windows = view.windows(corners.min(axis=1), corners.max(axis=1))  # (B, 4)
    for (r0, r1, c0, c1), pts, e, sl, rgb in zip(windows, corners, edge, slack, colors, strict=True):
        x, y = view.x[None, c0:c1], view.y[r0:r1, None]  # (1, w), (h, 1)
        inside = np.ones((r1 - r0, c1 - c0), bool)
        for (ax, ay), (ex, ey), tol in zip(pts, e, sl, strict=True):
            inside &= ex * (y - ay) - ey * (x - ax) >= -tol
        img[r0:r1, c0:c1][inside] = rgb


def _fill_disc(img: np.ndarray, view: TopdownView, center: tuple[float, float], radius: float, rgb: tuple[int, int, int]) -> None:
    """Fill a disc of ``radius`` metres (at least 2 pixels)."""
    r = max(radius, 2.0 / view.scale)
    c = np.asarray(center, np.float64)
    r0, r1, c0, c1 = view.windows((c - r)[None], (c + r)[None])[0]
    x, y = view.x[None, c0:c1], view.y[r0:r1, None]
    img[r0:r1, c0:c1][(x - c[0]) ** 2 + (y - c[1]) ** 2 <= r * r] = rgb


def _draw_polyline(img: np.ndarray, view: TopdownView, points: np.ndarray, rgb: tuple[int, int, int]) -> None:
    """Draw the polyline through ``points`` (N, 2), about 2 pixels wide, by sampling it every half pixel."""
    px = view.to_pixel(points)  # (N, 2) continuous (row, col)
    seg = np.diff(px, axis=0)  # (N - 1, 2)
    steps = np.maximum(np.ceil(np.linalg.norm(seg, axis=1) * 2), 1).astype(np.intp)  # samples per segment, end excluded
    which = np.repeat(np.arange(len(seg)), steps)  # (S,) segment of each sample
    frac = (np.arange(which.size) - np.repeat(np.cumsum(steps) - steps, steps)) / steps[which]
    samples = np.concatenate([px[which] + seg[which] * frac[:, None], px[-1:]])  # (S + 1, 2)
    ij = np.floor(samples - 0.5).astype(np.intp)  # top-left pixel of the 2x2 block around each sample
    ij = (ij[:, None, :] + np.array([[0, 0], [0, 1], [1, 0], [1, 1]])).reshape(-1, 2)  # (S * 4, 2)
    keep = ((ij >= 0) & (ij < view.size)).all(axis=1)
    img[ij[keep, 0], ij[keep, 1]] = rgb
