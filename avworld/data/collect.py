"""Collect trajectories of ``avworld/AudioNav-v0`` into one Minari dataset (``avworld collect``).

Episode i of a collection is fully determined by the config and i: its scene (an id of the scene source,
:mod:`avworld.sim.scenes.source`: a procedural scene seed of ``split``, or with ``scene`` the user's scene
``i mod n`` of their n), its behaviour and its reset seed. Episodes are grouped into shards of
``shard_size``, the unit of work and of resuming: each shard is a Minari dataset
``avworld/<name>/shard-NNNNN-v0`` under ``root``, written by one worker process into a
private staging folder and moved into place whole, and counts as done only once its
marker file ``<root>/avworld/<name>/shard-NNNNN.done`` exists (written atomically
after the move). A rerun skips done shards and rewrites unfinished ones, so an
interrupted collection resumes with no episode lost or duplicated. Workers exit when
the process that started them dies (SIGKILL or SIGTERM of the main process alone),
so no orphan keeps writing.

Once every shard is done they are assembled, in episode order, into the collection's
one dataset ``avworld/<name>-v0`` (staged, then renamed into place) and the shards are
removed: ``minari.load_dataset("avworld/<name>-v0")`` opens the whole collection, and
its ``recover_environment()`` makes the env the data came from (``split``, ``sensors``
and the full ``sim`` settings as the spec's kwargs, ``max_episode_steps`` the collection's).

With ``agent`` (a Hydra agent config: ``avworld collect collect=agent +agent@collect.agent=imagination
collect.agent.path=DIR``, or ``+collect.behaviours.agent=W`` beside the other behaviours) episodes of the ``agent``
behaviour are walked by that agent, sampling its actions as it is evaluated (reset with the episode's seed, so a
collection is reproducible); each worker process builds it once.

Per-episode metadata (Minari episode metadata): ``index`` (in the collection), ``scene_seed``, ``split``, ``sound``,
``behaviour``, ``success``, ``collisions``. An episode of the user's scene k (``scene=``) has ``scene_seed`` −1 − k and
``split`` ``"user"``: the windows' train/val/test rule (:func:`avworld.data.windows.scene_split`) shares such scenes out
by its fractions, as it does the procedural train range. Per-step ``infos``: ``pose`` (x, y, yaw),
``geodesic_distance``, ``collided``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec

from avworld.data.behaviours import AGENT, BEHAVIOURS, make_behaviour
from avworld.envs.audio_nav import AudioNavEnv
from avworld.sim.acoustics.responses import ACOUSTICS_VERSION
from avworld.sim.config import SimConfig
from avworld.sim.scenes.procedural import SPLITS
from avworld.sim.scenes.source import scene_source

NAMESPACE = "avworld"
FORMAT_VERSION = 1


@dataclass
class CollectConfig:
    """What to collect and where (``configs/collect.yaml``)."""

    name: str = "audionav"
    root: str = "datasets"
    """Minari datasets root (what ``MINARI_DATASETS_PATH`` must point to for ``minari.load_dataset``)."""
    episodes: int = 64
    split: str = "train"
    first_scene: int = 0
    """Offset into the split's seed range of the first scene."""
    scenes: int = 16
    """Distinct scenes: episode i uses scene ``first_scene + i % scenes`` of the split."""
    behaviours: dict[str, float] = field(default_factory=lambda: {"toward": 0.5, "away": 0.2, "explore": 0.3})
    shard_size: int = 8
    workers: int = 2
    seed: int = 0
    max_steps: int = 200
    """Episode step limit during collection (replaces ``sim.episode.max_steps``)."""
    sensors: tuple[str, ...] = ("rgb", "audio")
    scene: Any = None
    """The user's scenes instead of procedural ones (``avworld collect scene=PATH``): a scene JSON, a folder of them or a
    list of those, as ``AudioNav-v0`` takes them; episode i plays scene ``i mod n`` of the n scenes (a folder's sorted by
    name). ``split``, ``first_scene`` and ``scenes`` choose procedural scenes and do not apply. Paths are stored absolute.
    Typed ``Any`` for OmegaConf (no unions of containers); a ``str`` or a ``list[str]`` once checked."""
    agent: Any = None
    """The trained agent of the ``agent`` behaviour: a Hydra config with a ``_target_`` (an agent of ``configs/agent``,
    e.g. ``+agent@collect.agent=imagination collect.agent.path=DIR``); None without one."""

    def __post_init__(self) -> None:
        self.sensors = tuple(self.sensors)
        if self.scene is not None:
            paths = [self.scene] if isinstance(self.scene, str | os.PathLike) else list(self.scene)
            if not paths or not all(isinstance(p, str | os.PathLike) for p in paths):
                raise ValueError(f"collect.scene: a scene JSON, a folder of them or a non-empty list of those, got {self.scene!r}")
            absolute = [os.path.abspath(p) for p in paths]
            self.scene = absolute[0] if isinstance(self.scene, str | os.PathLike) else absolute
        if self.split not in SPLITS:
            raise ValueError(f"collect.split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        for key in ("episodes", "scenes", "shard_size", "workers", "max_steps"):
            if getattr(self, key) < 1:
                raise ValueError(f"collect.{key} must be at least 1, got {getattr(self, key)}")
        if self.first_scene < 0 or self.first_scene + self.scenes > len(SPLITS[self.split]):
            raise ValueError(f"collect.first_scene/scenes: outside the {self.split} split's {len(SPLITS[self.split])} scenes")
        unknown = sorted(set(self.behaviours) - {*BEHAVIOURS, AGENT})
        if unknown or not self.behaviours or min(self.behaviours.values()) < 0 or sum(self.behaviours.values()) <= 0:
            known = ", ".join((*BEHAVIOURS, AGENT))
            raise ValueError(f"collect.behaviours: weights over {known} (non-negative, not all zero); got {self.behaviours}")
        if self.agent is not None and not (isinstance(self.agent, dict) and isinstance(self.agent.get("_target_"), str)):
            raise ValueError(f"collect.agent: an agent config with a _target_ (+agent@collect.agent=NAME), got {self.agent!r}")
        if (self.agent is not None) != (self.behaviours.get(AGENT, 0) > 0):
            raise ValueError(
                "collect.agent and collect.behaviours.agent go together: an agent walks the episodes of the agent behaviour "
                f"(got agent {'set' if self.agent is not None else 'unset'}, behaviours {self.behaviours}); e.g. "
                "collect=agent +agent@collect.agent=imagination collect.agent.path=DIR"
            )
        if "rgb" not in self.sensors or "audio" not in self.sensors:
            raise ValueError("collect.sensors must include rgb and audio (the world model learns both)")


@dataclass(frozen=True)
class EpisodePlan:
    index: int
    scene_seed: int
    """A procedural scene's seed, or −1 − k for the user's scene k."""
    behaviour: str
    seed: int

    @property
    def options(self) -> dict[str, int]:
        """The reset options that play this episode's scene."""
        return {"scene_index": -1 - self.scene_seed} if self.scene_seed < 0 else {"scene_seed": self.scene_seed}


def plan(config: CollectConfig, ids: Sequence[int]) -> list[EpisodePlan]:
    """Every episode's scene, behaviour and reset seed: a function of the config and of ``ids``, the scene ids its scene
    source has for ``config.split`` (``first_scene`` and ``scenes`` pick among procedural ones; the user's all play)."""
    names = sorted(config.behaviours)
    weights = np.array([config.behaviours[n] for n in names], float)
    rng = np.random.default_rng([config.seed, 0xC011])
    picks = rng.choice(len(names), size=config.episodes, p=weights / weights.sum())
    resets = rng.integers(0, 2**31, size=config.episodes)
    pool = ids if config.scene is not None else ids[config.first_scene : config.first_scene + config.scenes]
    return [EpisodePlan(i, int(pool[i % len(pool)]), names[int(picks[i])], int(resets[i])) for i in range(config.episodes)]


def shard_id(config: CollectConfig, shard: int) -> str:
    return f"{NAMESPACE}/{config.name}/shard-{shard:05d}-v0"


def dataset_id(config: CollectConfig) -> str:
    """The Minari id of the whole collection, once assembled."""
    return f"{NAMESPACE}/{config.name}-v0"


def env_spec(config: CollectConfig, sim: SimConfig, split: str | None = None) -> EnvSpec:
    """The spec of the env a collection runs, with every setting as kwargs (JSON-able), so Minari can recreate it."""
    kwargs: dict[str, Any] = {"split": split or config.split, "sensors": list(config.sensors), "sim": dataclasses.asdict(sim)}
    if config.scene is not None and split is None:
        kwargs["scene"] = config.scene
    return dataclasses.replace(gym.spec("avworld/AudioNav-v0"), kwargs=kwargs, max_episode_steps=sim.episode.max_steps)


def marker(config: CollectConfig, shard: int) -> Path:
    return Path(config.root) / NAMESPACE / config.name / f"shard-{shard:05d}.done"


def shards(config: CollectConfig, ids: Sequence[int]) -> Iterator[tuple[int, list[EpisodePlan]]]:
    episodes = plan(config, ids)
    for k in range(0, len(episodes), config.shard_size):
        yield k // config.shard_size, episodes[k : k + config.shard_size]


_AGENTS: dict[str, Any] = {}
"""This process's agents of the ``agent`` behaviour, by their config's JSON: built once per worker."""


def agent_of(config: dict[str, Any]) -> Any:
    """The agent a ``collect.agent`` config builds (Hydra's ``instantiate``), once per process."""
    key = json.dumps(config, sort_keys=True)
    if key not in _AGENTS:
        from hydra.utils import instantiate

        agent = instantiate(config)
        if not (callable(getattr(agent, "reset", None)) and callable(getattr(agent, "act", None))):
            raise TypeError(f"collect.agent: {config['_target_']} built a {type(agent).__name__}, not an agent (reset, act)")
        _AGENTS[key] = agent
    return _AGENTS[key]


def run_episode(env: AudioNavEnv, ep: EpisodePlan, episode_id: int, agent: Any = None) -> tuple[Any, dict[str, Any]]:
    """One episode with its behaviour (``agent``: the agent that walks those of the ``agent`` behaviour); returns a Minari
    ``EpisodeBuffer`` (id ``episode_id`` in its shard) and its metadata."""
    from minari.data_collector import EpisodeBuffer

    behaviour = None if ep.behaviour == AGENT else make_behaviour(ep.behaviour)
    rng = np.random.default_rng([ep.seed, ep.index])
    obs, info = env.reset(seed=ep.seed, options=ep.options)
    if behaviour is None:
        if agent is None:
            raise ValueError(f"episode {ep.index} is the agent behaviour's: give the agent (collect.agent)")
        agent.reset(env, seed=ep.seed)
    observations = {k: [v] for k, v in obs.items()}
    infos: dict[str, list[Any]] = {"pose": [info["pose"]], "geodesic_distance": [info["geodesic_distance"]], "collided": [False]}
    actions, rewards, terms, truncs = [], [], [], []
    done = False
    while not done:
        assert env.sim is not None
        action = int(behaviour.act(env.sim, rng) if behaviour is not None else agent.act(obs, info))
        obs, reward, terminated, truncated, info = env.step(action)
        for k, v in obs.items():
            observations[k].append(v)
        for k in infos:
            infos[k].append(info[k])
        actions.append(action)
        rewards.append(reward)
        terms.append(terminated)
        truncs.append(truncated)
        done = terminated or truncated
    buffer = EpisodeBuffer(
        id=episode_id,
        seed=ep.seed,
        options=ep.options,
        observations={k: np.stack(v) for k, v in observations.items()},
        actions=np.asarray(actions, np.int64),
        rewards=rewards,
        terminations=terms,
        truncations=truncs,
        infos={
            "pose": np.asarray(infos["pose"], np.float32),
            "geodesic_distance": np.asarray(infos["geodesic_distance"], np.float32),
            "collided": np.asarray(infos["collided"], bool),
        },
    )
    assert env.sim is not None and env.scene_source is not None
    meta = {
        "index": ep.index,
        "scene_seed": ep.scene_seed,
        "split": env.scene_source.split_of(ep.scene_seed),
        "sound": env.sim.scene.sources[0].sound,
        "behaviour": ep.behaviour,
        "success": bool(info["success"]),
        "collisions": int(np.sum(infos["collided"])),
    }
    return buffer, meta


def dataset_metadata(config: CollectConfig, sim: SimConfig, env: AudioNavEnv) -> dict[str, Any]:
    """What every shard of a collection must agree on; stored with each shard."""
    audio = env.observation_space["audio"].shape
    return {
        "format_version": FORMAT_VERSION,
        "sample_rate": sim.acoustics.fs,
        "audio_shape": list(audio),
        "rgb_shape": list(env.observation_space["rgb"].shape),
        "sim": dataclasses.asdict(sim),
        "acoustics_version": ACOUSTICS_VERSION,
        "collect": dataclasses.asdict(config),
    }


def _exit_with_parent(parent: int) -> None:
    """Worker initializer: exit as soon as the process that started us is gone (it was killed alone, e.g. by
    ``timeout`` or a scheduler), instead of finishing shards nobody waits for and then blocking for ever."""

    def watch() -> None:
        while os.getppid() == parent:
            threading.Event().wait(0.2)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _collect_shard(config: CollectConfig, sim: SimConfig, shard: int, episodes: list[EpisodePlan]) -> int:
    """Worker: run a shard's episodes and write its Minari dataset and marker; returns the number of steps.

    The dataset is written under a staging root private to this attempt and renamed into place whole, then the marker
    is written: a killed attempt leaves either nothing in place or a complete shard without marker (redone by a rerun)."""
    import minari

    root = Path(config.root).resolve()
    path = root / shard_id(config, shard)
    if path.exists():  # an unfinished earlier attempt
        shutil.rmtree(path)
    staging = root / NAMESPACE / f".staging-{config.name}-{shard:05d}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    os.environ["MINARI_DATASETS_PATH"] = str(staging)
    env = AudioNavEnv(split=config.split, sensors=config.sensors, sim=sim, scene=config.scene)
    agent = None
    if config.agent is not None:
        if config.workers > 1:  # one torch thread per core among the workers, not every worker on every core
            import torch

            torch.set_num_threads(max(1, (os.cpu_count() or 1) // config.workers))
        agent = agent_of(config.agent)
    buffers, metas = zip(*(run_episode(env, ep, i, agent) for i, ep in enumerate(episodes)), strict=True)
    meta = dataset_metadata(config, sim, env)
    try:
        dataset = minari.create_dataset_from_buffers(
            shard_id(config, shard),
            list(buffers),
            env=env_spec(config, sim),
            eval_env=env_spec(config, sim, split="test"),
            observation_space=env.observation_space,
            action_space=env.action_space,
            jpeg_encoding=False,
            **_about(config, f"shard {shard}"),
        )
        dataset.storage.update_metadata({"avworld": json.dumps(meta)})
        dataset.storage.update_episode_metadata(list(metas), range(len(metas)))
        path.parent.mkdir(parents=True, exist_ok=True)
        (staging / shard_id(config, shard)).rename(path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _write_atomic(marker(config, shard), json.dumps({"episodes": [ep.index for ep in episodes]}) + "\n")
    return int(sum(len(b.actions) for b in buffers))


def _about(config: CollectConfig, part: str) -> dict[str, Any]:
    """Minari's descriptive metadata of a collection (or of ``part`` of it)."""
    return {
        "algorithm_name": "avworld.data.behaviours: " + ", ".join(f"{k}={v}" for k, v in sorted(config.behaviours.items())),
        "author": {"avworld"},
        "author_email": {"avworld@users.noreply.github.com"},
        "code_permalink": "https://github.com/avworld/avworld",
        "description": f"avworld collection {config.name!r}{', ' + part if part else ''}: audio-goal navigation trajectories "
        "(rgb + binaural audio).",
    }


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


EPISODE_KEYS = ("index", "scene_seed", "split", "sound", "behaviour", "success", "collisions")


def assemble(config: CollectConfig, sim: SimConfig) -> Path:
    """Join the finished shards, in episode order, into the collection's dataset ``avworld/<name>-v0``; remove them.

    Written in a staging folder and renamed into place, so the dataset exists complete or not at all."""
    from minari.data_collector import EpisodeBuffer
    from minari.dataset.minari_storage import MinariStorage

    from avworld.data.storage import open_collection

    root = Path(config.root).resolve()
    final = root / dataset_id(config)
    shard_root = root / NAMESPACE / config.name
    if not final.exists():
        shards = open_collection(root, config.name, strict=True, shards_only=True)
        staging = root / NAMESPACE / f".staging-{config.name}-v0-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            first = shards[0].storage
            storage = MinariStorage.new(
                staging / "data",
                observation_space=first.observation_space,
                action_space=first.action_space,
                env_spec=env_spec(config, sim),
                data_format=first.metadata["data_format"],
            )
            metas = []
            for shard in shards:
                source = shard.storage
                episode_metas = list(source.get_episode_metadata(range(source.total_episodes)))
                for episode, m in zip(source.get_episodes(range(source.total_episodes)), episode_metas, strict=True):
                    fields = {k: episode[k] for k in ("observations", "actions", "rewards", "terminations", "truncations", "infos")}
                    storage.update_episodes([EpisodeBuffer(id=None, seed=m.get("seed"), options=m.get("options"), **fields)])
                metas += [{k: m[k] for k in EPISODE_KEYS} for m in episode_metas]
            if [int(m["index"]) for m in metas] != list(range(config.episodes)):
                raise ValueError(f"{shard_root}: the shards hold episodes {[int(m['index']) for m in metas]}, not 0-{config.episodes - 1}")
            storage.update_episode_metadata(metas, range(len(metas)))
            storage.update_metadata(
                {
                    **{k: first.metadata[k] for k in ("avworld", "minari_version")},
                    **_about(config, ""),
                    "dataset_id": dataset_id(config),
                    "eval_env_spec": env_spec(config, sim, split="test").to_json(),
                }
            )
            staging.rename(final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(shard_root, ignore_errors=True)
    return final


def collect(config: CollectConfig, sim: SimConfig, on_shard: Callable[[int, int], None] | None = None) -> dict[str, int]:
    """Collect every unfinished shard, ``config.workers`` at a time, then assemble the collection's dataset; returns
    counts of shards done/skipped and steps."""
    import avworld  # noqa: F401  (workers import it too: registers the env)

    sim = dataclasses.replace(sim, episode=dataclasses.replace(sim.episode, max_steps=config.max_steps))
    source = scene_source(config.scene, sim)  # the user's scenes are checked here, before any worker
    every = list(shards(config, source.ids(config.split)))
    if (Path(config.root) / dataset_id(config)).exists():
        assemble(config, sim)  # removes shards a killed earlier run left behind
        return {"shards": 0, "skipped": len(every), "steps": 0}
    for stale in (Path(config.root) / NAMESPACE).glob(f".staging-{config.name}-*"):  # left by workers killed mid-write
        shutil.rmtree(stale, ignore_errors=True)
    jobs = [(k, eps) for k, eps in every if not marker(config, k).exists()]
    skipped = len(every) - len(jobs)
    steps = 0
    pool = (
        ProcessPoolExecutor(max_workers=config.workers, initializer=_exit_with_parent, initargs=(os.getpid(),))
        if config.workers > 1 and len(jobs) > 1
        else None
    )
    try:
        results = (
            pool.map(_collect_shard, [config] * len(jobs), [sim] * len(jobs), [k for k, _ in jobs], [e for _, e in jobs])
            if pool
            else (_collect_shard(config, sim, k, e) for k, e in jobs)
        )
        for (_, eps), n in zip(jobs, results, strict=True):
            steps += n
            if on_shard:
                on_shard(len(eps), n)
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    assemble(config, sim)
    return {"shards": len(jobs), "skipped": skipped, "steps": steps}
