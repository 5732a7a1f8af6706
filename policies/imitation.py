"""Behaviour cloning of the shortest-path oracle: a warm start for PPO (imitation, then RL, as PIRLNav does).

PPO from scratch on this task settles on a degenerate policy (STOP at once, or never STOP) long before it learns to
turn towards a sound: the progress reward only pays once the direction is known. Cloning the oracle first gives PPO
a policy that already hears where to go.

Demonstrations come from the very ``VecEnv`` stack PPO trains on (monitored, frame-stacked, channel-first), stepped
in this process: at every step each env's label is the oracle's action
(:class:`~avworld.sim.backends.base.ShortestPathFollower`, which sees the map), and the action taken is that label except,
with probability ``noise``, a random move (never STOP), so that the data also holds states off the oracle's path and
the label of how to get back (DART-style noise injection). The policy's action head and features are then fitted by
cross-entropy; its value head is left to PPO.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.policies import MultiInputActorCriticPolicy
from stable_baselines3.common.vec_env import VecEnv
from tqdm import trange

from avworld.sim.backends.base import Action, ShortestPathFollower

MOVES = np.array([Action.FORWARD, Action.TURN_LEFT, Action.TURN_RIGHT])


@dataclass
class ImitationConfig:
    """The behaviour-cloning warm start (``samples=0``: none)."""

    samples: int = 0
    """Real env steps of demonstrations (over all envs); they count as real steps of the agent's training."""
    noise: float = 0.25
    """Share of steps that take a random move instead of the oracle's action (the label stays the oracle's)."""
    epochs: int = 4
    batch_size: int = 128
    learning_rate: float = 1e-3

    def __post_init__(self) -> None:
        if self.samples < 0 or self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError(f"imitation: samples ≥ 0, epochs ≥ 1, batch_size ≥ 1 and learning_rate > 0 needed, got {self}")
        if not 0.0 <= self.noise < 1.0:
            raise ValueError(f"imitation.noise must lie in [0, 1), got {self.noise}")


@dataclass
class Demonstrations:
    """Stacked observations as the policy sees them (each key (n, ...)), the oracle's actions (n,) and what they cost."""

    observations: dict[str, np.ndarray]
    actions: np.ndarray
    episodes: int


def collect_demonstrations(venv: VecEnv, samples: int, noise: float, seed: int, progress: bool = False) -> Demonstrations:
    """``samples`` labelled steps (rounded up to whole steps of all envs) from ``venv``, whose envs must live in this process.

    ``venv`` is seeded with ``seed`` and reset first (the same seed, the same demonstrations).
    ``venv.get_attr("unwrapped")`` must give the :class:`~avworld.envs.audio_nav.AudioNavEnv` objects (a ``DummyVecEnv``
    underneath), whose simulators the oracle reads.
    """
    envs = venv.get_attr("unwrapped")
    rng = np.random.default_rng([seed, 0x1B1])
    venv.seed(seed)
    obs = venv.reset()
    assert isinstance(obs, dict)
    steps = -(-samples // venv.num_envs)
    stored: dict[str, list[np.ndarray]] = {k: [] for k in obs}
    labels: list[np.ndarray] = []
    episodes = venv.num_envs
    for _ in trange(steps, desc="demonstrations", unit="step", unit_scale=venv.num_envs, disable=not progress):
        label = np.array([ShortestPathFollower(env.sim).action() for env in envs], np.int64)  # (E,)
        for key, value in obs.items():
            # float16 halves the waveforms' memory (36k stacked steps: ~2.3 GB instead of 4.6); the noise floor (−60 dB)
            # stays well above its resolution.
            stored[key].append(value.astype(np.float16) if value.dtype == np.float32 else value.copy())
        labels.append(label)
        act = np.where(rng.random(len(label)) < noise, rng.choice(MOVES, len(label)), label)
        obs, _, dones, _ = venv.step(act)
        assert isinstance(obs, dict)
        episodes += int(dones.sum())
    return Demonstrations({k: np.concatenate(v) for k, v in stored.items()}, np.concatenate(labels), episodes)


def clone(policy: MultiInputActorCriticPolicy, demos: Demonstrations, config: ImitationConfig, seed: int) -> dict[str, Any]:
    """Fit ``policy``'s action distribution to the demonstrations (cross-entropy, Adam); returns the last epoch's loss
    and accuracy and the oracle's action shares."""
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.learning_rate)
    n = len(demos.actions)
    policy.set_training_mode(True)
    loss_sum = correct = 0.0
    for _ in range(config.epochs):
        loss_sum = correct = 0.0
        for idx in np.array_split(rng.permutation(n), max(1, n // config.batch_size)):
            batch = {k: v[idx].astype(np.float32) if v.dtype == np.float16 else v[idx] for k, v in demos.observations.items()}
            obs, _ = policy.obs_to_tensor(batch)
            target = torch.as_tensor(demos.actions[idx])
            logits = policy.get_distribution(obs).distribution.logits  # (B, 4)
            loss = torch.nn.functional.cross_entropy(logits, target)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            optimizer.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += float((logits.argmax(dim=1) == target).sum())
    policy.set_training_mode(False)
    shares = np.bincount(demos.actions, minlength=len(Action)) / max(n, 1)
    return {"loss": loss_sum / n, "accuracy": correct / n, "samples": n, "oracle_action_shares": shares.round(4).tolist()}
