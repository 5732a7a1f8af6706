"""Prediction evaluation: AV sync, known-answer scores on a scripted world, rollouts of real world models, the CLI."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor

from avworld.data.collect import CollectConfig
from avworld.eval.prediction import (
    AUDIO_METRICS,
    AV_METRICS,
    CopyLast,
    PredictionScores,
    Separate,
    WorldPredictor,
    audio_energy,
    av_sync,
    evaluate_prediction,
    format_table,
    motion_energy,
    varies,
)
from avworld.models.flow import WorldModel, WorldModelConfig
from avworld.models.imagination import Imagination

# -- AV sync -----------------------------------------------------------------------------------


def bump(t: Tensor, centre: float) -> Tensor:
    return torch.exp(-0.5 * (t - centre) ** 2)


def test_av_sync_finds_a_known_lag_and_its_sign() -> None:
    t = torch.arange(16.0)
    motion = torch.stack([bump(t, 6), bump(t, 9)])  # (2, 16)
    later = torch.stack([bump(t, 8), bump(t, 6)])  # audio 2 steps after the motion, then 3 steps before it
    lag, peak = av_sync(motion, 3.0 * later + 5.0, max_lag=4)  # scale and offset do not matter
    assert lag.tolist() == [2, -3]
    assert torch.all(peak > 0.9) and torch.all(peak <= 1.0 + 1e-6)  # below 1 by the overlap lost at a shift
    lag, peak = av_sync(motion, motion, max_lag=4)
    assert lag.tolist() == [0, 0] and torch.allclose(peak, torch.ones(2))
    lag, peak = av_sync(motion, -later, max_lag=4)  # quiet when the image moves: coupled just the same, sign kept
    assert lag.tolist() == [2, -3] and torch.all(peak < -0.9)


def test_av_sync_of_a_constant_sequence_is_lag_zero_peak_zero() -> None:
    motion = torch.stack([torch.zeros(8), torch.arange(8.0)])
    lag, peak = av_sync(motion, torch.ones(2, 8), max_lag=3)
    assert lag.tolist() == [0, 0] and peak.tolist() == [0.0, 0.0]
    assert varies(motion).tolist() == [False, True] and not varies(torch.ones(2, 8)).any()
    with pytest.raises(ValueError, match="max_lag"):
        av_sync(motion, motion, max_lag=8)


def test_motion_and_audio_energy_on_known_inputs() -> None:
    previous = torch.zeros(1, 4, 4, 3, dtype=torch.uint8)
    frames = torch.stack([torch.full((4, 4, 3), v, dtype=torch.uint8) for v in (51, 51, 0)])[None]  # (1, 3, 4, 4, 3)
    assert torch.allclose(motion_energy(torch.cat([previous[:, None], frames], dim=1)), torch.tensor([[0.2, 0.0, 0.2]]))
    n = torch.arange(1000.0)
    audio = torch.stack([0.5 * torch.sin(2 * math.pi * n / 50), 0.5 * torch.sin(2 * math.pi * n / 50)])  # (2, 1000), RMS 0.5/√2
    assert torch.allclose(audio_energy(audio[None, None]), torch.tensor([[math.log(0.5 / math.sqrt(2))]]), atol=1e-4)


# -- a scripted world with known answers ---------------------------------------------------------

SIZE, SAMPLES = 16, 1600  # spectral SSIM needs 11 STFT frames (hop 128)


def observe(level: Tensor) -> tuple[Tensor, Tensor]:
    """The scripted world's observations of brightness levels (...,): constant frames and a tone as loud (left ear twice the right)."""
    rgb = level.to(torch.uint8)[..., None, None, None].expand(*level.shape, SIZE, SIZE, 3)
    tone = torch.sin(2 * math.pi * torch.arange(SAMPLES) / 40) * (level[..., None] / 255.0 + 0.01)
    return rgb, torch.stack([tone, 0.5 * tone], dim=-2)


