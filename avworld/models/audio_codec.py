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

Interaural level differences. Left to the network, the direction a binaural step is heard from was lost: a codec trained
with the per-band ILD loss alone decoded both ears alike (1.5-6 kHz level difference spread 0.08 dB against the real
2.5 dB; docs/results.md, 2026-12-05), since the spectral losses outweigh a few dB between the ears. As parametric stereo
coders do with their inter-channel intensity differences (Breebaart et al. 2005), a codec with ``ild_bands_hz`` carries
them explicitly: channels 1 … K of the latent hold the step's level difference in each of K bands (dB, left louder
positive, clamped to ±:data:`ILD_LIMIT_DB`), the same in every frame; the network codes the step with its bands'
energies equalised between the ears, and :meth:`AudioCodec.decode` shares each decoded band's energy between the ears
in the carried ratio (:meth:`AudioCodec.pan`). Channels 1 + K … are the network's. Without bands (the default of the
config, as every codec trained before) the latent is gain + network channels.
"""

from __future__ import annotations

import itertools
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
ILD_LIMIT_DB = 30.0
"""Carried band level differences are clamped to ±this (dB)."""
BAND_FLOOR = 1e-4
"""Each item's band energies get a floor of this × its mean band energy (−40 dB) before ratios are taken, as in
:func:`avworld.models.losses.ild_loss`: bands far below the step's level carry no audible level difference."""
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
    ild_bands_hz: tuple[float, ...] = ()
    """Inner edges (Hz, increasing, below sample_rate / 2) of the bands whose interaural level difference the latent
    carries explicitly (see the module docstring): len + 1 bands, one latent channel each. () carries none."""
    sample_rate: int = 16000
    """Sample rate (Hz) of the audio the band edges refer to."""

    def __post_init__(self) -> None:
        self.channels, self.strides, self.stft_sizes = tuple(self.channels), tuple(self.strides), tuple(self.stft_sizes)
        self.ild_bands_hz = tuple(float(f) for f in self.ild_bands_hz)
        edges = (0.0, *self.ild_bands_hz, self.sample_rate / 2)
        if self.sample_rate < 1 or any(b <= a for a, b in itertools.pairwise(edges)):
            raise ValueError(
                f"AudioCodecConfig.ild_bands_hz must increase strictly within (0, sample_rate / 2 = {self.sample_rate / 2:g}) Hz, "
                f"got {self.ild_bands_hz}"
            )
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"AudioCodecConfig.channels must be a non-empty tuple of positive widths, got {self.channels}")
        if len(self.strides) != len(self.channels) or min(self.strides) < 1:
            raise ValueError(f"AudioCodecConfig.strides must be {len(self.channels)} positive ints (one per level), got {self.strides}")
        if self.latent_channels < 2 + self.ild_channels:
            raise ValueError(
                f"AudioCodecConfig.latent_channels must be ≥ {2 + self.ild_channels} (the gain, {self.ild_channels} band level "
                f"differences and at least one of the network's), got {self.latent_channels}"
            )
        hop = math.prod(self.strides)
        if self.samples < max(hop, ILD_N_FFT) or self.samples % hop:
            raise ValueError(f"AudioCodecConfig.samples must be a multiple of prod(strides) = {hop} and ≥ {ILD_N_FFT}, got {self.samples}")
        if not self.stft_sizes or max(self.stft_sizes) > self.samples or min(self.stft_sizes) < 4:
            raise ValueError(f"AudioCodecConfig.stft_sizes must lie in [4, samples = {self.samples}], got {self.stft_sizes}")


    @property
    def ild_channels(self) -> int:
        """Latent channels holding band level differences: len(ild_bands_hz) + 1, or 0 without bands."""
        return len(self.ild_bands_hz) + 1 if self.ild_bands_hz else 0

    @property
    def network_channels(self) -> int:
        """Latent channels the encoder writes: all but the gain and the band level differences."""
        return self.latent_channels - 1 - self.ild_channels


