"""Every registered env: Gymnasium's and SB3's checkers, determinism, the reward and episode contract."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import avworld  # noqa: F401
from avworld.envs.audio_nav import AudioNavEnv
from avworld.envs.registration import ENV_IDS
from avworld.sim.backends.base import Action
from tests.conftest import two_rooms

ALL_SENSORS = ("rgb", "audio", "depth", "spectrogram", "pointgoal")
REAL_ENV_IDS = tuple(e for e in ENV_IDS if e != "avworld/Dream-v0")
"""Dream-v0 needs a world-model checkpoint and has no depth or pointgoal: tests/test_dream.py runs these checks on it."""


@pytest.mark.parametrize("env_id", REAL_ENV_IDS)
def test_gymnasium_check_env(env_id: str) -> None:
    env = gym.make(env_id, sensors=ALL_SENSORS, render_mode="rgb_array")
    check_env(env.unwrapped, skip_render_check=False)


@pytest.mark.parametrize("env_id", REAL_ENV_IDS)
def test_sb3_check_env(env_id: str) -> None:
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    sb3_check_env(gym.make(env_id, sensors=ALL_SENSORS).unwrapped, warn=True)


@pytest.mark.parametrize("env_id", REAL_ENV_IDS)
def test_same_seed_gives_byte_identical_observations(env_id: str) -> None:
    actions = np.random.default_rng(0).integers(1, 4, size=40)

    def rollout() -> list[bytes]:
        env = gym.make(env_id, sensors=ALL_SENSORS)
        obs, _ = env.reset(seed=123)
        out = [b"".join(v.tobytes() for v in obs.values())]
        for a in actions:
            obs, reward, *_ = env.step(int(a))
            out.append(b"".join(v.tobytes() for v in obs.values()) + np.float64(reward).tobytes())
        return out

    first, second = rollout(), rollout()
    assert first == second
    other = gym.make(env_id, sensors=ALL_SENSORS).reset(seed=124)[0]
    assert b"".join(v.tobytes() for v in other.values()) != first[0]


@pytest.mark.parametrize("bad", [4, -1, 1.5, "1", None, np.array([1, 2]), np.array(-0.4), np.array(2.0), True])
def test_invalid_actions_raise_a_clear_error(bad: object) -> None:
    env = AudioNavEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="invalid action"):
        env.step(bad)  # type: ignore[arg-type]
    env.step(np.int64(1))  # numpy integers are fine


def test_integer_actions_of_every_kind_are_taken() -> None:
    from avworld.sim.backends.base import to_action

    for value in (2, np.int64(2), np.uint8(2), np.array(2), np.array(2, np.int32)):
        assert to_action(value) is Action.TURN_LEFT
    with pytest.raises(ValueError, match=r"invalid action array\(-0\.4\)"):
        to_action(np.array(-0.4))


def test_step_before_reset_and_after_end() -> None:
    env = AudioNavEnv()
    with pytest.raises(RuntimeError, match="reset"):
        env.step(1)
    env.reset(seed=0)
    env.step(0)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(1)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="split"):
        AudioNavEnv(split="training")
    with pytest.raises(ValueError, match="sensor"):
        AudioNavEnv(sensors=("rgb", "smell"))
    with pytest.raises(ValueError, match=r"sim\.agent\.speed"):
        AudioNavEnv(sim={"agent": {"speed": 2}})
    with pytest.raises(ValueError, match=r"render\.width"):
        AudioNavEnv(sim={"render": {"width": 3}})


def test_reward_success_and_metrics_on_a_known_scene() -> None:
    env = AudioNavEnv(scene=two_rooms(), sensors=ALL_SENSORS)
    obs, info = env.reset(seed=0)
    assert info["pose"].tolist() == [1.0, 1.0, 0.0]
    assert obs["pointgoal"][0] == pytest.approx(6.0) and obs["pointgoal"][1] == pytest.approx(0.0, abs=1e-6)
    g0 = info["geodesic_distance"]
    _, reward, terminated, truncated, info = env.step(1)
    assert reward == pytest.approx(-0.01 + g0 - info["geodesic_distance"])
    assert not (terminated or truncated) and "metrics" not in info
    # STOP far from the source: the episode ends, unsuccessful.
    _, reward, terminated, _, info = env.step(0)
    assert terminated and not info["success"] and reward == pytest.approx(-0.01)
    m = info["metrics"]
    assert m["success"] == 0 and m["spl"] == 0 and m["dtg"] == pytest.approx(info["geodesic_distance"])
    assert m["num_actions"] == 2 and m["path_length"] == pytest.approx(0.25)


def test_oracle_episode_succeeds_with_the_success_bonus() -> None:
    from avworld.policies import OraclePolicy

    env = AudioNavEnv(scene=two_rooms())
    obs, info = env.reset(seed=0)
    oracle = OraclePolicy()
    oracle.reset(env)
    total, done = 0.0, False
    while not done:
        obs, reward, terminated, truncated, info = env.step(oracle.act(obs, info))
        total += reward
        done = terminated or truncated
    m = info["metrics"]
    assert terminated and info["success"] and m["success"] == 1.0
    assert info["geodesic_distance"] <= 1.0
    assert 0.9 <= m["spl"] <= 1.0 and 0.0 < m["sna"] <= 1.0
    # Shaped reward telescopes: start geodesic - end geodesic - 0.01 per step + 10.
    assert total == pytest.approx(m["geodesic_start"] - m["dtg"] - 0.01 * m["num_actions"] + 10.0)


def test_truncation_at_max_steps() -> None:
    env = AudioNavEnv(scene=two_rooms(), sim={"episode": {"max_steps": 5}})
    env.reset(seed=0)
    for i in range(5):
        _, _, terminated, truncated, info = env.step(2)
        assert not terminated and truncated == (i == 4)
    assert info["metrics"]["num_actions"] == 5


def test_spec_tells_the_step_limit_and_pointgoal_has_finite_bounds() -> None:
    """Issue 27 items 3 and 5: ``spec.max_episode_steps`` is the env's own limit for any settings, and no space bound is
    infinite (Minari writes the spaces as JSON, where ∞ is not standard)."""
    from avworld.envs.audio_nav import POINTGOAL_RANGE

    assert gym.make("avworld/AudioNav-v0").spec.max_episode_steps == 500
    env = gym.make("avworld/AudioNav-v0", scene=two_rooms(), sensors=ALL_SENSORS, sim={"episode": {"max_steps": 3}})
    assert env.spec.max_episode_steps == env.unwrapped.max_steps == 3
    again = gym.make(env.spec)
    assert again.spec.max_episode_steps == 3 and again.unwrapped.config.episode.max_steps == 3
    for key, space in env.observation_space.spaces.items():
        assert np.isfinite(space.low).all() and np.isfinite(space.high).all(), key
    assert env.observation_space["pointgoal"].high[0] == np.float32(POINTGOAL_RANGE)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs) and obs["pointgoal"][0] == pytest.approx(math.hypot(6.0, 0.0))
    assert [env.step(2)[3] for _ in range(3)] == [False, False, True]


def test_render_shows_first_person_and_map() -> None:
    env = AudioNavEnv(render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame is not None and frame.dtype == np.uint8 and frame.shape == (256, 512, 3)
    assert AudioNavEnv().render() is None


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), actions=st.lists(st.integers(0, 3), min_size=1, max_size=60))
def test_any_action_sequence_stays_valid(seed: int, actions: list[int]) -> None:
    env = AudioNavEnv(sensors=ALL_SENSORS)
    obs, info = env.reset(seed=seed)
    grid = env.sim.grid
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        assert env.observation_space.contains(obs)
        assert math.isfinite(reward)
        x, y, _ = info["pose"]
        assert grid.navigable(np.array([x, y]))
        assert info["geodesic_distance"] >= math.dist((x, y), info["source_position"]) - 1e-9
        if terminated or truncated:
            obs, info = env.reset()
            grid = env.sim.grid


def test_async_vector_env_steps_in_parallel() -> None:
    envs = gym.make_vec("avworld/AudioNav-v0", num_envs=2, vectorization_mode="async")
    try:
        obs, _ = envs.reset(seed=[1, 2])
        assert obs["rgb"].shape == (2, 64, 64, 3)
        obs, rewards, terminated, truncated, infos = envs.step(np.array([1, 2]))
        assert rewards.shape == terminated.shape == truncated.shape == (2,) and obs["rgb"].dtype == np.uint8
        assert infos["pose"].shape == (2, 3)
    finally:
        envs.close()


def test_random_starts_reuse_the_scene_and_stay_in_the_geodesic_range() -> None:
    env = AudioNavEnv(scenes=1, starts="random", sim={"episode": {"min_geodesic": 1.5, "max_geodesic": 3.0}})
    starts, sims = [], set()
    for seed in range(6):
        _, info = env.reset(seed=seed)
        assert info["scene_seed"] == 0
        assert 1.5 <= info["geodesic_distance"] <= 3.0 + 0.05  # + the sub-cell offset of the start in its cell
        starts.append(tuple(info["pose"].round(3)))
        sims.add(id(env.sim))
    assert len(set(starts)) == 6 and len(sims) == 1
    # The scene's own start (starts="scene") lies elsewhere: it was drawn at least min_geodesic=4 m away.
    _, scene_info = AudioNavEnv(scenes=1).reset(seed=0)
    assert scene_info["geodesic_distance"] >= 4.0
    # Same seed, same episode.
    again = AudioNavEnv(scenes=1, starts="random", sim={"episode": {"min_geodesic": 1.5, "max_geodesic": 3.0}})
    assert tuple(again.reset(seed=5)[1]["pose"].round(3)) == starts[5]


def test_scene_pool_draws_only_its_seeds_and_keeps_their_simulators() -> None:
    env = AudioNavEnv(scenes=2, sensors=("rgb", "audio"))
    seen: dict[int, int] = {}
    for seed in range(12):
        _, info = env.reset(seed=seed)
        assert info["scene_seed"] in (0, 1)
        assert seen.setdefault(info["scene_seed"], id(env.sim)) == id(env.sim)  # pooled, not rebuilt
        env.step(1)
    assert set(seen) == {0, 1}
    env.close()
    assert env.sim is None
    env.reset(seed=0)  # a closed env builds its simulators again


def test_bad_scene_pool_and_start_options_are_refused() -> None:
    with pytest.raises(ValueError, match="starts"):
        AudioNavEnv(starts="anywhere")
    with pytest.raises(ValueError, match="scenes"):
        AudioNavEnv(scenes=0)
    with pytest.raises(ValueError, match="max_geodesic"):
        AudioNavEnv(sim={"episode": {"min_geodesic": 3.0, "max_geodesic": 2.0}})
