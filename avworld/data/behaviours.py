"""Behaviour policies for data collection: toward the source, away from it, exploring, and lingering near it.

A world model must see success and failure, collisions and every action, so data is
collected with a mix, as the AVW-4k dataset of the AV-CDiT paper: agents that head to
the source (a noisy oracle), agents that walk away from it, and agents that explore.
``linger`` heads to the source and then wanders around it, so that the states just inside and
just outside the success distance (where STOP's outcome is decided) are not a rare 1 % of the
data. Each reads the simulator directly (it is data collection, not an agent under test).

``agent`` is the odd one: a trained agent (``collect.agent``, any :class:`avworld.policies.base.Policy` given by a Hydra
``_target_`` config) acting on its observations, as a world model's data is gathered from its own agent's walks in
Dreamer's loop, or as DAgger gathers the states a cloned policy visits. :mod:`avworld.data.collect` builds it.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from avworld.sim.backends.base import Action, ShortestPathFollower, SimulatorBackend

BEHAVIOURS = ("toward", "away", "explore", "linger")
"""The behaviours that read the simulator (:func:`make_behaviour`)."""
AGENT = "agent"
"""The behaviour of ``collect.agent``: a trained agent acting on its observations."""


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


class Linger:
    """The noisy shortest-path follower (:class:`Toward`, never STOPping) until within ``radius`` metres (geodesic) of the
    source, then a random walk there (FORWARD with probability ``forward_prob``, else a turn) that goes back along the
    shortest path whenever it strays beyond ``radius``; within the success distance it STOPs with probability
    ``stop_prob`` per step."""

    def __init__(self, radius: float = 2.5, forward_prob: float = 0.5, stop_prob: float = 0.05, noise: float = 0.2) -> None:
        self.radius, self.forward_prob, self.stop_prob, self.noise = radius, forward_prob, stop_prob, noise

    def act(self, sim: SimulatorBackend, rng: np.random.Generator) -> Action:
        distance = sim.geodesic_distance()
        if distance <= sim.config.episode.success_distance and rng.random() < self.stop_prob:
            return Action.STOP
        if distance > self.radius:
            best = ShortestPathFollower(sim).action()
            if best != Action.STOP and rng.random() >= self.noise:
                return best
            if best == Action.STOP and distance > sim.config.episode.success_distance:
                return Action.STOP  # no path to the source: nothing to linger by
        if rng.random() < self.forward_prob:
            return Action.FORWARD
        return Action(int(rng.integers(2, 4)))


def make_behaviour(name: str) -> Behaviour:
    if name == "toward":
        return Toward()
    if name == "away":
        return Away()
    if name == "explore":
        return Explore()
    if name == "linger":
        return Linger()
    if name == AGENT:
        raise ValueError("the agent behaviour acts on observations: avworld.data.collect builds it from collect.agent")
    raise ValueError(f"unknown behaviour {name!r}; available: {', '.join(BEHAVIOURS)}")
