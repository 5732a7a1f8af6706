"""Real contexts for imagined worlds from a collection: the caller makes the source, ``Dream-v0`` draws from it.

``gym.make("avworld/Dream-v0", checkpoint=..., start=CollectionContexts(root, name, split="train"))`` starts every
imagined episode from the first m observations of a random window of the collection. The env only calls the source, so
``avworld.envs`` never imports ``avworld.data`` (which imports the envs to collect).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from avworld.data.storage import flatten, open_collection
from avworld.data.windows import WindowConfig, WindowDataset
from avworld.sim.config import SimConfig


class CollectionContexts:
    """Windows of ``steps`` observations of collection ``root``/``name`` (its scenes of ``split``), drawn at random.

    ``steps`` is the world model's context m (4 for every preset); ``cache`` the flat cache directory (default
    ``root/cache``); ``fractions`` the train/val/test shares of its scenes. ``sim`` holds the collection's simulator
    settings, which the env checks against the world model's.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        name: str,
        split: str = "train",
        steps: int = 4,
        cache: str | os.PathLike[str] | None = None,
        fractions: Sequence[float] = (0.9, 0.05, 0.05),
    ) -> None:
        flat = flatten(open_collection(root, name), cache or os.path.join(root, "cache"))
        self.where = f"collection {root}/{name}"
        self.sim = SimConfig.from_dict(flat.meta["sim"])
        self.fields = ("rgb", "audio")
        self.steps = steps
        self.windows = WindowDataset(flat, WindowConfig(context=steps, horizon=1, split=split, fractions=tuple(fractions)))  # type: ignore[arg-type]
        if len(self.windows) == 0:
            raise ValueError(f"{self.where} has no episode of split {split!r} with {steps} steps; pick another split")

    def __call__(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """The first ``steps`` observations of a random window: ``rgb`` uint8 (m, H, W, 3), ``audio`` float32 (m, 2, N)."""
        item = self.windows[int(rng.integers(len(self.windows)))]
        return {f: item[f][: self.steps].numpy() for f in self.fields}
