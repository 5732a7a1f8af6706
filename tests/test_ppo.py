"""PPO: the audio-visual extractor, the Gymnasium → SB3 vector adapter, training in the real and the imagined world,
the saved agent (no pickle, resume) and the agent's interface for planners. Tiny budgets: nothing here learns."""

from __future__ import annotations

import dataclasses
import json
import pickle
import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import SyncVectorEnv
from omegaconf import OmegaConf
from safetensors.torch import load_file
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack, VecTransposeImage

import avworld  # noqa: F401
from avworld.eval.navigation import evaluate_navigation
from avworld.models.checkpoint import CheckpointError
from avworld.policies.imitation import clone, collect_demonstrations
from avworld.policies.ppo import AgentTrainConfig, FailedStopPenalty, Usage, actor_parameters, build_envs, build_ppo, train_ppo
from avworld.policies.ppo_agent import PPOAgent, policy_space
from avworld.policies.ppo_features import AVFeatures, AVFeaturesConfig, log_stft
from avworld.policies.sb3_vec import ConcatVecEnv, CountSteps, GymVecToSB3
from avworld.sim.acoustics.audio import log_spectrogram
from avworld.sim.config import SimConfig
from tests.conftest import two_rooms

pytestmark = pytest.mark.usefixtures("one_thread")
SIM = {"episode": {"max_steps": 20}}
PPO_TRAIN = PPO.train


def tiny(**overrides: Any) -> AgentTrainConfig:
    """The shipped ``agent_train=tiny`` preset with ``overrides``."""
    return shipped("tiny", **overrides)


def shipped(name: str, **overrides: Any) -> AgentTrainConfig:
    """The shipped ``agent_train=<name>`` preset with ``overrides``."""
    preset = OmegaConf.load(str(files("avworld.configs") / "agent_train" / f"{name}.yaml"))
    config = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(AgentTrainConfig), preset, overrides))
    assert isinstance(config, AgentTrainConfig)
    return config


def real_observations(steps: int, sensors: tuple[str, ...] = ("rgb", "audio")) -> list[dict[str, np.ndarray]]:
    env = gym.make("avworld/AudioNav-v0", sensors=sensors, sim=SIM)
    obs, _ = env.reset(seed=1)
    out = [obs]
    for action in [1, 2, 1, 3, 1][:steps]:
        obs, *_ = env.step(action)
        out.append(obs)
    return out


# -- features ------------------------------------------------------------------------------------------------------


def test_spectrogram_in_the_network_is_the_env_sensor() -> None:
    audio = real_observations(1)[-1]["audio"]  # (2, N)
    log_mag, _ = log_stft(torch.from_numpy(audio)[None])
    np.testing.assert_allclose(log_mag[0].numpy(), log_spectrogram(audio), atol=2e-3)


@pytest.mark.parametrize("sensors", [("rgb", "audio"), ("rgb", "spectrogram")])
def test_extractor_shapes_and_ears(sensors: tuple[str, ...]) -> None:
    from avworld.envs.audio_nav import observation_space

    space = policy_space(observation_space(SimConfig(), sensors), 3)
    config = AVFeaturesConfig(visual_dim=16, audio_dim=8, channels=(4, 8))
    net = AVFeatures(space, config)
    rng = np.random.default_rng(0)
    obs = {k: torch.from_numpy(rng.uniform(0, 1, (2, *s.shape)).astype(np.float32)) for k, s in space.spaces.items()}
    features = net(obs)
    assert features.shape == (2, 24) == (2, net.features_dim)
    audio = sensors[1]
    image = net.spectrogram(obs)
    assert image.shape[:2] == (2, 4 if audio == "audio" else 2)  # log |L|, log |R| (and cos, sin of the interaural phase)
    swapped = dict(obs, **{audio: obs[audio].flip(1)})  # left and right ears exchanged
    assert not torch.allclose(net(swapped), features, atol=1e-6)
    with pytest.raises(ValueError, match="depth"):
        AVFeatures(policy_space(observation_space(SimConfig(), ("rgb", "depth")), 1), config)


