"""A world-model checkpoint ready to imagine: observations in, imagined observations out.

A world-model checkpoint (kind ``world_model``) carries its tokenizers inside it
(``tokenizers/video``, ``tokenizers/audio``) and, in ``meta.json``, the latent
statistics it was trained with and the observation settings of its data. This
module ties them together: :meth:`Imagination.encode` turns real observations into
the net's unit-variance latents, :meth:`Imagination.predict` imagines the next step
of a batch of worlds in one call, :meth:`Imagination.decode` turns latents back into
frames and binaural waveforms. Everything is batched over leading dimensions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from avworld.models.checkpoint import CheckpointError
from avworld.models.flow import WorldModel, sample
from avworld.models.precision import bf16_pays
from avworld.models.registry import encode, load_model
from avworld.models.video_vae import tensor_to_rgb

TOKENIZERS = {"video": "video_vae", "audio": "audio_codec"}
"""Modality → the tokenizer kind that codes it."""
FIELDS = {"video": "rgb", "audio": "audio"}
"""Modality → the observation key it codes."""


def tokenizer_meta(ckpt_meta: dict[str, Any]) -> dict[str, Any]:
    """What a world model keeps of a tokenizer's ``meta.json``: the latent statistics and the data shapes."""
    return {"latent": ckpt_meta["latent"], **{k: ckpt_meta["data"][k] for k in ("sample_rate", "rgb_shape", "audio_shape")}}


class Imagination:
    """A world model and its tokenizers on one device, in eval mode; see the module docstring.

    ``meta`` is the checkpoint's ``meta.json``: ``latent`` ({modality: {"mean", "std"}}), ``rgb_shape`` [H, W, 3],
    ``audio_shape`` [2, N], ``sample_rate``, ``sim`` (the simulator settings of the training data).
    """

    def __init__(
        self,
        model: WorldModel,
        tokenizers: dict[str, nn.Module],
        meta: dict[str, Any],
        device: str | torch.device = "cpu",
        amp: bool = False,
    ) -> None:
        self.device = torch.device(device)
        self.amp = amp and bf16_pays(self.device)
        """Decode under bf16 autocast (asked for, and the device does bf16 in hardware; else float32)."""
        self.model = model.to(self.device).eval()
        self.net = self.model.net
        self.tokenizers = {m: t.to(self.device).eval() for m, t in tokenizers.items()}
        self.meta = meta
        self.modalities: tuple[str, ...] = self.net.config.modalities
        self.context: int = self.net.config.context
        self.stats = {m: (float(meta["latent"][m]["mean"]), float(meta["latent"][m]["std"])) for m in self.modalities}
        missing = [m for m in self.modalities if m not in self.tokenizers]
        if missing:
            raise ValueError(f"no {missing[0]} tokenizer for a world model of {self.modalities}")

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu", amp: bool = False) -> Imagination:
        """The world model of checkpoint directory ``path`` with its attached tokenizers; :class:`CheckpointError` names what is wrong.

        ``amp``: decode under bf16 autocast where the device does bf16 in hardware (the small 8-channel decoders ran
        1.5x faster on an AMX CPU, frames within a few levels of float32; docs/benchmarks.md)."""
        model, ckpt = load_model(path, "world_model")
        assert isinstance(model, WorldModel)
        tokenizers = {}
        for m in model.net.config.modalities:
            name = f"tokenizers/{m}"
            if name not in ckpt.attachments:
                raise CheckpointError(Path(path) / name, f"the {m} tokenizer is missing from this world-model checkpoint")
            tokenizers[m], _ = load_model(ckpt.attachments[name], TOKENIZERS[m])
        for key in ("latent", "rgb_shape", "audio_shape", "sample_rate"):
            if key not in ckpt.meta:
                raise CheckpointError(Path(path) / "meta.json", f"missing {key!r}")
        return cls(model, tokenizers, ckpt.meta, device, amp)

    @torch.no_grad()
    def encode(self, obs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Scaled latents of observations: ``rgb`` uint8 (..., H, W, 3) → ``video`` (..., C, h, w); ``audio`` (..., 2, N) → (..., C_a, n).

        Only the modalities this model imagines are encoded; each needs its observation key.
        """
        out = {}
        for m in self.modalities:
            x = obs[FIELDS[m]].to(self.device)
            lead = x.shape[: x.dim() - (3 if m == "video" else 2)]
            z = encode(self.tokenizers[m], TOKENIZERS[m], x.reshape(-1, *x.shape[len(lead) :]))
            mean, std = self.stats[m]
            out[m] = ((z - mean) / std).reshape(*lead, *z.shape[1:])
        return out

    @torch.no_grad()
    def decode(self, latents: dict[str, Tensor]) -> dict[str, Tensor]:
        """Observations of scaled latents: ``video`` (..., C, h, w) → ``rgb`` uint8 (..., H, W, 3); ``audio`` → float32 (..., 2, N)."""
        out = {}
        for m, z in latents.items():
            if m not in self.modalities:
                continue
            lead = z.shape[: z.dim() - (3 if m == "video" else 2)]
            mean, std = self.stats[m]
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                x = self.tokenizers[m].decode(z.reshape(-1, *z.shape[len(lead) :]) * std + mean)  # type: ignore[operator]
            x = tensor_to_rgb(x.float()) if m == "video" else x.float()
            out[FIELDS[m]] = x.reshape(*lead, *x.shape[1:])
        return out

    @torch.no_grad()
    def predict(
        self,
        context: dict[str, Tensor],
        action: Tensor,
        steps: int = 4,
        generator: torch.Generator | None = None,
        noise: dict[str, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """Imagine one step for a batch of worlds in one sampler call.

        context: {modality: (B, m, *latent)} scaled latents, oldest first; action (B,) int64.
        noise: optional initial sampler noise {modality: (B, *latent)}; drawn from ``generator`` when None (see :func:`sample`).
        Returns the next latents {modality: (B, *latent)}, ``reward`` (B,) and ``termination`` (B,) probability.
        """
        action = action.to(self.device)
        return sample(self.net, context.get("video"), context.get("audio"), action, steps=steps, generator=generator, noise=noise)


def push(context: Tensor, latest: Tensor) -> Tensor:
    """Slide a context window: (B, m, ...) and the newest step (B, ...) → (B, m, ...) without the oldest step."""
    return torch.cat([context[:, 1:], latest.unsqueeze(1)], dim=1)
