"""The habitat-sim backend: config, the error without habitat-sim, and the env on a two-room scene built here.

habitat-sim installs with conda only and is absent from CI. Whether it works is checked once, in a
subprocess (import it and create a simulator with a camera); the backend's tests then run against it
where it does, and are skipped with the reason where it does not. They also run everywhere against
tests/fake_habitat_sim.py, a stand-in for the part of habitat-sim's API the backend uses: that checks
avworld's side (frames, transitions, the env contract), not habitat-sim. docs/habitat.md says which ran where.
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

import avworld  # noqa: F401
from avworld.cli import sim_config
from avworld.envs.audio_nav import AudioNavEnv
from avworld.sim.backends import make_simulator
from avworld.sim.backends.base import Action, Pose
from avworld.sim.backends.builtin import BuiltinSimulator
from avworld.sim.backends.habitat import INSTALL
from avworld.sim.config import HabitatConfig, SimConfig
from avworld.sim.scenes.scene import AgentStart, Scene, SoundSource, Wall
from tests import fake_habitat_sim
from tests.conftest import two_rooms

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "sim"
PROBE = textwrap.dedent(
    """
    import habitat_sim
    sim_cfg = habitat_sim.SimulatorConfiguration()
    sim_cfg.scene_id = "NONE"
    camera = habitat_sim.CameraSensorSpec()
    camera.uuid, camera.resolution = "rgb", [8, 8]
    agent = habitat_sim.AgentConfiguration(sensor_specifications=[camera])
    habitat_sim.Simulator(habitat_sim.Configuration(sim_cfg, [agent])).close()
    """
)


def _habitat_works() -> tuple[bool, str]:
    """Whether habitat-sim imports and creates a rendering simulator, tried in a subprocess (a crash stays there)."""
    try:
        done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return False, "creating a habitat-sim simulator took over 5 minutes"
    lines = (done.stderr or done.stdout).strip().splitlines()
    return done.returncode == 0, lines[-1] if lines else f"exit status {done.returncode}"


HABITAT_WORKS, HABITAT_WHY = _habitat_works()


def habitat_sim_config(scene: str, **habitat: object) -> SimConfig:
    return SimConfig(backend="habitat", habitat=HabitatConfig(scene=scene, **habitat))  # type: ignore[arg-type]


# --- without habitat-sim ---------------------------------------------------------------------------------------------


def test_backend_choices_and_habitat_settings_are_checked() -> None:
    with pytest.raises(ValueError, match=r"sim\.backend: unknown simulator backend 'unity'; available: 'builtin', 'habitat'"):
        SimConfig(backend="unity")
    with pytest.raises(ValueError, match=r"sim\.habitat\.scene: required with sim\.backend=habitat"):
        SimConfig(backend="habitat")
    with pytest.raises(ValueError, match=r"sim\.habitat\.floorplan"):
        HabitatConfig(floorplan="walls")
    with pytest.raises(ValueError, match=r"sim\.habitat\.start"):
        HabitatConfig(start=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"sim\.habitat\.scnee: unknown field"):
        SimConfig.from_dict({"habitat": {"scnee": "a.glb"}})
    config = SimConfig.from_dict({"backend": "habitat", "habitat": {"scene": "a.glb", "start": [1.0, 0.0, -2.0], "start_yaw": 0.5}})
    assert config.habitat.start == [1.0, 0.0, -2.0]
    # Settings travel through dataset and checkpoint metadata as plain dicts, and through Hydra as structured configs.
    assert SimConfig.from_dict(dataclasses.asdict(config)) == config
    structured = OmegaConf.merge(OmegaConf.structured(SimConfig), OmegaConf.load(CONFIGS / "default.yaml"))
    assert OmegaConf.to_object(structured) == SimConfig()
    with initialize_config_module(config_module="avworld.configs", version_base=None):
        job = compose("eval", overrides=["sim=habitat", "sim.habitat.scene=/data/a.glb", "sim.habitat.scene_height=2.6"])
    assert sim_config(job) == habitat_sim_config("/data/a.glb", scene_height=2.6)


def test_builtin_backend_is_what_it_was() -> None:
    assert type(make_simulator(two_rooms(), SimConfig())) is BuiltinSimulator
    with pytest.raises(ValueError, match="needs a scene"):
        make_simulator(None, SimConfig())
    with pytest.raises(ValueError, match="pass no avworld scene"):
        make_simulator(two_rooms(), habitat_sim_config("a.glb"))


def test_missing_habitat_sim_says_to_install_it_with_conda(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "habitat_sim", None)  # import habitat_sim now fails, wherever this runs
    scene = tmp_path / "scene.glb"
    scene.write_bytes(b"")
    sim = {"backend": "habitat", "habitat": {"scene": str(scene)}}
    with pytest.raises(ImportError, match=r"conda install habitat-sim -c conda-forge -c aihabitat") as err:
        gym.make("avworld/AudioNav-v0", sim=sim)
    assert INSTALL in str(err.value) and "not on PyPI" in str(err.value)
    with pytest.raises(ImportError, match="conda install habitat-sim"):
        AudioNavEnv(sim=habitat_sim_config(str(scene)))


def test_import_and_the_builtin_env_load_neither_habitat_sim_nor_trimesh() -> None:
    code = textwrap.dedent(
        """
        import sys
        import gymnasium as gym
        import avworld
        env = gym.make("avworld/AudioNav-v0", sensors=("rgb", "depth"))
        env.reset(seed=0)
        env.step(1)
        env.close()
        print(sorted(m for m in ("habitat_sim", "trimesh") if m in sys.modules))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