def scripted_windows(n: int, context: int, horizon: int) -> list[dict[str, Tensor]]:
    """Windows of a world whose brightness rises by 8 per unit of action; reward 0.1 · action; STOP (0) ends the episode."""
    g = torch.Generator().manual_seed(0)
    windows = []
    for i in range(n):
        actions = torch.randint(0, 4, (context + horizon - 1,), generator=g)
        level = 30.0 + 5 * i + 8 * torch.cat([torch.zeros(1), actions.cumsum(0).float()])  # (context + horizon,)
        rgb, audio = observe(level)
        windows.append({"rgb": rgb, "audio": audio, "actions": actions, "rewards": 0.1 * actions.float(), "terminations": actions == 0})
    return windows


class Oracle:
    """Knows the scripted world's rules: its rollouts are exact when it is given the real actions. Records what it was given."""

    modalities = ("video", "audio")
    context = 1
    device = torch.device("cpu")

    def __init__(self) -> None:
        self.seen: list[Tensor] = []

    def rollout(self, context: dict[str, Tensor], actions: Tensor, sampler_steps: int, generator: torch.Generator) -> dict[str, Tensor]:
        self.seen.append(actions.clone())
        level = context["rgb"][:, -1, 0, 0, 0].float()[:, None] + 8 * actions.cumsum(1).float()  # (B, T)
        rgb, audio = observe(level)
        return {"rgb": rgb, "audio": audio, "reward": 0.1 * actions.float(), "termination": (actions == 0).float()}


def test_an_oracle_scores_perfectly_copy_last_does_not_and_rollouts_get_the_real_actions() -> None:
    context, horizons = 2, (1, 2, 4)
    windows = scripted_windows(6, context, max(horizons))
    oracle = Oracle()
    best = evaluate_prediction(oracle, windows, context, horizons, batch_size=4)
    copy = evaluate_prediction(CopyLast(), windows, context, horizons, batch_size=4)
    assert torch.equal(torch.cat(oracle.seen), torch.stack([w["actions"][context - 1 :] for w in windows]))
    assert best.windows == copy.windows == 6 and best.horizons == horizons
    for h in horizons:
        assert best.metrics["psnr"][h] >= 150.0 and best.metrics["ssim"][h] == pytest.approx(1.0)  # zero error: PSNR at its floor-bound
        assert best.metrics["lsd"][h] == pytest.approx(0.0, abs=1e-3) and best.metrics["ild_error_db"][h] == pytest.approx(0.0, abs=1e-3)
        assert best.metrics["reward_mae"][h] == pytest.approx(0.0) and best.metrics["termination_f1"][h] in (1.0, None)
        assert copy.metrics["psnr"][h] < best.metrics["psnr"][h] and copy.metrics["lsd"][h] > 0.1
        assert copy.metrics["termination_f1"][h] in (0.0, None)
    assert best.metrics["av_lag_error"] == {4: 0.0} and best.metrics["av_corr_error"][4] == pytest.approx(0.0, abs=1e-6)
    assert copy.metrics["av_corr_error"][4] > 0  # copy-last has no motion and no change of loudness: peak 0
    assert copy.metrics["av_lag_error"] == {4: None}  # ... and so no lag to compare
    assert any("av_lag_error: None" in note for note in copy.notes) and not any("av_lag" in note for note in best.notes)
    assert copy.metrics["psnr"][1] > copy.metrics["psnr"][4]  # the world drifts away from the last frame
    table = format_table({"oracle": best, "copy_last": copy})
    assert "| oracle |" in table and "PSNR↑@1" in table and "PSNR↑@4" in table and "AV-Lag↓" in table


class Tinted(Oracle):
    """The oracle's rollout seen through a tokenizer with a constant error: every imagined frame 40 levels brighter."""

    def rollout(self, context: dict[str, Tensor], actions: Tensor, sampler_steps: int, generator: torch.Generator) -> dict[str, Tensor]:
        out = super().rollout(context, actions, sampler_steps, generator)
        return out | {"rgb": (out["rgb"].int() + 40).clamp(max=255).to(torch.uint8)}


