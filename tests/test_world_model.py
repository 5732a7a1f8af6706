"""Staged world-model training on latents: the latent cache, the windows, the three stages and their frozen groups, the CLI."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from avworld.data.collect import CollectConfig
from avworld.data.storage import DataRef
from avworld.data.windows import WindowConfig, WindowDataset
from avworld.models.checkpoint import CheckpointError, load_checkpoint
from avworld.models.imagination import Imagination
from avworld.models.registry import encode, load_model
from avworld.sim.backends.base import Action
from avworld.train.trainer import TrainConfig
from avworld.train.world_model import (
    FROZEN,
    LatentWindows,
    TokenizerRefs,
    WorldModelJob,
    latent_cache,
    stage_dir,
    stage_steps,
    train_world_model,
    world_model_config,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def job(collection: CollectConfig, tokenizers: dict[str, str] | None, stage: str, variant: str = "full", steps: int = 3) -> WorldModelJob:
    return WorldModelJob(
        model="tiny",
        stage=stage,
        variant=variant,
        tokenizers=TokenizerRefs(**(tokenizers or {})),
        data=DataRef(root=collection.root, name=collection.name),
        train=TrainConfig(steps=steps, batch_size=4, warmup=1, checkpoint_every=steps, device="cpu", lr=1e-2),
    )


def weights_by_group(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    model, ckpt = load_model(path, "world_model")
    groups = model.net.parameter_groups()  # type: ignore[operator, union-attr]
    return {g: {n: ckpt.weights[f"net.{n}"] for n in names} for g, names in groups.items()}


def changed(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(a[n], b[n]) for n in a)


def test_latent_cache_and_windows(collection: CollectConfig, tokenizer_checkpoints: dict[str, str]) -> None:
    data = DataRef(root=collection.root, name=collection.name).load()
    tok, _ = load_model(tokenizer_checkpoints["video"], "video_vae")
    z = latent_cache(data, "video", tok, Path(tokenizer_checkpoints["video"]), torch.device("cpu"))
    assert z.shape[0] == len(data.arrays["rgb"]) and isinstance(z, np.memmap)
    direct = encode(tok, "video_vae", torch.from_numpy(np.array(data.arrays["rgb"][5:7])))
    assert torch.allclose(torch.from_numpy(np.array(z[5:7])), direct, atol=1e-5)
    again = latent_cache(data, "video", tok, Path(tokenizer_checkpoints["video"]), torch.device("cpu"))  # cached: same file
    assert again.filename == z.filename
    stats = {"video": (0.5, 2.0)}
    windows = LatentWindows(data, {"video": z}, stats, WindowConfig(context=3, horizon=1, split="train"))
    item = windows[0]
    o, t = int(windows.windows.obs_index[0]), int(windows.windows.step_index[0])
    assert item["ctx_video"].shape == (3, *z.shape[1:]) and item["video"].shape == z.shape[1:]
    assert torch.allclose(item["video"], (torch.from_numpy(np.array(z[o + 3])) - 0.5) / 2.0)
    assert int(item["action"]) == int(data.arrays["actions"][t + 2])  # the action from the last context step to the target
    with pytest.raises(ValueError, match="horizon"):
        LatentWindows(data, {"video": z}, stats, WindowConfig(context=3, horizon=2))


def test_counterfactual_stop_windows(collection: CollectConfig, tokenizer_checkpoints: dict[str, str]) -> None:
    """STOP's outcome at every window's last context step, from the recorded geodesic distance: −0.01, +10 within reach."""
    data = DataRef(root=collection.root, name=collection.name).load()
    tok, _ = load_model(tokenizer_checkpoints["video"], "video_vae")
    z = latent_cache(data, "video", tok, Path(tokenizer_checkpoints["video"]), torch.device("cpu"))
    config = WindowConfig(context=3, horizon=1, split="train")
    real = LatentWindows(data, {"video": z}, {"video": (0.0, 1.0)}, config)
    geodesic = data.arrays["geodesic_distance"]
    reach = float(np.median([geodesic[o + 2] for o in real.windows.obs_index]))  # half the windows within reach of the source
    windows = LatentWindows(data, {"video": z}, {"video": (0.0, 1.0)}, config, stop_windows=0.5, success_distance=reach)
    n = len(real)
    assert real.stops == 0 and windows.stops == round(n / 2) and len(windows) == n + windows.stops
    assert all(float(windows[i]["observed"]) == 1.0 for i in (0, n - 1))  # the real windows come first, unchanged
    rewards = []
    for j in range(windows.stops):
        item = windows[n + j]
        k = j * n // windows.stops  # spread over the real windows
        o = int(windows.windows.obs_index[k])
        assert int(item["action"]) == Action.STOP and float(item["termination"]) == 1.0 and float(item["observed"]) == 0.0
        assert torch.equal(item["ctx_video"], real[k]["ctx_video"])
        assert float(item["reward"]) == pytest.approx(9.99 if geodesic[o + 2] <= reach else -0.01)
        rewards.append(float(item["reward"]))
    assert min(rewards) == pytest.approx(-0.01) and max(rewards) == pytest.approx(9.99)  # both outcomes occur
    with pytest.raises(ValueError, match="stop_windows"):
        LatentWindows(data, {"video": z}, {"video": (0.0, 1.0)}, config, stop_windows=-1)


def test_stop_windows_near_the_source_get_their_share(collection: CollectConfig, tokenizer_checkpoints: dict[str, str]) -> None:
    """``stop_near`` of the STOP windows come from windows within reach (each STOP there succeeds), the rest from all."""
    data = DataRef(root=collection.root, name=collection.name).load()
    tok, _ = load_model(tokenizer_checkpoints["video"], "video_vae")
    z = latent_cache(data, "video", tok, Path(tokenizer_checkpoints["video"]), torch.device("cpu"))
    config, stats = WindowConfig(context=3, horizon=1, split="train"), {"video": (0.0, 1.0)}
    geodesic = data.arrays["geodesic_distance"]
    last = LatentWindows(data, {"video": z}, stats, config).windows.obs_index + 2
    reach = float(np.quantile(geodesic[last], 0.1))  # a tenth of the windows within reach
    windows = LatentWindows(data, {"video": z}, stats, config, stop_windows=0.4, success_distance=reach, stop_near=0.5)
    n, near = len(windows.windows), windows.stops_near
    assert near == round(0.5 * windows.stops) > 0
    rewards = np.array([float(windows[n + j]["reward"]) for j in range(windows.stops)])
    assert np.allclose(rewards[:near], 9.99)  # all of the near share succeed
    spread = rewards[near:]
    assert np.isclose(spread, -0.01).mean() > 0.8  # the rest: mostly away from the source, as the data
    assert len(set(windows.stop_sources[:near].tolist())) == (geodesic[last] <= reach).sum()  # every near window is used
    nowhere = LatentWindows(data, {"video": z}, stats, config, stop_windows=0.4, success_distance=-1.0, stop_near=0.5)
    assert nowhere.stops_near == 0 and nowhere.stops == windows.stops  # none within reach: all spread over all windows
    with pytest.raises(ValueError, match="stop_near"):
        LatentWindows(data, {"video": z}, stats, config, stop_windows=0.4, stop_near=1.5)


def test_three_stages_freeze_what_the_paper_freezes(
    collection: CollectConfig, tokenizer_checkpoints: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    train_world_model(job(collection, tokenizer_checkpoints, "1"), out, progress=False)
    train_world_model(job(collection, None, "2"), out, progress=False)  # tokenizers come from stage 1's checkpoint
    train_world_model(job(collection, None, "3"), out, progress=False)
    s1, s2, s3 = (weights_by_group(stage_dir(out, s) / "checkpoint") for s in "123")
    assert FROZEN["2"] == ("shared", "video")
    assert not changed(s1["shared"], s2["shared"]) and not changed(s1["video"], s2["video"])  # bit-identical through stage 2
    assert changed(s1["audio"], s2["audio"]) and changed(s1["heads"], s2["heads"])
    assert all(changed(s2[g], s3[g]) for g in ("shared", "video", "audio", "heads"))
    meta = load_checkpoint(stage_dir(out, "3") / "checkpoint").meta
    assert [s["stage"] for s in meta["stages"]] == ["1", "2", "3"] and meta["stages"][1]["frozen"] == ["shared", "video"]
    assert meta["train_seconds"] > 0 and meta["latent"]["audio"]["std"] > 0
    world = Imagination.load(stage_dir(out, "3") / "checkpoint")  # self-contained: tokenizers inside
    assert world.modalities == ("video", "audio")


def test_stage_one_trains_video_only(collection: CollectConfig, tokenizer_checkpoints: dict[str, str], tmp_path: Path) -> None:
    import avworld.train.world_model as wm

    train_world_model(job(collection, tokenizer_checkpoints, "1"), tmp_path, progress=False)
    torch.manual_seed(0)  # train_world_model seeds train.seed = 0 before building the model
    fresh = wm.build("world_model", load_checkpoint(stage_dir(tmp_path, "1") / "checkpoint").config)
    trained = weights_by_group(stage_dir(tmp_path, "1") / "checkpoint")
    initial = {n: p for n, p in fresh.net.named_parameters()}  # type: ignore[union-attr]
    assert not changed(trained["audio"], {n: initial[n].detach() for n in trained["audio"]})  # audio untouched in stage 1
    assert changed(trained["video"], {n: initial[n].detach() for n in trained["video"]})


def test_stage_order_and_variants_are_checked(collection: CollectConfig, tokenizer_checkpoints: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="previous stage"):
        train_world_model(job(collection, tokenizer_checkpoints, "2"), tmp_path, progress=False)
    with pytest.raises(ValueError, match="stage=joint"):
        train_world_model(job(collection, tokenizer_checkpoints, "1", variant="audio_only"), tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"tokenizers\.audio"):
        train_world_model(job(collection, {"video": tokenizer_checkpoints["video"]}, "joint"), tmp_path, progress=False)
    with pytest.raises(ValueError, match="stage must be one of"):
        job(collection, None, "4")
    with pytest.raises(CheckpointError, match="'video_vae' checkpoint, expected 'audio_codec'"):
        swapped = {"video": tokenizer_checkpoints["video"], "audio": tokenizer_checkpoints["video"]}
        train_world_model(job(collection, swapped, "joint"), tmp_path, progress=False)


def test_no_experts_and_unimodal_variants(collection: CollectConfig, tokenizer_checkpoints: dict[str, str], tmp_path: Path) -> None:
    train_world_model(job(collection, tokenizer_checkpoints, "joint", "no_experts", steps=1), tmp_path / "a", progress=False)
    model, _ = load_model(stage_dir(tmp_path / "a", "joint") / "checkpoint", "world_model")
    assert not model.net.config.experts and model.net.blocks[0].ffn.keys() == {"shared"}  # type: ignore[union-attr]
    train_world_model(job(collection, {"audio": tokenizer_checkpoints["audio"]}, "joint", "audio_only", 1), tmp_path / "b", progress=False)
    world = Imagination.load(stage_dir(tmp_path / "b", "joint") / "checkpoint")
    assert world.modalities == ("audio",) and set(world.tokenizers) == {"audio"}


def test_a_world_model_trains_on_collections_read_together(
    collection: CollectConfig, tokenizer_checkpoints: dict[str, str], tmp_path: Path
) -> None:
    import shutil

    for name in ("tiny", "again"):  # the session's collection twice, under two names (e.g. expert data and an agent's walks)
        shutil.copytree(Path(collection.root) / "avworld" / "tiny-v0", tmp_path / "data" / "avworld" / f"{name}-v0")
    data_ref = DataRef(root=str(tmp_path / "data"), name="tiny", also=["again"])
    both = dataclasses.replace(job(collection, tokenizer_checkpoints, "joint", steps=1), data=data_ref)
    train_world_model(both, tmp_path / "run", progress=False)
    ckpt = load_checkpoint(stage_dir(tmp_path / "run", "joint") / "checkpoint")
    meta, data = ckpt.meta, ckpt.meta["data"]
    alone = len(WindowDataset(DataRef(root=collection.root, name="tiny").load(), WindowConfig(context=ckpt.config["net"]["context"])))
    assert [(c["name"], c["windows"]) for c in data["collections"]] == [("tiny", alone), ("again", alone)] and data["windows"] == 2 * alone
    assert data["collections"][0]["recipe"] == data["collections"][1]["recipe"] == data["recipe"]  # one recipe collected twice
    assert meta["provenance"]["data_seeds"]["also"][0]["name"] == "tiny"  # the copy's recorded seeds: it was collected as tiny
    assert meta["stages"][-1]["data"]["collections"] == data["collections"]
    flat = data_ref.load()  # the latents of the whole: each collection's own cache (kept for later jobs), joined
    for modality in ("video", "audio"):
        [whole] = flat.path.glob(f"latents-{modality}-*.npy")
        pieces = [np.load(next(part.path.glob(f"latents-{modality}-*.npy"))) for part in flat.parts]
        assert len(pieces) == 2 and np.array_equal(np.load(whole), np.concatenate(pieces))


def test_loss_weights_reach_every_stage_and_unknown_terms_are_refused(
    world_checkpoint: str, collection: CollectConfig, tokenizer_checkpoints: dict[str, str]
) -> None:
    init = load_checkpoint(Path(world_checkpoint))
    later = dataclasses.replace(job(collection, None, "3"), init=world_checkpoint, loss_weights={"reward": 4.0})
    flow = world_model_config(later, init, {}).flow  # a later stage keeps its init's config, but not its loss weights
    assert (flow.reward_weight, flow.termination_weight, flow.video_weight) == (4.0, 1.0, 1.0)
    kept = world_model_config(dataclasses.replace(later, loss_weights={}), init, {}).flow
    assert kept.reward_weight == init.config["flow"]["reward_weight"]
    first = dataclasses.replace(job(collection, tokenizer_checkpoints, "joint"), loss_weights={"video": 0.5})
    tokenizers = {m: load_model(p, kind) for m, p, kind in (("video", tokenizer_checkpoints["video"], "video_vae"),
                                                              ("audio", tokenizer_checkpoints["audio"], "audio_codec"))}
    assert world_model_config(first, None, tokenizers).flow.video_weight == 0.5
    with pytest.raises(ValueError, match=r"loss_weights\.rewards: unknown loss term; known: video, audio, reward, termination"):
        dataclasses.replace(later, loss_weights={"rewards": 4.0})


@pytest.mark.parametrize("name", ["tiny", "small", "base"])
def test_presets_give_each_stage_its_steps(name: str) -> None:
    settings = OmegaConf.load(str(files("avworld.configs") / "preset" / f"{name}.yaml")).world_model
    steps = {stage: stage_steps(settings, stage) for stage in ("1", "2", "3", "joint")}
    assert steps["3"] > steps["1"] + steps["2"]  # stage 3 (joint fine-tuning) gets most of the budget (docs/training.md)
    assert steps["joint"] == steps["1"] + steps["2"] + steps["3"]  # the ablation without stages: the same number of steps
    assert stage_steps(OmegaConf.merge(settings, {"train": {"steps": 7}}), "2") == 7  # train.steps=N sets every stage
    with pytest.raises(ValueError, match=r"stage_steps\.stage2"):
        stage_steps({"train": {"steps": None}, "stage_steps": {"stage1": 1}}, "2")


def test_cli_trains_a_stage(collection: CollectConfig, tokenizer_checkpoints: dict[str, str], tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "avworld.cli", "train", "world_model", "stage=joint", "preset=tiny"]
    cmd += ["preset.world_model.stage_steps.joint=2", "preset.world_model.flow.change=[video]"]
    cmd += [f"data.root={collection.root}", f"data.name={collection.name}", f"out_dir={tmp_path}", "+preset.world_model.train.device=cpu"]
    cmd += [f"tokenizers.{m}={p}" for m, p in tokenizer_checkpoints.items()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "checkpoint:" in done.stdout and (tmp_path / "joint" / "checkpoint" / "tokenizers" / "video" / "meta.json").exists()
    assert " steps=2 " in done.stdout  # the preset's steps for this stage
    assert f"training windows: {collection.name} " in done.stdout  # each collection read, with its windows
    saved = OmegaConf.load(tmp_path / "joint" / "checkpoint" / "config.yaml")
    assert list(saved.flow.change) == ["video"]  # the preset's flow settings reach the model's config
    missing = subprocess.run([*cmd[:5], "stage=2", f"out_dir={tmp_path / 'new'}"], capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and "previous stage" in missing.stderr


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda latent: latent.pop("audio"), r"meta\.json: latent\.audio: missing"),
        (lambda latent: latent["video"].update(std=0.0), r"meta\.json: latent\.video\.std: expected a positive finite number, got 0\.0"),
        (lambda latent: latent["audio"].update(std="abc"), r"meta\.json: latent\.audio\.std: expected a positive finite number, got 'abc'"),
    ],
)
def test_world_model_meta_latent_errors_name_the_file_and_field(world_checkpoint: str, tmp_path: Path, edit: Any, message: str) -> None:
    import json
    import shutil

    path = tmp_path / "world"
    shutil.copytree(world_checkpoint, path)
    meta = json.loads((path / "meta.json").read_text())
    edit(meta["latent"])
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=message):
        Imagination.load(path)


def test_non_finite_imagined_outputs_raise(world_checkpoint: str) -> None:
    from avworld.models.checks import NonFiniteError

    world = Imagination.load(world_checkpoint)
    latents = {m: torch.zeros(1, *shape) for m, shape in world.latent_shapes().items()}
    context = {m: z.unsqueeze(1).repeat(1, world.context, *([1] * (z.dim() - 1))) for m, z in latents.items()}
    action = torch.tensor([int(Action.FORWARD)])
    assert set(world.predict(context, action, steps=1)) >= {"video", "audio", "reward"}  # finite: no error
    world.decode(latents)
    for p in world.tokenizers["audio"].parameters():
        p.data.fill_(float("nan"))
    with pytest.raises(NonFiniteError, match=r"the decoded audio: 'audio' holds NaN"):
        world.decode(latents)
    next(world.net.parameters()).data.fill_(float("nan"))
    with pytest.raises(NonFiniteError, match=r"the imagined step: '\w+' holds NaN"):
        world.predict(context, action, steps=1)


def test_gathered_batches_equal_the_collated_items(
    collection: CollectConfig, tokenizer_checkpoints: dict[str, str], tmp_path: Path
) -> None:
    """LatentWindows.gather (the trainer's batch path, GPU-resident on CUDA) gives exactly the collated items, STOP windows too."""
    from torch.utils.data import default_collate

    from avworld.train.trainer import Trainer

    data = DataRef(root=collection.root, name=collection.name).load()
    latents = {}
    for m, kind in (("video", "video_vae"), ("audio", "audio_codec")):
        tok, _ = load_model(tokenizer_checkpoints[m], kind)
        latents[m] = latent_cache(data, m, tok, Path(tokenizer_checkpoints[m]), torch.device("cpu"))
    stats = {"video": (0.5, 2.0), "audio": (-0.1, 0.7)}
    windows = LatentWindows(data, latents, stats, WindowConfig(context=3, horizon=1, split="train"), stop_windows=0.5, stop_near=0.5)
    n = len(windows)
    indices = [0, n - 1, len(windows.windows), 3, 3, len(windows.windows) - 1]  # real, STOP, the first STOP, a repeat
    gathered = windows.gather(indices)
    collated = default_collate([windows[i] for i in indices])
    assert set(gathered) == set(collated)
    for k, v in collated.items():
        assert gathered[k].dtype == v.dtype and torch.equal(gathered[k], v), k
    resident = windows.to(torch.device("cpu"), resident=True).gather(indices)  # the GPU's path: latents indexed in device memory
    assert all(torch.equal(resident[k], v) for k, v in collated.items())
    windows.to(torch.device("cpu"))

    trainer = Trainer(torch.nn.Linear(1, 1), windows, TrainConfig(batch_size=5, device="cpu"), tmp_path, lambda: ("x", {}, {}))
    g = torch.Generator().manual_seed(7)  # the trainer's draw for step 7 (seed 0)
    drawn = torch.randint(n, (5,), generator=g).tolist()
    batch = trainer.batch(7)
    expected = default_collate([windows[i] for i in drawn])
    assert all(torch.equal(batch[k], expected[k]) for k in expected)


def test_resident_frames_equal_the_frame_dataset(collection: CollectConfig) -> None:
    """The tokenizers' GPU-resident frames (here on the CPU) give the FrameDataset's items, and whole batches by gather."""
    from torch.utils.data import default_collate

    from avworld.train.tokenizers import ResidentFrames, frames

    data = DataRef(root=collection.root, name=collection.name).load()
    for kind in ("video_vae", "audio_codec"):
        source = frames(data, kind, "train", (0.9, 0.05, 0.05))
        resident = ResidentFrames(source, torch.device("cpu"))
        assert len(resident) == len(source) > 3
        indices = [0, len(source) - 1, 2, 2]
        expected = default_collate([source[i] for i in indices])
        gathered = resident.gather(indices)
        assert set(gathered) == set(expected)
        for k, v in expected.items():
            assert gathered[k].dtype == v.dtype and torch.equal(gathered[k], v)
            assert torch.equal(resident[1][k], source[1][k])
