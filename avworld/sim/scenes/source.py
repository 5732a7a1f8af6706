"""Where the real world's scenes come from: a scene source maps a split to scene ids, and a scene id to a :class:`Scene`.

The env (``AudioNav-v0``), the collection and the command line ask the source that :func:`scene_source` makes from the
``scene=`` setting, and never decide themselves between procedural apartments and the user's files. Two sources:

- :class:`~avworld.sim.scenes.procedural.ProceduralScenes` (no ``scene=``): the split's seed range; the id is the seed;
- :class:`~avworld.sim.scenes.files.SceneFiles` (``scene=`` a JSON file, a folder of them, a list, or :class:`Scene`
  objects): the same scenes in every split; the id of scene k is −1 − k, as collections record it.

A new source (a folder of meshes, say) is a class with :class:`SceneSource`'s members in a module of its own, and its
case in :func:`scene_source`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from avworld.sim.config import SimConfig
from avworld.sim.scenes.files import SceneFiles
from avworld.sim.scenes.procedural import ProceduralScenes
from avworld.sim.scenes.scene import Scene


class SceneSource(Protocol):
    """What the env, the collection and the command line ask of the scenes they play."""

    generated: bool
    """Whether a scene id is a seed that makes the scene anywhere (``info["scene_seed"]``); False for stored scenes."""

    def ids(self, split: str | None = None) -> Sequence[int]:
        """The scene ids of ``split`` (``"train"``, ``"val"``, ``"test"``), in order; None: every id the source has."""
        ...

    def scene(self, scene_id: int) -> Scene:
        """The checked scene of ``scene_id``; a ValueError for an id the source does not have."""
        ...

    def split_of(self, scene_id: int) -> str:
        """The split a scene belongs to, as a collection records it (``"user"`` for the user's scenes)."""
        ...


def scene_source(scene: Any, config: SimConfig) -> SceneSource:
    """The source of the ``scene=`` setting under ``config``: procedural apartments when it is None, else the user's
    scenes it names (checked now, their sources' sound ids included)."""
    if scene is None:
        return ProceduralScenes(config)
    return SceneFiles(scene, config)