# -- vector envs ---------------------------------------------------------------------------------------------------


class Counter(gym.Env[np.ndarray, int]):
    """obs = (steps, sum of actions); action 0 terminates; truncation after 3 steps comes from ``max_episode_steps``."""

    observation_space = gym.spaces.Box(0, 100, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.state = np.zeros(2, np.float32)
        return self.state.copy(), {"started": True}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.state += (1, action)
        return self.state.copy(), 1.0, action == 0, False, {"sum": float(self.state[1])}


def counters(n: int) -> SyncVectorEnv:
    return SyncVectorEnv([lambda: gym.wrappers.TimeLimit(Counter(), 3)] * n)  # Gymnasium's default: NEXT_STEP autoreset


def test_adapter_turns_next_step_autoreset_into_sb3s() -> None:
    venv = CountSteps(GymVecToSB3(counters(2)))
    assert venv.reset().tolist() == [[0, 0], [0, 0]]
    obs, rewards, dones, infos = venv.step(np.array([0, 1]))  # env 0 terminates
    assert dones.tolist() == [True, False] and rewards.dtype == np.float32
    assert infos[0]["terminal_observation"].tolist() == [1, 0] and infos[0]["TimeLimit.truncated"] is False
    assert obs.tolist() == [[0, 0], [1, 1]]  # env 0 already shows its next episode's first observation
    assert infos[1] == {"sum": 1.0}
    obs, _, dones, infos = venv.step(np.array([1, 1]))
    assert obs.tolist() == [[1, 1], [2, 2]]  # env 0's action counted: no step is ignored after an autoreset
    obs, _, dones, infos = venv.step(np.array([1, 1]))  # env 1 times out
    assert dones.tolist() == [False, True] and infos[1]["TimeLimit.truncated"] is True
    assert infos[1]["terminal_observation"].tolist() == [3, 3] and obs[1].tolist() == [0, 0]
    assert (venv.steps, venv.episodes) == (6, 4)


def test_concat_joins_vec_envs_and_seeds_each_env() -> None:
    venv = ConcatVecEnv([GymVecToSB3(counters(2)), DummyVecEnv([lambda: gym.wrappers.TimeLimit(Counter(), 3)])])
    assert venv.num_envs == 3 and venv.seed(7) == [7, 8, 9]
    assert venv.reset().shape == (3, 2)
    obs, _, dones, infos = venv.step(np.array([1, 0, 0]))
    assert dones.tolist() == [False, True, True] and obs.tolist() == [[1, 1], [0, 0], [0, 0]]
    assert [i["terminal_observation"].tolist() for i in infos[1:]] == [[1, 0], [1, 0]]
    assert venv.get_attr("render_mode") == [None, None, None]


# -- training ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_agent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``avworld train agent world=real agent_train=tiny`` for 128 steps: its output directory."""
    out = tmp_path_factory.mktemp("ppo_real")
    args = ["train", "agent", "world=real", "agent_train=tiny", "agent_train.steps=128", f"out_dir={out}", f"hydra.run.dir={out}/hydra"]
    proc = subprocess.run([sys.executable, "-m", "avworld.cli", *args], cwd=out, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "timesteps=128 real_steps=128" in proc.stdout
    return out


def test_real_agent_runs_episodes_and_resumes(real_agent: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    agent = PPOAgent.load(real_agent / "checkpoint")
    result = evaluate_navigation(gym.make("avworld/AudioNav-v0", split="val", sim=SIM), agent, episodes=2, seed=0)
    assert result.summary()["episodes"] == 2
    assert any((real_agent / "tb").rglob("events.out.tfevents.*"))

    out = tmp_path / "run"
    shutil.copytree(real_agent, out)
    first = json.loads((out / "checkpoint" / "training.json").read_text())
    assert first["num_timesteps"] == 128
    updates: list[int] = []

    def train_then_crash(self: PPO) -> None:
        updates.append(self.num_timesteps)
        if len(updates) == 2:
            raise KeyboardInterrupt
        PPO_TRAIN(self)

    with monkeypatch.context() as m:
        m.setattr(PPO, "train", train_then_crash)
        with pytest.raises(KeyboardInterrupt):  # resumed at 128; saved at the rollout start at 256; interrupted at 384
            train_ppo(tiny(steps=384), out, progress=False)
    assert updates == [256, 384]
    saved = json.loads((out / "checkpoint" / "training.json").read_text())
    assert saved["num_timesteps"] == saved["usage"]["real_steps"] == 256
    result = train_ppo(tiny(steps=384), out, progress=False)  # resumes at 256
    assert result["timesteps"] == result["real_steps"] == 384 and result["imagined_steps"] == 0
    state = json.loads((out / "checkpoint" / "training.json").read_text())
    assert state["num_timesteps"] == 384 and state["n_updates"] == 3 * first["n_updates"]
    adam_steps = [float(load_file(d / "checkpoint" / "training.safetensors")["optim.0.step"]) for d in (real_agent, out)]
    assert adam_steps[1] == 3 * adam_steps[0] > 0  # the optimiser's state went on from the saved one
    with pytest.raises(CheckpointError, match=r"meta.json: trained with sensors"):
        train_ppo(tiny(steps=512, sensors=["rgb", "spectrogram"]), out, progress=False)


def test_agent_directory_holds_no_pickle(real_agent: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = real_agent / "checkpoint"
    assert {f.name for f in path.iterdir()} == {"config.yaml", "model.safetensors", "meta.json", "training.safetensors", "training.json"}

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a pickle was loaded")

    for module, name in ((pickle, "load"), (pickle, "loads"), (torch, "load")):
        monkeypatch.setattr(module, name, refuse)
    PPOAgent.load(path)
    monkeypatch.undo()
    broken = tmp_path / "broken"
    shutil.copytree(path, broken)
    (broken / "model.safetensors").write_bytes((path / "model.safetensors").read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"broken/model\.safetensors"):
        PPOAgent.load(broken)


def test_agent_stacks_as_training_did_and_scores_for_planners(real_agent: Path) -> None:
    agent = PPOAgent.load(real_agent / "checkpoint", deterministic=True)
    observations = real_observations(3)
    venv = VecTransposeImage(VecFrameStack(DummyVecEnv([lambda: gym.make("avworld/AudioNav-v0", sim=SIM)]), agent.frame_stack))
    venv.seed(1)
    stacked = venv.reset()
    for action in [1, 2, 1]:
        stacked, *_ = venv.step(np.array([action]))
    ours = agent.stack(observations)
    assert ours.keys() == stacked.keys()
    for k in ours:
        np.testing.assert_array_equal(ours[k], stacked[k])

    env = gym.make("avworld/AudioNav-v0", sim=SIM)
    obs, info = env.reset(seed=0)
    agent.reset(env, seed=0)
    probs, value = agent.action_probs(obs), agent.value(obs)
    assert probs.shape == (4,) and abs(probs.sum() - 1) < 1e-9 and (probs >= 0).all()
    assert isinstance(value, float)
    assert agent.act(obs, info) == int(np.argmax(probs)) and len(agent.history) == 1  # scoring did not touch the stack
    sampler = PPOAgent.load(real_agent / "checkpoint")  # samples by default, seeded by reset
    assert probs.min() > 0.05  # barely trained: every action is likely enough to be drawn
    draws = []
    for _ in range(2):
        sampler.reset(env, seed=5)
        draws.append([sampler.act(obs, info) for _ in range(20)])
    assert draws[0] == draws[1] and len(set(draws[0])) > 1
    batch = {k: np.concatenate([agent.stack(observations[:2])[k], agent.stack(observations)[k]]) for k in ours}
    assert agent.evaluate(batch)[0].shape == (2, 4)
    nodes = {k: np.stack([observations[2][k], observations[3][k]]) for k in observations[0]}  # two next steps after [0, 1]
    probs, values = agent.evaluate_after(observations[:2], nodes)
    for b, last in enumerate(observations[2:]):
        one = agent.evaluate(agent.stack([*observations[:2], last]))
        np.testing.assert_allclose(probs[b], one[0][0], rtol=1e-5)  # batched vs one at a time: float32 round-off
        np.testing.assert_allclose(values[b], one[1][0], rtol=1e-5)
    with pytest.raises(ValueError, match="trained on observations"):
        agent.reset(gym.make("avworld/AudioNav-v0", sim={"render": {"width": 32, "height": 32}}))


def test_dream_training_counts_real_steps(world_checkpoint: str, tmp_path: Path) -> None:
    config = tiny(world="dream", checkpoint=world_checkpoint, n_envs=4, sim={})
    result = train_ppo(config, tmp_path, progress=False)
    assert result["timesteps"] == result["imagined_steps"] == 256
    assert result["real_steps"] == result["imagined_episodes"] * 3  # m - 1 = 3 real moves per context (m = 4)
    assert 0 < result["real_steps"] < result["timesteps"]
    assert result["world_model"]["windows"] > 0 and result["world_model"]["context"] == 4
    meta = json.loads((tmp_path / "checkpoint" / "meta.json").read_text())
    assert meta["usage"]["real_steps"] == result["real_steps"] and meta["world"] == "dream"
    agent = PPOAgent.load(tmp_path / "checkpoint")  # the imagined world's spaces are the real one's: it acts there
    evaluate_navigation(gym.make("avworld/AudioNav-v0", sim=agent.sim), agent, episodes=1)


def test_dream_training_starts_from_a_real_agent(
    real_agent: Path, world_checkpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    init = real_agent / "checkpoint"
    behind = json.loads((init / "meta.json").read_text())["usage"]
    monkeypatch.setattr(PPO, "train", lambda self: None)  # no update: the run's agent must still be the one it started from
    config = tiny(world="dream", checkpoint=world_checkpoint, n_envs=4, sim={}, steps=256, init=str(init))
    result = train_ppo(config, tmp_path, progress=False)
    assert result["timesteps"] == result["imagined_steps"] == 256  # one rollout of 64 steps in 4 envs
    assert result["real_steps"] == behind["real_steps"] + result["imagined_episodes"] * 3  # 128 real PPO steps + contexts
    start, end = load_file(init / "model.safetensors"), load_file(tmp_path / "checkpoint" / "model.safetensors")
    assert start.keys() == end.keys() and all(torch.equal(start[k], end[k]) for k in start)

    closed: list[int] = []
    close = DummyVecEnv.close
    monkeypatch.setattr(DummyVecEnv, "close", lambda self: closed.append(1) or close(self))
    with pytest.raises(CheckpointError, match=r"meta.json: init: the agent has frame_stack=2, this run 3"):
        train_ppo(tiny(steps=64, frame_stack=3, init=str(init)), tmp_path / "other", progress=False)
    assert closed  # the refused run closed its envs
    with pytest.raises(CheckpointError, match=r"meta.json: init: the agent saw"):
        train_ppo(tiny(steps=64, sim={"render": {"width": 32, "height": 32}}, init=str(init)), tmp_path / "small", progress=False)
    with pytest.raises(ValueError, match="init: a run starts from an agent"):
        tiny(init=str(init), imitation={"samples": 10})
    broken = shutil.copytree(init, tmp_path / "broken")
    meta = json.loads((broken / "meta.json").read_text())
    (broken / "meta.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "usage"}))
    with pytest.raises(CheckpointError, match=r"broken/meta.json: init: no readable usage"):
        train_ppo(tiny(steps=64, init=str(broken)), tmp_path / "from_broken", progress=False)


def test_mixed_real_and_imagined_envs(world_checkpoint: str) -> None:
    envs = build_envs(tiny(world="dream", checkpoint=world_checkpoint, n_envs=2, real_fraction=0.5, sim=SIM))
    envs.venv.seed(0)
    envs.venv.reset()
    for _ in range(3):
        envs.venv.step(np.array([1, 1]))
    usage = envs.usage(Usage(), timesteps=6, seconds=0.0)
    assert (usage.imagined_steps, usage.imagined_episodes) == (3, 1)
    assert usage.real_steps == 3 + 3 and usage.real_episodes == 2  # the real env's 3 steps; one context of 3 real moves
    envs.venv.close()


@pytest.mark.parametrize("name", ["tiny", "small", "pool"])
def test_shipped_presets_are_valid_training_configs(name: str) -> None:
    config = shipped(name)
    assert config.world == "real"
    SimConfig.from_dict(config.sim)  # the simulator overrides name real fields
    # Hydra refuses an override of a key the preset lacks (``agent_train.scenes=64`` would need ``+``): name them all.
    preset = OmegaConf.to_container(OmegaConf.load(str(files("avworld.configs") / "agent_train" / f"{name}.yaml")))
    assert isinstance(preset, dict)
    settings = {f.name for f in dataclasses.fields(AgentTrainConfig)} - {"world", "checkpoint"}  # set by avworld train itself
    assert settings - preset.keys() == set()
    for key in ("ppo", "features", "imitation", "dream"):
        assert {f.name for f in dataclasses.fields(getattr(config, key))} - preset[key].keys() == set(), key


def test_bad_settings_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="checkpoint: world=dream"):
        tiny(world="dream")
    with pytest.raises(ValueError, match="real_fraction"):
        tiny(real_fraction=0.5)
    with pytest.raises(ValueError, match="sensors"):
        tiny(sensors=["rgb", "pointgoal"])
    with pytest.raises(ValueError, match="starts"):
        tiny(starts="anywhere")
    with pytest.raises(ValueError, match="imitation"):
        tiny(world="dream", checkpoint="x", imitation={"samples": 10})
    with pytest.raises(ValueError, match=r"imitation\.noise"):
        tiny(imitation={"noise": 1.0})
    with pytest.raises(ValueError, match="stop_penalty"):
        tiny(stop_penalty=-1.0)
    with pytest.raises(ValueError, match="stop_prior"):
        tiny(ppo={"stop_prior": 1.0})
    with pytest.raises(ValueError, match="critic_warmup"):
        tiny(ppo={"critic_warmup": -1})


def test_failed_stop_penalty_only_on_unsuccessful_stops() -> None:
    from avworld.envs.audio_nav import AudioNavEnv
    from avworld.policies import OraclePolicy

    env = FailedStopPenalty(AudioNavEnv(scene=two_rooms()), penalty=1.0)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(0)  # STOP 6 m from the source
    assert terminated and not info["success"] and reward == pytest.approx(-1.01)
    obs, info = env.reset(seed=0)
    oracle, rewards, done = OraclePolicy(), [], False
    oracle.reset(env.unwrapped)
    while not done:
        obs, reward, terminated, truncated, info = env.step(oracle.act(obs, info))
        rewards.append(reward)
        done = terminated or truncated
    assert info["success"] and rewards[-1] > 9.0  # the successful STOP keeps its bonus, unpenalised


def test_cloning_the_oracle_fits_its_labels(tmp_path: Path) -> None:
    episode = {"max_steps": 20, "min_geodesic": 1.0, "max_geodesic": 2.0}
    imitation = {"samples": 96, "noise": 0.0, "epochs": 40, "batch_size": 16, "learning_rate": 1e-3}
    config = tiny(scenes=1, starts="random", sim={"episode": episode}, imitation=imitation)
    envs = build_envs(config)
    try:
        demos = collect_demonstrations(envs.venv, 96, 0.0, seed=0)
        model = build_ppo(config, envs, tmp_path, seed=0)
    finally:
        envs.venv.close()
    assert demos.actions.shape == (96,) and set(demos.observations) == {"rgb", "audio"}
    assert demos.observations["rgb"].shape == (96, *model.observation_space["rgb"].shape)
    assert demos.episodes > config.n_envs and (demos.actions == 0).any()  # oracle episodes of 1-2 m end in STOP

    def accuracy() -> float:
        batch = {k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in demos.observations.items()}
        obs, _ = model.policy.obs_to_tensor(batch)
        with torch.no_grad():
            return float((model.policy.get_distribution(obs).distribution.probs.argmax(1).numpy() == demos.actions).mean())

    before = accuracy()
    stats = clone(model.policy, demos, config.imitation, seed=0)
    assert accuracy() > max(before, 0.8) and stats["samples"] == 96, stats


def test_training_with_a_cloning_warm_start_keeps_the_cloned_agent(tmp_path: Path) -> None:
    episode = {"max_steps": 20, "min_geodesic": 1.0, "max_geodesic": 3.0}
    config = tiny(steps=64, scenes=2, starts="random", sim={"episode": episode}, imitation={"samples": 32, "epochs": 1})
    result = train_ppo(config, tmp_path, progress=False)
    assert result["imitation_steps"] == 32 and result["real_steps"] == 32 + result["timesteps"]
    assert result["imitation"]["samples"] == 32
    meta = json.loads((tmp_path / "checkpoint" / "meta.json").read_text())
    assert meta["imitation"] == result["imitation"] and meta["usage"]["imitation_steps"] == 32
    cloned = PPOAgent(path=str(tmp_path / "imitation" / "checkpoint"))
    assert json.loads((tmp_path / "imitation" / "checkpoint" / "meta.json").read_text())["usage"]["timesteps"] == 0
    env = gym.make("avworld/AudioNav-v0", sensors=("rgb", "audio"), sim={"episode": episode})
    obs, info = env.reset(seed=0)
    cloned.reset(env.unwrapped)
    assert cloned.act(obs, info) in range(4)


def test_stop_prior_sets_the_first_policy_and_pool_settings_reach_the_envs(tmp_path: Path) -> None:
    episode = {"max_steps": 20, "min_geodesic": 1.0, "max_geodesic": 2.0}
    config = tiny(ppo={"stop_prior": 0.05}, scenes=2, starts="random", sim={"episode": episode})
    envs = build_envs(config)
    try:
        model = build_ppo(config, envs, tmp_path, seed=0)
        obs = envs.venv.reset()
        tensor, _ = model.policy.obs_to_tensor(obs)
        probs = model.policy.get_distribution(tensor).distribution.probs.detach()  # (n_envs, 4)
        assert probs[:, 0].numpy() == pytest.approx([0.05] * config.n_envs, abs=0.01)
        assert probs[:, 1:].numpy() == pytest.approx(np.full((config.n_envs, 3), 0.95 / 3), abs=0.01)
        for env in envs.venv.get_attr("unwrapped"):
            assert env._ids == range(2) and env.starts == "random"
            assert 1.0 <= env._geodesic <= 2.05
    finally:
        envs.venv.close()


def test_critic_warmup_updates_only_the_critic_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    changed: list[tuple[bool, bool]] = []  # per PPO update: (actor changed, critic changed)

    def train(model: PPO) -> None:
        actor = {id(p) for p in actor_parameters(model.policy)}
        before = {name: p.detach().clone() for name, p in model.policy.named_parameters()}
        PPO_TRAIN(model)
        moved = {name for name, p in model.policy.named_parameters() if not torch.equal(p, before[name])}
        params = dict(model.policy.named_parameters())
        changed.append((any(id(params[n]) in actor for n in moved), any(id(params[n]) not in actor for n in moved)))

    monkeypatch.setattr(PPO, "train", train)
    train_ppo(tiny(ppo={"critic_warmup": 128}), tmp_path, progress=False)  # 2 rollouts of 2 envs x 64 steps
    assert changed == [(False, True), (True, True)]
