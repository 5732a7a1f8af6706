"""Data-collection behaviours (avworld/data/behaviours.py) on a known scene."""

from __future__ import annotations

import numpy as np
import pytest

from avworld.data.behaviours import BEHAVIOURS, Linger, make_behaviour
from avworld.sim.backends.base import Action, Pose
from avworld.sim.backends.builtin import BuiltinSimulator
from avworld.sim.config import SimConfig
from tests.conftest import box


def quiet(scene) -> BuiltinSimulator:  # type: ignore[no-untyped-def]
    return BuiltinSimulator(scene, SimConfig.from_dict({"acoustics": {"enabled": False}}))


def test_linger_walks_to_the_source_then_wanders_around_it() -> None:
    scene = box(10, 4)  # the source at (9, 1)
    sim = quiet(scene)
    sim.set_episode(Pose(1.0, 3.0, np.pi), scene.sources[0].position)  # 8 m away, facing away from it
    linger, rng = Linger(radius=2.5, stop_prob=0.0), np.random.default_rng(0)
    success = sim.config.episode.success_distance
    distances, actions = [], []
    for _ in range(300):
        actions.append(linger.act(sim, rng))
        sim.step(actions[-1])
        distances.append(sim.geodesic_distance())
    arrived = int(np.argmax(np.asarray(distances) <= 2.5))
    assert 0 < arrived < 60 and Action.STOP not in actions  # it heads there, and never STOPs with stop_prob 0
    near = np.asarray(distances[arrived:])
    assert near.max() < 2.5 + 0.5  # it walks back whenever it strays beyond the radius (one step at most)
    assert 0.1 < (near <= success).mean() < 0.9  # both sides of the success distance, where STOP's outcome is decided
    assert len(set(actions[arrived:])) == 3  # it wanders: forward and both turns


def test_linger_stops_only_within_reach() -> None:
    scene = box(10, 4)
    sim = quiet(scene)
    sim.set_episode(Pose(1.0, 3.0, 0.0), scene.sources[0].position)
    linger, rng = Linger(stop_prob=1.0), np.random.default_rng(0)
    for _ in range(60):
        action = linger.act(sim, rng)
        if action == Action.STOP:
            break
        sim.step(action)
    assert action == Action.STOP and sim.geodesic_distance() <= sim.config.episode.success_distance


def test_every_behaviour_is_made_by_name() -> None:
    assert "linger" in BEHAVIOURS and all(hasattr(make_behaviour(name), "act") for name in BEHAVIOURS)
    with pytest.raises(ValueError, match=r"collect\.agent"):
        make_behaviour("agent")  # a trained agent acts on observations: the collector builds it
