"""The expert's move at every recorded observation of a collection: offline labels for imitation (issue 26).

A collection's behaviours are noisy on purpose (``toward`` moves at random 20 % of the time, ``away`` and ``explore``
do not seek the source at all), so the moves they took are poor labels to clone. Every observation records its pose
and every episode its scene, so what the oracle — the shortest-path follower that ``toward`` follows,
:class:`~avworld.sim.backends.base.ShortestPathFollower` — would do there is known after the fact, as Habitat's
datasets give the shortest path's action beside each step. :func:`expert_actions` computes it for every observation
(FORWARD / TURN_LEFT / TURN_RIGHT, or STOP within the success distance) with the collection's own simulator settings,
scene by scene, and caches it beside the flat arrays (``<flat cache>/expert_action-v1.npy``, written to a temporary
file then renamed).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from avworld.files import replaced_atomically
from avworld.sim.backends.base import Pose, ShortestPathFollower
from avworld.sim.config import SimConfig

VERSION = 1
"""Bumped when the follower's rule changes, so a cache of the old rule is not read as the new one."""


def expert_actions(data: Any, progress: bool = False) -> np.ndarray:
    """The shortest-path follower's action at every observation of ``data`` (a
    :class:`~avworld.data.storage.FlatData`) → (n_obs,) int64, built once into its cache directory (memory-mapped).

    Each episode's scene is rebuilt from its ``scene_seed`` (the user's scene k of a ``scene=`` collection: seed −1 − k)
    with the collection's ``sim`` settings, and the follower is asked from each recorded pose (no step is taken)."""
    if data.path is None:
        raise ValueError("expert_actions needs a flat collection opened from its cache directory")
    target = data.path / f"expert_action-v{VERSION}.npy"
    if target.exists():
        return np.load(target, mmap_mode="r", allow_pickle=False)
    parts = getattr(data, "parts", None)  # several collections read as one: each labelled in its own scenes (and cache)
    labels = np.concatenate([np.asarray(expert_actions(p, progress)) for p in parts]) if parts else _label(data, progress)
    with replaced_atomically(target, suffix=".npy", sync=False) as tmp:
        np.save(tmp, labels, allow_pickle=False)
    return np.load(target, mmap_mode="r", allow_pickle=False)


def _label(data: Any, progress: bool) -> np.ndarray:
    from tqdm import tqdm

    from avworld.envs.audio_nav import AudioNavEnv

    scene = data.scene()
    env = AudioNavEnv(split="train", sim=SimConfig.from_dict(data.meta["sim"]), sensors=("rgb",), scene=scene)
    poses = np.asarray(data.arrays["pose"], np.float64)  # (n_obs, 3)
    geodesic = np.asarray(data.arrays["geodesic_distance"], np.float64)  # (n_obs,) as recorded
    out = np.zeros(len(poses), np.int64)
    ep = data.episodes
    order = np.argsort(np.asarray(ep["scene_seed"]), kind="stable")  # each scene built once
    built: int | None = None
    try:
        for e in tqdm(order, desc="expert labels", unit="episode", disable=not progress):
            seed = int(ep["scene_seed"][e])
            if (seed < 0) != (scene is not None):
                raise ValueError(
                    f"{data.path}: episode {e} has scene_seed {seed}, which does not match the collection's scene setting ({scene!r})"
                )
            if seed != built:
                env.reset(seed=0, options={"scene_index": -1 - seed} if seed < 0 else {"scene_seed": seed})
                built = seed
            sim = env.sim
            assert sim is not None
            start = int(ep["obs_start"][e])
            sim.set_episode(Pose(*poses[start]), sim.scene.sources[0].position)
            here, recorded = sim.geodesic_distance(), float(geodesic[start])
            if np.isfinite(recorded) and abs(here - recorded) > 1e-3:
                raise ValueError(
                    f"{data.path}: episode {e} (scene_seed {seed}) does not rebuild: its first pose is "
                    f"{here:.3f} m from the source here but {recorded:.3f} m in the recording "
                    "(scenes or simulator changed since the collection; collect it again)"
                )
            follower = ShortestPathFollower(sim)
            for i in range(start, start + int(ep["length"][e]) + 1):
                out[i] = int(follower.action(Pose(*poses[i])))
    finally:
        env.close()
    return out
