"""Worlds a planner can branch (:mod:`avworld.policies.planner`): batched node states stepped together from the present.

:class:`ImaginedWorld` is a trained world model (AV-CDiT): every node of a depth is imagined in one batched
:meth:`Imagination.step` call of the imagination core. :class:`RealWorldModel` is the real simulator branched: a perfect model, for
known-answer tests and upper bounds. :func:`training_data` says which real transitions an agent learned from, by source
(the real env, each collection of real episodes), so a planner and a proposal trained in the same world model, or an
agent cloned from the collection its world model learned from, count that data once.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from avworld.envs.dream import spectrograms
from avworld.envs.dream_config import check_learned
from avworld.models.imagination import FIELDS, Imagination, ImaginedState
from avworld.models.pretrained import provenance_recipe, resolve_checkpoint
from avworld.sim.acoustics.audio import AudioRenderer
from avworld.sim.backends.base import Action, Pose, agent_events
from avworld.sim.backends.builtin import BuiltinSimulator
from avworld.sim.config import SimConfig
from avworld.sim.episodes import step_reward

STOP = int(Action.STOP)

Observations = dict[str, np.ndarray]
REAL_ENV = "real env"
"""The :func:`training_data` source of an agent's own steps in the real env."""


def world_model_source(checkpoint: str | os.PathLike[str]) -> str:
    """The :func:`training_data` source of the windows of a world model whose collection is not known: its resolved
    checkpoint directory; a shipped model's name (``pretrained[:<name>]``) stands for its folder, so an agent trained in
    ``pretrained`` and a planner given that folder count its windows once."""
    return f"world model {resolve_checkpoint(checkpoint, verify=False).resolve()}"


def collection_source(root: str | os.PathLike[str], name: str, split: str = "train", recipe: str | None = None) -> str:
    """The :func:`training_data` source of the real transitions of a collection's ``split`` scenes (``avworld collect``
    output ``root``/``name``): its ``recipe`` (:func:`~avworld.models.pretrained.collection_recipe`) where known, so one
    recipe collected at two paths counts once; else its path (checkpoints written before they recorded recipes)."""
    if recipe:
        return f"collection recipe {recipe} ({split} scenes)"
    return f"collection {os.path.abspath(root)}/{name} ({split} scenes)"


def world_source(checkpoint: str | os.PathLike[str], data: dict[str, Any] | None, record: Any = None) -> str:
    """The source of a world model's training windows: the train scenes of the collection its meta ``data`` names
    (known by :func:`world_recipe`), so a world model and an agent cloned from the same collection count it once; else
    (an agent's meta written before it recorded the collection: ``pretrained`` may have named other weights then)
    :func:`world_model_source`."""
    if _names_collection(data):
        return collection_source(data["root"], data["name"], recipe=world_recipe(checkpoint, data, record))
    return world_model_source(checkpoint)


def world_recipe(checkpoint: str | os.PathLike[str], data: dict[str, Any] | None, record: Any = None) -> str | None:
    """The recipe of the collection a world model's meta ``data`` names: ``data["recipe"]``, else that of the world
    model's provenance (``record``: its ``meta["provenance"]``; None: read from ``checkpoint``'s meta.json where that
    still names the same collection); None where neither says."""
    if not _names_collection(data):
        return None
    return data.get("recipe") or provenance_recipe(record if record is not None else _provenance_of(checkpoint, data))


def world_training_data(checkpoint: str | os.PathLike[str], meta: dict[str, Any]) -> dict[str, int]:
    """Real transitions a world model learned from, by source: the training windows of its last stage (``meta["data"]``,
    :func:`world_source`) and of each earlier stage that recorded its data (``meta["stages"][i]["data"]``; stages trained
    before they did count for nothing), a collection used by several stages once, at its most windows."""
    parts = stage_sources(stage_data(meta.get("stages")))
    data = meta.get("data") or {}
    if isinstance(data.get("windows"), int):
        parts.append(world_sources(checkpoint, data, data["windows"], meta.get("provenance")))
    return merge_sources(*parts)


