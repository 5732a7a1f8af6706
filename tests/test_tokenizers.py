"""Tokenizers end to end: train the tiny presets on a tiny collection, save, load, evaluate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from avworld.data.collect import CollectConfig
from avworld.data.storage import DataRef
from avworld.models.checkpoint import CheckpointError
from avworld.models.registry import FIELDS, load_model, reconstruct
from avworld.train.tokenizers import TokenizerJob, frames, train_tokenizer
from avworld.train.trainer import TrainConfig


def job(collection: CollectConfig, kind: str, steps: int = 20) -> TokenizerJob:
    train = TrainConfig(steps=steps, batch_size=4, lr=1e-3, warmup=2, log_every=5, sample_every=10, checkpoint_every=10)
    return TokenizerJob(kind=kind, model="tiny", data=DataRef(root=collection.root, name=collection.name), train=train)


@pytest.mark.parametrize("kind", ["video_vae", "audio_codec"])
def test_tiny_tokenizer_trains_saves_and_loads(kind: str, collection: CollectConfig, tmp_path: Path) -> None:
    j = job(collection, kind)
    data = j.data.load()
    dataset = frames(data, kind, "train", j.data.fractions)
    batch = torch.utils.data.default_collate([dataset[i] for i in range(8)])
    logs = train_tokenizer(j, tmp_path, progress=False)
    model, ckpt = load_model(tmp_path / "checkpoint", kind)
    assert ckpt.meta["step"] == 20 and ckpt.meta["preset"] == "tiny"
    assert ckpt.meta["latent"]["std"] > 0 and ckpt.meta["data"]["audio_shape"] == [2, 4000]
    x = batch[FIELDS[kind]]
    y = reconstruct(model, kind, x)
    assert y.shape == x.shape and y.dtype == x.dtype
    again, _ = load_model(tmp_path / "checkpoint", kind)
    assert torch.equal(reconstruct(again, kind, x), y)  # save -> load -> identical outputs
    assert logs["loss"] > 0 and logs["steps"] == 20


def test_training_lowers_the_tokenizer_loss(collection: CollectConfig, tmp_path: Path) -> None:
    from avworld.models.registry import build, preset

    torch.manual_seed(0)
    j = job(collection, "video_vae")
    data = j.data.load()
    dataset = frames(data, "video_vae", "train", j.data.fractions)
    batch = torch.utils.data.default_collate([dataset[i] for i in range(8)])
    model = build("video_vae", preset("video_vae", "tiny", image_size=64))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    first = float(model(batch)[0].detach())
    for _ in range(40):
        loss, _ = model(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(model(batch)[0].detach()) < 0.7 * first


def test_train_and_eval_commands(collection: CollectConfig, tmp_path: Path) -> None:
    data = (f"data.root={collection.root}", f"data.name={collection.name}")
    train = subprocess.run(
        [sys.executable, "-m", "avworld.cli", "train", "tokenizer", "kind=audio", "preset=tiny", *data, f"out_dir={tmp_path / 'run'}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert train.returncode == 0, train.stderr
    assert (tmp_path / "run" / "checkpoint" / "model.safetensors").exists()
    checkpoint = f"checkpoint={tmp_path / 'run' / 'checkpoint'}"
    ev = subprocess.run(
        [sys.executable, "-m", "avworld.cli", "eval", "tokenizer", checkpoint, *data, "data.split=train"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ev.returncode == 0, ev.stderr
    result = json.loads(next(tmp_path.glob("outputs/*/*/tokenizer.json")).read_text())
    assert set(result["scores"]) >= {"lsd", "spectral_ssim", "ild_error_db"} and result["kind"] == "audio_codec"


def test_a_checkpoint_of_the_wrong_kind_is_refused(collection: CollectConfig, tmp_path: Path) -> None:
    train_tokenizer(job(collection, "audio_codec", steps=2), tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="'audio_codec' checkpoint, expected 'video_vae'"):
        load_model(tmp_path / "checkpoint", "video_vae")
