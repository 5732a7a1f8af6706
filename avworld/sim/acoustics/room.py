"""A scene as a pyroomacoustics room: the same walls, doors and furniture the renderer draws.

pyroomacoustics wants one closed room whose planar faces have normals pointing out of
the air volume. A scene is turned into one as follows:

- an enclosing box a little larger than the scene, fully absorbing (the outside is
  free field, so sound that leaves through an outer door does not come back);
- every wall piece (walls after door cuts) as the two long faces of its solid box,
  facing the air on either side: interior partitions are thick boxes, never
  zero-thickness quads, so pyroomacoustics' visibility tests block the direct path
  through them and sound passes only through the door gaps;
- tall furniture (at least ``reflecting_furniture_height``, default 1 m: shelves,
  wardrobes) by its four side faces. Lower furniture sits below both the emitters
  (1 m) and the ears (1.5 m), where it neither blocks a direct path nor offers a
  first-order reflection, while every face costs image sources (order 3 on a
  furnished apartment goes from ~5 ms to ~100 ms); its surfaces still absorb in the
  room's reverberation time;
- floor and ceiling over the whole box.

End caps of wall pieces (a few centimetres wide) are left out for the same reason;
a path along the inside of a wall would have to enter and leave through them, which
geometry never asks for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
import pyroomacoustics as pra
from pyroomacoustics import libroom
from pyroomacoustics.acoustics import AntoniOctaveFilterBank
from pyroomacoustics.room import find_non_convex_walls, wall_factory

from avworld.sim.navigation import NavGrid
from avworld.sim.scenes.materials import MATERIALS
from avworld.sim.scenes.scene import Scene

SPEED_OF_SOUND = 343.0
OUTSIDE_MARGIN = 0.5
"""Metres between the scene's walls and the absorbing enclosure."""
OUTSIDE_ABSORPTION = 0.99


@cache
def octave_bands(fs: int) -> AntoniOctaveFilterBank:
    """pyroomacoustics' octave bands at ``fs`` (centres 125 Hz … below Nyquist)."""
    return AntoniOctaveFilterBank(fs=fs, n_fft=512, base_frequency=125.0)


@cache
def _material(name: str, fs: int) -> pra.Material:
    m = MATERIALS[name]
    mat = pra.Material(m.acoustic, m.scattering)
    mat.resample(octave_bands(fs))
    return mat


@cache
def _flat(absorption: float, fs: int) -> pra.Material:
    """A material absorbing ``absorption`` of the energy in every band."""
    centers = list(octave_bands(fs).centers)
    mat = pra.Material({"coeffs": [absorption] * len(centers), "center_freqs": centers}, 0.0)
    mat.resample(octave_bands(fs))
    return mat


def _vertical(p0: np.ndarray, p1: np.ndarray, z0: float, z1: float) -> np.ndarray:
    """Corners (3, 4) of the vertical rectangle over p0→p1; its normal points to the right of p0→p1."""
    return np.array([[p0[0], p1[0], p1[0], p0[0]], [p0[1], p1[1], p1[1], p0[1]], [z0, z0, z1, z1]])


@dataclass(frozen=True)
class Reverb:
    """What the tail needs to know of the room: per band its RT60 (s), mean absorption and absorption area (m²)."""

    rt60: np.ndarray  # (B,)
    mean_absorption: np.ndarray  # (B,)
    absorption_area: np.ndarray  # (B,) Σ S·α
    mean_free_path: float  # m, 4V/S


@dataclass(frozen=True)
class Face:
    """One planar face: corners (3, K), material name (or "outside"), and whether it faces the scene's interior."""

    corners: np.ndarray
    material: str
    interior: bool


