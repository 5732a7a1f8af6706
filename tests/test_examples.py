"""The hand-made scenes of examples/scenes/: each loads, and the real env resets and steps in it with sound."""

from __future__ import annotations

import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import avworld  # noqa: F401  (registers the envs)
from avworld.sim.acoustics.sounds import CATEGORIES
from avworld.sim.scenes.loading import load_scene

SCENES = Path(__file__).resolve().parents[1] / "examples" / "scenes"
NAMES = ("corridor", "l_room", "hall", "behind_wall")


def test_every_example_scene_is_listed_and_described() -> None:
    assert sorted(p.stem for p in SCENES.glob("*.json")) == sorted(NAMES)
    readme = (SCENES / "README.md").read_text()
    assert all(f"{name}.json" in readme for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_example_scene_loads_and_the_real_env_steps_in_it_with_sound(name: str) -> None:
    path = SCENES / f"{name}.json"
    scene = load_scene(path)
    assert all(source.sound in CATEGORIES for source in scene.sources)
    env = gym.make("avworld/AudioNav-v0", scene=str(path), max_episode_steps=4)
    obs, info = env.reset(seed=0)
    assert info["pose"][:2] == pytest.approx(scene.start.position, abs=1e-6)
    assert info["source_position"] == pytest.approx(scene.sources[0].position)
    euclidean = math.dist(scene.start.position, scene.sources[0].position)
    assert info["geodesic_distance"] >= euclidean - 1e-6
    if name == "behind_wall":  # the wall blocks the direct way: the door is far to the side
        assert info["geodesic_distance"] > 4 * euclidean
    for action in (2, 1):  # a turn (the source alone is heard), then a step forward (with footsteps)
        obs, reward, terminated, _, info = env.step(action)
        audio = obs["audio"]
        assert audio.shape[0] == 2 and np.isfinite(audio).all() and np.sqrt(np.mean(audio**2)) > 1e-4
        assert np.isfinite(reward) and not terminated
    env.close()
