"""Behaviour of the imagination paths, pinned: a fixed tiny world model and seed give exactly the recorded numbers.

The world model is built inside the test from seeded random weights (no training, no data), so the numbers depend only
on the imagination code: ``Dream-v0``, ``DreamVectorEnv``, one planner step and the prediction eval. ``BEFORE`` holds
what the code of main gave at commit b801c68 (before issue 22 merged the three imagination paths into one core); the
refactor must reproduce it bit for bit (SHA-256 of every observation array, floats compared exactly).
Run ``AVWORLD_RECORD=1 pytest tests/test_imagination_core.py -s`` to print the current numbers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

import avworld  # noqa: F401  (registers the envs)
from avworld.models.checkpoint import Checkpoint, save_checkpoint
from avworld.models.imagination import Imagination
from avworld.models.registry import build, config_to_dict, preset
from avworld.sim.acoustics.responses import ACOUSTICS_VERSION
from avworld.sim.config import SimConfig

CONTEXT_STEPS = 3
"""Real context steps given to the envs (fewer than the model's m = 4: the padding path runs too)."""
ACTIONS = (1, 2, 3, 1, 0)


def _digest(x: Any) -> str:
    """First 16 hex digits of the SHA-256 of an array's dtype, shape and bytes."""
    a = np.ascontiguousarray(np.asarray(x))
    return hashlib.sha256(f"{a.dtype}{a.shape}".encode() + a.tobytes()).hexdigest()[:16]


def _obs(obs: dict[str, np.ndarray]) -> dict[str, str]:
    return {k: _digest(v) for k, v in sorted(obs.items())}


def build_world(root: Path) -> Path:
    """A tiny world-model checkpoint (AV-CDiT ``tiny``, video and audio, tokenizers attached) from seeded random weights.

    The net's zero-initialised output layers are perturbed, so that velocities, rewards and terminations vary.
    """
    torch.manual_seed(1234)
    tokenizers = {}
    for modality, kind in (("video", "video_vae"), ("audio", "audio_codec")):
        config = preset(kind, "tiny")
        model = build(kind, config)
        tokenizers[modality] = root / modality
        save_checkpoint(tokenizers[modality], Checkpoint(kind, config_to_dict(config), model.state_dict(), {}))
    config = preset("world_model", "tiny")
    config = dataclasses.replace(config, net=dataclasses.replace(config.net, audio_latent=(8, 20)))
    model = build("world_model", config)
    generator = torch.Generator().manual_seed(99)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    meta = {
        "latent": {"video": {"mean": 0.1, "std": 1.3}, "audio": {"mean": -0.05, "std": 0.7}},
        "rgb_shape": [64, 64, 3],
        "audio_shape": [2, 4000],
        "sample_rate": 16000,
        "sim": dataclasses.asdict(SimConfig()),
        "data": {"windows": 123},
        "acoustics_version": ACOUSTICS_VERSION,
    }
    path = root / "world"
    attachments = {f"tokenizers/{m}": p for m, p in tokenizers.items()}
    save_checkpoint(path, Checkpoint("world_model", config_to_dict(config), model.state_dict(), meta, attachments=attachments))
    return path


def contexts(batch: int) -> dict[str, np.ndarray]:
    """Fixed real-looking contexts: ``rgb`` uint8 (batch, k, 64, 64, 3), ``audio`` float32 (batch, k, 2, 4000)."""
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, (batch, CONTEXT_STEPS, 64, 64, 3), dtype=np.uint8)
    audio = (0.1 * rng.standard_normal((batch, CONTEXT_STEPS, 2, 4000))).astype(np.float32)
    return {"rgb": rgb, "audio": audio}


def dream_numbers(checkpoint: Path) -> dict[str, Any]:
    env = gym.make("avworld/Dream-v0", checkpoint=str(checkpoint), sensors=("rgb", "audio", "spectrogram"), sampler_steps=2)
    context = {k: v[0] for k, v in contexts(1).items()}
    obs, _ = env.reset(seed=5, options={"context": context})
    out: dict[str, Any] = {"reset": _obs(obs), "steps": []}
    for a in ACTIONS:
        obs, reward, terminated, truncated, info = env.step(a)
        out["steps"].append([_obs(obs), reward, terminated, truncated, info["termination_prob"]])
    env.close()
    return out


