"""PPO (stable-baselines3) for audio-goal navigation, trained in the real world or inside a world model's imagination.

``train_ppo(AgentTrainConfig(world="real"), out)`` trains on ``n_envs`` real ``AudioNav-v0`` envs (train scenes);
``world="dream"`` trains on a :class:`~avworld.envs.dream_vector.DreamVectorEnv` (one batched world-model call per step)
through :class:`~avworld.policies.sb3_vec.GymVecToSB3`, optionally with a fraction ``real_fraction`` of the envs real
(:class:`~avworld.policies.sb3_vec.ConcatVecEnv`: every rollout then holds that fraction of real steps).
:class:`~avworld.policies.ppo_agent.PPOAgent` runs a saved agent as an avworld :class:`~avworld.policies.base.Policy`.

## Observations
The env's Dict goes through SB3's ``VecMonitor`` → ``VecFrameStack(k)`` (each key stacked on its last axis: frames
(H, W, 3k), waveforms end to end (2, k·N)) → ``VecTransposeImage`` (frames (3k, H, W)); SB3 scales uint8 frames to
[0, 1]. :class:`~avworld.policies.ppo_features.AVFeatures` computes the binaural spectrogram inside the network.
:class:`~avworld.policies.ppo_agent.PPOAgent` stacks with SB3's own ``StackedObservations``, so it sees exactly what training saw.

## Real steps
``real_steps`` counts real env transitions the agent's training used: every step of a real env, plus, in imagination,
the m − 1 random real moves that build each context from a fresh real episode (``dream.start="episode"``; m is the
world model's context; a dataset start reads the world model's own data and adds none). ``real_episodes`` counts real
episodes started. A run that starts from another agent (``init``) adds the steps behind that agent (its cloning
demonstrations, its own PPO steps). The world model's own training data is reported apart (``world_model.windows``:
the real transitions of its training windows, from its ``meta.json``).

## Checkpoint
``out_dir/checkpoint`` is an avworld checkpoint (:mod:`avworld.models.checkpoint`, kind ``ppo_agent``; never a pickle):
``config.yaml`` (sensors, frame stack, simulator settings, extractor and network sizes: all a rebuild needs),
``model.safetensors`` (the policy's state dict), ``meta.json`` (observation spaces, real/imagined steps, the training
config) and, for resuming, ``training.safetensors`` + ``training.json`` (Adam's moments and step counts, PPO's timestep
and update counts, the step counters). Saves are atomic, every ``checkpoint_every`` steps at a rollout boundary and at
the end. A resumed run restores all of that and continues the schedule (``learn(reset_num_timesteps=False)``); what it
does not restore: episodes in progress (every env starts a new one), the random generators (reseeded with
``seed + timesteps``) and SB3's episode-return window, so it continues statistically, not bit for bit. Steps an
interrupted run took after its last checkpoint are lost with it, and not counted in ``real_steps``.
TensorBoard logs go to ``out_dir/tb``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.policies import MultiInputActorCriticPolicy
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecFrameStack, VecMonitor, VecTransposeImage

from avworld.envs.audio_nav import STARTS, observation_space
from avworld.models.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    optimizer_from_checkpoint,
    optimizer_to_checkpoint,
    save_checkpoint,
)
from avworld.policies.imitation import ImitationConfig, clone, collect_demonstrations
from avworld.policies.ppo_agent import KIND, describe_space, load_policy_weights, policy_kwargs, policy_space, unique_state
from avworld.policies.ppo_features import SUPPORTED_KEYS, AVFeaturesConfig
from avworld.policies.sb3_vec import ConcatVecEnv, CountSteps, GymVecToSB3
from avworld.sim.backends.base import Action
from avworld.sim.config import SimConfig

WORLDS = ("real", "dream")
DEMO_ENVS = 2
"""Envs that collect the cloning warm start's demonstrations (in this process)."""
IDENTITY = ("world", "checkpoint", "sensors", "frame_stack", "sim", "features")
"""Training settings that define the agent (with ``ppo.net_arch``): a resumed run must keep them; it may change the others."""


