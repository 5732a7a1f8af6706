"""Agents: random, oracle (and later PPO and planners in imagination)."""

from avworld.policies.base import Policy
from avworld.policies.oracle import OraclePolicy
from avworld.policies.random_policy import RandomPolicy

__all__ = ["OraclePolicy", "Policy", "RandomPolicy"]
