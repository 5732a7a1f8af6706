"""Every ``register()`` call of avworld, with string entry points (Minari can serialise them)."""

from __future__ import annotations

import gymnasium as gym

ENV_IDS = ("avworld/AudioNav-v0",)


def register_envs() -> None:
    """Register avworld's env ids with Gymnasium; safe to call more than once."""
    if "avworld/AudioNav-v0" not in gym.registry:
        gym.register(id="avworld/AudioNav-v0", entry_point="avworld.envs.audio_nav:AudioNavEnv")
