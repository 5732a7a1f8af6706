"""The typed config of every job of the ``avworld`` command, and the helpers its jobs share.

Each job has one Hydra YAML file (``configs/<command>.yaml``, or ``configs/<command>_<job>.yaml`` for the jobs of
``eval`` and ``train``) holding its defaults, and one dataclass here that the composed config must fit: :func:`typed`
merges the two, so an unknown key (``+scene=...`` on a command without scenes, a typo) or a mistyped value
(``eval.episodes=abc``) is an error that names it, before anything runs. Settings that build library objects keep their
own dataclasses (:class:`~avworld.sim.config.SimConfig`, ``CollectConfig``, ``TokenizerJob``...); agents stay
``_target_`` configs for :func:`hydra.utils.instantiate`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from avworld.data.storage import DataRef, DataSplit
from avworld.sim.config import SimConfig

T = TypeVar("T")


class JobConfigError(ValueError):
    """A command's config does not fit its job: ``str(err)`` names the key."""


def typed(schema: type[T], cfg: DictConfig) -> T:
    """``cfg`` (a composed Hydra config) as an instance of the dataclass ``schema``; unknown keys and values of the wrong
    type raise :class:`JobConfigError` naming the key. A mapping field that ``cfg`` sets (``collect.behaviours``) is
    ``cfg``'s mapping, not its union with the schema's default."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), cfg)
        for key in cfg:  # a mapping setting is the user's whole mapping, not merged into the schema's default one
            if isinstance(cfg[key], DictConfig) and OmegaConf.get_type(merged, key) is dict:
                merged[key] = cfg[key]
        job = OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or ""
        message = str(err).split("\n")[0]
        if type(err).__name__ == "ConfigKeyError" and key:
            message = f"unknown setting {key!r}: this command has no such key (see `--cfg job` for its settings)"
        raise JobConfigError(f"{key}: {message}" if key and not message.startswith("unknown") else message) from None
    assert isinstance(job, schema)
    return job


def scenes_of(scene: Any) -> str | list[str] | None:
    """The ``scene=`` setting as the env takes it: None, a path (a JSON file or a folder of them) or a list of paths."""
    if scene is None or isinstance(scene, str):
        if isinstance(scene, str) and not os.path.exists(scene):
            raise JobConfigError(f"scene: no such file or folder: {scene}")
        return scene
    if isinstance(scene, list | tuple) and scene and all(isinstance(s, str) for s in scene):
        for s in scene:
            scenes_of(s)
        return list(scene)
    raise JobConfigError(f"scene: a JSON file, a folder of them or a list of files, got {scene!r}")


def output_dir() -> Path:
    """The running Hydra job's output directory."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def write_json(path: Path, data: Any) -> None:
    """``data`` as indented standard JSON at ``path`` (non-finite floats as null, :mod:`avworld.jsonfile`), written atomically."""
    from avworld.jsonfile import write_atomic

    write_atomic(path, data)


def sim_config(cfg: DictConfig) -> SimConfig:
    """The typed :class:`SimConfig` of a config's ``sim`` part; unknown or mistyped fields are refused by name."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(SimConfig), cfg.sim)
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        raise JobConfigError(f"sim.{getattr(err, 'full_key', '')}: {str(err).splitlines()[0]}") from None


# -- parts shared by several jobs --------------------------------------------------------------------------------------


@dataclass
class Episodes:
    """Which real episodes an agent is run for: episode i of ``split`` resets with ``seed + i``."""

    split: str = "test"
    episodes: int = 100
    seed: int = 0


# -- avworld eval ------------------------------------------------------------------------------------------------------


@dataclass
class EvalNavigation:
    """``avworld eval [navigation]``: one agent in the real world (``navigation.json``)."""

    sim: SimConfig = field(default_factory=SimConfig)
    agent: dict[str, Any] = field(default_factory=dict)
    eval: Episodes = field(default_factory=Episodes)
    scene: Any = None
    """The user's scenes (a JSON file, a folder of them or a list) instead of the split's procedural ones."""
    report: bool = False
    report_video_steps: int = 100


@dataclass
class Benchmark:
    run: list[str] = field(default_factory=list)
    sounds: list[str] = field(default_factory=lambda: ["heard", "unheard"])
    split: str = "test"
    episodes: int = 50
    seed: int = 0
    sensors: list[str] = field(default_factory=lambda: ["rgb", "audio"])
    level: float = 0.95
    agents: dict[str, Any] = field(default_factory=dict)
    compare: list[list[str]] = field(default_factory=list)
    """Pairs [A, B] of ``run``: A − B per metric, paired over the same episodes (``avworld.eval.benchmark.comparisons``)."""


@dataclass
class EvalBenchmark:
    """``avworld eval benchmark``: every agent of ``nav.run`` on the same real episodes (``navigation_benchmark.json``)."""

    sim: SimConfig = field(default_factory=SimConfig)
    nav: Benchmark = field(default_factory=Benchmark)
    world_model: str | None = None
    scene: Any = None


@dataclass
class EvalMerge:
    """``avworld eval merge inputs=[A.json,B.json]``: benchmark files run apart in one table, paired where they ran the
    same episodes (``navigation_benchmark.json``; avworld.eval.merge)."""

    inputs: list[str] = field(default_factory=list)
    compare: list[list[str]] = field(default_factory=list)
    level: float = 0.95


@dataclass
class EvalTokenizer:
    """``avworld eval tokenizer checkpoint=DIR``: reconstruction quality on a collection's split (``tokenizer.json``)."""

    checkpoint: str = MISSING
    data: DataSplit = field(default_factory=DataSplit)
    report: bool = False


