"""Behaviour policies for data collection: toward the source, away from it, and exploring.

A world model must see success and failure, collisions and every action, so data is
collected with a mix, as the AVW-4k dataset of the AV-CDiT paper: agents that head to
the source (a noisy oracle), agents that walk away from it, and agents that explore.
Each reads the simulator directly (it is data collection, not an agent under test).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from avworld.sim.backends.base import Action, ShortestPathFollower, SimulatorBackend

BEHAVIOURS = ("toward", "away", "explore")


class Behaviour(Protocol):
    def act(self, sim: SimulatorBackend, rng: np.random.Generator) -> Action: ...


class Toward:
    """The shortest-path follower with probability ``noise`` of a random move instead; STOPs at the source."""

    def __init__(self, noise: float = 0.2) -> None:
        self.noise = noise

    def act(self, sim: SimulatorBackend, rng: np.random.Generator) -> Action:
        best = ShortestPathFollower(sim).action()
        if best != Action.STOP and rng.random() < self.noise:
            return Action(int(rng.integers(1, 4)))
        return best


class Away:
    """Greedy ascent of the geodesic distance: the move that takes it farthest from the source, sometimes at random."""

    def __init__(self, noise: float = 0.2, stop_prob: float = 0.005) -> None:
        self.noise, self.stop_prob = noise, stop_prob

    def act(self, sim: SimulatorBackend, rng: np.random.Generator) -> Action:
        if rng.random() < self.stop_prob:
            return Action.STOP
        if rng.random() < self.noise:
            return Action(int(rng.integers(1, 4)))
        moves = (Action.FORWARD, Action.TURN_LEFT, Action.TURN_RIGHT)
        gains = []
        for a in moves:
            pose, collided = sim.transition(sim.pose, a)
            ahead, _ = sim.transition(pose, Action.FORWARD)  # a turn is worth what the step after it gains
            gains.append(sim.geodesic_distance(ahead) - 0.01 * collided - (0.001 if a != Action.FORWARD else 0.0))
        return moves[int(np.argmax(gains))]


class Explore:
    """Random walk with momentum: runs of FORWARD broken by turns; rarely STOP."""

    def __init__(self, forward_prob: float = 0.6, stop_prob: float = 0.01) -> None:
        self.forward_prob, self.stop_prob = forward_prob, stop_prob

    def act(self, sim: SimulatorBackend, rng: np.random.Generator) -> Action:
        u = rng.random()
        if u < self.stop_prob:
            return Action.STOP
        if u < self.stop_prob + self.forward_prob:
            return Action.FORWARD
        return Action(int(rng.integers(2, 4)))


def make_behaviour(name: str) -> Behaviour:
    if name == "toward":
        return Toward()
    if name == "away":
        return Away()
    if name == "explore":
        return Explore()
    raise ValueError(f"unknown behaviour {name!r}; available: {', '.join(BEHAVIOURS)}")