def world_sources(checkpoint: str | os.PathLike[str], data: dict[str, Any] | None, windows: int, record: Any = None) -> dict[str, int]:
    """{source: windows} of a world model's training windows (``windows`` of them) from its meta ``data``: each collection
    it read together (``data["collections"]``: ``data.name`` and those of ``data.also``) with its own windows, the first
    known as :func:`world_source` knows it, the others by :func:`collection_source`; a record of one collection (or none)
    gives ``windows`` to :func:`world_source`."""
    records = collection_records(data)
    if len(records) < 2:
        return {world_source(checkpoint, data, record): windows}
    first, *others = records
    return merge_sources({world_source(checkpoint, first, record): first["windows"]}, *stage_sources(others))


def collection_records(data: Any) -> list[dict[str, Any]]:
    """The collections a data record read ({root, name, windows, recipe} each): those of its ``collections`` (written
    since several could be read together, ``data.also``), with its ``root``; [] where it has none."""
    if not _names_collection(data) or not isinstance(data.get("collections"), list):
        return []
    return [{"root": data["root"], "name": c["name"], "windows": c.get("windows"), "recipe": c.get("recipe")} for c in data["collections"]
            if isinstance(c, dict) and isinstance(c.get("name"), str)]


def stage_data(stages: Any) -> list[dict[str, Any]]:
    """The data records ({root, name, windows, recipe}) of the stages in a world model's ``meta["stages"]`` that have one."""
    return [s.get("data") for s in stages or [] if isinstance(s, dict) and _counts(s.get("data"))]


def stage_sources(records: Any) -> list[dict[str, int]]:
    """{:func:`collection_source`: windows} of each collection (:func:`collection_records`) of each well-formed data
    record of :func:`stage_data` in ``records``."""
    parts = [c for d in records or [] if _counts(d) for c in collection_records(d) or [d]]
    return [{collection_source(d["root"], d["name"], recipe=d.get("recipe")): d["windows"]} for d in parts if _counts(d)]


def _counts(data: Any) -> bool:
    return _names_collection(data) and isinstance(data.get("windows"), int)


def _names_collection(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("root"), str) and isinstance(data.get("name"), str)


