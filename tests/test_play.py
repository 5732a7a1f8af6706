"""Play mode: keys move the agent exactly as they say, TAB crosses into imagination and back, and it all runs headless."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import avworld  # noqa: F401
from avworld.models.imagination import Imagination
from avworld.sim.config import SimConfig
from avworld.viz import play
from avworld.viz.play import PlaySession, run
from tests.conftest import two_rooms

SENSORS = ("rgb", "audio", "spectrogram")
FORWARD, TURN = SimConfig().agent.forward_step, math.radians(SimConfig().agent.turn_deg)
HEADLESS = {"SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}


@pytest.fixture(autouse=True)
def headless(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in HEADLESS.items():
        monkeypatch.setenv(key, value)


def real_env() -> gym.Env:
    """The two-rooms scene: the agent starts at (1, 1) facing +x, with 3 m of free floor ahead."""
    return gym.make("avworld/AudioNav-v0", scene=two_rooms(), sensors=SENSORS, render_mode="rgb_array")


def moved(pose: np.ndarray, distance: float) -> np.ndarray:
    return pose + np.array([distance * math.cos(pose[2]), distance * math.sin(pose[2]), 0.0])


def turned(pose: np.ndarray, angle: float) -> np.ndarray:
    return pose + np.array([0.0, 0.0, angle])


def test_keys_move_the_real_agent_exactly_as_they_say() -> None:
    session = PlaySession(real_env(), seed=0, height=64)
    start = session.pose
    np.testing.assert_allclose(start, [1.0, 1.0, 0.0], atol=1e-9)
    expected = start
    for key, distance, angle in (("up", FORWARD, 0.0), ("left", 0.0, TURN), ("a", 0.0, TURN), ("w", FORWARD, 0.0), ("right", 0.0, -TURN)):
        view = session.press(key)
        expected = turned(moved(expected, distance), angle)
        np.testing.assert_allclose(session.pose, expected, atol=1e-6, err_msg=key)
        assert view is not None and view.world == "real" and view.audio is not None and view.audio.shape == (2, 4000)
        assert view.frame.shape == session.view.frame.shape == (64 + 20, 3 * 64, 3)  # view, map, spectrograms; caption
    assert session.press("tab") is None and session.press("q") is None  # no imagined world; a key with no meaning
    assert session.press("space") is not None  # STOP ends the episode: moves do nothing until R
    assert session.press("up").audio is None and np.allclose(session.pose, expected)
    assert session.press("r").audio is None and np.allclose(session.pose, start)
    session.press("escape")
    assert not session.running


def test_tab_switches_to_the_imagined_world_and_back(world_checkpoint: str, one_thread: None) -> None:
    world = Imagination.load(world_checkpoint)
    dream = gym.make("avworld/Dream-v0", checkpoint=world, sensors=SENSORS, sampler_steps=1)
    session = PlaySession(real_env(), dream, context=world.context, seed=0, height=64)
    session.press("up")
    session.press("left")
    real_pose, real_frame = session.pose, session.view.frame
    view = session.press("tab")
    assert view is not None and view.world == "dream" and view.audio is None
    np.testing.assert_array_equal(view.frame[:64, :64], real_frame[:64, :64])  # it starts from the last real frame
    for key in ("up", "up", "left"):
        view = session.press(key)
        assert view.world == "dream" and view.audio.shape == (2, 4000) and view.frame.shape == real_frame.shape
    np.testing.assert_allclose(session.pose, real_pose)  # imagined moves leave the real agent where it was
    assert session.press("tab").world == "real"
    session.press("up")
    np.testing.assert_allclose(session.pose, moved(real_pose, FORWARD), atol=1e-6)


def test_the_pygame_loop_plays_a_scripted_key_sequence_headless(monkeypatch: pytest.MonkeyPatch) -> None:
    played: list[tuple[int, ...]] = []
    play_sound = play._play
    monkeypatch.setattr(play, "_play", lambda pygame, audio: (played.append(audio.shape), play_sound(pygame, audio)))
    session = PlaySession(real_env(), seed=0, height=64)
    start = session.pose
    run(session, fps=1000, script=["up", "left", "left", "up", "escape"])
    assert not session.running and played == [(2, 4000)] * 4  # each step's sound, through the (dummy) mixer
    expected = moved(turned(turned(moved(start, FORWARD), TURN), TURN), FORWARD)
    np.testing.assert_allclose(session.pose, expected, atol=1e-6)
    with pytest.raises(ValueError, match=r"^script: unknown key name 'jump'"):
        run(PlaySession(real_env(), seed=0, height=64), script=["jump"])


def test_cli_play_starts_in_the_imagined_world_headless(world_checkpoint: str, tmp_path: Path) -> None:
    args = [
        "play",
        "world=dream",
        f"checkpoint={world_checkpoint}",
        "sampler_steps=1",
        "script=[up,tab,up,left,escape]",
        f"hydra.run.dir={tmp_path}",
    ]
    env = os.environ | HEADLESS
    proc = subprocess.run([sys.executable, "-m", "avworld.cli", *args], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "real pose at the end:" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "avworld.cli", "play", "world=dream"], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert proc.returncode != 0 and "world=dream needs checkpoint=DIR" in proc.stderr