def test_av_sync_reads_each_rollout_against_itself() -> None:
    context, horizons = 2, (1, 2, 4, 8)
    windows = scripted_windows(8, context, max(horizons))
    tinted = evaluate_prediction(Tinted(), windows, context, horizons, batch_size=4)
    # The jump from the real last context frame to the first imagined one is the tint, not motion: the lag is the real one.
    assert tinted.metrics["av_lag_error"] == {8: 0.0}
    assert tinted.metrics["psnr"][1] < 30.0  # ... while the frames themselves are off


class Scripted:
    """Predicts given rewards and termination probabilities, and no observations."""

    modalities: tuple[str, ...] = ()
    context = 1
    device = torch.device("cpu")

    def __init__(self, reward: Tensor, termination: Tensor) -> None:
        self.reward, self.termination = reward, termination

    def rollout(self, context: dict[str, Tensor], actions: Tensor, sampler_steps: int, generator: torch.Generator) -> dict[str, Tensor]:
        return {"reward": self.reward, "termination": self.termination}


def test_reward_mae_and_termination_f1_on_known_inputs() -> None:
    windows = scripted_windows(2, 1, 2)
    windows[0] |= {"rewards": torch.tensor([0.1, 0.2]), "terminations": torch.tensor([False, True])}
    windows[1] |= {"rewards": torch.tensor([0.0, -0.3]), "terminations": torch.tensor([False, False])}
    predictor = Scripted(torch.zeros(2, 2), torch.tensor([[0.2, 0.9], [0.7, 0.1]]))
    scores = evaluate_prediction(predictor, windows, 1, (1, 2), batch_size=2)
    assert scores.metrics["reward_mae"] == pytest.approx({1: 0.05, 2: 0.15})  # |0.1| + |0| over 2; 0.1 + 0.2 + 0 + 0.3 over 4
    assert scores.metrics["termination_f1"][1] is None  # no real end in step 1: undefined, with a note
    assert scores.metrics["termination_f1"][2] == pytest.approx(2 / 3)  # TP 1, FP 1, FN 0
    assert any("termination_f1@1" in note for note in scores.notes)
    assert all(scores.metrics[k] == {1: None, 2: None} for k in ("psnr", "ssim", *AUDIO_METRICS))
    assert all(scores.metrics[k] == {2: None} for k in AV_METRICS)


def test_bad_arguments_are_named() -> None:
    windows = scripted_windows(2, 1, 2)
    with pytest.raises(ValueError, match="horizons"):
        evaluate_prediction(CopyLast(), windows, 1, (2, 2))
    with pytest.raises(ValueError, match="horizon 4 after 1 context steps needs 5"):
        evaluate_prediction(CopyLast(), windows, 1, (1, 4))
    with pytest.raises(ValueError, match="no windows"):
        evaluate_prediction(CopyLast(), [], 1, (1,))
    with pytest.raises(ValueError, match="context"):
        evaluate_prediction(Oracle(), windows, 0, (1,))


# -- real world models ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(world_checkpoint: str) -> Imagination:
    return Imagination.load(world_checkpoint)


def unimodal(world: Imagination, modality: str) -> Imagination:
    """An untrained one-modality world model with ``world``'s tokenizer and statistics."""
    torch.manual_seed(0)
    net = dataclasses.replace(world.net.config, modalities=(modality,))
    return Imagination(WorldModel.from_config(WorldModelConfig(net=net)), {modality: world.tokenizers[modality]}, world.meta)


def test_world_model_rollouts_are_deterministic_and_scored_at_every_horizon(world: Imagination, collection: CollectConfig) -> None:
    from avworld.data.windows import WindowConfig, WindowDataset
    from avworld.train.tokenizers import DataRef

    data = DataRef(root=collection.root, name=collection.name).load()
    windows = WindowDataset(data, WindowConfig(context=world.context, horizon=4, split="train"))

    def score(seed: int) -> PredictionScores:
        return evaluate_prediction(WorldPredictor(world), windows, world.context, (1, 2, 4), 3, sampler_steps=1, seed=seed, max_windows=3)

    first = score(5)
    assert first == score(5) and first != score(6) and first.windows == 3
    for name, per in first.metrics.items():
        assert set(per) == ({4} if name in AV_METRICS else {1, 2, 4}), name
        assert name == "termination_f1" or all(v is not None and math.isfinite(v) for v in per.values()), name