@dataclass
class Baselines:
    video_only: str | None = None
    audio_only: str | None = None
    no_experts: str | None = None
    joint: str | None = None


@dataclass
class Prediction:
    horizons: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    windows: int = 256
    sampler_steps: int = 4
    ctx_noise: float = 0.0
    """The level the world models' context is noised at before each imagined step (``avworld.models.flow.sample``)."""
    batch_size: int = 32
    seed: int = 0
    max_lag: int = 4
    device: str | None = None
    ranking: int = 64
    """Windows of the action ranking (how often the imagined returns rank the truly best move first); 0: none."""
    ranking_depth: int = 2


@dataclass
class EvalWorldModel:
    """``avworld eval world_model checkpoint=DIR``: imagined rollouts against real ones (``prediction.json``)."""

    checkpoint: str = MISSING
    baselines: Baselines = field(default_factory=Baselines)
    eval_model: Prediction = field(default_factory=Prediction)
    data: DataSplit = field(default_factory=DataSplit)
    report: bool = False
    report_video_steps: int = 100
    agent: dict[str, Any] = field(default_factory=dict)
    """The agent of the report's rollout video."""
    eval: Episodes = field(default_factory=Episodes)
    """The split and seed of the report's rollout video."""


# -- avworld train -----------------------------------------------------------------------------------------------------


@dataclass
class TrainTokenizer:
    """``avworld train tokenizer kind=video|audio``."""

    kind: str = "video"
    preset: dict[str, Any] = field(default_factory=dict)
    data: DataRef = field(default_factory=DataRef)
    out_dir: str | None = None


@dataclass
class Tokenizers:
    video: str | None = None
    audio: str | None = None


@dataclass
class TrainWorldModel:
    """``avworld train world_model stage=1|2|3|joint out_dir=DIR``."""

    preset: dict[str, Any] = field(default_factory=dict)
    data: DataRef = field(default_factory=DataRef)
    out_dir: str = MISSING
    stage: str = "1"
    variant: str = "full"
    init: str | None = None
    tokenizers: Tokenizers = field(default_factory=Tokenizers)
    stop_windows: float = 0.1
    stop_near: float = 0.0
    loss_weights: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainAgent:
    """``avworld train agent [agent=ppo] world=real|dream``."""

    agent: dict[str, Any] = field(default_factory=dict)
    agent_train: dict[str, Any] = field(default_factory=dict)
    world: str = "real"
    checkpoint: str | None = None
    out_dir: str | None = None
    imagination: dict[str, Any] = field(default_factory=dict)
    """``agent=imagination``: the settings of ``ImaginationTrainConfig`` (the world model is ``checkpoint``)."""
    data: DataRef = field(default_factory=DataRef)
    """``agent=imagination``: the offline collection (its train split) the agent clones and starts imagining from."""


# -- the other commands ------------------------------------------------------------------------------------------------


@dataclass
class Collect:
    """``avworld collect``."""

    sim: SimConfig = field(default_factory=SimConfig)
    collect: dict[str, Any] = field(default_factory=dict)
    scene: Any = None
    """The user's scenes (a JSON file, a folder of them or a list) instead of procedural ones: ``CollectConfig.scene``."""


@dataclass
class Precompute:
    """``avworld precompute``."""

    sim: SimConfig = field(default_factory=SimConfig)
    scene: Any = None
    scene_seed: int = 0
    workers: int = 2


@dataclass
class Viz:
    """``avworld viz [rollout]``."""

    sim: SimConfig = field(default_factory=SimConfig)
    agent: dict[str, Any] = field(default_factory=dict)
    what: str = "rollout"
    split: str = "test"
    scene: Any = None
    scene_seed: int | None = None
    seed: int = 0
    max_steps: int = 200
    out: str = "rollout.mp4"
    fps: float = 12.0
    spectrogram_seconds: float = 3.0
    checkpoint: str | None = None
    audio: str = "real"
    sampler_steps: int = 4
    device: str | None = None


@dataclass
class Play:
    """``avworld play``."""

    sim: SimConfig = field(default_factory=SimConfig)
    world: str = "real"
    checkpoint: str | None = None
    split: str = "test"
    scene: Any = None
    scene_seed: int | None = None
    seed: int = 0
    sampler_steps: int = 4
    device: str | None = None
    height: int = 256
    fps: int = 30
    script: list[str] = field(default_factory=list)
