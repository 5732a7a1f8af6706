"""What an imagined world is: the arguments of ``avworld/Dream-v0`` (:class:`DreamConfig`), the world model it loads,
the simulator settings it keeps (those a world model learns must be its training data's) and its spaces."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from gymnasium import spaces

from avworld.envs.audio_nav import SENSORS, observation_space
from avworld.models.checkpoint import CheckpointError, acoustics_version
from avworld.models.flow import check_ctx_noise
from avworld.models.imagination import Imagination, load_world
from avworld.models.pretrained import resolve_checkpoint
from avworld.sim.acoustics.responses import ACOUSTICS_VERSION
from avworld.sim.config import SimConfig
from avworld.sim.episodes import EpisodeConfig
from avworld.sim.scenes.procedural import SPLITS

DREAM_SENSORS = ("rgb", "audio", "spectrogram")
"""Sensors the world model imagines (depth and pointgoal it does not)."""
TERMINATIONS = ("stop", "model")
LEARNED_FIELDS = (
    ("render", "width"),
    ("render", "height"),
    ("render", "hfov_deg"),
    ("agent", "forward_step"),
    ("agent", "turn_deg"),
    ("agent", "step_time"),
    ("acoustics", "enabled"),
    ("acoustics", "fs"),
)
"""Simulator settings a world model learns: an imagined world must use those of its training data."""


class ContextSource(Protocol):
    """Real contexts made by the caller (e.g. :class:`avworld.data.contexts.CollectionContexts`): ``source(rng)`` returns
    {"rgb": uint8 (k, H, W, 3), "audio": float (k, 2, N)}, 1 ≤ k ≤ m, oldest first, drawing only from ``rng``. A source
    with a ``sim`` attribute (a :class:`SimConfig`) is checked against the world model's learned settings."""

    def __call__(self, rng: np.random.Generator) -> Mapping[str, np.ndarray]: ...


@dataclass
class DreamConfig:
    """The arguments of ``avworld/Dream-v0`` and of its vector env; see :class:`~avworld.envs.dream.DreamEnv` (Arguments)."""

    checkpoint: str | os.PathLike[str] | Imagination | None = None
    sensors: Sequence[str] = ("rgb", "audio")
    max_steps: int | None = None
    sampler_steps: int = 4
    ctx_noise: float | None = None
    device: str = "cpu"
    amp: bool = False
    compile: bool = False
    start: str | ContextSource = "episode"
    split: str = "test"
    latent: bool = False
    termination: str = "stop"
    termination_threshold: float = 0.5
    sim: SimConfig | Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.checkpoint is None:
            raise ValueError("checkpoint: Dream-v0 needs a world-model checkpoint directory (checkpoint=DIR) or checkpoint=pretrained")
        unknown = sorted(set(self.sensors) - set(SENSORS))
        if unknown:
            raise ValueError(f"sensors: unknown sensor {unknown[0]!r}; available: {', '.join(SENSORS)}")
        unseen = [s for s in self.sensors if s not in DREAM_SENSORS]
        if unseen:
            raise ValueError(f"sensors: the world model does not imagine {unseen[0]!r}; Dream-v0 provides {', '.join(DREAM_SENSORS)}")
        self.sensors = tuple(s for s in DREAM_SENSORS if s in {"rgb", *self.sensors})
        if self.max_steps is not None and (isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or self.max_steps < 1):
            raise ValueError(f"max_steps must be an int ≥ 1 (imagined steps before truncation) or None, got {self.max_steps!r}")
        if self.sampler_steps < 1:
            raise ValueError(f"sampler_steps must be ≥ 1, got {self.sampler_steps}")
        if self.ctx_noise is not None:
            check_ctx_noise(self.ctx_noise)
        if isinstance(self.start, str) and self.start != "episode":
            raise ValueError(f"start must be 'episode' or a context source (avworld.data.contexts.CollectionContexts), got {self.start!r}")
        if not isinstance(self.start, str) and not callable(self.start):
            raise ValueError(f"start must be 'episode' or a callable context source, got {type(self.start).__name__}")
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if self.termination not in TERMINATIONS:
            raise ValueError(f"termination must be one of {', '.join(TERMINATIONS)}, got {self.termination!r}")
        if not 0.0 < self.termination_threshold < 1.0:
            raise ValueError(f"termination_threshold must lie in (0, 1), got {self.termination_threshold}")