class Encoder(nn.Module):
    """Gain-normalised (B, 2, N) → (B, network_channels, N / prod(strides))."""

    def __init__(self, config: AudioCodecConfig) -> None:
        super().__init__()
        cin = config.channels[0]
        layers: list[nn.Module] = [nn.Conv1d(2, cin, 7, padding=3)]
        for width, stride in zip(config.channels, config.strides, strict=True):
            layers += [ResBlock1d(cin, cin, d) for d in DILATIONS]
            layers.append(Downsample1d(cin, width, stride))
            cin = width
        layers += [nn.ELU(), nn.Conv1d(cin, config.network_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Decoder(nn.Module):
    """(B, network_channels, n) → gain-normalised (B, 2, n · prod(strides))."""

    def __init__(self, config: AudioCodecConfig) -> None:
        super().__init__()
        cin = config.channels[-1]
        layers: list[nn.Module] = [nn.Conv1d(config.network_channels, cin, 7, padding=3)]
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
        freqs = torch.fft.rfftfreq(config.samples, 1.0 / config.sample_rate)
        self.register_buffer("band_of_bin", torch.bucketize(freqs, torch.tensor(config.ild_bands_hz), right=True), persistent=False)
        """(N // 2 + 1,) int64: the band of each rfft bin of a step."""

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

    def _bands(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 2, N) → its rfft (B, 2, F) complex64 and each ear's band energies (B, 2, K) in float32."""
        spec = torch.fft.rfft(audio.float(), dim=-1)
        power = spec.real.square() + spec.imag.square()
        return spec, power.new_zeros(*power.shape[:-1], self.config.ild_channels).index_add(-1, self.band_of_bin, power)

    def band_ild(self, audio: Tensor) -> Tensor:
        """Level difference of each band (dB, left louder positive, within ±:data:`ILD_LIMIT_DB`; each band's energies
        floored at :data:`BAND_FLOOR` × the item's mean band energy): (B, 2, N) → (B, K)."""
        with torch.autocast(audio.device.type, enabled=False):
            _, energy = self._bands(audio)
            energy = energy + BAND_FLOOR * energy.mean(dim=(1, 2), keepdim=True) + 1e-30
            return (10.0 * (energy[:, 0].log10() - energy[:, 1].log10())).clamp(-ILD_LIMIT_DB, ILD_LIMIT_DB)

    def pan(self, audio: Tensor, ild_db: Tensor) -> Tensor:
        """``audio`` (B, 2, N) with each band's energy, summed over the ears, shared between them in the ratio
        10^(ild_db / 10), ild_db (B, K): the band level differences become ``ild_db`` exactly, the bands' energies over
        both ears stay. Float32."""
        with torch.autocast(audio.device.type, enabled=False):
            spec, energy = self._bands(audio)
            energy = energy + 1e-12 * energy.mean(dim=(1, 2), keepdim=True) + 1e-30  # only a silent ear is lifted
            left = torch.sigmoid(ild_db.float() * (math.log(10.0) / 10.0))  # E_left / (E_left + E_right)
            target = 2.0 * energy.mean(dim=1, keepdim=True) * torch.stack([left, 1.0 - left], dim=1)  # (B, 2, K)
            scale = (target / energy).sqrt()[..., self.band_of_bin]  # (B, 2, F)
            return torch.fft.irfft(spec * scale, n=audio.shape[-1], dim=-1)

    def encode(self, audio: Tensor) -> Tensor:
        """Waveforms (B, 2, N), N divisible by prod(strides) → latents (B, latent_channels, N / prod(strides)): channel 0
        the gain, 1 … K the band level differences (dB), then the network's."""
        x, log_gain = self.normalise(audio)
        params = [log_gain.squeeze(-1) + GAIN_OFFSET]  # (B, 1)
        if self.config.ild_channels:
            ild = self.band_ild(x)  # (B, K)
            params.append(ild)
            x = self.pan(x, torch.zeros_like(ild))
        content = self.encoder(x)  # (B, network_channels, n)
        return torch.cat([torch.cat(params, dim=1).unsqueeze(-1).expand(-1, -1, content.shape[-1]), content], dim=1)

    def decode(self, z: Tensor) -> Tensor:
        """Latents (B, latent_channels, n) → waveforms (B, 2, n · prod(strides)); the gain and band level differences are
        read as their mean over frames."""
        k = self.config.ild_channels
        params = z[:, : 1 + k].mean(dim=-1)  # (B, 1 + K)
        log_gain = (params[:, :1, None] - GAIN_OFFSET).clamp(*GAIN_RANGE)  # (B, 1, 1)
        y = self.decoder(z[:, 1 + k :])
        if k:
            y = self.pan(y, params[:, 1:].clamp(-ILD_LIMIT_DB, ILD_LIMIT_DB))
        return y * 10.0**log_gain

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
        if self.config.ild_channels:  # the network codes equalised ears; the carried level differences are put back
            ild = self.band_ild(x)
            y = self.pan(self.decoder(self.encoder(self.pan(x, torch.zeros_like(ild)))), ild)
        else:
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


OCTAVES_TO_6K = (375.0, 750.0, 1500.0, 3000.0, 6000.0)
"""Band edges of the small and base presets: octaves, two of them the direction cue's 1.5-6 kHz
(:data:`avworld.eval.metrics.CUE_BAND`), and the rest above 6 kHz."""

AUDIO_CODEC_PRESETS: dict[str, AudioCodecConfig] = {
    "tiny": AudioCodecConfig(channels=(8, 16, 32, 32), latent_channels=8, stft_sizes=(256, 512)),  # tests' size: no bands yet
    "small": AudioCodecConfig(channels=(32, 64, 128, 128), latent_channels=22, ild_bands_hz=OCTAVES_TO_6K),
    "base": AudioCodecConfig(channels=(64, 128, 256, 512), latent_channels=38, ild_bands_hz=OCTAVES_TO_6K),
}