def latent_dream_numbers(checkpoint: Path) -> dict[str, Any]:
    env = gym.make("avworld/Dream-v0", checkpoint=str(checkpoint), latent=True, sampler_steps=3, termination="model")
    context = {k: v[1] for k, v in contexts(2).items()}
    obs, _ = env.reset(seed=11, options={"context": context})
    out: dict[str, Any] = {"reset": _obs(obs), "steps": []}
    for a in ACTIONS[:3]:
        obs, reward, terminated, truncated, info = env.step(a)
        out["steps"].append([_obs(obs), reward, terminated, truncated, info["termination_prob"]])
    out["decoded"] = _obs(env.unwrapped.decode(obs))  # type: ignore[attr-defined]
    env.close()
    return out


def vector_numbers(checkpoint: Path) -> dict[str, Any]:
    from avworld.envs.dream_vector import DreamVectorEnv

    env = DreamVectorEnv(3, checkpoint=str(checkpoint), sensors=("rgb", "audio"), sampler_steps=2)
    obs, _ = env.reset(seed=21, options={"context": contexts(3)})
    out: dict[str, Any] = {"reset": _obs(obs), "steps": []}
    for actions in ([1, 2, 3], [3, 1, 1], [2, 2, 1]):
        obs, rewards, terminated, truncated, infos = env.step(np.array(actions))
        out["steps"].append([_obs(obs), rewards.tolist(), terminated.tolist(), truncated.tolist(), infos["termination_prob"].tolist()])
    env.close()
    return out


def _recording(choose: Any, seen: list[Any]) -> Any:
    """``choose`` that also appends its (first actions, scores) to ``seen``."""

    def wrapped(firsts: np.ndarray, scores: np.ndarray) -> int:
        seen.append([firsts.tolist(), scores.tolist()])
        return int(choose(firsts, scores))

    return wrapped


def planner_numbers(checkpoint: Path) -> dict[str, Any]:
    from avworld.models.imagination import load_world
    from avworld.policies.planner import BeamPlanner, CEMPlanner
    from avworld.policies.worlds import ImaginedWorld

    context = {k: v[0] for k, v in contexts(1).items()}
    out: dict[str, Any] = {}
    for name, make in (
        ("beam", lambda world: BeamPlanner(world=world, horizon=2, beam=2, use_value=False, stop_reward=-1.0)),
        ("cem", lambda world: CEMPlanner(world=world, horizon=2, samples=6, elites=2, iterations=2, use_value=False, stop_reward=-1.0)),
    ):
        world = ImaginedWorld(load_world(checkpoint, "cpu"), sampler_steps=2, name=str(checkpoint))
        planner = make(world)
        seen: list[Any] = []
        planner.choose = _recording(planner.choose, seen)  # type: ignore[method-assign]
        planner.reset(None, seed=4)
        actions = [planner.act({k: v[t] for k, v in context.items()}, {}) for t in range(CONTEXT_STEPS)]
        roll = world.rollout(np.array([[1, 2], [3, 0], [2, 2]]), discount=0.9)
        out[name] = {
            "actions": actions,
            "choices": seen,
            "returns": roll.returns.tolist(),
            "observed": _obs(world.observations(roll.state)),
        }
    return out


NEW_METRICS = ("sharpness", "direction")


def prediction_numbers(checkpoint: Path) -> dict[str, Any]:
    from avworld.eval.prediction import WorldPredictor, evaluate_prediction
    from avworld.models.imagination import Imagination

    rng = np.random.default_rng(3)
    span, windows = 4 + 4, []
    for _ in range(3):
        windows.append(
            {
                "rgb": torch.from_numpy(rng.integers(0, 256, (span, 64, 64, 3), dtype=np.uint8)),
                "audio": torch.from_numpy((0.1 * rng.standard_normal((span, 2, 4000))).astype(np.float32)),
                "actions": torch.from_numpy(rng.integers(0, 4, span - 1)),
                "rewards": torch.from_numpy(rng.standard_normal(span - 1).astype(np.float32)),
                "terminations": torch.from_numpy((rng.random(span - 1) < 0.3).astype(np.float32)),
            }
        )
    predictor = WorldPredictor(Imagination.load(checkpoint))
    scores = evaluate_prediction(predictor, windows, 4, (1, 2, 4), batch_size=2, sampler_steps=2, seed=8).as_dict()
    # metrics added since (sharpness, direction) are new numbers, not changed ones: the pinned ones must stay as they were
    pinned = BEFORE["prediction"]
    scores["metrics"] = {k: v for k, v in scores["metrics"].items() if k in pinned["metrics"]}
    scores["notes"] = [n for n in scores["notes"] if not n.startswith(NEW_METRICS)]
    return scores


def measure(checkpoint: Path) -> dict[str, Any]:
    return {
        "dream": dream_numbers(checkpoint),
        "latent_dream": latent_dream_numbers(checkpoint),
        "vector": vector_numbers(checkpoint),
        "planner": planner_numbers(checkpoint),
        "prediction": prediction_numbers(checkpoint),
    }


