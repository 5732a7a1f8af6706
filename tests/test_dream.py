"""The imagined world: Dream-v0 and its vector env against the real env's contract, seeding, autoreset and latent mode."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import avworld  # noqa: F401
from avworld.data.collect import CollectConfig
from avworld.data.contexts import CollectionContexts
from avworld.envs.audio_nav import AudioNavEnv
from avworld.envs.dream import DreamEnv
from avworld.envs.dream_vector import DreamVectorEnv
from avworld.models.checkpoint import CheckpointError
from avworld.models.flow import sample
from avworld.models.imagination import Imagination
from avworld.models.precision import bf16_pays
from avworld.sim.config import SimConfig

SENSORS = ("rgb", "audio", "spectrogram")


@pytest.fixture
def dataset(collection: CollectConfig, world_checkpoint: str) -> dict[str, Any]:
    """Dream kwargs that start from windows of the tiny collection (fast), trained-on scenes."""
    windows = CollectionContexts(collection.root, collection.name, split="train")
    return {"checkpoint": world_checkpoint, "start": windows, "split": "train"}


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray], atol: float = 1e-4) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].shape == b[k].shape and a[k].dtype == b[k].dtype, k
        if a[k].dtype == np.uint8:
            assert np.abs(a[k].astype(int) - b[k].astype(int)).max() <= 1, k  # decoded frames: rounding may differ by one level
        else:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=atol, err_msg=k)  # log spectrograms amplify float noise


def test_spaces_are_the_real_envs(world_checkpoint: str) -> None:
    env = gym.make("avworld/Dream-v0", checkpoint=world_checkpoint, sensors=SENSORS)
    sim = SimConfig.from_dict(Imagination.load(world_checkpoint).meta["sim"])
    real = AudioNavEnv(sim=sim, sensors=SENSORS)
    assert env.observation_space == real.observation_space
    assert env.action_space == real.action_space


@pytest.mark.parametrize("latent", [False, True])
def test_gymnasium_check_env_from_real_episodes(world_checkpoint: str, latent: bool) -> None:
    env = gym.make("avworld/Dream-v0", checkpoint=world_checkpoint, sensors=SENSORS, render_mode="rgb_array", latent=latent)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*A Box observation space m", UserWarning)  # latents are unbounded
        check_env(env.unwrapped, skip_render_check=False)
    env.reset(seed=0, options={"scene_seed": 0, "actions": [1, 1, 2, 1, 3]})
    assert env.render().shape == (256, 256, 3)
    env.step(1)
    assert env.render().shape == (256, 256, 3)


@pytest.mark.parametrize("latent", [False, True])
def test_sb3_check_env(dataset: dict[str, Any], latent: bool) -> None:
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    with pytest.warns(UserWarning):  # SB3 suggests flattening the waveform and spectrogram
        sb3_check_env(DreamEnv(sensors=SENSORS, latent=latent, **dataset), warn=True)


@pytest.mark.parametrize("start", ["episode", "dataset"])
def test_same_seed_same_dream(dataset: dict[str, Any], start: str) -> None:
    kwargs = dataset if start == "dataset" else dataset | {"start": start}

    def rollout(seed: int) -> list[bytes]:
        env = gym.make("avworld/Dream-v0", sensors=SENSORS, **kwargs)
        obs, _ = env.reset(seed=seed)
        out = [b"".join(v.tobytes() for v in obs.values())]
        for a in (1, 2, 3, 1):
            obs, reward, _, _, info = env.step(a)
            out.append(b"".join(v.tobytes() for v in obs.values()) + np.float64(reward).tobytes())
            assert info["imagined"] and info["step"] == len(out) - 1
        return out

    first = rollout(7)
    assert first == rollout(7)
    other = rollout(8)
    assert other[0] != first[0] and other[1:] != first[1:]


def test_context_from_options(dataset: dict[str, Any]) -> None:
    env = DreamEnv(sensors=SENSORS, **dataset)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    audio = rng.uniform(-0.5, 0.5, (2, 2, 4000)).astype(np.float32)
    obs, info = env.reset(seed=0, options={"context": {"rgb": rgb, "audio": audio}})
    assert not info["imagined"] and info["step"] == 0
    np.testing.assert_array_equal(obs["rgb"], rgb[-1])
    np.testing.assert_array_equal(obs["audio"], audio[-1])
    assert env.observation_space.contains(obs)
    assert env.observation_space.contains(env.step(1)[0])
    with pytest.raises(ValueError, match=r"context'\]\['rgb'\] must have shape"):
        env.reset(options={"context": {"rgb": np.zeros((5, 64, 64, 3), np.uint8), "audio": np.zeros((5, 2, 4000), np.float32)}})
    with pytest.raises(ValueError, match="needs 'audio'"):
        env.reset(options={"context": {"rgb": rgb}})
    with pytest.raises(ValueError, match="same number of steps"):
        env.reset(options={"context": {"rgb": rgb, "audio": audio[:1]}})
    with pytest.raises(ValueError, match="need start='episode'"):
        env.reset(options={"scene_seed": 3})
    with pytest.raises(ValueError, match="unknown key 'seed'"):
        env.reset(options={"seed": 3})


@pytest.mark.parametrize("bad", [4, -1, 1.5, "1", None, np.array([1, 2]), np.array(-0.4), np.array(2.0), True])
def test_invalid_actions_raise(dataset: dict[str, Any], bad: object) -> None:
    env = DreamEnv(**dataset)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(1)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="invalid action"):
        env.step(bad)  # type: ignore[arg-type]
    env.step(np.int64(1))


def test_stop_ends_the_episode_and_max_steps_truncates(dataset: dict[str, Any]) -> None:
    env = DreamEnv(max_steps=2, **dataset)
    env.reset(seed=0)
    assert env.step(0)[2:4] == (True, False)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(1)
    env.reset()
    assert env.step(1)[2:4] == (False, False)
    assert env.step(1)[2:4] == (False, True)
    model = DreamEnv(termination="model", termination_threshold=0.999, **dataset)
    model.reset(seed=0)
    _, _, terminated, _, info = model.step(0)
    assert terminated == (info["termination_prob"] > 0.999)


def _corrupt(src: str, tmp_path: Path, how: str) -> Path:
    path = tmp_path / "checkpoint"
    shutil.copytree(src, path)
    if how == "weights":
        (path / "model.safetensors").write_bytes(b"not safetensors")
    elif how == "no-sim":
        meta = json.loads((path / "meta.json").read_text())
        del meta["sim"]
        (path / "meta.json").write_text(json.dumps(meta))
    elif how == "no-tokenizer":
        shutil.rmtree(path / "tokenizers" / "audio")
    elif how == "old-acoustics":  # trained before the sound changed: its imagined sound is not this simulator's
        meta = json.loads((path / "meta.json").read_text())
        meta["acoustics_version"] = 1
        (path / "meta.json").write_text(json.dumps(meta))
    return path


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("weights", r"model\.safetensors"),
        ("no-sim", r"meta\.json: missing 'sim'"),
        ("no-tokenizer", r"tokenizers/audio"),
        ("old-acoustics", r"meta\.json: acoustics_version 1: trained on sound an older avworld simulated"),
    ],
)
def test_bad_checkpoints_fail_at_make(world_checkpoint: str, tmp_path: Path, how: str, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        gym.make("avworld/Dream-v0", checkpoint=str(_corrupt(world_checkpoint, tmp_path, how)))


def test_bad_arguments_fail_at_make(world_checkpoint: str, collection: CollectConfig, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        gym.make("avworld/Dream-v0", checkpoint=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="checkpoint"):
        gym.make("avworld/Dream-v0")
    with pytest.raises(ValueError, match=r"sim\.render\.width: sim has 128 but the world model .* was trained with 64"):
        gym.make("avworld/Dream-v0", checkpoint=world_checkpoint, sim={"render": {"width": 128}})
    with pytest.raises(ValueError, match=r"sim\.agent\.turn_deg"):
        gym.make("avworld/Dream-v0", checkpoint=world_checkpoint, sim=SimConfig.from_dict({"agent": {"turn_deg": 10.0}}))
    with pytest.raises(ValueError, match=r"sim\.acoustics\.fs"):
        gym.make("avworld/Dream-v0", checkpoint=world_checkpoint, sim={"acoustics": {"fs": 8000}})
    with pytest.raises(ValueError, match="does not imagine 'depth'"):
        gym.make("avworld/Dream-v0", checkpoint=world_checkpoint, sensors=("rgb", "depth"))
    with pytest.raises(ValueError, match="unknown argument 'frames'"):
        gym.make("avworld/Dream-v0", checkpoint=world_checkpoint, frames=3)
    with pytest.raises(ValueError, match="start must be 'episode' or a context source"):
        gym.make("avworld/Dream-v0", checkpoint=world_checkpoint, start="dataset")
    with pytest.raises(ValueError, match="no episode of split 'test'"):
        CollectionContexts(collection.root, collection.name, split="test")  # the tiny collection has train scenes only
    env = gym.make("avworld/Dream-v0", checkpoint=world_checkpoint, sim={"episode": {"max_steps": 7}})  # not a learned setting
    assert env.unwrapped.max_steps == env.spec.max_episode_steps == 7


def test_step_limit_is_the_real_envs_and_the_spec_tells_it(dataset: dict[str, Any], world_checkpoint: str) -> None:
    """Issue 27 item 3: the checkpoint's collection ran 20-step episodes; the imagined world still runs the real env's
    500 (not the collection's limit), ``max_steps`` sets it, and ``spec.max_episode_steps`` says so for both envs."""
    assert Imagination.load(world_checkpoint).meta["sim"]["episode"]["max_steps"] == 20
    real, dream = gym.make("avworld/AudioNav-v0"), gym.make("avworld/Dream-v0", **dataset)
    assert real.spec.max_episode_steps == real.unwrapped.max_steps == 500
    assert dream.spec.max_episode_steps == dream.unwrapped.max_steps == dream.unwrapped.worlds.sim.episode.max_steps == 500
    assert gym.make("avworld/AudioNav-v0", sim={"episode": {"max_steps": 60}}).spec.max_episode_steps == 60
    assert gym.make("avworld/Dream-v0", sim=SimConfig.from_dict({"episode": {"max_steps": 40}}), **dataset).spec.max_episode_steps == 40
    env = gym.make("avworld/Dream-v0", max_steps=25, **dataset)
    assert env.spec.max_episode_steps == 25 and gym.make(env.spec).spec.max_episode_steps == 25  # the spec remakes the env
    env.reset(seed=0)
    steps = [env.step(1)[2:4] for _ in range(25)]  # FORWARD never ends an episode under termination="stop"
    assert steps[:-1] == [(False, False)] * 24 and steps[-1] == (False, True)
    with pytest.raises(ValueError, match="max_steps must be an int ≥ 1"):
        DreamEnv(max_steps=0, **dataset)
    with pytest.raises(ValueError, match="unknown argument 'horizon'"):
        DreamEnv(horizon=5, **dataset)


def test_vector_env_next_step_autoreset(dataset: dict[str, Any]) -> None:
    envs = gym.make_vec("avworld/Dream-v0", num_envs=3, max_steps=2, **dataset)
    assert isinstance(envs, DreamVectorEnv) and envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert envs.single_observation_space == gym.make("avworld/Dream-v0", **dataset).observation_space
    obs, info = envs.reset(seed=0)
    assert envs.observation_space.contains(obs) and not info["imagined"].any() and info["_imagined"].all()
    obs, reward, terminated, truncated, info = envs.step(np.array([1, 0, 2]))
    assert terminated.tolist() == [False, True, False] and not truncated.any() and info["imagined"].all()
    obs, reward, terminated, truncated, info = envs.step(np.array([1, 1, 0]))
    # world 1 ended on the last step: it restarts, ignoring its action; worlds 0 and 2 reach the horizon or STOP
    assert reward[1] == 0.0 and info["imagined"].tolist() == [True, False, True] and info["step"].tolist() == [2, 0, 2]
    assert terminated.tolist() == [False, False, True] and truncated.tolist() == [True, False, False]
    obs, reward, terminated, truncated, info = envs.step(np.array([1, 1, 1]))
    assert info["imagined"].tolist() == [False, True, False] and info["step"].tolist() == [0, 1, 0]
    assert reward[0] == reward[2] == 0.0 and not terminated.any() and not truncated.any()
    assert envs.observation_space.contains(obs)
    with pytest.raises(ValueError, match="invalid actions"):
        envs.step(np.array([1, 4, 1]))
    with pytest.raises(ValueError, match="invalid actions"):
        envs.step(np.array([1, 1]))


@pytest.mark.parametrize(("start", "latent", "ctx_noise"), [("dataset", False, None), ("episode", False, None), ("dataset", True, None),
                                                      ("dataset", True, 0.3)])
def test_batch_equals_single_envs_seeded_alike(dataset: dict[str, Any], start: str, latent: bool, ctx_noise: float | None) -> None:
    kwargs = (dataset if start == "dataset" else dataset | {"start": start}) | {"max_steps": 2, "sensors": SENSORS, "latent": latent,
                                                                                "ctx_noise": ctx_noise}
    batched = DreamVectorEnv(3, **kwargs)
    singles = SyncVectorEnv([lambda: DreamEnv(**kwargs) for _ in range(3)])
    _same(batched.reset(seed=11)[0], singles.reset(seed=11)[0])
    for actions in ([1, 0, 3], [2, 1, 1], [3, 3, 0], [1, 2, 1]):  # episode ends and NEXT_STEP restarts included
        a = np.array(actions)
        got, want = batched.step(a), singles.step(a)
        _same(got[0], want[0])
        for i in (1, 2, 3):
            np.testing.assert_allclose(got[i], want[i], atol=1e-4)
        for key in ("imagined", "step", "termination_prob"):
            np.testing.assert_allclose(got[4][key], want[4][key], atol=1e-4)
            np.testing.assert_array_equal(got[4][f"_{key}"], want[4][f"_{key}"])


def test_context_noise_changes_the_dream_and_repeats_with_the_seed(dataset: dict[str, Any]) -> None:
    def rollout(ctx_noise: float | None) -> np.ndarray:
        env = DreamEnv(**dataset, latent=True, ctx_noise=ctx_noise)
        env.reset(seed=5)
        return np.concatenate([env.step(a)[0]["video"].ravel() for a in (1, 2, 1)])

    noised = rollout(0.3)
    np.testing.assert_array_equal(noised, rollout(0.3))
    assert not np.allclose(noised, rollout(None), atol=1e-3)  # the net sees another context
    with pytest.raises(ValueError, match="ctx_noise"):
        DreamEnv(**dataset, ctx_noise=1.0)


def test_reset_mask_resets_only_marked_worlds(dataset: dict[str, Any]) -> None:
    envs = DreamVectorEnv(2, **dataset)
    envs.reset(seed=0)
    stepped, *_ = envs.step(np.array([1, 1]))
    obs, info = envs.reset(options={"reset_mask": np.array([False, True])})
    np.testing.assert_array_equal(obs["rgb"][0], stepped["rgb"][0])
    assert info["_step"].tolist() == [False, True]
    assert envs.step(np.array([1, 1]))[4]["step"].tolist() == [2, 1]


def test_latent_mode_and_decode_on_demand(dataset: dict[str, Any]) -> None:
    decoded_env = DreamEnv(sensors=SENSORS, **dataset)
    latent_env = DreamEnv(sensors=SENSORS, latent=True, **dataset)
    shapes = {"video": (4, 8, 8), "audio": (8, 20)}
    assert {k: s.shape for k, s in latent_env.observation_space.items()} == shapes
    obs, _ = latent_env.reset(seed=3)
    decoded_env.reset(seed=3)
    assert latent_env.observation_space.contains(obs)
    latents, *_ = latent_env.step(2)
    _same(latent_env.decode(latents), decoded_env.step(2)[0])
    envs = DreamVectorEnv(2, latent=True, sensors=SENSORS, **dataset)
    batch, _ = envs.reset(seed=0)
    assert {k: v.shape for k, v in batch.items()} == {k: (2, *s) for k, s in shapes.items()}
    frames = envs.decode(batch)
    assert frames["rgb"].shape == (2, 64, 64, 3) and frames["spectrogram"].shape == (2, 2, 129, 30)
    assert envs.single_observation_space.contains({k: v[0] for k, v in batch.items()})
    with pytest.raises(ValueError, match=r"latents\['audio'\] must have shape \(\.\.\., 8, 20\)"):
        envs.decode({"video": batch["video"], "audio": batch["audio"][:1]})


def test_amp_decodes_in_bf16_where_the_hardware_does_it(dataset: dict[str, Any]) -> None:
    plain, fast = DreamEnv(**dataset), DreamEnv(amp=True, **dataset)
    assert fast.worlds.world.amp is bf16_pays(torch.device("cpu")) and not plain.worlds.world.amp
    plain.reset(seed=3)
    fast.reset(seed=3)
    a, b = plain.step(1)[0], fast.step(1)[0]  # the same imagined step, decoded within bf16's precision
    levels = np.abs(a["rgb"].astype(int) - b["rgb"].astype(int))
    assert levels.max() <= 8 and (levels.any() or not fast.worlds.world.amp)
    assert np.allclose(a["audio"], b["audio"], atol=0.05 * np.abs(a["audio"]).max() + 1e-4)


def test_sampler_noise_argument_matches_the_generator(world_checkpoint: str) -> None:
    world = Imagination.load(world_checkpoint)
    ctx = {"video": torch.randn(2, 4, 4, 8, 8), "audio": torch.randn(2, 4, 8, 20)}
    action = torch.tensor([1, 2])
    drawn = world.predict(ctx, action, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    noise = {"video": torch.randn(2, 4, 8, 8, generator=g), "audio": torch.randn(2, 8, 20, generator=g)}
    given = world.predict(ctx, action, noise=noise)
    for k in drawn:
        torch.testing.assert_close(drawn[k], given[k])
    with pytest.raises(ValueError, match=r"noise\['audio'\] must be a tensor of shape \(2, 8, 20\)"):
        sample(world.net, ctx["video"], ctx["audio"], action, noise={"video": noise["video"]})


def test_bench_dream_prints_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    from avworld.cli import main

    budget = ["dream_bench.presets=[tiny]", "dream_bench.batches=[2]", "dream_bench.max_repeats=1", "dream_bench.real_steps=3"]
    assert main(["bench", "dream", "--json", *budget]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["target"] == "dream" and result["real_steps_per_s"] > 0
    for mode in ("decoded", "latent"):
        assert result["presets"]["tiny"]["cpu"][mode]["batch2"]["steps_per_s"] > 0


def test_compile_is_opt_in_wired_through_dream_and_falls_back_to_eager(dataset: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """``compile=True`` (Dream-v0, its vector env, ``load_world``, a given :class:`Imagination`) routes the sampler's two
    parts and both decoders through ``torch.compile``; a compile that fails warns and imagines exactly what eager does."""
    assert not DreamEnv(**dataset).worlds.world.compiled  # off by default
    modes: list[str | None] = []

    def recording_compile(fn: Any, mode: str | None = None) -> Any:
        modes.append(mode)
        return fn

    monkeypatch.setattr(torch, "compile", recording_compile)
    envs = DreamVectorEnv(2, compile=True, **dataset)
    assert envs.worlds.world.compiled
    assert sorted(modes, key=str) == sorted(["reduce-overhead", None, *["max-autotune-no-cudagraphs"] * 2], key=str)
    given = Imagination.load(dataset["checkpoint"])
    assert DreamEnv(**(dataset | {"checkpoint": given}), compile=True).worlds.world is given and given.compiled

    def broken_compile(fn: Any, mode: str | None = None) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("no C++ compiler")

        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    eager, fallback = DreamEnv(**dataset), DreamEnv(compile=True, **dataset)
    eager.reset(seed=4)
    fallback.reset(seed=4)
    with pytest.warns(UserWarning, match=r"no C\+\+ compiler\); running it eagerly") as caught:
        a, b = eager.step(1)[0], fallback.step(1)[0]
    failed = {str(w.message).split(" failed")[0] for w in caught}
    assert failed == {"torch.compile of AV-CDiT context", "torch.compile of AV-CDiT velocity"} | {
        f"torch.compile of the {m} decoder" for m in ("video", "audio")
    }
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    np.testing.assert_array_equal(eager.step(2)[0]["rgb"], fallback.step(2)[0]["rgb"])  # eager from then on, silently


@pytest.mark.usefixtures("one_thread")
def test_compiled_imagination_imagines_what_eager_does(world_checkpoint: str) -> None:
    """The real ``torch.compile`` of the sampler's net (its first call compiles: ~10-25 s on a 2-core CPU) imagines the
    eager step to float tolerance; skipped where this machine cannot compile (no C++ compiler)."""
    eager, fast = Imagination.load(world_checkpoint), Imagination.load(world_checkpoint, compile=True)
    g = torch.Generator().manual_seed(0)
    ctx = {"video": torch.randn(2, 4, 4, 8, 8, generator=g), "audio": torch.randn(2, 4, 8, 20, generator=g)}
    noise = {"video": torch.randn(2, 4, 8, 8, generator=g), "audio": torch.randn(2, 8, 20, generator=g)}
    action = torch.tensor([1, 3])
    want = eager.predict(ctx, action, noise=noise)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = fast.predict(ctx, action, noise=noise)
    failed = [str(w.message) for w in caught if "torch.compile of" in str(w.message)]
    if failed:
        pytest.skip(f"torch.compile cannot run here: {failed[0]}")
    assert want.keys() == got.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-5)