class AcousticRoom:
    """pyroomacoustics' room engine over a scene's geometry, plus its theoretical reverberation.

    ``rt60`` is Sabine's reverberation time per octave band, computed from the interior
    air volume and the faces that bound it (the absorbing enclosure excluded).
    """

    def __init__(self, scene: Scene, fs: int, grid: NavGrid | None = None, reflecting_furniture_height: float = 1.0) -> None:
        self.scene, self.fs = scene, fs
        self.reflecting_furniture_height = reflecting_furniture_height
        self.grid = grid if grid is not None else NavGrid(scene, radius=0.05)
        self.faces = self._faces()
        self.bands = octave_bands(fs)
        self.centers = np.asarray(self.bands.centers, float)  # (B,)
        walls = []
        for i, f in enumerate(self.faces):
            mat = _flat(OUTSIDE_ABSORPTION, fs) if f.material == "outside" else _material(f.material, fs)
            walls.append(wall_factory(f.corners, mat.absorption_coeffs, mat.scattering_coeffs, f"{f.material}{i}"))
        self.walls = walls
        self.obstructing = find_non_convex_walls(walls)
        self.volume, self.rt60, self.reverb = self._reverberation()

    def _faces(self) -> list[Face]:
        sc = self.scene
        faces: list[Face] = []
        for piece in sc.wall_pieces():
            c = piece.corners()  # (4, 2) counter-clockwise: a-n, b-n, b+n, a+n
            for k in (0, 2):
                faces.append(Face(_vertical(c[k + 1], c[k], 0.0, sc.height), piece.material, self._faces_interior(c[k], c[k + 1])))
        for f in sc.furniture:
            if f.size[2] < self.reflecting_furniture_height:
                continue
            ax = np.array([math.cos(f.yaw), math.sin(f.yaw)])
            ay = np.array([-ax[1], ax[0]])
            half_l, half_w = f.size[0] / 2, f.size[1] / 2
            ring = [np.asarray(f.center) + sx * half_l * ax + sy * half_w * ay for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
            for k in range(4):
                faces.append(Face(_vertical(ring[(k + 1) % 4], ring[k], 0.0, min(f.size[2], sc.height)), f.material, True))
        lo, hi = sc.bounds()
        lo, hi = lo - OUTSIDE_MARGIN, hi + OUTSIDE_MARGIN
        box = [np.array(p) for p in ((lo[0], lo[1]), (hi[0], lo[1]), (hi[0], hi[1]), (lo[0], hi[1]))]
        for k in range(4):
            faces.append(Face(_vertical(box[k], box[(k + 1) % 4], 0.0, sc.height), "outside", False))
        xs, ys = [p[0] for p in box], [p[1] for p in box]
        faces.append(Face(np.array([xs[::-1], ys[::-1], [0.0] * 4]), sc.floor_material, True))
        faces.append(Face(np.array([xs, ys, [sc.height] * 4]), sc.ceiling_material, True))
        return faces

    def _faces_interior(self, p0: np.ndarray, p1: np.ndarray) -> bool:
        """Whether the air to the right of the wall edge p0→p1 is inside the scene (not the outside)."""
        d = (p1 - p0) / max(float(np.linalg.norm(p1 - p0)), 1e-12)
        probe = (p0 + p1) / 2 + np.array([d[1], -d[0]]) * 0.06
        i, j = self.grid.to_cell(probe)
        return bool(~self.grid.outside[i, j])

    def _reverberation(self) -> tuple[float, np.ndarray, Reverb]:
        """Interior volume (m³), Sabine RT60 per band (s) as pyroomacoustics' ``rt60_sabine``, and the tail's parameters."""
        g = self.grid
        air = (g.clearance > 0) & ~g.outside
        area_floor = float(air.sum()) * g.cell**2
        volume = area_floor * self.scene.height
        absorption = np.zeros(len(self.centers))  # Σ S·α per band, m²
        surface = 2 * area_floor
        *sides, floor, ceiling = zip(self.faces, self.walls, strict=True)
        for f, w in sides:
            if f.interior:
                absorption += float(w.area()) * np.asarray(w.absorption, float)
                surface += float(w.area())
        for _, w in (floor, ceiling):  # only the part of the floor and ceiling over the scene's air counts
            absorption += area_floor * np.asarray(w.absorption, float)
        for f in self.scene.furniture:  # low furniture absorbs without reflecting; its top and sides
            if f.size[2] < self.reflecting_furniture_height:
                length, width, height = f.size
                area = length * width + 2 * (length + width) * height
                absorption += area * np.asarray(_material(f.material, self.fs).absorption_coeffs, float)
                surface += area
        rt60 = 24.0 * math.log(10.0) / SPEED_OF_SOUND * volume / np.maximum(absorption, 1e-9)
        return volume, rt60, Reverb(rt60, absorption / surface, absorption, 4 * volume / surface)

    def engine(self, listener: np.ndarray, max_order: int) -> libroom.Room:
        """A fresh pyroomacoustics room engine with one microphone at ``listener`` (3,); building one costs ~0.1 ms."""
        eng = libroom.Room(self.walls, self.obstructing, [], SPEED_OF_SOUND, max_order, 1e-7, 1.0, 0.5, 0.004, False)
        eng.add_mic(np.asarray(listener, float)[:, None])
        return eng

    def contains(self, point: np.ndarray) -> bool:
        """Whether a 3-D point is in the scene's air (inside the walls, outside every solid)."""
        i, j = self.grid.to_cell(np.asarray(point[:2]))
        return bool(0.0 <= point[2] <= self.scene.height and self.grid.clearance[i, j] > 0 and not self.grid.outside[i, j])
