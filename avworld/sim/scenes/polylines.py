"""Oriented polylines in the plane: chained from segments, simplified, offset, turned into non-overlapping wall pieces.

The geometry under :mod:`avworld.sim.scenes.floorplan`. A polyline is an (N, 2) array of points; a
closed one repeats its first point at its end. Orientation matters: floor plans keep the air on
a polyline's left, so that "to the right" is into the solid.
"""

from __future__ import annotations

import math

import numpy as np

from avworld.sim.navigation import Solids

MITER_LIMIT = 0.25
"""Lower bound of 1 + cos(turn) in a mitred offset: a corner moves at most ~2.8 offsets."""
MERGE_COS = math.cos(math.radians(10.0))
"""Pieces at most 10° apart (and within ``tolerance`` of one line) are one wall."""


def chains(start: np.ndarray, end: np.ndarray) -> list[np.ndarray]:
    """Node ids of the polylines made by walking oriented segments start → end head to tail.

    Walks begin at nodes no segment enters, then anywhere; a walk ends where no unused segment
    leaves, or back at its first node (a closed polyline repeats it at its end).
    """
    leaving: dict[int, list[int]] = {}
    for s, node in enumerate(start.tolist()):
        leaving.setdefault(node, []).append(s)
    entered = set(end.tolist())
    order = [n for n in leaving if n not in entered] + list(leaving)
    ends = end.tolist()
    chains = []
    for first in order:
        while leaving.get(first):
            chain, node = [first], first
            while leaving.get(node):
                node = ends[leaving[node].pop()]
                chain.append(node)
                if node == first:
                    break
            chains.append(np.asarray(chain))
    return chains


def simplify(points: np.ndarray, tolerance: float, closed: bool) -> np.ndarray:
    """Douglas–Peucker simplification of a polyline (N, 2); a closed one keeps repeating its first point."""
    if closed and len(points) > 3:
        far = int(np.argmax(np.linalg.norm(points - points[0], axis=1)))
        out = np.concatenate([simplify(points[: far + 1], tolerance, False)[:-1], simplify(points[far:], tolerance, False)])
        if len(out) > 4 and _deviation(out[-2], out[1], out[:1])[0] <= tolerance:  # the start itself may be mid-edge
            out = np.concatenate([out[1:-1], out[1:2]])
        return out
    keep = np.zeros(len(points), bool)
    keep[[0, -1]] = True
    stack = [(0, len(points) - 1)]
    while stack:
        i, j = stack.pop()
        if j - i < 2:
            continue
        d = _deviation(points[i], points[j], points[i + 1 : j])
        k = int(np.argmax(d))
        if d[k] > tolerance:
            keep[i + 1 + k] = True
            stack += [(i, i + 1 + k), (i + 1 + k, j)]
    return points[keep]


def _deviation(a: np.ndarray, b: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Distance of points (N, 2) from the line through a and b (from a if they coincide)."""
    d, r = b - a, points - a
    length = float(np.hypot(*d))
    if length < 1e-12:
        return np.linalg.norm(r, axis=1)
    return np.abs(d[0] * r[:, 1] - d[1] * r[:, 0]) / length


def offset(points: np.ndarray, shift: float, closed: bool) -> np.ndarray:
    """The polyline (N, 2) moved ``shift`` metres to its right, corners mitred."""
    e = np.diff(points, axis=0)
    normal = np.stack([e[:, 1], -e[:, 0]], axis=1) / np.maximum(np.linalg.norm(e, axis=1), 1e-12)[:, None]  # (E, 2) right
    if closed:
        before, after = np.roll(normal, 1, axis=0), normal
        before, after = np.concatenate([before, before[:1]]), np.concatenate([after, after[:1]])
    else:
        before, after = np.concatenate([normal[:1], normal]), np.concatenate([normal, normal[-1:]])
    cos = (before * after).sum(axis=1)
    return points + shift * (before + after) / np.maximum(1.0 + cos, MITER_LIMIT)[:, None]


def merge_collinear(pieces: list[np.ndarray], tolerance: float) -> list[np.ndarray]:
    """Pieces (2, 2) on one line (within ``tolerance``) that overlap or touch, merged; direction does not matter."""
    pieces = sorted(pieces, key=lambda s: -float(np.linalg.norm(s[1] - s[0])))
    changed = True
    while changed:
        changed = False
        out: list[np.ndarray] = []
        for s in pieces:
            if any(_absorb(r, s, tolerance) for r in out):
                changed = True
            else:
                out.append(s.copy())
        pieces = out
    return pieces


def _absorb(r: np.ndarray, s: np.ndarray, tolerance: float) -> bool:
    """Extend ``r`` (2, 2) in place over ``s`` if ``s`` lies on it and overlaps or touches it; whether it did."""
    a, length = r[0], float(np.linalg.norm(r[1] - r[0]))
    u = (r[1] - a) / length
    d = s[1] - s[0]
    across = (s - a) @ np.array([-u[1], u[0]])
    if np.abs(across).max() > tolerance or abs(float(d @ u)) < MERGE_COS * float(np.linalg.norm(d)):
        return False
    t0, t1 = sorted(((s - a) @ u).tolist())
    if t0 > length + tolerance or t1 < -tolerance:
        return False
    r[0], r[1] = a + min(0.0, t0) * u, a + max(length, t1) * u
    return True


def drop_covered(pieces: list[np.ndarray], thickness: float) -> list[np.ndarray]:
    """Pieces (2, 2) without those whose centre line lies inside the other walls (such as joints of touching solids).

    The shortest go first, so of two pieces covering each other the longer stays.
    """
    pieces = sorted(pieces, key=lambda s: float(np.linalg.norm(s[1] - s[0])))
    kept = list(pieces)
    for s in pieces:
        others = [r for r in kept if r is not s]
        if not others:
            break
        r = np.stack(others)  # (M, 2, 2)
        length = np.linalg.norm(r[:, 1] - r[:, 0], axis=1)
        half = np.stack([length / 2 + thickness / 2, np.full(len(r), thickness / 2)], axis=1)  # end caps included
        solids = Solids(r.mean(axis=1), half, (r[:, 1] - r[:, 0]) / length[:, None], ())
        samples = s[0] + np.linspace(0.0, 1.0, 5)[:, None] * (s[1] - s[0])
        if (solids.distances(samples).min(axis=1) <= 1e-6).all():
            kept = others
    return kept
