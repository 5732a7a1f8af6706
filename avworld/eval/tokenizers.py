"""Tokenizer quality on test scenes (``avworld eval tokenizer checkpoint=DIR``)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from avworld.eval.metrics import ild_error_db, lsd, psnr, spectral_ssim, ssim
from avworld.models.registry import FIELDS, reconstruct


@torch.no_grad()
def evaluate_tokenizer(model: nn.Module, kind: str, dataset: Dataset[dict[str, torch.Tensor]], batch_size: int = 32) -> dict[str, float]:
    """Reconstruction quality over ``dataset``: video PSNR/SSIM; audio LSD, spectral SSIM, ILD error (dB)."""
    sums: dict[str, float] = {}
    count = 0
    for batch in DataLoader(dataset, batch_size=batch_size):
        x = batch[FIELDS[kind]]
        y = reconstruct(model, kind, x)
        if kind == "video_vae":
            scores = {"psnr": psnr(y, x), "ssim": ssim(y, x)}
        else:
            scores = {"lsd": lsd(y, x), "spectral_ssim": spectral_ssim(y, x), "ild_error_db": ild_error_db(y, x)}
        for k, v in scores.items():
            sums[k] = sums.get(k, 0.0) + float(v.clamp(max=100.0).sum())
        count += len(x)
    if count == 0:
        raise ValueError("evaluation dataset is empty (no episodes in this split?)")
    return {k: v / count for k, v in sums.items()} | {"frames": float(count)}