@dataclass
class PPOConfig:
    """stable-baselines3 PPO hyper-parameters (see ``stable_baselines3.PPO``) and the policy/value MLP widths."""

    n_steps: int = 128
    batch_size: int = 256
    n_epochs: int = 4
    learning_rate: float = 2.5e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    net_arch: tuple[int, ...] = (128,)
    stop_prior: float | None = None
    """Initial probability of STOP (the action head's biases; the other actions share the rest equally); None: SB3's
    near-uniform start. A low prior lets early episodes run long enough to find the progress reward (a uniform policy
    STOPs after ~4 steps)."""
    critic_warmup: int = 0
    """PPO's first ``critic_warmup`` env steps update the critic only (value MLP and head; the actor and the shared
    features are frozen): after a cloning warm start the value head is untrained, and its advantages would otherwise
    pull the cloned actor off course (PIRLNav's critic-only phase)."""

    def __post_init__(self) -> None:
        self.net_arch = tuple(self.net_arch)
        if self.stop_prior is not None and not 0.0 < self.stop_prior < 1.0:
            raise ValueError(f"ppo.stop_prior must lie in (0, 1) or be null, got {self.stop_prior}")
        if self.critic_warmup < 0:
            raise ValueError(f"ppo.critic_warmup must be ≥ 0 env steps, got {self.critic_warmup}")
        if self.n_steps < 1 or self.batch_size < 2 or self.n_epochs < 1:
            got = f"n_steps={self.n_steps}, n_epochs={self.n_epochs}, batch_size={self.batch_size}"
            raise ValueError(f"ppo: n_steps and n_epochs must be ≥ 1 and batch_size ≥ 2, got {got}")


@dataclass
class DreamTrainConfig:
    """Arguments of the imagined envs (see ``avworld/Dream-v0``) for ``world="dream"``."""

    sampler_steps: int = 4
    horizon: int | None = 64
    """Imagined steps before truncation (Dream-v0's ``max_steps``; None: the real env's limit)."""
    start: str = "episode"
    split: str = "train"
    termination: str = "stop"
    device: str = "cpu"
    amp: bool = False
    """bf16 decoding of imagined observations where the device does it in hardware (Dream-v0's ``amp``)."""


