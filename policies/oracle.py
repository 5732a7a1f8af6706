"""The oracle: follows the true geodesic shortest path and stops within the success distance.

It reads the simulator's privileged state (geodesic field), so it only runs on the real env.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from avworld.sim.backends.base import ShortestPathFollower


class OraclePolicy:
    """Shortest-path follower on the real env's privileged geodesic field."""

    def __init__(self, lookahead: float = 1.5) -> None:
        self.lookahead = lookahead
        self.follower: ShortestPathFollower | None = None

    def reset(self, env: Any, seed: int | None = None) -> None:
        sim = getattr(env.unwrapped, "sim", None)
        if sim is None:
            raise TypeError("OraclePolicy needs the real env (avworld/AudioNav-v0) after reset(); it reads the simulator's geodesic field")
        self.follower = ShortestPathFollower(sim, self.lookahead)

    def act(self, observation: dict[str, np.ndarray], info: dict[str, Any]) -> int:
        if self.follower is None:
            raise RuntimeError("call reset(env) before act()")
        return int(self.follower.action())
