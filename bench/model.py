"""``avworld bench model``: AV-CDiT parameters, training samples/s and imagined steps/s per preset.

Inputs are random latents of the default shapes (video 4×8×8 per frame for 64×64
frames, audio 16×20 per step, m = 4 context steps): speed does not depend on values.
"""

from __future__ import annotations

import os
import platform
import time
from typing import Any

import torch

from avworld.models.av_cdit import AV_CDIT_PRESETS, AVCDiT, count_parameters
from avworld.models.flow import FlowConfig, WorldModel, sample


def _batch(net: AVCDiT, b: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    c = net.config
    vc, vh, vw = c.video_latent
    ac, an = c.audio_latent
    return {
        "ctx_video": torch.randn(b, c.context, vc, vh, vw, generator=g),
        "ctx_audio": torch.randn(b, c.context, ac, an, generator=g),
        "video": torch.randn(b, vc, vh, vw, generator=g),
        "audio": torch.randn(b, ac, an, generator=g),
        "action": torch.randint(0, c.actions, (b,), generator=g),
        "reward": torch.randn(b, generator=g),
        "termination": torch.zeros(b),
    }


def _time(fn: Any, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def _figures(
    name: str, train_batch: int, batches: tuple[int, ...], sampler_steps: int, repeats: int, device: torch.device
) -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    config = AV_CDIT_PRESETS[name]
    net = AVCDiT(config).to(device)
    model = WorldModel(net, FlowConfig())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = {k: v.to(device) for k, v in _batch(net, train_batch, g).items()}

    def train_step() -> None:
        loss, _ = model(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    out: dict[str, Any] = {"parameters": count_parameters(config), "train_samples_per_s": train_batch / _time(train_step, repeats)}
    for b in batches:
        x = {k: v.to(device) for k, v in _batch(net, b, g).items()}
        out[f"imagined_steps_per_s_batch{b}"] = b / _time(
            lambda x=x: sample(net, x["ctx_video"], x["ctx_audio"], x["action"], steps=sampler_steps), repeats
        )
    return out


def run(
    presets: tuple[str, ...] = ("tiny", "small"),
    train_batch: int = 16,
    batches: tuple[int, ...] = (1, 64),
    sampler_steps: int = 4,
    repeats: int = 3,
) -> dict[str, Any]:
    """Time a training step (forward, backward, AdamW) and one imagined step (``sampler_steps`` Euler steps) per preset."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results = {name: _figures(name, train_batch, batches, sampler_steps, repeats, device) for name in presets}
    return {
        "target": "model",
        "presets": results,
        "sampler_steps": sampler_steps,
        "train_batch": train_batch,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": os.cpu_count(),
    }