# --- with habitat-sim (where it works) and with its stand-in ---------------------------------------------------------


APARTMENT = ((4, -0.05, 8.2, 0.1), (4, 4.05, 8.2, 0.1), (-0.05, 2, 0.1, 4.0), (8.05, 2, 0.1, 4.0), (4, 0.5, 0.1, 1.0), (4, 3.0, 0.1, 2.0))
"""Wall solids (centre x, y and size x, y in the plan, metres; 2.5 m high) of two 3.95 × 4 m rooms, x in [0, 8], y in [0, 4],
with a door at x = 4, y in [1, 2]."""


def apartment_scene() -> Scene:
    """The apartment as an avworld scene: the world of the habitat-sim stand-in."""
    walls = []
    for cx, cy, sx, sy in APARTMENT:
        if sx >= sy:  # a wall's ends are extended by half its thickness: the solid is exactly the slab
            walls.append(Wall((cx - sx / 2 + sy / 2, cy), (cx + sx / 2 - sy / 2, cy), sy))
        else:
            walls.append(Wall((cx, cy - sy / 2 + sx / 2), (cx, cy + sy / 2 - sx / 2), sx))
    return Scene(tuple(walls), AgentStart((1.0, 3.0)), (SoundSource((6.0, 3.0), "telephone"),), height=2.5)


@pytest.fixture(scope="module")
def apartment(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The apartment with a floor and a ceiling as a y-up .glb file (habitat-sim's frame)."""
    trimesh = pytest.importorskip("trimesh")

    def slab(cx: float, cy: float, cz: float, sx: float, sy: float, sz: float) -> object:
        return trimesh.creation.box(extents=(sx, sy, sz), transform=trimesh.transformations.translation_matrix((cx, cy, cz)))

    floor, ceiling = slab(4, 2, -0.05, 8.2, 4.2, 0.1), slab(4, 2, 2.55, 8.2, 4.2, 0.1)  # top at z = 0, underside at z = 2.5
    mesh = trimesh.util.concatenate([floor, ceiling, *(slab(cx, cy, 1.25, sx, sy, 2.5) for cx, cy, sx, sy in APARTMENT)])
    mesh.apply_transform(np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]], float))  # z up → y up
    path = tmp_path_factory.mktemp("habitat") / "apartment.glb"
    mesh.export(path)
    return str(path)


@pytest.fixture(params=["stand-in", "habitat-sim"])
def scene_file(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, apartment: str) -> str:
    """The apartment's file, simulated by habitat-sim where it works, and by tests/fake_habitat_sim.py everywhere."""
    if request.param == "habitat-sim":
        if not HABITAT_WORKS:
            pytest.skip(f"habitat-sim cannot create a simulator here: {HABITAT_WHY}")
    else:
        for name, module in fake_habitat_sim.modules().items():
            monkeypatch.setitem(sys.modules, name, module)
        monkeypatch.setattr(fake_habitat_sim.Simulator, "WORLD", apartment_scene())
    return apartment


