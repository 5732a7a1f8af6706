"""A PPO agent saved by :func:`avworld.policies.ppo.train_ppo`, acting as an avworld policy, and the policy network both share.

The network is SB3's ``MultiInputActorCriticPolicy`` over :class:`~avworld.policies.ppo_features.AVFeatures` (one
extractor shared by actor and critic). Its input is the env's observation space stacked as ``VecFrameStack`` stacks it
(:func:`stacked_space`), image keys channel-first as ``VecTransposeImage`` makes them (:func:`policy_space`). Weights are
saved without the shared extractor's aliases (safetensors refuses shared tensors) and loaded by :func:`load_policy_weights`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.policies import MultiInputActorCriticPolicy
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.vec_env import VecTransposeImage
from stable_baselines3.common.vec_env.stacked_observations import StackedObservations

from avworld.envs.audio_nav import observation_space
from avworld.models.checkpoint import CheckpointError, load_checkpoint
from avworld.policies.ppo_features import AVFeatures, AVFeaturesConfig
from avworld.sim.backends.base import Action
from avworld.sim.config import SimConfig

KIND = "ppo_agent"
SHARED_ALIASES = ("pi_features_extractor.", "vf_features_extractor.")


def stacked_space(raw: spaces.Dict, frame_stack: int) -> spaces.Dict:
    """``raw`` (the env's observation space) stacked as ``VecFrameStack`` stacks it: every key on its last axis."""
    stacked = StackedObservations(1, frame_stack, raw).stacked_observation_space
    assert isinstance(stacked, spaces.Dict)
    return stacked


def policy_space(raw: spaces.Dict, frame_stack: int) -> spaces.Dict:
    """The policy's observation space: ``raw`` stacked, then its image keys channel-first as ``VecTransposeImage`` makes them."""
    stacked = stacked_space(raw, frame_stack)
    return spaces.Dict({k: VecTransposeImage.transpose_space(s, k) if is_image_space(s) else s for k, s in stacked.spaces.items()})


def policy_kwargs(features: AVFeaturesConfig, net_arch: Sequence[int]) -> dict[str, Any]:
    """Keyword arguments of SB3's ``MultiInputActorCriticPolicy`` for our extractor and MLP widths (shared extractor)."""
    arch = list(net_arch)
    return {"features_extractor_class": AVFeatures, "features_extractor_kwargs": {"config": features}, "net_arch": {"pi": arch, "vf": arch}}


def unique_state(policy: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The policy's state dict without the aliases of the shared extractor (safetensors refuses shared tensors)."""
    return {k: v for k, v in policy.state_dict().items() if not k.startswith(SHARED_ALIASES)}


def load_policy_weights(policy: torch.nn.Module, weights: dict[str, torch.Tensor], where: Path) -> None:
    """Load ``weights`` (saved by :func:`unique_state`) into ``policy``; a mismatch raises :class:`CheckpointError` naming ``where``."""
    try:
        missing, unexpected = policy.load_state_dict(weights, strict=False)
    except RuntimeError as err:
        raise CheckpointError(where, f"weights do not fit the policy its config.yaml describes ({err})") from err
    missing = [k for k in missing if not k.startswith(SHARED_ALIASES)]
    if missing or unexpected:
        raise CheckpointError(where, f"weights do not fit the policy: missing {missing[:3]}, unexpected {unexpected[:3]}")


def describe_space(space: spaces.Dict) -> dict[str, dict[str, Any]]:
    """{key: {"shape", "dtype"}} of a Dict space (for ``meta.json``)."""
    return {k: {"shape": list(s.shape), "dtype": str(s.dtype)} for k, s in space.spaces.items()}


class PPOAgent:
    """A PPO agent saved by :func:`~avworld.policies.ppo.train_ppo`, as an avworld policy (``reset``, ``act``).

    ``act`` stacks the episode's last k observations as training did (zeros before the episode start) and samples the
    action from the policy, from a generator seeded by ``reset``, as PPO agents are evaluated in habitat-baselines
    (``deterministic=True``: the most probable one, which can loop: a cloned agent's test success rose from 0.24 / 0.30 to
    0.48 / 0.46 sampling, docs/results.md). For planners,
    :meth:`action_probs` and :meth:`value` score an observation after a given history without acting, and
    :meth:`evaluate` scores a batch of stacked observations (:meth:`stack`) in one network call.

    Loading reads safetensors, YAML and JSON only; a missing or broken file raises :class:`CheckpointError` naming it.
    """

    def __init__(self, path: str | Path, device: str = "cpu", deterministic: bool = False) -> None:
        self.path = Path(path)
        ckpt = load_checkpoint(self.path, kind=KIND)
        c = ckpt.config
        try:
            self.sensors = tuple(c["sensors"])
            self.frame_stack = int(c["frame_stack"])
            self.sim = SimConfig.from_dict(c["sim"])
            features = AVFeaturesConfig(**c["features"])
            net_arch = [int(n) for n in c["net_arch"]]
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(self.path / "config.yaml", f"not a PPO agent's settings ({err!r})") from err
        self.observation_space = observation_space(self.sim, self.sensors)
        self.image_keys = {k for k, s in stacked_space(self.observation_space, self.frame_stack).spaces.items() if is_image_space(s)}
        space = policy_space(self.observation_space, self.frame_stack)
        self.policy = MultiInputActorCriticPolicy(space, spaces.Discrete(len(Action)), lambda _: 0.0, **policy_kwargs(features, net_arch))
        self.policy.to(device)
        load_policy_weights(self.policy, ckpt.weights, self.path / "model.safetensors")
        self.policy.set_training_mode(False)
        self.meta = ckpt.meta
        self.device, self.deterministic = torch.device(device), deterministic
        self.history: deque[dict[str, np.ndarray]] = deque(maxlen=self.frame_stack)
        self.rng = np.random.default_rng()

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", deterministic: bool = False) -> PPOAgent:
        """The agent saved in checkpoint directory ``path``."""
        return cls(path, device, deterministic)

    def reset(self, env: Any, seed: int | None = None) -> None:
        """Start an episode: check ``env``'s observations are the agent's, clear the frame stack, seed the sampling generator."""
        got = env.observation_space
        if not isinstance(got, spaces.Dict) or describe_space(got) != describe_space(self.observation_space):
            raise ValueError(
                f"PPOAgent {self.path}: trained on observations {describe_space(self.observation_space)}, the env gives "
                f"{describe_space(got) if isinstance(got, spaces.Dict) else got}; use its sensors and sim settings (config.yaml)"
            )
        self.history.clear()
        self.rng = np.random.default_rng(seed)

    def act(self, observation: dict[str, np.ndarray], info: dict[str, Any]) -> int:
        """The action for ``observation``, the newest of the episode (it joins the frame stack)."""
        self.history.append(observation)
        probs = self.action_probs(observation, history=list(self.history)[:-1])
        return int(np.argmax(probs)) if self.deterministic else int(self.rng.choice(len(probs), p=probs))

    def stack(self, observations: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """The policy input of an episode's observations so far (oldest first; the last k count): {key: (1, ...)}."""
        if not observations:
            raise ValueError("observations: stack needs at least one observation")
        frames = StackedObservations(1, self.frame_stack, self.observation_space)
        recent = list(observations)[-self.frame_stack :]
        stacked = frames.reset({k: np.asarray(recent[0][k])[None] for k in self.observation_space.spaces})
        for obs in recent[1:]:
            stacked, _ = frames.update({k: np.asarray(obs[k])[None] for k in self.observation_space.spaces}, np.zeros(1, bool), [{}])
        return {k: VecTransposeImage.transpose_image(v) if k in self.image_keys else v.copy() for k, v in stacked.items()}

    @torch.no_grad()
    def evaluate(self, stacked: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Action probabilities (B, 4) and values (B,) of stacked observations {key: (B, ...)} (see :meth:`stack`), one network call."""
        obs = {k: torch.as_tensor(np.asarray(v), device=self.device) for k, v in stacked.items()}
        features = self.policy.extract_features(obs)
        latent_pi, latent_vf = self.policy.mlp_extractor(features)
        probs = torch.softmax(self.policy.action_net(latent_pi).double(), dim=-1)  # float64: sums to 1 for rng.choice
        values = self.policy.value_net(latent_vf)[:, 0]
        return probs.double().cpu().numpy(), values.double().cpu().numpy()

    def evaluate_after(
        self, history: Sequence[dict[str, np.ndarray]], observations: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Action probabilities (B, 4) and values (B,) of B alternative next observations {key: (B, ...)}, each stacked
        after the same ``history`` (the episode's earlier observations, oldest first), in one network call."""
        n = len(next(iter(observations.values())))
        nodes = [self.stack([*history, {k: x[b] for k, x in observations.items()}]) for b in range(n)]
        return self.evaluate({k: np.concatenate([node[k] for node in nodes]) for k in nodes[0]})

    def _history(self, history: Sequence[dict[str, np.ndarray]] | None) -> list[dict[str, np.ndarray]]:
        return list(self.history) if history is None else list(history)

    def action_probs(self, observation: dict[str, np.ndarray], history: Sequence[dict[str, np.ndarray]] | None = None) -> np.ndarray:
        """π(· | history, observation): (4,) float64 summing to 1. ``history``: the episode's earlier observations, oldest
        first (default: those given to :meth:`act` this episode); nothing is added to the agent's own."""
        probs, _ = self.evaluate(self.stack([*self._history(history), observation]))
        return probs[0]

    def value(self, observation: dict[str, np.ndarray], history: Sequence[dict[str, np.ndarray]] | None = None) -> float:
        """V(history, observation): the critic's estimate of the discounted return (``history`` as in :meth:`action_probs`)."""
        _, values = self.evaluate(self.stack([*self._history(history), observation]))
        return float(values[0])
