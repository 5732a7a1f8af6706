"""Egocentric RGB-D renderer for 2.5D scenes, in pure numpy.

Every solid of a scene is an upright box standing on the floor: wall pieces
(full height), furniture and one "speaker" per sound source. A frame is drawn
in two vectorised passes:

1. **Columns.** One horizontal ray per image column is cut with every box
   (slab method in the box's own frame), giving the entry and exit depths of
   each (column, box) pair. The ``MAX_LAYERS`` nearest boxes per column are
   kept, sorted by entry depth.
2. **Pixels.** A box spans a contiguous range of rows in its column: from the
   top down, its top face (only for boxes lower than the eye: the rows whose
   ray drops below the box's top before leaving it), then its front face down
   to the floor line at the entry depth. Each pixel takes the nearest layer
   whose range holds its row, or else the floor or the ceiling. Horizontal surfaces (floor, ceiling, box tops)
   are textured by world (x, y), vertical ones by (distance along the face, z).

Depth is z-depth: a column's ray direction is ``forward + k * left`` with a
unit forward component, so the ray parameter of a hit is its distance along
the view axis. Row elevations follow a pinhole camera with square pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from avworld.sim.scenes.materials import TEXTURE_PX_PER_M, TILE_PX, texture
from avworld.sim.scenes.scene import Color, Scene

MAX_LAYERS = 4
"""Boxes kept per column; partial-height boxes in front of the nearest wall beyond MAX_LAYERS - 1 are dropped."""
MIN_HIT_DEPTH = 1e-3
"""Boxes entered nearer than this (or with the camera inside) are not drawn."""
SPEAKER_SIZE = 0.3
SPEAKER_MIN_HEIGHT = 0.3
SPEAKER_COLOR = (255, 96, 0)
DISTANCE_FALLOFF = 0.06
"""Brightness is divided by ``1 + DISTANCE_FALLOFF * depth``."""
FLOOR_SHADE, CEILING_SHADE, TOP_SHADE = 0.9, 1.0, 1.0

_TEX_MASK = TILE_PX - 1
if TILE_PX & _TEX_MASK:
    raise ImportError(f"renderer: TILE_PX must be a power of two to wrap texels with a bit mask, got {TILE_PX}")
_TEX_OFFSET = float(TILE_PX * 1024)
"""Added to texel coordinates (1024 whole tiles, 2 km) so that truncating them to int floors every scene coordinate."""

# Rows of the per-box table built in __init__, shape (_BOX_FIELDS, N).
_CX, _CY, _COS, _SIN, _HX, _HY, _ZTOP, _TEX, _UOFF, _RADIUS, _SHADE = range(11)
_BOX_FIELDS = _SHADE + 4
# Fields of the per-layer tables filled per frame, shapes (K + 2, W, 5) float32 and (K + 2, W, 2) int32.
_T, _SPLIT, _ZREL, _SHADE_V, _SHADE_H = range(5)
_BASE_V, _BASE_H = range(2)


@dataclass
class RenderConfig:
    """Camera of the egocentric view."""

    width: int = 64
    height: int = 64
    hfov_deg: float = 90.0
    max_depth: float = 10.0
    """Depth is clipped to this many metres."""

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 8 <= value <= 1024:
                raise ValueError(f"render.{name}: expected an integer in 8..1024, got {value!r}")
        if not 10.0 < self.hfov_deg < 170.0:
            raise ValueError(f"render.hfov_deg: expected a value in (10, 170) degrees, got {self.hfov_deg!r}")
        if not self.max_depth > 0.0 or not math.isfinite(self.max_depth):
            raise ValueError(f"render.max_depth: expected a positive finite number of metres, got {self.max_depth!r}")


def _speaker_texture() -> np.ndarray:
    """The speaker's look: a bright tile with dark grille bands, uint8 (TILE_PX, TILE_PX, 3)."""
    v = np.arange(TILE_PX)[:, None, None]
    band = np.where(v % 4 == 0, 0.55, 1.0)
    return np.broadcast_to(band * np.asarray(SPEAKER_COLOR, np.float32), (TILE_PX, TILE_PX, 3)).astype(np.uint8)


