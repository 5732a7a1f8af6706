"""Every ``register()`` call of avworld, with string entry points (Minari can serialise them)."""

from __future__ import annotations

import gymnasium as gym

ENV_IDS = ("avworld/AudioNav-v0", "avworld/Dream-v0")


def register_envs() -> None:
    """Register avworld's env ids with Gymnasium; safe to call more than once.

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
