"""Prediction evaluation: AV sync, known-answer scores on a scripted world, rollouts of real world models, the CLI."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import Tensor

from avworld.data.collect import CollectConfig
from avworld.eval.metrics import band_ild_db, direction_cues, gradient_energy, sharpness
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


# -- sharpness and direction -------------------------------------------------------------------


def blurred(frames: Tensor) -> Tensor:
    """A 3 × 3 box blur of uint8 frames (B, H, W, 3)."""
    x = frames.movedim(-1, 1).float()
    x = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    return x.round().to(torch.uint8).movedim(1, -1)


def test_sharpness_is_one_for_a_copy_and_below_one_for_a_blurred_copy() -> None:
    frames = torch.randint(0, 256, (4, 16, 16, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    assert sharpness(frames, frames).item() == pytest.approx(1.0)
    assert sharpness(blurred(frames), frames).item() < 0.5
    assert sharpness(frames, blurred(frames)).item() > 2.0  # noise is sharper than the real: above 1
    stripes = torch.zeros(1, 4, 6, 3)
    stripes[:, :, ::2] = 1.0  # columns alternate 1, 0: every x difference is ±1, every y difference 0
    assert gradient_energy(stripes).item() == pytest.approx(1.0) and gradient_energy(stripes.transpose(1, 2)).item() == pytest.approx(1.0)
    assert gradient_energy(torch.full((2, 8, 8, 3), 77, dtype=torch.uint8)).tolist() == [0.0, 0.0]
    assert math.isnan(sharpness(frames, torch.zeros_like(frames)).item())  # flat real frames: nothing to compare with


FS = 16000


def tone(freq: float, left: float, right: float, n: int = 4000) -> Tensor:
    """A (2, n) sine at ``freq`` Hz with the given ear gains."""
    wave = torch.sin(2 * math.pi * freq * torch.arange(n) / FS)
    return torch.stack([left * wave, right * wave])


def test_band_ild_is_the_real_worlds_measure_and_reads_only_the_band() -> None:
    from avworld.eval.sound import band_level_difference

    audio = torch.randn(5, 2, 4000, generator=torch.Generator().manual_seed(1)) * torch.tensor([1.0, 0.3])[:, None]
    assert torch.allclose(band_ild_db(audio, FS), torch.from_numpy(band_level_difference(audio.double().numpy(), FS)), atol=1e-9)
    assert torch.allclose(band_ild_db(audio, FS), torch.from_numpy(band_level_difference(audio.numpy(), FS)).double(), atol=1e-4)
    assert band_ild_db(tone(3000, 2.0, 1.0)[None], FS).item() == pytest.approx(20 * math.log10(2), abs=0.01)
    low_left_high_right = tone(500, 1.0, 0.1) + tone(3000, 0.2, 0.4)  # broadband louder on the left, the band on the right
    assert band_ild_db(low_left_high_right[None], FS).item() == pytest.approx(-20 * math.log10(2), abs=0.05)


def test_direction_counts_clear_steps_and_swapped_ears_disagree() -> None:
    real = torch.stack([tone(3000, 1.0, 0.5), tone(2000, 0.3, 1.0), tone(4000, 1.0, 0.95)])  # +6 dB, −10.5 dB, +0.4 dB
    clear, agree = direction_cues(real, real, FS)
    assert clear.tolist() == [True, True, False] and agree.tolist() == [True, True, False]
    clear, agree = direction_cues(real.flip(1), real, FS)  # left and right ears swapped
    assert clear.tolist() == [True, True, False] and not agree.any()


# -- a scripted world with known answers ---------------------------------------------------------

SIZE, SAMPLES = 16, 1600  # spectral SSIM needs 11 STFT frames (hop 128)
SCRIPTED_FS = 100_000  # the tone's period of 40 samples is 2.5 kHz: inside the direction cue's band


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
    best = evaluate_prediction(oracle, windows, context, horizons, batch_size=4, sample_rate=SCRIPTED_FS)
    copy = evaluate_prediction(CopyLast(), windows, context, horizons, batch_size=4, sample_rate=SCRIPTED_FS)
    assert torch.equal(torch.cat(oracle.seen), torch.stack([w["actions"][context - 1 :] for w in windows]))
    assert best.windows == copy.windows == 6 and best.horizons == horizons
    for h in horizons:
        assert best.metrics["psnr"][h] >= 150.0 and best.metrics["ssim"][h] == pytest.approx(1.0)  # zero error: PSNR at its floor-bound
        assert best.metrics["lsd"][h] == pytest.approx(0.0, abs=1e-3) and best.metrics["ild_error_db"][h] == pytest.approx(0.0, abs=1e-3)
        assert best.metrics["reward_mae"][h] == pytest.approx(0.0) and best.metrics["termination_f1"][h] in (1.0, None)
        assert copy.metrics["psnr"][h] < best.metrics["psnr"][h] and copy.metrics["lsd"][h] > 0.1
        assert copy.metrics["termination_f1"][h] in (0.0, None)
        assert best.metrics["direction"][h] == copy.metrics["direction"][h] == 1.0  # the left ear is always 6 dB louder
        assert best.metrics["direction_steps"][h] == 6 and best.metrics["sharpness"][h] is None  # flat frames: no sharpness
    assert any(note.startswith("sharpness@1,2,4: None") for note in best.notes)
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


def textured_windows(n: int, context: int, horizon: int) -> list[dict[str, Tensor]]:
    """Windows of random frames and in-band tones heard from a random side, 6 dB louder at one ear, or 1 dB (not clear)."""
    g = torch.Generator().manual_seed(3)
    steps = context + horizon
    windows = []
    for _ in range(n):
        rgb = torch.randint(0, 256, (steps, SIZE, SIZE, 3), generator=g, dtype=torch.uint8)
        side = torch.randint(0, 2, (steps,), generator=g).float() * 2 - 1  # +1: left louder
        weak = 10 ** (-torch.where(torch.rand(steps, generator=g) < 0.25, 1.0, 6.0) / 20)
        gains = torch.stack([torch.where(side > 0, 1.0, weak), torch.where(side > 0, weak, 1.0)], dim=1)  # (steps, 2)
        audio = torch.sin(2 * math.pi * torch.arange(SAMPLES) / 40) * gains[..., None]  # (steps, 2, SAMPLES)
        actions = torch.randint(0, 4, (steps - 1,), generator=g)
        windows.append({"rgb": rgb, "audio": audio, "actions": actions, "rewards": torch.zeros(steps - 1), "terminations": actions < 0})
    return windows


class Replay(Oracle):
    """Imagines the real future of ``windows`` (served in order, batch after batch) through ``change`` (blur, swapped ears)."""

    def __init__(self, windows: list[dict[str, Tensor]], context: int, change: Callable[[dict[str, Tensor]], dict[str, Tensor]]) -> None:
        super().__init__()
        self.windows, self.start, self.change, self.served = windows, context, change, 0

    def rollout(self, context: dict[str, Tensor], actions: Tensor, sampler_steps: int, generator: torch.Generator) -> dict[str, Tensor]:
        b, t = actions.shape
        batch = self.windows[self.served : self.served + b]
        self.served += b
        future = {k: torch.stack([w[k][self.start : self.start + t] for w in batch]) for k in ("rgb", "audio")}
        return self.change(future) | {"reward": torch.zeros(b, t), "termination": torch.zeros(b, t)}


def test_sharpness_and_direction_of_known_changes_at_every_horizon() -> None:
    context, horizons = 1, (1, 2, 4)
    windows = textured_windows(8, context, max(horizons))

    def score(change: Callable[[dict[str, Tensor]], dict[str, Tensor]]) -> PredictionScores:
        return evaluate_prediction(Replay(windows, context, change), windows, context, horizons, batch_size=3, sample_rate=SCRIPTED_FS)

    same = score(lambda f: f)
    blur = score(lambda f: f | {"rgb": blurred(f["rgb"].flatten(0, 1)).view_as(f["rgb"])})
    swapped = score(lambda f: f | {"audio": f["audio"].flip(2)})
    for h in horizons:
        clear = sum(abs(band_ild_db(w["audio"][context + h - 1][None], SCRIPTED_FS).item()) > 2 for w in windows)
        assert 0 < clear < 8 and same.metrics["direction_steps"][h] == swapped.metrics["direction_steps"][h] == clear
        assert same.metrics["sharpness"][h] == pytest.approx(1.0) and blur.metrics["sharpness"][h] < 0.5
        assert same.metrics["direction"][h] == 1.0 and swapped.metrics["direction"][h] == 0.0
        assert swapped.metrics["sharpness"][h] == pytest.approx(1.0) and blur.metrics["direction"][h] == 1.0
    copy = evaluate_prediction(CopyLast(), windows, context, horizons, sample_rate=SCRIPTED_FS)
    assert all(0.0 <= copy.metrics["direction"][h] <= 1.0 for h in horizons)  # type: ignore[operator]
    assert all(copy.metrics["sharpness"][h] == pytest.approx(1.0, abs=0.1) for h in horizons)  # another random frame: as sharp
    table = format_table({"replay": same, "blurred": blur, "copy_last": copy})
    assert "sharp→1@1" in table and "dir↑@4" in table and "dir steps@1" in table
    unknown_rate = evaluate_prediction(CopyLast(), windows, context, horizons)
    assert unknown_rate.metrics["direction"] == {1: None, 2: None, 4: None} and any("no sample_rate" in n for n in unknown_rate.notes)


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
    from avworld.data.storage import DataRef
    from avworld.data.windows import WindowConfig, WindowDataset

    data = DataRef(root=collection.root, name=collection.name).load()
    windows = WindowDataset(data, WindowConfig(context=world.context, horizon=4, split="train"))

    def score(seed: int) -> PredictionScores:
        fs = world.meta["sample_rate"]
        return evaluate_prediction(
            WorldPredictor(world), windows, world.context, (1, 2, 4), 3, sampler_steps=1, seed=seed, max_windows=3, sample_rate=fs
        )

    first = score(5)
    assert first == score(5) and first != score(6) and first.windows == 3
    for name, per in first.metrics.items():
        assert set(per) == ({4} if name in AV_METRICS else {1, 2, 4}), name
        maybe_none = ("termination_f1", "direction")  # direction: None when no real step has a clear band ILD
        assert name in maybe_none or all(v is not None and math.isfinite(v) for v in per.values()), name


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
    from avworld.data.storage import DataRef
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
        "eval_model.ranking=3",
        f"hydra.run.dir={tmp_path}",
    ]
    proc = subprocess.run([sys.executable, "-m", "avworld.cli", *args], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "prediction.json").read_text())
    assert set(result["ranking"]) == {"av_cdit", "joint"}  # the action ranking of the models imagining both modalities
    assert result["ranking"]["av_cdit"]["windows"] == 3 and result["ranking"]["av_cdit"]["depth"] == 2
    assert "best move↑" in result["table"]
    assert set(result["models"]) == {"av_cdit", "copy_last", "separate", "joint"}
    assert result["data"]["split"] == "train" and result["data"]["evaluated"] == 4
    assert set(result["models"]["av_cdit"]["metrics"]["psnr"]) == {"1", "2"}
    for name in ("av_cdit", "copy_last", "separate", "joint"):
        metrics = result["models"][name]["metrics"]
        assert all(metrics["sharpness"][h] > 0 and isinstance(metrics["direction_steps"][h], int) for h in ("1", "2")), name
    assert result["models"]["av_cdit"]["about"].startswith("tiny full, stage joint")
    assert result["models"]["separate"]["about"].startswith("video: tiny video_only")
    assert all(f"| {name} |" in result["table"] for name in result["models"]) and "| av_cdit |" in proc.stdout
    too_far = [a for a in args if not a.startswith(("baselines", "eval_model.horizons"))] + ["eval_model.horizons=[40]"]
    proc = subprocess.run([sys.executable, "-m", "avworld.cli", *too_far], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "no windows in split 'train'" in proc.stderr and "horizon 40" in proc.stderr
