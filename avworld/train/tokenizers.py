"""Train the tokenizers (``avworld train tokenizer kind=video|audio preset=tiny|small|base``).

The video autoencoder learns single ``rgb`` frames, the audio codec single steps of
binaural ``audio``, both from a collection's train-split scenes; its val-split scenes are
held out for the trainer's validation passes (``val/loss``, ``val/psnr`` or ``val/ild_db``...). The checkpoint's
``meta.json`` records the data it saw (collection, shapes, sample rate) and the
latent statistics (mean and std over a sample of training frames) that the world
model uses to scale latents to unit variance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from avworld.data.storage import DataRef, FlatData
from avworld.data.windows import FrameDataset
from avworld.models.imagination import choose_device
from avworld.models.registry import FIELDS, config_to_dict, encode, preset, reconstruct
from avworld.models.registry import build as build_model
from avworld.train.trainer import TrainConfig, Trainer

STATS_SAMPLES = 64


@dataclass
class TokenizerJob:
    kind: str = "video_vae"
    model: str = "small"
    """Size preset of the model (``tiny``, ``small``, ``base``)."""
    data: DataRef = field(default_factory=DataRef)
    train: TrainConfig = field(default_factory=TrainConfig)


def frames(data: FlatData, kind: str, split: str, fractions: tuple[float, float, float]) -> FrameDataset:
    if kind not in FIELDS:
        raise ValueError(f"tokenizer kind must be one of {', '.join(FIELDS)}, got {kind!r}")
    return FrameDataset(data, FIELDS[kind], split, fractions)


class ResidentFrames(Dataset[dict[str, torch.Tensor]]):
    """A :class:`FrameDataset`'s observations read once into ``device`` memory; :meth:`gather` gives a batch by indexing there.

    On a GPU the tokenizers' training steps then read no host memory (the trainer's per-step loading costs more than a
    small autoencoder's step). Items and batches equal the wrapped dataset's, on ``device``.
    """

    def __init__(self, frames: FrameDataset, device: torch.device) -> None:
        self.field = frames.field
        self.values = torch.from_numpy(np.asarray(frames.data.arrays[frames.field])[frames.index]).to(device)  # (n, *obs)

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {self.field: self.values[i]}

    def gather(self, indices: list[int]) -> dict[str, torch.Tensor]:
        return {self.field: self.values[torch.tensor(indices, device=self.values.device)]}


def model_config(kind: str, name: str, meta: dict[str, Any]) -> Any:
    """The preset, sized to the collection's frames or steps."""
    if kind == "video_vae":
        h, w, _ = meta["rgb_shape"]
        if h != w:
            raise ValueError(f"the video autoencoder needs square frames, the collection has {h}x{w}")
        return preset(kind, name, image_size=h)
    return preset(kind, name, samples=meta["audio_shape"][1], sample_rate=int(meta["sample_rate"]))


@torch.no_grad()
def latent_stats(model: nn.Module, dataset: Dataset[dict[str, torch.Tensor]], kind: str, device: torch.device) -> dict[str, float]:
    """Mean and std of the latents of up to ``STATS_SAMPLES`` frames (first ones, deterministic)."""
    n = min(STATS_SAMPLES, len(dataset))  # type: ignore[arg-type]
    batch = next(iter(DataLoader(torch.utils.data.Subset(dataset, range(n)), batch_size=n)))[FIELDS[kind]].to(device)
    z = encode(model, kind, batch)
    return {"mean": float(z.mean()), "std": float(z.std())}


def train_tokenizer(job: TokenizerJob, out_dir: str | Path, progress: bool = True) -> dict[str, float]:
    """Train (or resume) a tokenizer into ``out_dir/checkpoint``; returns the final logs."""
    data = job.data.load()
    dataset: Dataset[dict[str, torch.Tensor]] = frames(data, job.kind, "train", job.data.fractions)
    val: Dataset[dict[str, torch.Tensor]] = frames(data, job.kind, "val", job.data.fractions)
    device = choose_device(job.train.device)
    if device.type == "cuda":
        dataset = ResidentFrames(dataset, device)  # type: ignore[arg-type]
        val = ResidentFrames(val, device)  # type: ignore[arg-type]
    config = model_config(job.kind, job.model, data.meta)
    torch.manual_seed(job.train.seed)
    model = build_model(job.kind, config)
    sample_rate = int(data.meta["sample_rate"])

    def describe() -> tuple[str, dict[str, Any], dict[str, Any]]:
        was_training = model.training
        model.eval()
        stats = latent_stats(model, dataset, job.kind, next(model.parameters()).device)
        model.train(was_training)
        meta = {
            "preset": job.model,
            "data": {
                "root": str(job.data.root),
                "name": job.data.name,
                **({"also": list(job.data.also)} if job.data.also else {}),
                "frames": len(dataset),
                **{k: data.meta[k] for k in ("sample_rate", "rgb_shape", "audio_shape", "acoustics_version")},
            },
            "latent": stats,
        }
        return job.kind, config_to_dict(config), meta

    def on_sample(model: nn.Module, batch: dict[str, torch.Tensor], writer: Any, step: int) -> None:
        x = batch[FIELDS[job.kind]][:4]
        y = reconstruct(model, job.kind, x)
        if job.kind == "video_vae":
            writer.add_images("samples/real_top_recon_bottom", torch.cat([x, y]).permute(0, 3, 1, 2), step)
        else:
            for ear, name in enumerate(("left", "right")):
                writer.add_audio(f"samples/real_{name}", x[0, ear : ear + 1].clamp(-1, 1).cpu(), step, sample_rate)
                writer.add_audio(f"samples/recon_{name}", y[0, ear : ear + 1].clamp(-1, 1).cpu(), step, sample_rate)

    trainer = Trainer(model, dataset, job.train, out_dir, describe, on_sample, val_dataset=val)
    return trainer.fit(progress=progress)
