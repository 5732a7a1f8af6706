"""Gymnasium environments of avworld: the real world (AudioNav-v0) and the imagined one (Dream-v0, and its vector env)."""

from avworld.envs.registration import register_envs

__all__ = ["register_envs"]