def dream_world(
    checkpoint: str | os.PathLike[str] | Imagination, device: str, amp: bool = False, compile: bool = False
) -> tuple[Imagination, Path]:
    """The world model (:func:`load_world` onto ``device`` with bf16 decoding if ``amp``, or as given; a shipped one's name,
    ``pretrained[:<name>]``, resolved to its directory) and the path its errors name; refuses one Dream-v0 cannot use.
    ``compile``: :meth:`Imagination.compile` it (a given one too)."""
    if isinstance(checkpoint, Imagination):
        world, where = checkpoint, Path("<in-memory world model>")
        if compile:
            world.compile()
    else:
        where = resolve_checkpoint(checkpoint)
        world = load_world(where, device, amp, compile)
    if "video" not in world.modalities:
        raise CheckpointError(where, f"Dream-v0 needs a world model that imagines video (observations have rgb), not {world.modalities}")
    if "sim" not in world.meta:
        raise CheckpointError(where / "meta.json", "missing 'sim' (the simulator settings of the training data)")
    version = acoustics_version(world.meta)
    if "audio" in world.modalities and version != ACOUSTICS_VERSION:
        raise CheckpointError(
            where / "meta.json",
            f"acoustics_version {version}: trained on sound an older avworld simulated, this one simulates version "
            f"{ACOUSTICS_VERSION}; train it again on a new collection",
        )
    return world, where


def _merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Nested mappings: ``overrides`` over ``base``."""
    out = dict(base)
    for key, value in overrides.items():
        out[key] = _merge(base[key], value) if isinstance(value, Mapping) and isinstance(base.get(key), Mapping) else value
    return out


def check_learned(config: SimConfig, reference: SimConfig, what: str, where: str) -> None:
    """Refuse ``config`` where it differs from ``reference`` (the world model's) in fields of :data:`LEARNED_FIELDS`; the
    message names every differing field with both values."""
    differing = []
    for part, name in LEARNED_FIELDS:
        got, want = getattr(getattr(config, part), name), getattr(getattr(reference, part), name)
        if got != want:
            whose = f"the world model {where}" if not differing else "it"
            differing.append(f"sim.{part}.{name}: {what} has {got!r} but {whose} was trained with {want!r}")
    if differing:
        raise ValueError(
            "; ".join(differing) + " (an imagined world only has the render size, audio rate and samples, and agent motion of its "
            "training data: drop these settings, or use a world model trained with them)"
        )


def dream_sim(world: Imagination, sim: SimConfig | Mapping[str, Any] | None, where: Path) -> SimConfig:
    """The settings of an imagined world: the checkpoint's ``meta["sim"]`` with the caller's ``sim`` over them."""
    reference = SimConfig.from_dict(world.meta["sim"])
    if sim is None:
        config = reference
    elif isinstance(sim, SimConfig):
        config = sim
    else:
        config = SimConfig.from_dict(_merge(world.meta["sim"], sim))
    check_learned(config, reference, "sim", str(where))
    n = round(config.agent.step_time * config.acoustics.fs)
    shapes = {"rgb_shape": [config.render.height, config.render.width, 3], "audio_shape": [2, n]}
    for key, shape in shapes.items():
        if list(world.meta[key]) != shape:
            raise CheckpointError(where / "meta.json", f"{key} {world.meta[key]} disagrees with its sim settings, which give {shape}")
    return config


def step_limit(config: DreamConfig) -> int:
    """Imagined steps before truncation: ``max_steps``, else the real env's limit under the caller's ``sim``
    (``sim.episode.max_steps`` where given, else AudioNav-v0's default of 500). Never the checkpoint's: that is the
    episode limit of its training collection, not of the task."""
    if config.max_steps is not None:
        return config.max_steps
    if isinstance(config.sim, SimConfig):
        return config.sim.episode.max_steps
    episode = (config.sim or {}).get("episode") or {}
    return int(episode.get("max_steps", EpisodeConfig.max_steps))


def dream_spaces(world: Imagination, config: DreamConfig, sim: SimConfig) -> tuple[spaces.Dict, spaces.Dict]:
    """(observation space, decoded space): the real env's for ``sensors``, or in latent mode float32 latents of each modality."""
    decoded = observation_space(sim, config.sensors)
    if not config.latent:
        return decoded, decoded
    boxes = {m: spaces.Box(-np.inf, np.inf, shape, np.float32) for m, shape in world.latent_shapes().items()}
    return spaces.Dict(boxes), decoded
