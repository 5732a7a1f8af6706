"""The audio tokenizer: a binaural waveform codec, a SoundStream-style 1-D conv autoencoder without a quantiser.

Following SoundStream (Zeghidour et al. 2021), the encoder is a conv stem then, per
level, dilated residual units (dilations 1, 3, 9) and a strided conv; the decoder
mirrors it with transposed convs. Both ears enter one encoder as two channels, so the
latent codes them jointly and keeps their level and time differences.

Gain. Step audio spans ~1e-3 (far sources) to ~0.1 RMS. The codec divides each step
by its RMS over both ears (+ :data:`GAIN_EPS`) before the encoder, and the latent
carries the gain: channel 0 is ``log10(rms + GAIN_EPS) + GAIN_OFFSET`` (≈ −1…1 for
typical levels), the same in every frame; channels 1… are the encoder's output.
:meth:`AudioCodec.decode` rescales by ``10 ** (mean over frames of channel 0 − GAIN_OFFSET)``,
so decode(encode(x)) keeps x's level exactly up to the network's error, and the
training losses, computed on gain-normalised audio, weigh quiet and loud steps alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from avworld.models.blocks import Downsample1d, ResBlock1d, Upsample1d
from avworld.models.losses import ILD_N_FFT, ild_db, ild_loss, multi_resolution_stft_loss

GAIN_EPS = 1e-6
"""Added to a step's RMS before dividing by it, so silence stays finite."""
GAIN_OFFSET = 2.0
"""Shift of the log10 gain channel: an RMS of 0.01 codes as 0."""
GAIN_RANGE = (-6.0, 1.0)
"""Decoded log10 gains are clamped to this range (1e-6 … 10), so a wild predicted latent cannot blow up."""
DILATIONS = (1, 3, 9)


@dataclass
class AudioCodecConfig:
    samples: int = 4000
    """Samples per step and ear; divisible by prod(strides), at least 512."""
    channels: tuple[int, ...] = (32, 64, 128, 128)
    """Width of each level (one per stride)."""
    strides: tuple[int, ...] = (2, 4, 5, 5)
    """Downsampling of each level; the product (200) is the hop of a latent frame."""
    latent_channels: int = 16
    """Latent channels, the gain channel included (≥ 2)."""
    stft_sizes: tuple[int, ...] = (256, 512, 1024)
    ild_weight: float = 1.0
    waveform_weight: float = 1.0

    def __post_init__(self) -> None:
        self.channels, self.strides, self.stft_sizes = tuple(self.channels), tuple(self.strides), tuple(self.stft_sizes)
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"AudioCodecConfig.channels must be a non-empty tuple of positive widths, got {self.channels}")
        if len(self.strides) != len(self.channels) or min(self.strides) < 1:
            raise ValueError(f"AudioCodecConfig.strides must be {len(self.channels)} positive ints (one per level), got {self.strides}")
        if self.latent_channels < 2:
            raise ValueError(f"AudioCodecConfig.latent_channels must be ≥ 2 (one is the gain), got {self.latent_channels}")
        hop = math.prod(self.strides)
        if self.samples < max(hop, ILD_N_FFT) or self.samples % hop:
            raise ValueError(f"AudioCodecConfig.samples must be a multiple of prod(strides) = {hop} and ≥ {ILD_N_FFT}, got {self.samples}")
        if not self.stft_sizes or max(self.stft_sizes) > self.samples or min(self.stft_sizes) < 4:
            raise ValueError(f"AudioCodecConfig.stft_sizes must lie in [4, samples = {self.samples}], got {self.stft_sizes}")