# The numbers of main at commit b801c68, before the imagination core (issue 22): recorded with AVWORLD_RECORD=1.
BEFORE: dict[str, Any] = {
    "dream": {
        "reset": {"audio": "3bbe5fa33338d058", "rgb": "601e89b0e8e53d7d", "spectrogram": "cb4db435cc519081"},
        "steps": [
            [
                {"audio": "02747fd9542f91d1", "rgb": "d43b8177074c310b", "spectrogram": "51efaea771802a5d"},
                -1.011879801750183,
                False,
                False,
                0.4815080463886261,
            ],
            [
                {"audio": "6a3b4e13bcd99030", "rgb": "b0e1cb79b78899b9", "spectrogram": "4831e8365ab8e9ab"},
                -0.9443236589431763,
                False,
                False,
                0.44173240661621094,
            ],
            [
                {"audio": "fe8ed763c4f8be60", "rgb": "7117d5f73bb40662", "spectrogram": "0cba570c0eecb556"},
                -0.9783632755279541,
                False,
                False,
                0.4922732412815094,
            ],
            [
                {"audio": "5bd56ece35fef01c", "rgb": "4becf5563973e0b9", "spectrogram": "adbc33d9dc6de04c"},
                -0.9027683734893799,
                False,
                False,
                0.5230183005332947,
            ],
            [
                {"audio": "be7e708a1e4d92ae", "rgb": "c51a79e10253de86", "spectrogram": "79b5024279fc1392"},
                -0.9171975255012512,
                True,
                False,
                0.4893275201320648,
            ],
        ],
    },
    "latent_dream": {
        "reset": {"audio": "d4d5036166c53799", "video": "c1a78f291456ce69"},
        "steps": [
            [{"audio": "e3e09809320b1e10", "video": "747ebeb7893be986"}, -0.9666874408721924, False, False, 0.4529307782649994],
            [{"audio": "70958c9918800986", "video": "c6146ac1554d1886"}, -0.9551638960838318, False, False, 0.48213595151901245],
            [{"audio": "ff6ecc1fec646441", "video": "2472a276ca6f332d"}, -0.9361247420310974, True, False, 0.5271713137626648],
        ],
        "decoded": {"audio": "54f1d6decc8c5967", "rgb": "7d0458b87e4d9add"},
    },
    "vector": {
        "reset": {"audio": "06a5dc97d0e45db6", "rgb": "f1d8b954a397eec5"},
        "steps": [
            [
                {"audio": "d40ad4d4965c89de", "rgb": "7b4d01f365f8e08c"},
                [-0.8135734796524048, -1.0157653093338013, -1.0195180177688599],
                [False, False, False],
                [False, False, False],
                [0.522842288017273, 0.42578697204589844, 0.4737718403339386],
            ],
            [
                {"audio": "041f4d4d28d18427", "rgb": "cf4e76670e4bf9be"},
                [-0.9214401245117188, -0.7912479639053345, -0.8911703824996948],
                [False, False, False],
                [False, False, False],
                [0.49788764119148254, 0.5783925652503967, 0.514877200126648],
            ],
            [
                {"audio": "8b498e90655dc3bb", "rgb": "24a76bd3ed47205f"},
                [-1.0483133792877197, -0.8278135657310486, -0.8330533504486084],
                [False, False, False],
                [False, False, False],
                [0.43007713556289673, 0.5043390989303589, 0.48592257499694824],
            ],
        ],
    },
    "planner": {
        "beam": {
            "actions": [1, 0, 0],
            "choices": [
                [[1, 1, 3], [-2.0027389585971833, -1.895671397447586, -1.9350259685516358]],
                [
                    [0, 1, 3, 1, 1],
                    [-0.9306803941726685, -1.8343164324760437, -1.8661026436090469, -1.6240513300895691, -1.7161040943861008],
                ],
                [[0, 3, 3, 3], [-0.884264349937439, -1.736531789302826, -1.7509835851192475, -1.789314980506897]],
            ],
            "returns": [-1.6985000789165499, -1.9659588873386382, -1.8763779759407044],
            "observed": {"audio": "30efd444dc252400", "rgb": "4464e68898d5fe7e"},
        },
        "cem": {
            "actions": [3, 1, 1],
            "choices": [
                [
                    [3, 3, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3],
                    [
                        -2.0040553140640256,
                        -1.8842822182178498,
                        -2.171146422624588,
                        -1.9953550398349762,
                        -1.8280181968212128,
                        -1.6303088474273681,
                        -1.5772620743513106,
                        -1.8011370944976806,
                        -1.9029787462949752,
                        -1.9750778830051423,
                        -2.0397356390953063,
                        -1.981625349521637,
                    ],
                ],
                [
                    [1, 2, 1, 2, 3, 1, 1, 1, 1, 1, 1, 1],
                    [
                        -1.72377050280571,
                        -1.9802726089954377,
                        -1.9176276755332946,
                        -2.0648920023441315,
                        -2.0426724714040754,
                        -1.8500476574897766,
                        -1.5397883671522141,
                        -1.9306465756893156,
                        -2.019864299297333,
                        -1.9137561345100402,
                        -1.7254860621690749,
                        -1.7876991879940034,
                    ],
                ],
                [
                    [3, 2, 3, 3, 1, 3, 1, 3, 1, 1, 3, 1],
                    [
                        -1.862596035003662,
                        -1.8257865703105927,
                        -1.9004530239105224,
                        -1.7658608806133271,
                        -1.8140599453449249,
                        -1.8590645629167557,
                        -1.8244852238893507,
                        -1.9735580497980116,
                        -1.8737182486057282,
                        -1.6882279229164123,
                        -1.831758869290352,
                        -1.8498348081111908,
                    ],
                ],
            ],
            "returns": [-1.73497132062912, -2.0181761384010315, -1.7322445690631867],
            "observed": {"audio": "abfed36ee3c89082", "rgb": "1e1a96dde983952c"},
        },
    },
    "prediction": {
        "horizons": [1, 2, 4],
        "windows": 3,
        "metrics": {
            "psnr": {"1": 9.58622760803088, "2": 9.530353237570463, "4": 9.60141876361214},
            "ssim": {"1": 0.011509887718906006, "2": 0.00032194238156080246, "4": 0.011029269080609083},
            "lsd": {"1": 68.73553212483723, "2": 63.39868418375651, "4": 64.52250798543294},
            "spectral_ssim": {"1": -0.011793316652377447, "2": -0.015822785596052807, "4": -0.01624007849022746},
            "ild_error_db": {"1": 4.374238650004069, "2": 4.650068283081055, "4": 4.673102696736653},
            "reward_mae": {"1": 0.8656901319821676, "2": 1.6355721652507782, "4": 1.505781860401233},
            "termination_f1": {"1": 0.0, "2": 0.0, "4": 0.0},
            "av_lag_error": {"4": 1.6666666666666667},
            "av_corr_error": {"4": 0.7303701440493265},
        },
        "notes": [],
    },
}


