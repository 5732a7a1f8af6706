"""Fill a scene's on-disk acoustic cache ahead of time, in parallel (``avworld precompute``).

Every quantised position where the agent can stand gets its sound paths from each
of the scene's sources and from its own feet; yaw is not needed (responses are
assembled from paths in milliseconds). Workers are processes, each with its own
pyroomacoustics room; they share the cache directory, whose writes are atomic, so
an interrupted run is resumed by running it again (finished entries are skipped).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from avworld.sim.acoustics.responses import SELF, AcousticsConfig, SceneAcoustics
from avworld.sim.navigation import NavGrid
from avworld.sim.scenes.scene import Scene

_worker: SceneAcoustics | None = None


def positions(grid: NavGrid, quantum: float) -> list[tuple[int, int]]:
    """Quantised positions (ix, iy) whose point is navigable, in row-major order."""
    lo = np.floor(grid.origin / quantum).astype(int)
    hi = np.ceil((grid.origin + np.array(grid.shape[::-1]) * grid.cell) / quantum).astype(int)
    ix, iy = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1))
    ok = grid.navigable(np.stack([ix, iy], -1) * quantum)
    return list(zip(ix[ok].tolist(), iy[ok].tolist(), strict=True))


def sources(scene: Scene) -> list[tuple[float, float, float] | str]:
    return [(*s.position, s.height) for s in scene.sources] + [SELF]


def _init(scene: Scene, config: AcousticsConfig, ear_height: float, radius: float) -> None:
    global _worker
    _worker = SceneAcoustics(scene, config, ear_height, NavGrid(scene, radius))


def _run(chunk: list[tuple[int, int]]) -> int:
    assert _worker is not None
    for src in sources(_worker.scene):
        for ix, iy in chunk:
            _worker.paths(src, ix, iy)
    return len(chunk)


def _chunks(items: list[tuple[int, int]], size: int) -> Iterator[list[tuple[int, int]]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def precompute(
    scene: Scene,
    config: AcousticsConfig,
    ear_height: float,
    radius: float,
    workers: int = 1,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Compute and store the paths of every navigable quantised position; returns the number of positions."""
    if not config.cache_dir:
        raise ValueError("acoustics.cache_dir: precompute needs a cache directory")
    grid = NavGrid(scene, radius)
    todo = positions(grid, config.position_quantum)
    args = (scene, config, ear_height, radius)
    chunks = list(_chunks(todo, 64))
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_init, initargs=args) if workers > 1 else None
    if pool is None:
        _init(*args)
    try:
        for n in (pool.map if pool else map)(_run, chunks):
            if on_progress:
                on_progress(n)
    finally:
        if pool:
            pool.shutdown()
    return len(todo)
