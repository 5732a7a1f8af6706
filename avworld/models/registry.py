"""Every trainable model by kind: its config class, its module and its size presets.

Checkpoints name their kind; :func:`load_model` rebuilds the module from the stored
config (every field of its type) and refuses weights that do not fit it and latent
statistics in ``meta.json`` that cannot scale latents, naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avworld.models.audio_codec import AUDIO_CODEC_PRESETS, AudioCodec, AudioCodecConfig
from avworld.models.checkpoint import Checkpoint, CheckpointError, check_latent, load_checkpoint
from avworld.models.flow import WORLD_MODEL_PRESETS, WorldModel, WorldModelConfig
from avworld.models.video_vae import VIDEO_VAE_PRESETS, VideoVAE, VideoVAEConfig, rgb_to_tensor, tensor_to_rgb

FIELDS = {"video_vae": "rgb", "audio_codec": "audio"}
"""The observation each tokenizer codes."""

MODELS: dict[str, tuple[type, Callable[[Any], nn.Module], dict[str, Any]]] = {
    "video_vae": (VideoVAEConfig, VideoVAE, VIDEO_VAE_PRESETS),
    "audio_codec": (AudioCodecConfig, AudioCodec, AUDIO_CODEC_PRESETS),
    "world_model": (WorldModelConfig, WorldModel.from_config, WORLD_MODEL_PRESETS),
}
"""kind → (config dataclass, module factory taking that config, size presets)."""


def preset(kind: str, name: str, **overrides: Any) -> Any:
    """The config of size preset ``name`` of ``kind``, with ``overrides`` replaced."""
    if kind not in MODELS:
        raise ValueError(f"unknown model kind {kind!r}; available: {', '.join(MODELS)}")
    presets = MODELS[kind][2]
    if name not in presets:
        raise ValueError(f"unknown {kind} preset {name!r}; available: {', '.join(presets)}")
    return dataclasses.replace(presets[name], **overrides)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as plain YAML-able data (tuples become lists, nested dataclasses dicts)."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return [plain(v) for v in value] if isinstance(value, (tuple, list)) else value

    return plain(dataclasses.asdict(config))


def config_from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    """An instance of dataclass ``cls`` from plain data; nested dataclass fields from nested dicts, lists as tuples.

    Unknown fields are refused by their dotted name (``where`` prefixes it).
    """
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ValueError(f"{where}: unknown field {unknown[0]!r}")
    values = {}
    for key, value in data.items():
        if dataclasses.is_dataclass(hints[key]):
            values[key] = config_from_dict(hints[key], value, f"{where}.{key}")  # type: ignore[arg-type]
        else:
            values[key] = _typed(value, hints[key], f"{where}.{key}")
    return cls(**values)


def _typed(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against a config field's type (bool, int, float, str, or a tuple of them); lists become tuples."""
    if typing.get_origin(hint) is tuple:
        items = typing.get_args(hint)
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        if items[-1] is not Ellipsis and len(value) != len(items):
            raise ValueError(f"{where}: expected {len(items)} items, got {len(value)}")
        kinds = [items[0]] * len(value) if items[-1] is Ellipsis else list(items)
        return tuple(_typed(v, k, f"{where}[{i}]") for i, (v, k) in enumerate(zip(value, kinds, strict=True)))
    number = isinstance(value, int | float) and not isinstance(value, bool)
    checks = {
        bool: ("a bool", isinstance(value, bool)),
        int: ("an int", number and isinstance(value, int)),
        float: ("a finite float", number and math.isfinite(value)),
        str: ("a string", isinstance(value, str)),
    }
    expected, ok = checks.get(hint, ("", True))
    if not ok:
        raise ValueError(f"{where}: expected {expected}, got {value!r}")
    return float(value) if hint is float else value


def build(kind: str, config: dict[str, Any] | Any) -> nn.Module:
    """A fresh module of ``kind`` from a config dataclass or its dict."""
    if kind not in MODELS:
        raise ValueError(f"unknown model kind {kind!r}; available: {', '.join(MODELS)}")
    cls, factory, _ = MODELS[kind]
    if isinstance(config, dict):
        config = config_from_dict(cls, config, f"{kind} config")
    return factory(config)


def load_model(path: str | os.PathLike[str], kind: str | None = None) -> tuple[nn.Module, Checkpoint]:
    """The module stored in checkpoint ``path``, in eval mode, and the checkpoint itself."""
    ckpt = load_checkpoint(path, kind)
    try:
        model = build(ckpt.kind, ckpt.config)
    except (TypeError, ValueError) as err:
        raise CheckpointError(os.path.join(path, "config.yaml"), str(err)) from err
    missing, unexpected = (sorted(set(model.state_dict()) - set(ckpt.weights)), sorted(set(ckpt.weights) - set(model.state_dict())))
    if missing or unexpected:
        raise CheckpointError(
            os.path.join(path, "model.safetensors"), f"weights do not fit the config (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    try:
        model.load_state_dict(ckpt.weights)
    except RuntimeError as err:
        raise CheckpointError(os.path.join(path, "model.safetensors"), f"weights do not fit the config: {err}") from err
    _check_meta(ckpt, model, Path(path) / "meta.json")
    return model.eval(), ckpt


def _check_meta(ckpt: Checkpoint, model: nn.Module, f: Path) -> None:
    """Refuse latent statistics that cannot scale latents: a tokenizer's ``latent`` (when present), and a world model's
    ``latent.<modality>`` for each modality it imagines."""
    latent = ckpt.meta.get("latent")
    if ckpt.kind == "world_model":
        assert isinstance(model, WorldModel)
        if not isinstance(latent, dict):
            raise CheckpointError(f, f"latent: expected {{modality: {{'mean', 'std'}}}}, got {latent!r}")
        for m in model.net.config.modalities:
            if m not in latent:
                raise CheckpointError(f, f"latent.{m}: missing (the statistics of the {m} tokenizer's latents)")
            check_latent(latent[m], f, f"latent.{m}")
    elif latent is not None:
        check_latent(latent, f, "latent")


def encode(model: nn.Module, kind: str, x: torch.Tensor) -> torch.Tensor:
    """Tokenizer latents: rgb uint8 (B, H, W, 3) → posterior means (B, C, h, w); audio (B, 2, N) → (B, C, n)."""
    if kind == "video_vae":
        return model.encode(rgb_to_tensor(x))[0]  # type: ignore[operator]
    return model.encode(x)  # type: ignore[operator]


def reconstruct(model: nn.Module, kind: str, x: torch.Tensor) -> torch.Tensor:
    """Round trip through a tokenizer, in the input's own format (uint8 frames, float waveforms)."""
    out = model.decode(encode(model, kind, x))  # type: ignore[operator]
    return tensor_to_rgb(out) if kind == "video_vae" else out
