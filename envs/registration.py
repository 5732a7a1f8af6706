"""Every ``register()`` call of avworld, with string entry points (Minari can serialise them), and how each env's
``spec.max_episode_steps`` tells its real step limit."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
from gymnasium.envs.registration import EnvSpec

ENV_IDS = ("avworld/AudioNav-v0", "avworld/Dream-v0")


class StepLimitSpec:
    """Mixin of an env that truncates its episodes itself after ``max_steps`` steps (a setting of the env, not a
    ``TimeLimit`` wrapper's): whatever spec ``gym.make`` gives the env, ``env.spec.max_episode_steps`` reads the env's
    ``max_steps``, so the spec tells the truth for every setting (and ``gym.make(env.spec)`` makes the same env)."""

    max_steps: int
    _spec: EnvSpec | None = None

    @property
    def spec(self) -> EnvSpec | None:
        return self._spec

    @spec.setter
    def spec(self, value: EnvSpec | None) -> None:
        self._spec = None if value is None else dataclasses.replace(value, max_episode_steps=self.max_steps)


def register_envs() -> None:
    """Register avworld's env ids with Gymnasium; safe to call more than once.

    Neither id has a registered ``max_episode_steps``: each env truncates at its own ``max_steps`` (AudioNav-v0:
    ``sim.episode.max_steps``, 500 by default; Dream-v0: ``max_steps``, the real env's limit by default), and its
    ``spec.max_episode_steps`` reports that limit (:class:`StepLimitSpec`).

    ``avworld/Dream-v0`` also has a vector entry point: ``gym.make_vec("avworld/Dream-v0", num_envs=B, checkpoint=...)``
    builds a :class:`~avworld.envs.dream_vector.DreamVectorEnv` that steps the B worlds in one batched model call.
    """
    if "avworld/AudioNav-v0" not in gym.registry:
        gym.register(id="avworld/AudioNav-v0", entry_point="avworld.envs.audio_nav:AudioNavEnv")
    if "avworld/Dream-v0" not in gym.registry:
        gym.register(
            id="avworld/Dream-v0",
            entry_point="avworld.envs.dream:DreamEnv",
            vector_entry_point="avworld.envs.dream_vector:DreamVectorEnv",
        )
