"""``avworld bench data``: collection steps per second (with its workers) and sampler windows per second."""

from __future__ import annotations

import os
import platform
import tempfile
import time
from typing import Any

from torch.utils.data import DataLoader

from avworld.data.collect import CollectConfig, collect
from avworld.data.storage import flatten, open_collection
from avworld.data.windows import WindowConfig, WindowDataset
from avworld.sim.config import SimConfig


def run(
    sim: SimConfig,
    episodes: int = 8,
    workers: int = 2,
    max_steps: int = 50,
    batches: int = 50,
    batch_size: int = 32,
    loader_workers: int = 2,
    context: int = 4,
    horizon: int = 1,
) -> dict[str, Any]:
    """Collect a small dataset in a temporary directory, then time a DataLoader over its windows."""
    with tempfile.TemporaryDirectory() as root:
        config = CollectConfig(
            name="bench",
            root=root,
            episodes=episodes,
            scenes=episodes,
            shard_size=max(1, episodes // workers),
            workers=workers,
            max_steps=max_steps,
        )
        start = time.perf_counter()
        steps = collect(config, sim)["steps"]
        collect_s = time.perf_counter() - start
        t = time.perf_counter()
        data = flatten(open_collection(root, "bench"), os.path.join(root, "cache"))
        flatten_s = time.perf_counter() - t
        dataset = WindowDataset(data, WindowConfig(context=context, horizon=horizon, fractions=(1.0, 0.0, 0.0)))
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=loader_workers, persistent_workers=loader_workers > 0)
        windows, it = 0, iter(loader)
        next(it)  # worker start-up is not sampling
        t = time.perf_counter()
        for _ in range(batches):
            try:
                batch = next(it)
            except StopIteration:
                it = iter(loader)
                batch = next(it)
            windows += len(batch["actions"])
        windows_s = time.perf_counter() - t
    return {
        "target": "data",
        "collect_steps_per_s": steps / collect_s,
        "collect_workers": workers,
        "collect_steps": steps,
        "flatten_steps_per_s": steps / flatten_s,
        "windows_per_s": windows / windows_s,
        "window": {"context": context, "horizon": horizon, "batch_size": batch_size, "loader_workers": loader_workers},
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": os.cpu_count(),
    }
