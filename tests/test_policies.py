"""Known-answer checks of the agents and the navigation metrics on the test split."""

from __future__ import annotations

import gymnasium as gym
import pytest

import avworld  # noqa: F401
from avworld.eval.navigation import NavigationResult, evaluate_navigation
from avworld.policies import OraclePolicy, RandomPolicy


@pytest.fixture(scope="module")
def test_env() -> gym.Env:
    return gym.make("avworld/AudioNav-v0", split="test", sensors=("rgb",))  # navigation metrics do not depend on sound


def test_oracle_solves_the_test_split(test_env: gym.Env) -> None:
    summary = evaluate_navigation(test_env, OraclePolicy(), episodes=100, seed=0).summary()
    assert summary["episodes"] == 100
    assert summary["SR"] >= 0.99
    assert summary["SPL"] >= 0.9
    assert summary["DTG"] <= 1.0


def test_random_agent_almost_never_succeeds(test_env: gym.Env) -> None:
    result = evaluate_navigation(test_env, RandomPolicy(), episodes=100, seed=0)
    summary = result.summary()
    assert summary["SR"] <= 0.05 and summary["SPL"] <= 0.05
    assert summary["DTG"] > 3.0  # starts are ≥ 4 m away and random walks do not close the gap
    assert all(e["scene_seed"] in range(1_010_000, 1_020_000) for e in result.episodes)


def test_evaluation_is_reproducible(test_env: gym.Env) -> None:
    a = evaluate_navigation(test_env, RandomPolicy(), episodes=5, seed=7).episodes
    b = evaluate_navigation(test_env, RandomPolicy(), episodes=5, seed=7).episodes
    assert a == b


def test_summary_means() -> None:
    eps = [
        {"success": 1.0, "spl": 0.8, "sna": 0.5, "dtg": 0.5},
        {"success": 0.0, "spl": 0.0, "sna": 0.0, "dtg": 3.5},
    ]
    assert NavigationResult(eps).summary() == {"SR": 0.5, "SPL": 0.4, "SNA": 0.25, "DTG": 2.0, "episodes": 2.0}


def test_oracle_refuses_an_env_without_a_simulator() -> None:
    with pytest.raises(TypeError, match="real env"):
        OraclePolicy().reset(gym.make("CartPole-v1"))
    with pytest.raises(RuntimeError, match="reset"):
        OraclePolicy().act({}, {})
    with pytest.raises(ValueError, match="episodes"):
        evaluate_navigation(gym.make("avworld/AudioNav-v0"), RandomPolicy(), episodes=0)


def test_the_oracle_stops_where_the_source_cannot_be_reached() -> None:
    from avworld.sim.backends.base import Action, Pose, ShortestPathFollower
    from avworld.sim.backends.builtin import BuiltinSimulator
    from avworld.sim.config import SimConfig
    from avworld.sim.scenes.scene import Scene
    from tests.conftest import two_rooms

    closed = Scene(**{**two_rooms().__dict__, "doors": ()})  # the source's room has no door
    sim = BuiltinSimulator(closed, SimConfig.from_dict({"acoustics": {"enabled": False}}))
    sim.set_episode(Pose(1.0, 1.0, 0.0), closed.sources[0].position)
    assert sim.geodesic_distance() == float("inf")
    follower = ShortestPathFollower(sim)
    assert follower.action() == Action.STOP
    assert follower.count_actions(sim.pose, max_steps=50) == 1