class Encoder(nn.Module):
    """Gain-normalised (B, 2, N) → (B, latent_channels − 1, N / prod(strides))."""

    def __init__(self, config: AudioCodecConfig) -> None:
        super().__init__()
        cin = config.channels[0]
        layers: list[nn.Module] = [nn.Conv1d(2, cin, 7, padding=3)]
        for width, stride in zip(config.channels, config.strides, strict=True):
            layers += [ResBlock1d(cin, cin, d) for d in DILATIONS]
            layers.append(Downsample1d(cin, width, stride))
            cin = width
        layers += [nn.ELU(), nn.Conv1d(cin, config.latent_channels - 1, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Decoder(nn.Module):
    """(B, latent_channels − 1, n) → gain-normalised (B, 2, n · prod(strides))."""

    def __init__(self, config: AudioCodecConfig) -> None:
        super().__init__()
        cin = config.channels[-1]
        layers: list[nn.Module] = [nn.Conv1d(config.latent_channels - 1, cin, 7, padding=3)]
        widths = (config.channels[0], *config.channels[:-1])  # each level's output width
        for width, stride in zip(reversed(widths), reversed(config.strides), strict=True):
            layers.append(Upsample1d(cin, width, stride))
            layers += [ResBlock1d(width, width, d) for d in DILATIONS]
            cin = width
        layers += [nn.ELU(), nn.Conv1d(cin, 2, 7, padding=3)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class AudioCodec(nn.Module):
    """Binaural waveform autoencoder with an explicit gain channel; see the module docstring."""

    def __init__(self, config: AudioCodecConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    @property
    def hop(self) -> int:
        """Waveform samples per latent frame, prod(strides)."""
        return math.prod(self.config.strides)

    @property
    def latent_frames(self) -> int:
        """Latent frames of one step of ``config.samples``."""
        return self.config.samples // self.hop

    def normalise(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        """Split (B, 2, N) into gain-normalised audio (B, 2, N) and its log10 gain (B, 1, 1)."""
        gain = audio.square().mean(dim=(1, 2), keepdim=True).sqrt() + GAIN_EPS
        return audio / gain, gain.log10()

    def encode(self, audio: Tensor) -> Tensor:
        """Waveforms (B, 2, N), N divisible by prod(strides) → latents (B, latent_channels, N / prod(strides)); channel 0 is the gain."""
        x, log_gain = self.normalise(audio)
        content = self.encoder(x)  # (B, C - 1, n)
        return torch.cat([(log_gain + GAIN_OFFSET).expand(-1, 1, content.shape[-1]), content], dim=1)

    def decode(self, z: Tensor) -> Tensor:
        """Latents (B, latent_channels, n) → waveforms (B, 2, n · prod(strides))."""
        log_gain = (z[:, :1].mean(dim=-1, keepdim=True) - GAIN_OFFSET).clamp(*GAIN_RANGE)  # (B, 1, 1)
        return self.decoder(z[:, 1:]) * 10.0**log_gain

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Training loss on ``batch["audio"]``: float (B, 2, N) or (B, T, 2, N), T flattened into the batch.

        On gain-normalised audio: loss = multi-resolution STFT loss + waveform_weight · L1
        + ild_weight · per-band ILD loss. Logs: ``loss``, ``stft``, ``l1``, ``ild`` and
        ``ild_db``, the mean absolute broadband ILD error in dB; detached 0-d tensors (read as numbers only when logged).
        """
        audio = batch["audio"]
        n = self.config.samples
        if audio.shape[-2:] != (2, n):
            raise ValueError(f"audio steps must be (2, {n}) for this AudioCodec, got {tuple(audio.shape[-2:])}")
        x, _ = self.normalise(audio.reshape(-1, 2, n).float())  # (B, 2, N)
        y = self.decoder(self.encoder(x)).float()  # (B, 2, N); float32 also under bf16 autocast
        with torch.autocast(x.device.type, enabled=False):  # spectra and levels in float32
            stft = multi_resolution_stft_loss(y, x, self.config.stft_sizes)
            l1 = (y - x).abs().mean()
            ild = ild_loss(y, x)
            loss = stft + self.config.waveform_weight * l1 + self.config.ild_weight * ild
            with torch.no_grad():
                ild_error = (ild_db(y) - ild_db(x)).abs().mean()
        logs = {"loss": loss, "stft": stft, "l1": l1, "ild": ild, "ild_db": ild_error}
        return loss, {k: v.detach() for k, v in logs.items()}


AUDIO_CODEC_PRESETS: dict[str, AudioCodecConfig] = {
    "tiny": AudioCodecConfig(channels=(8, 16, 32, 32), latent_channels=8, stft_sizes=(256, 512)),
    "small": AudioCodecConfig(channels=(32, 64, 128, 128), latent_channels=16),
    "base": AudioCodecConfig(channels=(64, 128, 256, 512), latent_channels=32),
}
