"""Gymnasium environments of avworld: the real world and (later) the imagined one."""

from avworld.envs.registration import register_envs

__all__ = ["register_envs"]