def _face_shade(nx: np.ndarray, ny: np.ndarray) -> np.ndarray:
    """Brightness of a vertical face with world normal (nx, ny): faces along x, +y and -y all differ."""
    return 0.72 + 0.2 * nx**2 + 0.08 * ny


class Renderer:
    """Draws what a camera at ``eye_height`` sees at pose (x, y, yaw) in one scene."""

    def __init__(self, scene: Scene, config: RenderConfig, eye_height: float = 1.5) -> None:
        if not 0.0 < eye_height < scene.height:
            raise ValueError(f"eye_height: expected a value in (0, scene height {scene.height}), got {eye_height!r}")
        self.scene, self.config, self.eye_height = scene, config, float(eye_height)

        atlas: list[np.ndarray] = []  # texture tiles, each (TILE_PX, TILE_PX, 3)
        tex_ids: dict[tuple[str, Color | None], int] = {}

        def tex_id(material: str, color: Color | None, make: Callable[[], np.ndarray] | None = None) -> int:
            if (material, color) not in tex_ids:
                tex_ids[material, color] = len(atlas)
                atlas.append(make() if make else texture(material, color))
            return tex_ids[material, color]

        # (centre x, centre y, yaw, half length, half width, top, texture, u offset) per box
        boxes: list[tuple[float, ...]] = []
        for piece in scene.wall_pieces():
            wall = scene.walls[piece.wall]
            a, b = np.asarray(piece.a), np.asarray(piece.b)
            centre, length = (a + b) / 2, float(np.linalg.norm(b - a))
            yaw = math.atan2(b[1] - a[1], b[0] - a[0])
            u_off = float(np.dot(a - np.asarray(wall.start), (b - a) / length))
            tid = tex_id(piece.material, piece.color)
            boxes.append((*centre, yaw, length / 2, piece.thickness / 2, scene.height, tid, u_off))
        for f in scene.furniture:
            tid = tex_id(f.material, f.color)
            boxes.append((*f.center, f.yaw, f.size[0] / 2, f.size[1] / 2, f.size[2], tid, 0.0))
        for s in scene.sources:
            tid = tex_id("speaker", None, _speaker_texture)
            boxes.append((*s.position, 0.0, SPEAKER_SIZE / 2, SPEAKER_SIZE / 2, max(s.height, SPEAKER_MIN_HEIGHT), tid, 0.0))
        floor_tex = tex_id(scene.floor_material, scene.floor_color)
        ceiling_tex = tex_id(scene.ceiling_material, scene.ceiling_color)

        b = np.asarray(boxes, np.float64).reshape(-1, 8).T  # (8, N)
        cos, sin = np.cos(b[2]), np.sin(b[2])
        table = np.empty((_BOX_FIELDS, b.shape[1]))
        table[[_CX, _CY]] = b[:2]
        table[_COS], table[_SIN] = cos, sin
        table[[_HX, _HY, _ZTOP]] = b[3:6]
        table[_TEX] = b[6] * TILE_PX * TILE_PX
        table[_UOFF] = b[7]
        table[_RADIUS] = np.hypot(b[3], b[4])
        # shade of the faces with local outward normal -x, +x, -y, +y
        for i, (lx, ly) in enumerate(((-1, 0), (1, 0), (0, -1), (0, 1))):
            table[_SHADE + i] = _face_shade(lx * cos - ly * sin, lx * sin + ly * cos)
        self._boxes = table
        self._atlas = np.concatenate([t.reshape(-1, 3) for t in atlas]).astype(np.float32)  # (T * TILE_PX², 3)

        # per-resolution ray tables
        w, h = config.width, config.height
        focal = (w / 2) / math.tan(math.radians(config.hfov_deg) / 2)
        self._k = (w / 2 - 0.5 - np.arange(w)) / focal  # (W,) leftward slope of each column's ray
        self._k32 = self._k.astype(np.float32)
        self._m = ((h / 2 - 0.5 - np.arange(h)) / focal).astype(np.float32)[:, None]  # (H, 1) upward slope of each row
        self._inv_m = 1.0 / np.where(np.abs(self._m) < 1e-5, np.float32(-1e-5), self._m)  # (H, 1)
        self._rows = np.arange(h, dtype=np.float32)  # (H,)
        self._row0, self._focal = h / 2 - 0.5, focal
        half_fov = math.radians(config.hfov_deg) / 2
        self._tan_half, self._cos_half = math.tan(half_fov), math.cos(half_fov)
        self._col_offsets = np.arange(w)  # (W,)

        # per-layer tables: layers 0..K-1 are filled per frame (nearest boxes), K is the floor, K + 1 the ceiling
        fl, ce = MAX_LAYERS, MAX_LAYERS + 1
        self._layer_f = np.zeros((MAX_LAYERS + 2, w, 5), np.float32)
        self._layer_i = np.zeros((MAX_LAYERS + 2, w, 2), np.int32)
        self._layer_f[:fl, :, _SHADE_H] = TOP_SHADE
        floor, ceiling = self._layer_f[fl], self._layer_f[ce]  # (W, 5) each
        floor[:, _SPLIT] = ceiling[:, _SPLIT] = np.inf  # no front face
        floor[:, _ZREL], ceiling[:, _ZREL] = -self.eye_height, scene.height - self.eye_height
        floor[:, _SHADE_H], ceiling[:, _SHADE_H] = FLOOR_SHADE, CEILING_SHADE
        self._layer_i[fl, :, _BASE_H], self._layer_i[ce, :, _BASE_H] = floor_tex * TILE_PX**2, ceiling_tex * TILE_PX**2
        self._background = np.where(self._m < 0, fl, ce)  # (H, 1) floor below the horizon

    def render(self, x: float, y: float, yaw: float) -> tuple[np.ndarray, np.ndarray]:
        """RGB uint8 (H, W, 3) and z-depth float32 (H, W) in metres clipped to ``max_depth``, seen from (x, y, yaw)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self._render(float(x), float(y), float(yaw))

    def _render(self, x: float, y: float, yaw: float) -> tuple[np.ndarray, np.ndarray]:
        eye = self.eye_height
        fx, fy = math.cos(yaw), math.sin(yaw)  # forward; left is (-fy, fx)
        boxes = self._visible_boxes(x, y, fx, fy)  # (F, N)
        n = boxes.shape[1]
        n_layers = min(MAX_LAYERS, n)

        # 1. columns: slab test of each column's ray against each box, in the box's frame
        cos, sin = boxes[_COS], boxes[_SIN]
        rx, ry = x - boxes[_CX], y - boxes[_CY]
        ox, oy = rx * cos + ry * sin, ry * cos - rx * sin  # (N,) camera in box frame
        k = self._k[:, None]  # (W, 1)
        dx = (fx * cos + fy * sin) + k * (fx * sin - fy * cos)  # (W, N) ray direction in box frame
        dy = (fy * cos - fx * sin) + k * (fx * cos + fy * sin)
        ix, iy = 1.0 / dx, 1.0 / dy  # ±inf for a ray parallel to a slab: its crossings are then ±inf too
        x1, x2 = (-boxes[_HX] - ox) * ix, (boxes[_HX] - ox) * ix  # (W, N) crossings of the x slab's planes
        y1, y2 = (-boxes[_HY] - oy) * iy, (boxes[_HY] - oy) * iy
        near_x = np.fmin(x1, x2)  # fmin/fmax: 0 * inf (a ray lying in a face's plane) gives NaN; ignore it
        t_in = np.fmax(near_x, np.fmin(y1, y2))
        t_out = np.fmin(np.fmax(x1, x2), np.fmax(y1, y2))
        t_in = np.where((t_in <= t_out) & (t_in > MIN_HIT_DEPTH), t_in, np.inf)  # (W, N)

        order = np.argsort(t_in, axis=1)[:, :n_layers]  # (W, K) nearest boxes first
        flat = order + (self._col_offsets * n)[:, None]
        t_in, near_x, t_out, dx, dy = (a.take(flat) for a in (t_in, near_x, t_out, dx, dy))  # (W, K) each
        x_face = near_x == t_in  # entered through a face across local x
        hit = np.isfinite(t_in)
        t_in = np.where(hit, t_in, 1.0)
        sel = boxes[:, order]  # (F, W, K)

        # where on the entered face: u in metres along it, and which of the 4 faces (for its shade)
        u = np.where(x_face, oy[order] + t_in * dy + sel[_HY], ox[order] + t_in * dx + sel[_HX] + sel[_UOFF])
        face = np.where(x_face, dx < 0, 2 + (dy < 0))
        shade = boxes[_SHADE + face, order]  # (W, K)

        # 2. rows: a layer covers rows top..bottom: its top face (boxes below the eye), then its front face from ``split`` down
        zrel = sel[_ZTOP] - eye
        t_top = np.where(zrel < 0, t_out, t_in)  # the top face is seen until the ray leaves the box
        row0, f = self._row0, self._focal
        top = np.where(hit, row0 - zrel / t_top * f, np.inf).T  # (K, W) first covered row
        bottom = (row0 + eye / t_in * f).T  # (K, W) last covered row: the floor line at entry

        lf, li = self._layer_f, self._layer_i  # (K + 2, W, 5), (K + 2, W, 2)
        lf[:n_layers, :, _T] = t_in.T
        lf[:n_layers, :, _SPLIT] = (row0 - zrel / t_in * f).T
        lf[:n_layers, :, _ZREL] = zrel.T
        lf[:n_layers, :, _SHADE_V] = shade.T
        li[:n_layers, :, _BASE_H] = sel[_TEX].T
        li[:n_layers, :, _BASE_V] = (sel[_TEX] + ((u * TEXTURE_PX_PER_M + _TEX_OFFSET).astype(np.int32) & _TEX_MASK)).T

        rows = self._rows[:, None]  # (H, 1)
        covered = (rows >= top[:, None, :]) & (rows <= bottom[:, None, :])  # (K, H, W)
        nearest = self._background  # (H, W) once broadcast: painted from the farthest layer to the nearest
        for layer in range(n_layers - 1, -1, -1):
            nearest = np.where(covered[layer], layer, nearest)
        flat = nearest * lf.shape[1] + self._col_offsets  # (H, W) index into (K + 2) * W
        pf = lf.reshape(-1, 5).take(flat, axis=0)  # (H, W, 5)
        pi = li.reshape(-1, 2).take(flat, axis=0)  # (H, W, 2)

        # 3. pixels: depth, texel, light
        vertical = rows >= pf[..., _SPLIT]  # (H, W) front face, else a horizontal surface
        depth = np.where(vertical, pf[..., _T], pf[..., _ZREL] * self._inv_m)  # (H, W)
        kl = self._k32
        wx = x + depth * (fx - kl * fy)  # (H, W) world x of the pixel's point
        tex_row = np.where(vertical, eye + depth * self._m, y + depth * (fy + kl * fx))  # z on faces, world y elsewhere
        tex_u = (wx * TEXTURE_PX_PER_M + _TEX_OFFSET).astype(np.int32) & _TEX_MASK
        tex_v = (tex_row * TEXTURE_PX_PER_M + _TEX_OFFSET).astype(np.int32) & _TEX_MASK
        texel = np.where(vertical, pi[..., _BASE_V], pi[..., _BASE_H] + tex_u) + tex_v * TILE_PX
        depth = np.minimum(depth, np.float32(self.config.max_depth))
        light = np.where(vertical, pf[..., _SHADE_V], pf[..., _SHADE_H]) / (1.0 + DISTANCE_FALLOFF * depth)  # (H, W)
        rgb = (self._atlas.take(texel, axis=0) * light[..., None]).astype(np.uint8)  # (H, W, 3)
        return rgb, depth

    def _visible_boxes(self, x: float, y: float, fx: float, fy: float) -> np.ndarray:
        """Columns of the box table whose bounding circle meets the horizontal view cone, (F, N')."""
        b = self._boxes
        qx, qy = b[_CX] - x, b[_CY] - y
        ahead, left = qx * fx + qy * fy, qy * fx - qx * fy  # (N,)
        outside = (np.abs(left) - ahead * self._tan_half) * self._cos_half > b[_RADIUS]  # beyond a side of the cone
        return b.compress(~outside, axis=1)