def test_separate_pairs_a_video_and_an_audio_world(world: Imagination) -> None:
    video, audio = WorldPredictor(unimodal(world, "video")), WorldPredictor(unimodal(world, "audio"))
    pair = Separate(video, audio)
    assert pair.modalities == ("video", "audio") and pair.context == world.context
    h, w, _ = world.meta["rgb_shape"]
    m = world.context
    context = {"rgb": torch.zeros(2, m, h, w, 3, dtype=torch.uint8), "audio": torch.zeros(2, m, *world.meta["audio_shape"])}
    actions = torch.tensor([[1, 2, 3], [0, 1, 1]])
    both = pair.rollout(context, actions, 1, torch.Generator().manual_seed(0))
    alone = video.rollout(context, actions, 1, torch.Generator().manual_seed(0))
    assert torch.equal(both["rgb"], alone["rgb"]) and torch.equal(both["reward"], alone["reward"])  # the video model comes first
    assert both["audio"].shape == (2, 3, *world.meta["audio_shape"]) and both["termination"].shape == (2, 3)
    assert set(alone) == {"rgb", "reward", "termination"}
    with pytest.raises(ValueError, match="audio predictor"):
        Separate(video, video)


# -- the command ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def unimodal_checkpoints(world_checkpoint: str, collection: CollectConfig, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Tiny video-only and audio-only world models trained for one step: {variant: checkpoint dir}."""
    from avworld.train.tokenizers import DataRef
    from avworld.train.trainer import TrainConfig
    from avworld.train.world_model import TokenizerRefs, WorldModelJob, stage_dir, train_world_model

    tokenizers = TokenizerRefs(**{m: f"{world_checkpoint}/tokenizers/{m}" for m in ("video", "audio")})
    paths = {}
    for variant in ("video_only", "audio_only"):
        out = tmp_path_factory.mktemp(variant)
        job = WorldModelJob(
            model="tiny",
            stage="joint",
            variant=variant,
            tokenizers=tokenizers,
            data=DataRef(root=collection.root, name=collection.name),
            train=TrainConfig(steps=1, batch_size=2, warmup=1, checkpoint_every=1, device="cpu"),
        )
        train_world_model(job, out, progress=False)
        paths[variant] = str(stage_dir(out, "joint") / "checkpoint")
    return paths


def test_cli_eval_model_writes_prediction_json(
    world_checkpoint: str, unimodal_checkpoints: dict[str, str], collection: CollectConfig, tmp_path: Path
) -> None:
    args = [
        "eval",
        "world_model",
        f"checkpoint={world_checkpoint}",
        f"baselines.joint={world_checkpoint}",
        *(f"baselines.{k}={v}" for k, v in unimodal_checkpoints.items()),
        f"data.root={collection.root}",
        f"data.name={collection.name}",
        "data.split=train",
        "eval_model.horizons=[1,2]",
        "eval_model.windows=4",
        "eval_model.sampler_steps=1",
        f"hydra.run.dir={tmp_path}",
    ]
    proc = subprocess.run([sys.executable, "-m", "avworld.cli", *args], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "prediction.json").read_text())
    assert set(result["models"]) == {"av_cdit", "copy_last", "separate", "joint"}
    assert result["data"]["split"] == "train" and result["data"]["evaluated"] == 4
    assert set(result["models"]["av_cdit"]["metrics"]["psnr"]) == {"1", "2"}
    assert result["models"]["av_cdit"]["about"].startswith("tiny full, stage joint")
    assert result["models"]["separate"]["about"].startswith("video: tiny video_only")
    assert all(f"| {name} |" in result["table"] for name in result["models"]) and "| av_cdit |" in proc.stdout
    too_far = [a for a in args if not a.startswith(("baselines", "eval_model.horizons"))] + ["eval_model.horizons=[40]"]
    proc = subprocess.run([sys.executable, "-m", "avworld.cli", *too_far], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "no windows in split 'train'" in proc.stderr and "horizon 40" in proc.stderr
