"""Uniformly random actions: the lower bound of every navigation table."""

from __future__ import annotations

from typing import Any

import numpy as np


class RandomPolicy:
    """Uniform over all actions (STOP included, as in SoundSpaces' random baseline)."""

    def __init__(self, num_actions: int = 4) -> None:
        self.num_actions = num_actions
        self.rng = np.random.default_rng()

    def reset(self, env: Any, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, observation: dict[str, np.ndarray], info: dict[str, Any]) -> int:
        return int(self.rng.integers(self.num_actions))
