"""Sound paths from a source to a listener point: image sources, and diffraction around door edges.

The early part of a response comes from pyroomacoustics' image-source model on the
scene's room (:class:`~avworld.sim.acoustics.room.AcousticRoom`): specular paths up
to a reflection order, each checked for visibility, so walls block the direct path.

Image sources alone leave a listener in another room silent whenever no specular
path of low order threads the doors. Real sound also bends around door edges, and
that bent sound is what tells a listener which door leads to the source. When the
direct path is blocked, a **diffracted path** is added: the taut string from the
listener to the source around wall corners (the shortest path in the plane, pulled
tight along the navigation path), heard from the direction of its first corner,
with its full length as delay and spreading, and a loss that grows with the total
bending angle and with frequency (a knife-edge-like heuristic: ``DIFFRACTION_DB``
per 90° of bending in each octave band, after the trend of Maekawa's barrier chart).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from avworld.sim.acoustics.room import AcousticRoom
from avworld.sim.navigation import GoalField

DIFFRACTION_DB_125HZ = 4.0
DIFFRACTION_DB_PER_OCTAVE = 2.5
"""Loss in dB per 90° of bending: 4 dB at 125 Hz, 2.5 dB more per octave (11.5 dB at 1 kHz)."""
DIFFRACTED = -1
"""Order given to a diffracted path."""


@dataclass(frozen=True)
class Arrivals:
    """Paths from a source to a listener point.

    Each path k is an apparent source at ``positions[:, k]`` (an image source, or a
    virtual source along a diffracted path's arrival direction at its full length)
    heard with pressure gain ``gains[:, k]`` per octave band, before 1/(4πr) spreading.
    """

    positions: np.ndarray  # (3, K) metres
    gains: np.ndarray  # (B, K) wall reflections × diffraction losses, in [0, 1]
    orders: np.ndarray  # (K,) reflection order; DIFFRACTED for a diffracted path

    @classmethod
    def empty(cls, n_bands: int) -> Arrivals:
        return cls(np.zeros((3, 0)), np.zeros((n_bands, 0)), np.zeros(0, np.int64))

    def __add__(self, other: Arrivals) -> Arrivals:
        return Arrivals(
            np.concatenate([self.positions, other.positions], 1),
            np.concatenate([self.gains, other.gains], 1),
            np.concatenate([self.orders, other.orders]),
        )

    def energies(self, listener: np.ndarray) -> np.ndarray:
        """Energy of every path at ``listener`` per band, (B, K): (gain / 4πr)²."""
        r = np.maximum(np.linalg.norm(self.positions - listener[:, None], axis=0), 0.1)
        return (self.gains / (4 * math.pi * r)) ** 2

    def arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays, for storage (``np.savez``)."""
        return {"positions": self.positions, "gains": self.gains, "orders": self.orders}


def image_sources(room: AcousticRoom, source: np.ndarray, listener: np.ndarray, max_order: int) -> Arrivals:
    """Visible image sources of ``source`` (3,) at ``listener`` (3,), up to ``max_order`` reflections."""
    eng = room.engine(listener, max_order)
    if eng.image_source_model(np.asarray(source, float)) == 0:
        return Arrivals.empty(len(room.centers))
    visible = eng.visible_mics[0].astype(bool)
    return Arrivals(eng.sources[:, visible].copy(), eng.attenuations[:, visible].copy(), eng.orders[visible].astype(np.int64))


class WallOutline:
    """The scene's wall pieces as 2-D edges, for line-of-sight tests at ear height (walls are full height)."""

    def __init__(self, room: AcousticRoom) -> None:
        corners = np.stack([p.corners() for p in room.scene.wall_pieces()])  # (P, 4, 2)
        self.a = corners.reshape(-1, 2)  # (E, 2)
        self.b = np.roll(corners, -1, axis=1).reshape(-1, 2)

    def visible(self, p: np.ndarray, qs: np.ndarray) -> np.ndarray:
        """Whether the segment p→q crosses no wall edge, for each q of ``qs`` (Q, 2); (Q,) bool."""
        d = qs - p  # (Q, 2)
        e = self.b - self.a  # (E, 2)
        denom = d[:, None, 0] * e[None, :, 1] - d[:, None, 1] * e[None, :, 0]  # (Q, E)
        w = self.a[None] - p  # (1, E, 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (w[..., 0] * e[None, :, 1] - w[..., 1] * e[None, :, 0]) / denom  # along p→q
            u = (w[..., 0] * d[:, None, 1] - w[..., 1] * d[:, None, 0]) / denom  # along the edge
        hit = (np.abs(denom) > 1e-12) & (t > 1e-9) & (t < 1 - 1e-9) & (u >= 0) & (u <= 1)
        return ~hit.any(axis=1)


def taut_path(outline: WallOutline, path: np.ndarray) -> np.ndarray:
    """Corners (C, 2) of the string pulled tight along ``path`` (N, 2), both ends included."""
    corners = [path[0]]
    i = 0
    while i < len(path) - 1:
        vis = outline.visible(path[i], path[i + 1 :])
        blocked = np.flatnonzero(~vis)
        j = i + (int(blocked[0]) if len(blocked) else len(path) - 1 - i)  # last point before the first blocked one
        j = max(j, i + 1)
        corners.append(path[j])
        i = j
    return np.asarray(corners)


def diffracted_path(room: AcousticRoom, outline: WallOutline, field: GoalField, source: np.ndarray, listener: np.ndarray) -> Arrivals:
    """The diffracted path from ``source`` to ``listener`` (both (3,)) when walls block the direct one; else empty."""
    n_bands = len(room.centers)
    if outline.visible(listener[:2], source[None, :2])[0]:
        return Arrivals.empty(n_bands)
    path = field.path((float(listener[0]), float(listener[1])))
    if len(path) < 2:
        return Arrivals.empty(n_bands)
    path[-1] = source[:2]
    corners = taut_path(outline, path)
    legs = np.diff(corners, axis=0)  # (C-1, 2)
    lengths = np.linalg.norm(legs, axis=1)
    keep = lengths > 1e-9
    legs, lengths = legs[keep], lengths[keep]
    heading = np.arctan2(legs[:, 1], legs[:, 0])
    bend = float(np.abs((np.diff(heading) + math.pi) % (2 * math.pi) - math.pi).sum())
    horizontal = float(lengths.sum())
    arrival = legs[0] / lengths[0]
    position = np.array([listener[0] + arrival[0] * horizontal, listener[1] + arrival[1] * horizontal, source[2]])
    loss_db = bend / (math.pi / 2) * (DIFFRACTION_DB_125HZ + DIFFRACTION_DB_PER_OCTAVE * np.log2(room.centers / 125.0))
    gains = 10.0 ** (-loss_db / 20.0)
    return Arrivals(position[:, None], gains[:, None], np.array([DIFFRACTED]))
