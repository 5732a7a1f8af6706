"""Agents: random, oracle, behaviour cloning, PPO (stable-baselines3), and beam and CEM planners in imagination."""

from avworld.policies.base import Policy
from avworld.policies.oracle import OraclePolicy
from avworld.policies.random_policy import RandomPolicy

__all__ = ["OraclePolicy", "Policy", "RandomPolicy"]
