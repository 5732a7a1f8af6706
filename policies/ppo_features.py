"""Features of stacked audio-visual observations for stable-baselines3 policies: a CNN on the frames, a 2-D CNN on the
binaural spectrogram computed inside the network.

The extractor sees what SB3's wrappers make of AudioNav-v0's observations (see :mod:`avworld.policies.ppo`):
``VecFrameStack`` stacks the last k observations of each key along its last axis and ``VecTransposeImage`` moves the
frames' channels first, then the policy scales uint8 frames to [0, 1] (SB3's ``normalize_images``). So per sample:

- ``rgb``: float32 (3k, H, W) in [0, 1], oldest frame first;
- ``audio``: float32 (2, k·N), the waveforms of the k steps end to end (the simulator's audio is continuous across
  steps, so this is the last k·N samples heard; zeros before the episode start);
- ``spectrogram``: float32 (2, F, k·T), the env's per-step log spectrograms side by side in time.

The waveform is turned into a log-magnitude STFT with the env's parameters (periodic Hann window of 256, hop 128,
no padding, so it equals :func:`avworld.sim.acoustics.audio.log_spectrogram`), left and right ear as two channels of one image,
so the convolutions see interaural level differences; with ``interaural_phase`` the cosine and sine of the
interaural phase difference (weighted towards 0 where either ear is silent) are two more channels, the cue of
interaural time differences. Given both ``audio`` and ``spectrogram``, the waveform is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from avworld.models.spectral import stft
from avworld.sim.acoustics.audio import SPECTROGRAM_FLOOR, spectrogram_bounds

SUPPORTED_KEYS = ("rgb", "audio", "spectrogram")


@dataclass
class AVFeaturesConfig:
    """Sizes of :class:`AVFeatures`."""

    visual_dim: int = 256
    audio_dim: int = 128
    channels: tuple[int, ...] = (32, 64, 64, 64)
    """Output channels of the stride-2 convolutions of the visual CNN (the audio CNN uses half as many)."""
    n_fft: int = 256
    hop: int = 128
    interaural_phase: bool = True

    def __post_init__(self) -> None:
        self.channels = tuple(self.channels)
        if self.visual_dim < 1 or self.audio_dim < 1 or not self.channels or min(self.channels) < 1:
            raise ValueError(f"features: visual_dim, audio_dim and channels must be positive, got {self}")
        if not 0 < self.hop <= self.n_fft:
            raise ValueError(f"features: hop must lie in (0, n_fft = {self.n_fft}], got {self.hop}")


def log_stft(audio: torch.Tensor, n_fft: int = 256, hop: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-magnitude STFT (B, 2, F, T) of ``audio`` (B, 2, L), F = n_fft/2 + 1, T = 1 + (L − n_fft)/hop, and the complex STFT.

    Same windows, frames and floor as :func:`avworld.sim.acoustics.audio.log_spectrogram`, so a policy sees in the network what the
    env's ``spectrogram`` sensor shows.
    """
    length = audio.shape[-1]
    if length < n_fft:
        raise ValueError(f"audio: {length} samples per channel, fewer than one STFT window ({n_fft})")
    x = stft(audio, n_fft, hop, center=False)  # (B, 2, F, T)
    return torch.log(x.abs() + SPECTROGRAM_FLOOR), x


def _cnn(in_channels: int, channels: tuple[int, ...], first_kernel: int) -> nn.Sequential:
    """Stride-2 convolutions with ReLU: the first ``first_kernel``², then 3×3; spatial size halves at each."""
    layers: list[nn.Module] = []
    for i, out in enumerate(channels):
        k = first_kernel if i == 0 else 3
        layers += [nn.Conv2d(in_channels, out, k, stride=2, padding=k // 2), nn.ReLU()]
        in_channels = out
    return nn.Sequential(*layers, nn.Flatten())


def _head(cnn: nn.Sequential, shape: tuple[int, ...], dim: int) -> nn.Sequential:
    """``cnn`` then a linear layer to ``dim`` features; the flattened size comes from a dry run on ``shape`` (C, H, W)."""
    with torch.no_grad():
        flat = cnn(torch.zeros(1, *shape)).shape[1]
    return nn.Sequential(cnn, nn.Linear(flat, dim), nn.ReLU())


class AVFeatures(BaseFeaturesExtractor):
    """Frames and binaural sound → features (B, visual_dim + audio_dim); see the module docstring for the inputs."""

    def __init__(self, observation_space: spaces.Dict, config: AVFeaturesConfig | None = None) -> None:
        config = config or AVFeaturesConfig()
        keys = set(observation_space.spaces)
        unknown = sorted(keys - set(SUPPORTED_KEYS))
        if unknown or "rgb" not in keys:
            raise ValueError(f"sensors: PPO features take rgb with audio and/or spectrogram, got {sorted(keys)} ({unknown} unsupported)")
        self.audio_key = "audio" if "audio" in keys else "spectrogram" if "spectrogram" in keys else None
        rgb_shape = tuple(observation_space["rgb"].shape)  # (3k, H, W)
        features = config.visual_dim + (config.audio_dim if self.audio_key else 0)
        super().__init__(observation_space, features)
        self.config = config
        self.visual = _head(_cnn(rgb_shape[0], config.channels, 5), rgb_shape, config.visual_dim)
        self.audio: nn.Sequential | None = None
        if self.audio_key is not None:
            lo, hi = spectrogram_bounds(config.n_fft)
            self.log_range = (lo, hi)
            shape = self._audio_shape(tuple(observation_space[self.audio_key].shape))
            self.audio = _head(_cnn(shape[0], tuple(max(1, c // 2) for c in config.channels), 5), shape, config.audio_dim)

    def _audio_shape(self, space_shape: tuple[int, ...]) -> tuple[int, int, int]:
        """(channels, F, T) of the spectrogram image the audio CNN sees."""
        if self.audio_key == "spectrogram":
            return (2, space_shape[1], space_shape[2])
        c = self.config
        frames = 1 + (space_shape[-1] - c.n_fft) // c.hop
        return (4 if c.interaural_phase else 2, c.n_fft // 2 + 1, frames)

    def spectrogram(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        """The audio CNN's input (B, C, F, T): log magnitudes of both ears scaled to [-1, 1] (C = 2), with the interaural phase (C = 4)."""
        lo, hi = self.log_range
        if self.audio_key == "spectrogram":
            return (observations["spectrogram"] - lo) / (hi - lo) * 2 - 1
        c = self.config
        log_mag, x = log_stft(observations["audio"], c.n_fft, c.hop)
        image = (log_mag - lo) / (hi - lo) * 2 - 1  # (B, 2, F, T)
        if not c.interaural_phase:
            return image
        cross = x[:, 0] * x[:, 1].conj()  # (B, F, T): L·R*, its angle is the interaural phase difference
        magnitude = cross.abs()
        phase = cross / (magnitude + 1e-3 * magnitude.amax(dim=(1, 2), keepdim=True) + 1e-12)  # ≈ 0 in bins 60 dB below the loudest
        return torch.cat([image, phase.real[:, None], phase.imag[:, None]], dim=1)

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        """observations {"rgb": (B, 3k, H, W) in [0, 1], "audio": (B, 2, k·N) | "spectrogram": (B, 2, F, k·T)} → (B, features_dim)."""
        parts = [self.visual(observations["rgb"])]
        if self.audio is not None:
            parts.append(self.audio(self.spectrogram(observations)))
        return torch.cat(parts, dim=1)