@dataclass
class AgentTrainConfig:
    """A PPO training run: where (``world``), how long (``steps``: env steps over all envs) and with what."""

    world: str = "real"
    checkpoint: str | None = None
    """World-model checkpoint directory (``world="dream"``)."""
    steps: int = 100_000
    n_envs: int = 8
    real_fraction: float = 0.0
    """``world="dream"``: fraction of the ``n_envs`` envs that are real (rounded; 0 = imagination only)."""
    subprocess: bool = False
    """Real envs in subprocesses (``SubprocVecEnv``) instead of in this process (``DummyVecEnv``)."""
    scenes: int | None = None
    """Real envs: train on the first ``scenes`` train-split scenes only, their simulators (and warm acoustic caches)
    kept (AudioNav-v0's ``scenes``); None: a new scene from the whole split every episode."""
    starts: str = "scene"
    """Real envs: ``scene`` (each scene's own start) or ``random`` (a new start per episode in the ``sim.episode``
    geodesic range; AudioNav-v0's ``starts``)."""
    stop_penalty: float = 0.0
    """Real envs, training reward only: subtracted when STOP ends an episode without success (:class:`FailedStopPenalty`).
    Without it PPO finds STOP-at-once (return ≈ 0) before it finds the source (wandering costs more)."""
    sensors: tuple[str, ...] = ("rgb", "audio")
    frame_stack: int = 4
    sim: dict[str, Any] = field(default_factory=dict)
    """Simulator overrides, over the defaults (``world="real"``) or over the world model's settings (``world="dream"``)."""
    features: AVFeaturesConfig = field(default_factory=AVFeaturesConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    imitation: ImitationConfig = field(default_factory=ImitationConfig)
    """Behaviour cloning of the shortest-path oracle before PPO (:mod:`avworld.policies.imitation`; world=real)."""
    init: str | None = None
    """An agent checkpoint to start from instead of a fresh policy (e.g. ``<run>/imitation/checkpoint``, a cloned one):
    its weights, and the real and imagined steps behind it counted in this run's. It must have this run's sensors, frame
    stack, features, ``net_arch`` and observation spaces. PPO in imagination from a cloned agent: world=dream with init."""
    dream: DreamTrainConfig = field(default_factory=DreamTrainConfig)
    checkpoint_every: int = 10_000
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        self.sensors = tuple(self.sensors)
        if self.world not in WORLDS:
            raise ValueError(f"world must be one of {', '.join(WORLDS)}, got {self.world!r}")
        if self.world == "dream" and not self.checkpoint:
            raise ValueError("checkpoint: world=dream needs a world-model checkpoint directory (checkpoint=DIR)")
        unsupported = sorted(set(self.sensors) - set(SUPPORTED_KEYS))
        if unsupported or "rgb" not in self.sensors:
            raise ValueError(f"sensors: PPO takes rgb with audio and/or spectrogram, got {list(self.sensors)}")
        for key in ("steps", "n_envs", "frame_stack", "checkpoint_every"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be ≥ 1, got {getattr(self, key)}")
        if self.starts not in STARTS:
            raise ValueError(f"starts must be one of {', '.join(STARTS)}, got {self.starts!r}")
        if self.imitation.samples and self.world != "real":
            why = "runs in real envs; use it with world=real, or start from a cloned agent (init=<run>/imitation/checkpoint)"
            raise ValueError(f"imitation: the behaviour-cloning warm start {why} with imitation.samples=0")
        if self.imitation.samples and self.init:
            raise ValueError("init: a run starts from an agent (init) or clones the oracle (imitation.samples), not both")
        if self.stop_penalty < 0:
            raise ValueError(f"stop_penalty must be ≥ 0, got {self.stop_penalty}")
        if self.scenes is not None and self.scenes < 1:
            raise ValueError(f"scenes must be ≥ 1 or null, got {self.scenes}")
        if not 0.0 <= self.real_fraction < 1.0:
            raise ValueError(f"real_fraction must lie in [0, 1), got {self.real_fraction}")
        if self.world == "real" and self.real_fraction:
            raise ValueError("real_fraction mixes real envs into world=dream; world=real is all real already")
        if self.world == "dream" and self.real_fraction and not 1 <= self.n_real < self.n_envs:
            raise ValueError(f"real_fraction {self.real_fraction} of n_envs {self.n_envs} leaves no real or no imagined env")

    @property
    def n_real(self) -> int:
        """Real envs among the ``n_envs``."""
        return self.n_envs if self.world == "real" else round(self.real_fraction * self.n_envs)


@dataclass
class Usage:
    """Environment steps a training run used (cumulative over resumes); see the module docstring."""

    timesteps: int = 0
    real_steps: int = 0
    real_episodes: int = 0
    imagined_steps: int = 0
    imagined_episodes: int = 0
    seconds: float = 0.0
    imitation_steps: int = 0
    """Real steps of the oracle demonstrations behind a behaviour-cloning warm start (counted in ``real_steps`` too)."""


@dataclass
class TrainEnvs:
    """The wrapped ``VecEnv`` PPO trains on and its counted parts."""

    venv: VecEnv
    sim: SimConfig
    real: CountSteps | None
    dream: CountSteps | None
    context_steps: int | None
    """Real transitions behind each imagined episode's context, from a fresh real episode; None when contexts come from a dataset."""
    world_model: dict[str, Any] | None

    def usage(self, before: Usage, timesteps: int, seconds: float) -> Usage:
        """``before`` plus what this run's envs counted."""
        real = (self.real.steps, self.real.episodes) if self.real is not None else (0, 0)
        dream = (self.dream.steps, self.dream.episodes) if self.dream is not None else (0, 0)
        contexts = dream[1] if self.context_steps is not None else 0
        return Usage(
            timesteps=timesteps,
            real_steps=before.real_steps + real[0] + contexts * (self.context_steps or 0),
            real_episodes=before.real_episodes + real[1] + contexts,
            imagined_steps=before.imagined_steps + dream[0],
            imagined_episodes=before.imagined_episodes + dream[1],
            seconds=before.seconds + seconds,
            imitation_steps=before.imitation_steps,
        )


class FailedStopPenalty(gym.Wrapper[Any, Any, Any, Any]):
    """Subtracts ``penalty`` from the reward of a STOP that ends the episode without success (``info["success"]`` false).

    A training signal only: the benchmark scores agents by success and path (SR, SPL), not by this reward.
    """

    def __init__(self, env: gym.Env[Any, Any], penalty: float) -> None:
        super().__init__(env)
        self.penalty = penalty

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated and int(action) == Action.STOP and not info["success"]:
            reward = float(reward) - self.penalty
        return obs, reward, terminated, truncated, info


def _real_env(sim: SimConfig, config: AgentTrainConfig) -> gym.Env[Any, Any]:
    env = gym.make("avworld/AudioNav-v0", split="train", sensors=config.sensors, sim=sim, scenes=config.scenes, starts=config.starts)
    return FailedStopPenalty(env, config.stop_penalty) if config.stop_penalty else env


def _dream_env(config: AgentTrainConfig) -> tuple[VecEnv, SimConfig, int | None, dict[str, Any]]:
    """The imagined envs of ``config`` as an SB3 ``VecEnv``, their simulator settings, the real transitions behind each
    context (None for dataset contexts) and what the world model learnt from."""
    from avworld.envs.dream_vector import DreamVectorEnv

    d = config.dream
    start: Any = d.start
    if d.start == "dataset":  # windows of the world model's training collection, named in its meta.json
        from avworld.data.contexts import CollectionContexts

        data = json.loads((Path(str(config.checkpoint)) / "meta.json").read_text())["data"]
        start = CollectionContexts(data["root"], data["name"], split=d.split)
    env = DreamVectorEnv(
        config.n_envs - config.n_real,
        checkpoint=config.checkpoint,
        sensors=config.sensors,
        max_steps=d.horizon,
        sampler_steps=d.sampler_steps,
        device=d.device,
        amp=d.amp,
        start=start,
        split=d.split,
        termination=d.termination,
        sim=config.sim or None,
    )
    sim, world = env.worlds.sim, env.worlds.world
    context_steps = min(world.context - 1, sim.episode.max_steps) if d.start == "episode" else None
    data = world.meta.get("data", {})
    world_model = {
        "checkpoint": str(config.checkpoint),
        "context": world.context,
        "windows": data.get("windows"),
        "data": data,
        "stages": [{k: s.get(k) for k in ("stage", "steps")} for s in world.meta.get("stages", [])],
    }
    return GymVecToSB3(env), sim, context_steps, world_model


def build_envs(config: AgentTrainConfig) -> TrainEnvs:
    """The training ``VecEnv`` of ``config``: real, imagined or both, monitored, frame-stacked and channel-first."""
    import avworld.envs  # noqa: F401  (registers the env ids)

    dream, world_model, context_steps = None, None, None
    sim = SimConfig.from_dict(config.sim)
    if config.world == "dream":
        imagined, sim, context_steps, world_model = _dream_env(config)
        dream = CountSteps(imagined)
    real = None
    if config.n_real:
        make = [partial(_real_env, sim, config)] * config.n_real
        real = CountSteps(SubprocVecEnv(make) if config.subprocess else DummyVecEnv(make))
    parts = [p for p in (real, dream) if p is not None]
    base = parts[0] if len(parts) == 1 else ConcatVecEnv(parts)
    venv = VecTransposeImage(VecFrameStack(VecMonitor(base), config.frame_stack))
    return TrainEnvs(venv, sim, real, dream, context_steps, world_model)


def agent_settings(config: AgentTrainConfig, sim: SimConfig) -> dict[str, Any]:
    """What :class:`~avworld.policies.ppo_agent.PPOAgent` needs to rebuild the policy (the checkpoint's ``config.yaml``)."""
    return {
        "sensors": list(config.sensors),
        "frame_stack": config.frame_stack,
        "sim": dataclasses.asdict(sim),
        "features": dataclasses.asdict(config.features) | {"channels": list(config.features.channels)},
        "net_arch": list(config.ppo.net_arch),
    }


class _Training(BaseCallback):
    """Progress bar, TensorBoard counters and real-world success/SPL, periodic checkpoints (at rollout starts, i.e. after updates)."""

    def __init__(self, total: int, every: int, save: Callable[[PPO, Usage], None], envs: TrainEnvs, before: Usage, progress: bool) -> None:
        super().__init__()
        self.total, self.every, self.save, self.envs, self.before, self.progress = total, every, save, envs, before, progress
        self.metrics: deque[tuple[float, float]] = deque(maxlen=100)
        self.last_save = before.timesteps
        self.start = time.perf_counter()
        self.bar: Any = None

    def _on_training_start(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=self.total, initial=self.num_timesteps, unit="step", desc="ppo", disable=not self.progress)

    def usage(self) -> Usage:
        return self.envs.usage(self.before, self.num_timesteps, time.perf_counter() - self.start)

    def _on_rollout_start(self) -> None:
        if self.num_timesteps - self.last_save >= self.every:
            self.save(self.model, self.usage())
            self.last_save = self.num_timesteps

    def _on_step(self) -> bool:
        self.bar.update(self.training_env.num_envs)
        for info in self.locals["infos"]:
            if "metrics" in info:
                self.metrics.append((info["metrics"]["success"], info["metrics"]["spl"]))
        return True

    def _on_rollout_end(self) -> None:
        usage = self.usage()
        for key in ("real_steps", "real_episodes", "imagined_steps"):
            self.logger.record(f"usage/{key}", getattr(usage, key))
        if self.metrics:
            success, spl = np.mean(self.metrics, axis=0)
            self.logger.record("rollout/real_success", float(success))
            self.logger.record("rollout/real_spl", float(spl))
        self.bar.set_postfix(real_steps=usage.real_steps)

    def _on_training_end(self) -> None:
        self.bar.close()


class CriticWarmup(BaseCallback):
    """Freeze the actor (all but the critic's own layers) for PPO updates while ``num_timesteps`` ≤ ``steps``.

    Frozen parameters get no gradient, so Adam leaves them and their moments untouched; ``train/actor_frozen`` logs it.
    """

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:  # SB3 calls it between collecting a rollout and the updates on it
        frozen = self.num_timesteps <= self.steps
        for parameter in actor_parameters(self.model.policy):
            parameter.requires_grad_(not frozen)
        self.logger.record("train/actor_frozen", int(frozen))


def actor_parameters(policy: MultiInputActorCriticPolicy) -> list[torch.nn.Parameter]:
    """The policy's parameters outside the critic's own layers (value MLP, value head, a separate value extractor)."""
    critic = [policy.value_net, policy.mlp_extractor.value_net]
    if policy.vf_features_extractor is not policy.pi_features_extractor:
        critic.append(policy.vf_features_extractor)
    own = {id(p) for module in critic for p in module.parameters()}
    return [p for p in policy.parameters() if id(p) not in own]


def _resume(path: Path, config: AgentTrainConfig) -> Checkpoint | None:
    """The training checkpoint at ``path`` if there is one; refused when it was trained with other agent-defining settings."""
    if not (path / "training.json").exists():
        return None
    ckpt = load_checkpoint(path, kind=KIND, training=True)
    saved, wanted = _identity(ckpt.meta.get("train_config", {})), _identity(_plain(dataclasses.asdict(config)))
    for key, value in wanted.items():
        if saved[key] != value:
            why = f"trained with {key}={saved[key]!r}, this run has {value!r}; resume with the same, or use another out_dir"
            raise CheckpointError(path / "meta.json", why)
    return ckpt


def _identity(config: dict[str, Any]) -> dict[str, Any]:
    """The agent-defining settings (:data:`IDENTITY` and ``net_arch``) of a training config as plain data."""
    return {k: config.get(k) for k in IDENTITY} | {"net_arch": config.get("ppo", {}).get("net_arch")}


def _plain(value: Any) -> Any:
    """Tuples as lists, recursively (a saved JSON config against a dataclass's)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def build_ppo(config: AgentTrainConfig, envs: TrainEnvs, out: Path, seed: int) -> PPO:
    p = config.ppo
    model = PPO(
        MultiInputActorCriticPolicy,
        envs.venv,
        learning_rate=p.learning_rate,
        n_steps=p.n_steps,
        batch_size=p.batch_size,
        n_epochs=p.n_epochs,
        gamma=p.gamma,
        gae_lambda=p.gae_lambda,
        clip_range=p.clip_range,
        ent_coef=p.ent_coef,
        vf_coef=p.vf_coef,
        max_grad_norm=p.max_grad_norm,
        policy_kwargs=policy_kwargs(config.features, p.net_arch),
        tensorboard_log=str(out / "tb"),
        seed=seed,
        device=config.device,
    )
    if p.stop_prior is not None:
        set_stop_prior(model.policy, p.stop_prior)
    raw = observation_space(envs.sim, config.sensors)
    expected = policy_space(raw, config.frame_stack)
    if model.observation_space != expected:
        raise RuntimeError(f"the training envs give {model.observation_space}, PPOAgent would rebuild {expected}")
    return model


def set_stop_prior(policy: MultiInputActorCriticPolicy, stop: float) -> None:
    """Bias the action head so that, at its start (SB3 initialises its weights near 0), STOP has probability ``stop``."""
    head = policy.action_net
    assert isinstance(head, torch.nn.Linear)
    n = head.out_features
    with torch.no_grad():
        head.bias.zero_()
        head.bias[Action.STOP] = math.log(stop * (n - 1) / (1 - stop))


def train_ppo(config: AgentTrainConfig, out_dir: str | Path, progress: bool = True) -> dict[str, Any]:
    """Train PPO to ``config.steps`` env steps in ``config.world``, resuming ``out_dir/checkpoint`` if it holds a run.

    Returns the step counts (:class:`Usage`: timesteps, real_steps, real_episodes, imagined_steps, imagined_episodes,
    seconds), ``steps_per_s`` of this run and the world model's data (``world_model``, world=dream).
    """
    out = Path(out_dir)
    path = out / "checkpoint"
    saved = _resume(path, config)
    before = Usage(**saved.training["state"]["usage"]) if saved is not None and saved.training is not None else Usage()
    envs = build_envs(config)
    model = build_ppo(config, envs, out, config.seed + before.timesteps)
    if saved is not None and saved.training is not None:
        load_policy_weights(model.policy, saved.weights, path / "model.safetensors")
        state = saved.training["state"]
        optimizer_from_checkpoint(model.policy.optimizer, state["optimizer"], saved.training["tensors"])
        model.num_timesteps, model._n_updates = int(state["num_timesteps"]), int(state["n_updates"])
    raw = observation_space(envs.sim, config.sensors)

    imitation: dict[str, Any] | None = saved.meta.get("imitation") if saved is not None else None

    def save(model: PPO, usage: Usage, where: Path = path) -> None:
        opt_state, tensors = optimizer_to_checkpoint(model.policy.optimizer)
        meta = {
            "observation_space": describe_space(raw),
            "policy_observation_space": describe_space(policy_space(raw, config.frame_stack)),
            "world": config.world,
            "usage": dataclasses.asdict(usage),
            "world_model": envs.world_model,
            "imitation": imitation,
            "train_config": _plain(dataclasses.asdict(config)),
        }
        state = {"num_timesteps": model.num_timesteps, "n_updates": model._n_updates, "optimizer": opt_state}
        training = {"state": state | {"usage": dataclasses.asdict(usage)}, "tensors": tensors}
        save_checkpoint(where, Checkpoint(KIND, agent_settings(config, envs.sim), unique_state(model.policy), meta, training))

    try:
        if saved is None and config.init:
            before, imitation = _start_from(Path(config.init), model, config, raw)
            save(model, before)  # a resumed run continues from its own checkpoint, not from init again
        elif saved is None and config.imitation.samples:
            before, imitation = _imitate(model, config, before, progress)
            save(model, before, out / "imitation" / "checkpoint")  # the cloned policy alone, to compare with PPO's result
            save(model, before)  # a resumed run starts from here, without cloning again
    except BaseException:
        envs.venv.close()  # a refused init or an interrupted cloning leaves no env processes behind
        raise
    callback: BaseCallback = _Training(config.steps, config.checkpoint_every, save, envs, before, progress)
    if config.ppo.critic_warmup:
        callback = CallbackList([callback, CriticWarmup(config.ppo.critic_warmup)])
    start = time.perf_counter()
    try:
        if model.num_timesteps < config.steps:
            model.learn(config.steps - model.num_timesteps, callback=callback, reset_num_timesteps=False, tb_log_name="ppo")
    finally:
        envs.venv.close()
    seconds = time.perf_counter() - start
    usage = envs.usage(before, model.num_timesteps, seconds)
    save(model, usage)
    run_steps = model.num_timesteps - before.timesteps
    result = {**dataclasses.asdict(usage), "steps_per_s": run_steps / max(seconds, 1e-9), "world_model": envs.world_model}
    return result | ({"imitation": imitation} if imitation else {})


def _start_from(
    path: Path, model: PPO, config: AgentTrainConfig, raw: gym.spaces.Dict
) -> tuple[Usage, dict[str, Any] | None]:
    """Load the agent at ``path`` (``config.init``) into ``model.policy``; the steps behind it (this run's timesteps at 0)
    and its cloning statistics. Refused, naming the file, when it was built for other observations or networks."""
    ckpt = load_checkpoint(path, kind=KIND)
    theirs, ours = _identity(ckpt.meta.get("train_config", {})), _identity(_plain(dataclasses.asdict(config)))
    for key in ("sensors", "frame_stack", "features", "net_arch"):
        if theirs[key] != ours[key]:
            raise CheckpointError(path / "meta.json", f"init: the agent has {key}={theirs[key]!r}, this run {ours[key]!r}")
    space = describe_space(policy_space(raw, config.frame_stack))
    if ckpt.meta.get("policy_observation_space") != space:
        why = f"init: the agent saw {ckpt.meta.get('policy_observation_space')}, this run's envs give {space}"
        raise CheckpointError(path / "meta.json", why)
    try:
        usage = Usage(**ckpt.meta["usage"])
    except (KeyError, TypeError) as err:
        raise CheckpointError(path / "meta.json", f"init: no readable usage (the steps behind the agent): {err!r}") from err
    load_policy_weights(model.policy, ckpt.weights, path / "model.safetensors")
    return dataclasses.replace(usage, timesteps=0), ckpt.meta.get("imitation")


def _imitate(model: PPO, config: AgentTrainConfig, before: Usage, progress: bool) -> tuple[Usage, dict[str, Any]]:
    """Clone the oracle into ``model.policy`` from demonstrations in real envs like the training ones, stepped here."""
    start = time.perf_counter()
    # Two envs: in one process they step one after the other anyway, and each keeps its own pool of scene simulators
    # (with 8 envs x 64 pooled scenes the pools alone took ~12 GB).
    envs = build_envs(dataclasses.replace(config, subprocess=False, n_envs=min(config.n_envs, DEMO_ENVS)))
    try:
        demos = collect_demonstrations(envs.venv, config.imitation.samples, config.imitation.noise, config.seed, progress)
    finally:
        envs.venv.close()
    stats = clone(model.policy, demos, config.imitation, config.seed)
    n = len(demos.actions)
    usage = dataclasses.replace(
        before,
        real_steps=before.real_steps + n,
        real_episodes=before.real_episodes + demos.episodes,
        imitation_steps=before.imitation_steps + n,
        seconds=before.seconds + time.perf_counter() - start,
    )
    return usage, stats | {"seconds": time.perf_counter() - start}
