"""An agent trained in imagination (:mod:`avworld.policies.imagination_train`), acting in the real world or planning.

It sees the real world the way it was trained to see imagined ones: each real observation (``rgb``, ``audio``) is
encoded by the attached world model's tokenizers and pushed into a rolling context of the last m steps
(:meth:`Imagination.observe`; at an episode's start the first observation fills all m, as if the agent had stood still),
and the actor reads that latent state and its previous action. For planners it scores imagined nodes directly in the
latent space (:meth:`ImaginationAgent.evaluate_latent`): no decoding, the critic's value at the leaves.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avworld.models.checkpoint import CheckpointError, load_checkpoint
from avworld.models.imagination import FIELDS, Imagination, ImaginedState, load_world
from avworld.policies.actor_critic import NO_ACTION, ActorCriticConfig, LatentActorCritic
from avworld.policies.imagination_train import KIND
from avworld.sim.config import SimConfig


class ImaginationAgent:
    """A saved imagination-trained agent as an avworld policy (``reset``, ``act``); loading reads safetensors, YAML and JSON
    only (:class:`CheckpointError` names a missing or broken file). ``deterministic``: the most probable action instead
    of a sample from the per-episode generator. ``goal_threshold``: for an agent with a goal head, the probability above
    which it STOPs instead of the one it was trained with."""

    def __init__(self, path: str | Path, device: str = "cpu", deterministic: bool = False, goal_threshold: float | None = None) -> None:
        self.path = Path(path)
        ckpt = load_checkpoint(self.path, kind=KIND)
        try:
            net = dict(ckpt.config["net"])
            self.net_config = ActorCriticConfig(**net)
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(self.path / "config.yaml", f"not an imagination agent's settings ({err!r})") from err
        if goal_threshold is not None:
            if not self.net_config.goal:
                raise ValueError(f"ImaginationAgent {self.path}: goal_threshold is for agents with a goal head "
                                 "(trained with imagination.stop=goal); this one's actor decides STOP")
            self.net_config = dataclasses.replace(self.net_config, goal_threshold=goal_threshold)
        if "world" not in ckpt.attachments:
            raise CheckpointError(self.path / "world", "the agent's world model is missing (it encodes the agent's observations)")
        self.world: Imagination = load_world(ckpt.attachments["world"], device)
        self.device = self.world.device
        self.net = LatentActorCritic(self.net_config).to(self.device).eval()
        weights = {k[4:]: v for k, v in ckpt.weights.items() if k.startswith("net.")}
        try:
            self.net.load_state_dict(weights)
        except RuntimeError as err:
            raise CheckpointError(self.path / "model.safetensors", f"weights do not fit the network of config.yaml ({err})") from err
        self.meta = ckpt.meta
        self.sim = SimConfig.from_dict(self.world.meta["sim"]) if "sim" in self.world.meta else None
        """The simulator settings the world model learned (evaluate the agent with them)."""
        self.deterministic = deterministic
        self.fields = tuple(FIELDS[m] for m in self.world.modalities)
        self.shapes = {"rgb": tuple(self.world.meta["rgb_shape"]), "audio": tuple(self.world.meta["audio_shape"])}
        self.state: ImaginedState | None = None
        self.previous = NO_ACTION
        self.rng = np.random.default_rng()

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", deterministic: bool = False,
             goal_threshold: float | None = None) -> ImaginationAgent:
        return cls(path, device, deterministic, goal_threshold)

    def reset(self, env: Any, seed: int | None = None) -> None:
        """A new episode: empty context, no previous action, the sampling generator seeded with ``seed``."""
        self.state, self.previous = None, NO_ACTION
        self.rng = np.random.default_rng(seed)

    def observe(self, observation: dict[str, np.ndarray]) -> ImaginedState:
        """Push the real ``observation`` into the rolling latent context; returns the state (1 world)."""
        real = {}
        for f in self.fields:
            x = np.asarray(observation[f]) if f in observation else None
            if x is None or x.shape != self.shapes[f]:
                got = None if x is None else x.shape
                raise ValueError(f"ImaginationAgent {self.path}: observation[{f!r}] must have shape {self.shapes[f]}, got {got}")
            real[f] = torch.from_numpy(x)[None]
        self.state = self.world.observe(self.state, real)
        return self.state

    @torch.no_grad()
    def evaluate_latent(self, state: ImaginedState, previous: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Action probabilities (B, 4) float64 (:meth:`LatentActorCritic.probs`: with a goal head, STOP with probability 1
        where it says so and 0 elsewhere) and values (B,) of latent states {modality: (B, m, *latent)} reached by the
        actions ``previous`` (B,) (4: none), in one network call."""
        prev = torch.as_tensor(np.asarray(previous), dtype=torch.int64, device=self.device)
        f = self.net.features(state.context, prev)
        return self.net.probs(f).cpu().numpy(), self.net.value(f).double().cpu().numpy()

    def accepts(self, world: Imagination) -> str | None:
        """None when ``world`` imagines in this agent's latent space (same modalities, shapes and latent statistics), else why not."""
        mine = self.world
        if world.modalities != mine.modalities or world.latent_shapes() != mine.latent_shapes():
            return f"latents {world.latent_shapes()} differ from the agent's {mine.latent_shapes()}"
        if world.stats != mine.stats:
            return f"latent statistics {world.stats} differ from the agent's {mine.stats} (another world model)"
        return None

    def act(self, observation: dict[str, np.ndarray], info: dict[str, Any]) -> int:
        """The action for the newest real ``observation`` (it joins the context)."""
        state = self.observe(observation)
        probs = self.evaluate_latent(state, np.array([self.previous]))[0][0]
        action = int(np.argmax(probs)) if self.deterministic else int(self.rng.choice(len(probs), p=probs / probs.sum()))
        self.previous = action
        return action