def _env(scene_file: str, **habitat: object) -> AudioNavEnv:
    """The env on the apartment: start at plan (1, 3) facing +x, source at plan (6, 3) (habitat X = x, Z = -y)."""
    settings = {"start": [1.0, 0.0, -3.0], "start_yaw": 0.0, "source": [6.0, 0.0, -3.0], "sound": "telephone"} | habitat
    sim = SimConfig(backend="habitat", habitat=HabitatConfig(scene=scene_file, **settings))  # type: ignore[arg-type]
    return AudioNavEnv(sensors=("rgb", "audio", "depth", "pointgoal"), sim=sim)


def test_habitat_env_keeps_the_env_contract(scene_file: str) -> None:
    from gymnasium.utils.env_checker import check_env

    env = _env(scene_file)
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert obs["rgb"].shape == (64, 64, 3) and obs["rgb"].dtype == np.uint8
    assert obs["audio"].shape == (2, 4000) and np.isfinite(obs["audio"]).all()
    np.testing.assert_allclose(info["pose"], [1.0, 3.0, 0.0], atol=0.05)
    np.testing.assert_allclose(info["source_position"], [6.0, 3.0], atol=0.05)
    # Facing +x from (1, 3), the partition's face (x = 3.95) is straight ahead: z-depth in the image's centre.
    assert obs["depth"][30:34, 30:34].mean() == pytest.approx(2.95, abs=0.1)
    assert info["geodesic_distance"] > 5.0  # through the door at y in [1, 2]
    env.close()


def test_transition_predicts_what_habitat_sim_does(scene_file: str) -> None:
    env = _env(scene_file)
    env.reset(seed=0)
    sim = env.sim
    assert sim is not None
    rng = np.random.default_rng(0)
    collisions = 0
    for a in rng.choice([1, 1, 1, 2, 3], size=60):
        action = Action(int(a))
        predicted, would_collide = sim.transition(sim.pose, action)
        collided = sim.step(action)
        assert collided == would_collide
        np.testing.assert_allclose(sim.pose.as_array()[:2], [predicted.x, predicted.y], atol=1e-3)
        assert math.remainder(sim.pose.yaw - predicted.yaw, 2 * math.pi) == pytest.approx(0.0, abs=1e-3)
        collisions += collided
    assert collisions > 0  # the walk met walls: predicted collisions and slides were compared too
    # Walking into the wall behind the start (x = 0) collides.
    sim.set_episode(Pose(1.0, 3.0, math.pi), (6.0, 3.0))
    assert any(sim.step(Action.FORWARD) for _ in range(8))
    env.close()


def test_floor_plans_of_navmesh_and_mesh_agree_with_the_scene(scene_file: str) -> None:
    for floorplan in ("navmesh", "mesh"):
        env = _env(scene_file, floorplan=floorplan)
        sim = env.sim
        assert sim is not None
        assert sim.scene.height == pytest.approx(2.5, abs=0.25)  # measured from the navmesh's floor, a little above the mesh's
        lo, hi = sim.scene.bounds()
        np.testing.assert_allclose(lo, [-0.1, -0.1], atol=0.1)
        np.testing.assert_allclose(hi, [8.1, 4.1], atol=0.1)
        # The doorway is open in the plan: the acoustics' grid joins the rooms through it.
        assert math.isfinite(sim.grid.goal_field((6.0, 3.0)).distance(np.array([1.0, 1.0])))
        env.close()


def test_oracle_reaches_the_source_through_the_door(scene_file: str) -> None:
    from avworld.policies import OraclePolicy

    env = _env(scene_file)
    obs, info = env.reset(seed=0)
    oracle = OraclePolicy()
    oracle.reset(env)
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(oracle.act(obs, info))
        done = terminated or truncated
    assert terminated and info["success"] and info["metrics"]["spl"] > 0.7
    env.close()


def test_episodes_are_drawn_on_the_navmesh_when_not_given(scene_file: str) -> None:
    sim = habitat_sim_config(scene_file, seed=3)
    env = AudioNavEnv(sim=sim)
    _, info = env.reset(seed=0)
    assert info["geodesic_distance"] >= sim.episode.min_geodesic
    env.close()
    with pytest.raises(FileNotFoundError, match=r"sim\.habitat\.scene"):
        AudioNavEnv(sim=habitat_sim_config(scene_file + ".missing"))
