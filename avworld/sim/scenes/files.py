"""The user's scenes as a scene source: JSON files (one file, a folder of them, a list) or :class:`Scene` objects."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from avworld.sim.acoustics.sounds import CATEGORIES
from avworld.sim.config import SimConfig
from avworld.sim.scenes.loading import load_scene, validate_scene
from avworld.sim.scenes.scene import Scene

SceneSetting = Scene | str | os.PathLike[str] | Sequence[Scene | str | os.PathLike[str]]
"""What ``scene=`` may name: a scene, a JSON file, a folder of JSON files (sorted by name), or a sequence of those."""


class SceneFiles:
    """The scenes ``scene`` names, loaded and checked when the source is made; the same scenes in every split.

    Scene k (in the order named, a folder's sorted by file name) has the id −1 − k, so that its id never meets a
    procedural seed in a collection's ``scene_seed``.
    """

    generated = False

    def __init__(self, scene: SceneSetting, config: SimConfig) -> None:
        self.scenes = load_scenes(scene, config)

    def ids(self, split: str | None = None) -> Sequence[int]:
        return tuple(-1 - k for k in range(len(self.scenes)))

    def scene(self, scene_id: int) -> Scene:
        k = -1 - scene_id
        if not 0 <= k < len(self.scenes):
            raise ValueError(f"scene id {scene_id}: the given scenes have the ids -1 to {-len(self.scenes)}")
        return self.scenes[k]

    def split_of(self, scene_id: int) -> str:
        return "user"


def load_scenes(scene: SceneSetting, config: SimConfig) -> list[Scene]:
    """Every scene that ``scene`` names, each checked (geometry, and that its sources' sounds exist under ``config``)."""
    items = [scene] if isinstance(scene, Scene | str | os.PathLike) else list(scene)
    if not items:
        raise ValueError("scene: an empty list of scenes")
    radius, cell = config.agent.radius, config.nav_cell
    scenes = []
    for item in items:
        if isinstance(item, Scene):
            validate_scene(item, radius, cell)
            loaded = [(item.name or "scene", item)]
        elif Path(item).is_dir():
            files = sorted(Path(item).glob("*.json"))
            if not files:
                raise ValueError(f"scene: no *.json scene file in the folder {os.fspath(item)}")
            loaded = [(str(f), load_scene(f, radius, cell)) for f in files]
        else:
            loaded = [(os.fspath(item), load_scene(item, radius, cell))]
        for where, one in loaded:
            check_scene_sounds(one, config, where)
            scenes.append(one)
    return scenes


def check_scene_sounds(scene: Scene, config: SimConfig, where: str) -> None:
    """Refuse a source of ``scene`` (read from ``where``) whose sound id is neither built in nor a user id."""
    user = config.acoustics.user_sounds
    for k, source in enumerate(scene.sources):
        if source.sound not in CATEGORIES and source.sound not in user:
            raise ValueError(
                f"{where}: sources[{k}].sound: unknown sound id {source.sound!r}; known: the built-in ids ({', '.join(CATEGORIES)})"
                + (f" and the user ids ({', '.join(user)})" if user else "; add a WAV of yours as sim.acoustics.user_sounds={id: file.wav}")
            )
