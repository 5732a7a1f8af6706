"""Load, check and save scenes as JSON.

:func:`load_scene` returns a scene only when it is fully valid: every field
parsed (:meth:`Scene.from_dict`) and the geometry sound (:func:`validate_scene`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from avworld.files import replaced_atomically
from avworld.sim.navigation import NavGrid
from avworld.sim.scenes.scene import Scene, SceneError


def validate_scene(scene: Scene, radius: float, cell: float = 0.05, source: str | None = None) -> NavGrid:
    """Check a parsed scene's geometry for an agent of ``radius``; return its grid.

    Raises :class:`SceneError` when a door lies on no wall, when the start or a
    sound source is inside a solid, outside the walls or too close to a wall for
    the agent, or when a source cannot be reached from the start.
    """
    for k, door in enumerate(scene.doors):
        if not _on_a_wall(scene, np.asarray(door.position, float)):
            raise SceneError(f"doors[{k}].position", f"{door.position} lies on no wall", source)
    grid = NavGrid(scene, radius, cell)
    points = {"start.position": scene.start.position} | {f"sources[{k}].position": s.position for k, s in enumerate(scene.sources)}
    for field, xy in points.items():
        p = np.asarray(xy, float)
        d = grid.solids.distances(p[None])[0]  # (M,)
        nearest = int(np.argmin(d)) if d.size else -1
        if nearest >= 0 and d[nearest] <= 0:
            raise SceneError(field, f"{tuple(xy)} is inside {grid.solids.labels[nearest]}", source)
        i, j = grid.to_cell(p)
        if grid.outside[i, j]:  # points beyond the grid clip to its border, which is outside
            raise SceneError(field, f"{tuple(xy)} is outside the walls (or the walls do not enclose it)", source)
        if nearest >= 0 and d[nearest] <= radius:
            raise SceneError(
                field,
                f"{tuple(xy)} is {d[nearest]:.3f} m from {grid.solids.labels[nearest]}, closer than the agent radius {radius} m",
                source,
            )
    start = np.asarray(scene.start.position, float)
    for k, s in enumerate(scene.sources):
        if not np.isfinite(grid.goal_field(s.position).distance(start)):
            raise SceneError(f"sources[{k}].position", f"{s.position} cannot be reached from the start {scene.start.position}", source)
    return grid


def _on_a_wall(scene: Scene, p: np.ndarray) -> bool:
    for w in scene.walls:
        a, b = np.asarray(w.start, float), np.asarray(w.end, float)
        d = b - a
        t = float((p - a) @ d / (d @ d))
        if -1e-9 <= t <= 1 + 1e-9 and np.linalg.norm(a + t * d - p) <= w.thickness / 2 + 1e-6:
            return True
    return False


def load_scene(path: str | os.PathLike[str], radius: float = 0.18, cell: float = 0.05) -> Scene:
    """Read a scene JSON file and check it fully; errors name the file and the field."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise SceneError("", f"cannot read scene file: {e.strerror}", name) from e
    except UnicodeDecodeError as e:
        raise SceneError(
            "", f"not UTF-8 text (byte {e.start} is {e.object[e.start : e.start + 1]!r}); save the scene as UTF-8 JSON", name
        ) from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise SceneError("", f"not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})", name) from e
    scene = Scene.from_dict(data, source=name)
    validate_scene(scene, radius, cell, source=name)
    return scene


def save_scene(scene: Scene, path: str | os.PathLike[str]) -> None:
    """Write a scene as JSON atomically (a crash never leaves a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced_atomically(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(scene.to_dict(), f, indent=1, allow_nan=False)  # standard JSON: scenes hold finite numbers only
