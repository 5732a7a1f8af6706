"""Training windows: m context steps and H future steps of one episode, with their actions and outcomes.

A window starting at observation t of an episode holds observations t … t+m+H−1
(``m`` context, then ``H`` future), the m+H−1 actions between them, and the reward,
termination and truncation of each of those transitions. Windows never cross
episodes. Scenes are assigned to train / val / test by their seed alone (:func:`scene_split`),
so the three splits never share a scene.

Use with ``torch.utils.data.DataLoader`` (any number of workers: the arrays are
memory-mapped) and, under DDP, with ``DistributedSampler`` (each rank a distinct slice).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from avworld.data.storage import FlatData
from avworld.sim.backends.base import Action
from avworld.sim.config import SimConfig
from avworld.sim.episodes import step_reward
from avworld.sim.scenes.procedural import SPLITS

SPLIT_NAMES = ("train", "val", "test")


@dataclass
class WindowConfig:
    context: int = 4
    horizon: int = 1
    stride: int = 1
    split: str = "train"
    fractions: tuple[float, float, float] = (0.9, 0.05, 0.05)
    """Shares of scenes for train, val and test."""

    def __post_init__(self) -> None:
        if self.context < 1 or self.horizon < 1 or self.stride < 1:
            raise ValueError(f"windows: context, horizon and stride must be >= 1, got {self.context}, {self.horizon}, {self.stride}")
        if self.split not in SPLIT_NAMES:
            raise ValueError(f"windows.split must be one of {', '.join(SPLIT_NAMES)}, got {self.split!r}")
        if len(self.fractions) != 3 or min(self.fractions) < 0 or abs(sum(self.fractions) - 1) > 1e-6:
            raise ValueError(f"windows.fractions must be three non-negative shares summing to 1, got {self.fractions}")


def scene_split(scene_seed: int, fractions: tuple[float, float, float]) -> str:
    """train, val or test for a scene: a fixed function of its seed.

    Scenes of the simulator's val and test seed ranges keep their split (collect with
    ``collect.split=test`` for a pure test set); scenes of the train range are shared
    out by a CRC32 hash of the seed in the proportions ``fractions``.
    """
    for name in ("val", "test"):
        if scene_seed in SPLITS[name]:
            return name
    u = zlib.crc32(f"scene-{scene_seed}".encode()) / 2**32
    edges = np.cumsum(fractions)
    return SPLIT_NAMES[int(np.searchsorted(edges, u, side="right"))] if u < edges[-1] else SPLIT_NAMES[-1]


class WindowDataset(Dataset[dict[str, torch.Tensor]]):
    """Windows of a flattened collection for one split; item i is a dict of tensors:

    - ``rgb`` uint8 (m+H, H_img, W_img, 3), ``audio`` float32 (m+H, 2, N)
    - ``actions`` int64 (m+H−1,), ``rewards`` float32 (m+H−1,), ``terminations`` / ``truncations`` bool (m+H−1,)
    - ``pose`` float32 (m+H, 3)
    """

    def __init__(self, data: FlatData, config: WindowConfig) -> None:
        self.data, self.config = data, config
        span = config.context + config.horizon
        ep = data.episodes
        starts_obs, starts_step, episode = [], [], []
        episodes = zip(ep["obs_start"], ep["step_start"], ep["length"], ep["scene_seed"], strict=True)
        for e, (obs0, step0, length, seed) in enumerate(episodes):
            if scene_split(int(seed), config.fractions) != config.split:
                continue
            offsets = np.arange(0, length + 1 - span + 1, config.stride)
            starts_obs.append(obs0 + offsets)
            starts_step.append(step0 + offsets)
            episode.append(np.full(len(offsets), e))
        empty = [np.zeros(0, np.int64)]
        self.obs_index = np.concatenate(starts_obs or empty)  # (windows,)
        self.step_index = np.concatenate(starts_step or empty)
        self.episode_index = np.concatenate(episode or empty).astype(np.int64)  # (windows,) each window's episode
        self.span = span

    def __len__(self) -> int:
        return len(self.obs_index)

    def by_collection(self) -> dict[str, int]:
        """Windows from each collection of the data (:attr:`FlatData.collections`, in their order; 0 where none)."""
        names = list(self.data.collections)
        counts = np.bincount(self.data.episodes["collection"][self.episode_index], minlength=len(names))
        return {name: int(n) for name, n in zip(names, counts, strict=True)}

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        o, t, s = int(self.obs_index[i]), int(self.step_index[i]), self.span
        a = self.data.arrays
        return {
            "rgb": torch.from_numpy(np.array(a["rgb"][o : o + s])),
            "audio": torch.from_numpy(np.array(a["audio"][o : o + s])),
            "pose": torch.from_numpy(np.array(a["pose"][o : o + s])),
            "actions": torch.from_numpy(np.array(a["actions"][t : t + s - 1])),
            "rewards": torch.from_numpy(np.array(a["rewards"][t : t + s - 1])),
            "terminations": torch.from_numpy(np.array(a["terminations"][t : t + s - 1])),
            "truncations": torch.from_numpy(np.array(a["truncations"][t : t + s - 1])),
        }


class FrameDataset(Dataset[dict[str, torch.Tensor]]):
    """Single observations of one split, for the tokenizers: item i is ``{field: tensor}``.

    ``rgb``: uint8 (H, W, 3); ``audio``: float32 (2, N).
    """

    def __init__(self, data: FlatData, field: str, split: str = "train", fractions: tuple[float, float, float] = (0.9, 0.05, 0.05)) -> None:
        if field not in ("rgb", "audio"):
            raise ValueError(f"FrameDataset field must be rgb or audio, got {field!r}")
        self.data, self.field = data, field
        ep = data.episodes
        keep = [scene_split(int(s), fractions) == split for s in ep["scene_seed"]]
        self.index = np.concatenate(
            [np.arange(o, o + n + 1) for o, n, k in zip(ep["obs_start"], ep["length"], keep, strict=True) if k] or [np.zeros(0, np.int64)]
        )

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {self.field: torch.from_numpy(np.array(self.data.arrays[self.field][int(self.index[i])]))}


STOP = int(Action.STOP)


def within_reach(data: FlatData, obs_index: np.ndarray, success_distance: float | None = None) -> np.ndarray:
    """Whether STOP at observations ``obs_index`` (n,) would succeed → (n,) bool: the recorded geodesic distance is
    within the success distance (default: that of the collection's ``sim`` settings)."""
    if success_distance is None:
        success_distance = SimConfig.from_dict(data.meta["sim"]).episode.success_distance
    return np.asarray(data.arrays["geodesic_distance"])[np.asarray(obs_index)] <= success_distance


def stop_rewards(near: np.ndarray) -> np.ndarray:
    """The reward STOP would get where ``near`` (n,) bool says it is :func:`within_reach` → (n,) float32, known without
    running it: STOP ends the episode without moving the agent, so it succeeds exactly within reach."""
    return np.asarray(step_reward(0.0, np.asarray(near, bool)), np.float32)