def _provenance_of(checkpoint: str | os.PathLike[str], data: dict[str, Any]) -> Any:
    """``meta["provenance"]`` of the world model at ``checkpoint`` if its meta's ``data`` still names ``data``'s
    collection (root and name); else None (missing, unreadable, or other weights now stand at that name)."""
    try:
        meta = json.loads((resolve_checkpoint(checkpoint, verify=False) / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    trained_on = meta.get("data") if isinstance(meta, dict) else None
    if not isinstance(trained_on, dict) or (trained_on.get("root"), trained_on.get("name")) != (data["root"], data["name"]):
        return None
    return meta.get("provenance")


def merge_sources(*parts: dict[str, int]) -> dict[str, int]:
    """Training data of several parts of one agent: each source once, with the most transitions any part took from it."""
    merged: dict[str, int] = {}
    for part in parts:
        for source, n in part.items():
            merged[source] = max(merged.get(source, 0), n)
    return merged


def training_data(agent: Any) -> dict[str, int]:
    """Real env transitions ``agent`` learned from, by source: {:data:`REAL_ENV`: its own steps in the real env,
    :func:`world_source`: that world model's training windows (one per real transition of its training split),
    :func:`collection_source`: the states of the offline collections it learned from (``meta["collections"]``)}.
    A collection counted twice (the world model's and the agent's) counts once, at the larger number.

    Read from the agent's ``training_data`` attribute (planners: their world model's and their proposal's), else from its
    checkpoint ``meta`` (``usage.real_steps``, ``world_model.windows`` and its earlier ``stages``, ``collections``); empty
    for agents that learn nothing.
    """
    own = getattr(agent, "training_data", None)
    if isinstance(own, dict):
        return dict(own)
    meta = getattr(agent, "meta", None)
    if not isinstance(meta, dict) or "usage" not in meta:
        return {}
    parts = [{REAL_ENV: int(meta["usage"].get("real_steps", 0))}]
    world = meta.get("world_model") or {}
    used = meta.get("collections") or []
    # a collection's recipe, where any record of it names one (agents older than recipes name their collections by path)
    recipes = {(os.path.abspath(u["root"]), u["name"]): u["recipe"] for u in used if u.get("recipe")}
    if isinstance(world.get("windows"), int) and world.get("checkpoint"):
        data = world.get("data") or None
        if recipe := world_recipe(world["checkpoint"], data):
            recipes.setdefault((os.path.abspath(data["root"]), data["name"]), recipe)  # type: ignore[index]
        for c in collection_records(data):
            if c["recipe"]:
                recipes.setdefault((os.path.abspath(c["root"]), c["name"]), c["recipe"])
        parts.append(world_sources(world["checkpoint"], data, world["windows"]))
        parts += stage_sources(world.get("stages"))  # its earlier stages' collections, as the agent recorded them
    for u in used:
        recipe = u.get("recipe") or recipes.get((os.path.abspath(u["root"]), u["name"]))
        parts.append({collection_source(u["root"], u["name"], u.get("split", "train"), recipe): int(u["states"])})
    return merge_sources(*parts)


def hearing(audio: np.ndarray, sensors: tuple[str, ...]) -> Observations:
    """The sound observations of B nodes, as the real env gives them: ``audio`` (B, 2, N) in [-1, 1] itself and/or its
    ``spectrogram`` (B, 2, F, T), for those of ``sensors`` that ask for them."""
    obs = {}
    if "audio" in sensors:
        obs["audio"] = audio
    if "spectrogram" in sensors:
        obs["spectrogram"] = spectrograms(audio)
    return obs


@dataclass
class Transition:
    """One step of B nodes: their ``state`` after it, ``reward`` (B,) float64 and ``terminal`` (B,) bool."""

    state: Any
    reward: np.ndarray
    terminal: np.ndarray


@dataclass
class Rollout:
    """B action sequences rolled k steps from the root.

    ``rewards`` (B, k), zero after a sequence's terminal step; ``returns`` (B,) their discounted sum; ``terminal`` (B,)
    bool, whether the sequence ended the episode; ``state``: the final states (for :meth:`PlanningWorld.observations`).
    """

    rewards: np.ndarray
    returns: np.ndarray
    terminal: np.ndarray
    state: Any


class PlanningWorld(ABC):
    """A world a planner can branch: batched states of B nodes, stepped together from the real present (the root)."""

    @property
    def training_data(self) -> dict[str, int]:
        """Real transitions the world's model learned from, by source (see :func:`training_data`); none for the real simulator."""
        return {}

    @abstractmethod
    def reset(self, env: Any, seed: int | None) -> None:
        """A new real episode of ``env`` begins."""

    @abstractmethod
    def observe(self, observation: Observations, info: dict[str, Any]) -> None:
        """The real observation just received (the reset's, then each step's); it defines the root."""

    @abstractmethod
    def root(self) -> Any:
        """The state of the real present: a batch of one node."""

    @abstractmethod
    def take(self, state: Any, rows: np.ndarray) -> Any:
        """Nodes ``rows`` (n,) int of ``state``, repeats allowed."""

    @abstractmethod
    def step(self, state: Any, actions: np.ndarray) -> Transition:
        """One step of every node of ``state`` under ``actions`` (B,) int64, in one batched call."""

    @abstractmethod
    def observations(self, state: Any) -> Observations:
        """What the agent would observe at each node: {sensor: (B, ...)}."""

    def rollout(self, sequences: np.ndarray, discount: float = 1.0) -> Rollout:
        """Roll action sequences (B, k) from the root: one :meth:`step` of the whole batch per depth.

        Rewards accumulate (discounted by ``discount``) up to and including each sequence's terminal step.
        """
        sequences = np.asarray(sequences, np.int64)
        if sequences.ndim != 2 or sequences.shape[1] < 1:
            raise ValueError(f"sequences must have shape (B, k) with k ≥ 1, got {sequences.shape}")
        b, k = sequences.shape
        state = self.take(self.root(), np.zeros(b, np.int64))
        rewards = np.zeros((b, k))
        ended = np.zeros(b, bool)
        for t in range(k):
            step = self.step(state, sequences[:, t])
            rewards[:, t] = np.where(ended, 0.0, step.reward)
            ended |= step.terminal
            state = step.state
        return Rollout(rewards, rewards @ discount ** np.arange(k), ended, state)


class ImaginedWorld(PlanningWorld):
    """A trained world model as a planning world; nodes are an :class:`ImaginedState` (context windows of scaled latents).

    The root holds the last m real observations, encoded one by one as they arrive (at an episode's start the first one
    repeated, as if the agent had stood still: :meth:`Imagination.observe`). A step of B nodes is one
    :meth:`Imagination.step` call with ``sampler_steps`` Euler steps; its reward is the model's reward head. Only STOP ends
    an episode, as in the real env (the termination head is trained on exactly that event; an imperfect head must not cut
    branches). Its ``training_data`` is the checkpoint's training windows (``meta["data"]["windows"]``): one per real
    transition of its training split.

    ``reward_samples`` K > 1 makes a step's reward an expectation: each node is imagined K times from K noise draws and
    their rewards averaged (the planners' particles, as in PETS), while the node goes on from the first draw; a step
    imagines K times the rows.
    """

    def __init__(
        self, imagination: Imagination, sampler_steps: int = 4, name: str = "<in-memory world model>", reward_samples: int = 1
    ) -> None:
        if sampler_steps < 1:
            raise ValueError(f"sampler_steps must be ≥ 1, got {sampler_steps}")
        if reward_samples < 1:
            raise ValueError(f"reward_samples must be ≥ 1, got {reward_samples}")
        self.imagination, self.sampler_steps, self.name = imagination, sampler_steps, name
        self.reward_samples = reward_samples
        meta = imagination.meta
        self.fields = tuple(FIELDS[m] for m in imagination.modalities)
        self.shapes = {"rgb": tuple(meta["rgb_shape"]), "audio": tuple(meta["audio_shape"])}
        if name.startswith("<"):
            windows = meta.get("data", {}).get("windows")
            self.data = {name: windows} if isinstance(windows, int) else {}
        else:
            self.data = world_training_data(name, meta)
        self.generator = torch.Generator(imagination.device)
        self.present: ImaginedState | None = None
        self.sensors: tuple[str, ...] = ()

    @property
    def training_data(self) -> dict[str, int]:
        return dict(self.data)

    def reset(self, env: Any, seed: int | None) -> None:
        config = getattr(getattr(env, "unwrapped", env), "config", None)
        if isinstance(config, SimConfig) and "sim" in self.imagination.meta:
            check_learned(config, SimConfig.from_dict(self.imagination.meta["sim"]), "the env", self.name)
        self.present = None
        self.generator.manual_seed(int(np.random.default_rng(seed).integers(2**62)))

    def observe(self, observation: Observations, info: dict[str, Any]) -> None:
        real = {}
        for f in self.fields:
            if f not in observation:
                raise KeyError(f"observation has no {f!r}: the world model {self.name} imagines from {', '.join(self.fields)}")
            x = np.asarray(observation[f])
            if x.shape != self.shapes[f]:
                raise ValueError(f"observation[{f!r}] has shape {x.shape}; the world model {self.name} was trained on {self.shapes[f]}")
            real[f] = torch.from_numpy(x)[None]  # (1, ...)
        self.present = self.imagination.observe(self.present, real)
        self.sensors = tuple(s for s in ("rgb", "audio", "spectrogram") if s in observation)

    def root(self) -> ImaginedState:
        if self.present is None:
            raise RuntimeError("observe() a real observation after reset() before planning")
        return self.present

    def take(self, state: ImaginedState, rows: np.ndarray) -> ImaginedState:
        return state.take(torch.as_tensor(np.asarray(rows, np.int64), device=self.imagination.device))

    def step(self, state: ImaginedState, actions: np.ndarray) -> Transition:
        actions = np.asarray(actions, np.int64)
        k = self.reward_samples
        if k > 1:  # K rows per node, in a row
            state = state.take(torch.arange(len(actions), device=self.imagination.device).repeat_interleave(k))
        step = self.imagination.step(state, torch.from_numpy(np.repeat(actions, k)), self.sampler_steps, self.generator)
        reward = step.reward.double().cpu().numpy().reshape(len(actions), k).mean(axis=1)  # (B,) each node's mean over its K
        after = step.state if k == 1 else step.state.take(torch.arange(0, k * len(actions), k, device=self.imagination.device))
        return Transition(after, reward, actions == STOP)  # each node goes on from its first draw

    def observations(self, state: ImaginedState) -> Observations:
        """Decoded newest step of each node: ``rgb`` uint8 (B, H, W, 3), and ``audio`` (B, 2, N) / ``spectrogram``
        (B, 2, F, T) where the real observations have them."""
        seen = {f: x.cpu().numpy() for f, x in self.imagination.observations(state.latest).items()}
        obs = {"rgb": seen["rgb"]}
        if "audio" in seen:
            obs |= hearing(seen["audio"], self.sensors)
        return obs


@dataclass
class RealState:
    """Nodes of the real world: ``poses`` (B, 3) x, y, yaw, ``geodesic`` (B,) distances to the source (m), and where the
    agent hears: each node's ``audio`` renderer (forked from the real one) and ``sound`` (B, 2, N), its last step's."""

    poses: np.ndarray
    geodesic: np.ndarray
    audio: list[AudioRenderer] | None = None
    sound: np.ndarray | None = None


class RealWorldModel(PlanningWorld):
    """The perfect model: branches of the real simulator's state, stepped with its own transition and reward.

    A node is a pose (the only state navigation changes) and, where the real observations hold sound, a fork of the
    episode's audio renderer (:meth:`AudioRenderer.fork`): a step applies :meth:`BuiltinSimulator.transition` (collision
    and sliding included), computes the reward exactly as ``AudioNavEnv.step`` does and renders the step's binaural sound
    at the node's pose as the real env would (sources, footsteps, bumps, noise: bit-identical to the real future). Its
    observations are the rendered ``rgb``, plus ``audio`` / ``spectrogram`` as the real ones have them. Needs the real
    env (``avworld/AudioNav-v0``); costs a render per observed node and an audio step (~5 ms) per stepped node.
    """

    def __init__(self) -> None:
        self.sim: BuiltinSimulator | None = None
        self.present: RealState | None = None
        self.sensors: tuple[str, ...] = ()

    def reset(self, env: Any, seed: int | None) -> None:
        sim = getattr(getattr(env, "unwrapped", env), "sim", None)
        if not isinstance(sim, BuiltinSimulator):
            raise TypeError("RealWorldModel needs the real env (avworld/AudioNav-v0) after reset(); it branches the simulator")
        self.sim = sim

    def observe(self, observation: Observations, info: dict[str, Any]) -> None:
        if self.sim is None:
            raise RuntimeError("call reset(env) before observe()")
        self.sensors = tuple(s for s in ("audio", "spectrogram") if s in observation)
        audio = None
        if self.sensors:
            if self.sim.audio is None:
                raise RuntimeError("the observation holds sound but the simulator renders none: reset the real env first")
            audio = [self.sim.audio.fork()]
        self.present = RealState(self.sim.pose.as_array()[None], np.array([self.sim.geodesic_distance()]), audio)

    def root(self) -> RealState:
        if self.present is None:
            raise RuntimeError("observe() a real observation after reset() before planning")
        return self.present

    def take(self, state: RealState, rows: np.ndarray) -> RealState:
        audio = None if state.audio is None else [state.audio[r] for r in np.asarray(rows).tolist()]
        return RealState(state.poses[rows], state.geodesic[rows], audio, None if state.sound is None else state.sound[rows])

    def step(self, state: RealState, actions: np.ndarray) -> Transition:
        sim = self.sim
        assert sim is not None
        actions = np.asarray(actions, np.int64)
        moves = [sim.transition(Pose(*p), Action(int(a))) for p, a in zip(state.poses.tolist(), actions, strict=True)]
        geodesic = np.array([sim.geodesic_distance(p) for p, _ in moves])
        stop = actions == STOP
        success = stop & (geodesic <= sim.config.episode.success_distance)
        reward = np.asarray(step_reward(state.geodesic - geodesic, success), np.float64)
        poses = np.array([p.as_array() for p, _ in moves]).reshape(-1, 3)
        audio, sound = None, None
        if state.audio is not None:
            audio = [renderer.fork() for renderer in state.audio]  # nodes sharing a parent part here
            events = [agent_events(Action(int(a)), collided) for a, (_, collided) in zip(actions, moves, strict=True)]
            sound = np.stack([r.step(tuple(p), e) for r, p, e in zip(audio, poses.tolist(), events, strict=True)])
        return Transition(RealState(poses, geodesic, audio, sound), reward, stop)

    def observations(self, state: RealState) -> Observations:
        sim = self.sim
        assert sim is not None
        obs = {"rgb": np.stack([sim.renderer.render(x, y, yaw)[0] for x, y, yaw in state.poses])}
        if self.sensors:
            if state.sound is None:
                raise ValueError("observations of the root: the real observation is the agent's own")
            obs |= hearing(state.sound, self.sensors)
        return obs