@pytest.fixture(scope="module")
def numbers(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> dict[str, Any]:
    measured = measure(build_world(tmp_path_factory.mktemp("pinned")))
    if os.environ.get("AVWORLD_RECORD"):
        print(json.dumps(measured))
    return json.loads(json.dumps(measured))  # tuples → lists, as BEFORE holds them


@pytest.mark.parametrize("path", ["dream", "latent_dream", "vector", "planner", "prediction"])
def test_imagination_numbers_are_unchanged(numbers: dict[str, Any], path: str) -> None:
    assert numbers[path] == BEFORE[path]


def test_one_device_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """``choose_device`` is where imagination, training and the benchmarks pick their device."""
    from avworld.models.imagination import choose_device

    assert choose_device("cpu") == torch.device("cpu") and choose_device("cuda:3") == torch.device("cuda", 3)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_device() == choose_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")  # torchrun's second process on this node
    assert choose_device("auto") == torch.device("cuda", 1)
    monkeypatch.delenv("LOCAL_RANK")
    assert choose_device(None) == torch.device("cuda", 0)


def test_context_noise_is_a_setting_of_the_imagination(world_checkpoint: str, one_thread: None) -> None:
    """``Imagination.ctx_noise`` reaches every imagined step (the sampler noises the context, seeded like its own noise)."""
    world = Imagination.load(world_checkpoint)
    context = {m: torch.randn(2, world.context, *shape) for m, shape in world.latent_shapes().items()}
    action = torch.tensor([0, 1])

    def predict(level: float) -> torch.Tensor:
        world.ctx_noise = level
        return world.predict(context, action, steps=1, generator=torch.Generator().manual_seed(0))["video"]

    clean, noised = predict(0.0), predict(0.3)
    assert torch.equal(clean, predict(0.0)) and torch.equal(noised, predict(0.3)) and not torch.allclose(clean, noised)
    with pytest.raises(ValueError, match=r"ctx_noise must lie in \[0, 1\)"):
        Imagination(world.model, world.tokenizers, world.meta, ctx_noise=1.0)
    with pytest.raises(ValueError, match=r"ctx_noise must lie in \[0, 1\), got -0.1"):
        world.ctx_noise = -0.1  # refused when set, before any step
