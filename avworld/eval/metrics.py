"""Reconstruction and prediction metrics of frames and binaural sound, batched: every metric returns one value per item, (B,).

Frames are (B, H, W, 3), uint8 or floats in [0, 1]. Audio is waveforms (B, 2, N),
channel 0 the left ear.

Two are pooled over items rather than averaged (the prediction eval sums their parts per horizon):
sharpness is the ratio of the mean :func:`gradient_energy` of imagined frames to that of real ones
(1 = as sharp as real, blur gives less), and direction is the share of the steps with a clear real
:func:`band_ild_db` (:func:`direction_cues`) where the imagined one has the same sign.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from avworld.models.losses import ild_db
from avworld.models.spectral import stft

SPECTROGRAM_FLOOR = 1e-5
"""Magnitude floor of :func:`log_spectrogram` (−100 dB)."""
CUE_BAND = (1500.0, 6000.0)
"""Hz: the band of the direction cue, where the head shadows the far ear (as :mod:`avworld.eval.sound` measures the real world)."""
CLEAR_ILD_DB = 2.0
"""A real band ILD beyond this (either sign) says clearly which side the source is on: only such steps count for direction."""


def _unit(frames: Tensor) -> Tensor:
    """(B, H, W, 3) uint8 or [0, 1] floats → float (B, 3, H, W) in [0, 1]."""
    x = frames.movedim(-1, -3)
    return x.float() / 255.0 if frames.dtype == torch.uint8 else x.float()


def psnr(pred: Tensor, target: Tensor) -> Tensor:
    """Peak signal-to-noise ratio in dB on [0, 1] pixels: (B, H, W, 3) twice → (B,); ``inf`` for identical frames."""
    mse = (_unit(pred) - _unit(target)).square().mean(dim=(1, 2, 3))
    return -10.0 * torch.log10(mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    """Normalised 2-D Gaussian (size, size)."""
    g = torch.exp(-((torch.arange(size, dtype=torch.float32) - (size - 1) / 2) ** 2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def _ssim(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Mean SSIM (Wang et al. 2004, eq. 13, C1 = (0.01 L)², C2 = (0.03 L)²) of images (B, C, H, W) → (B,).

    Local statistics come from an 11×11 Gaussian window (σ = 1.5) over the valid region
    only, as in the authors' reference code; the map is averaged over pixels and channels.
    """
    channels = x.shape[1]
    if min(x.shape[-2:]) < 11:
        raise ValueError(f"SSIM needs images of at least 11x11, got {tuple(x.shape[-2:])}")
    window = _gaussian_window().to(x)[None, None].expand(channels, 1, -1, -1)

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, window, groups=channels)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x.square()
    var_y = blur(y * y) - mu_y.square()
    cov = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2))
    return ssim_map.mean(dim=(1, 2, 3))


def ssim(pred: Tensor, target: Tensor) -> Tensor:
    """Structural similarity on [0, 1] pixels, mean over channels: (B, H, W, 3) twice → (B,); 1 for identical frames."""
    return _ssim(_unit(pred), _unit(target))


def log_spectrogram(audio: Tensor, n_fft: int = 256, hop: int = 128) -> Tensor:
    """Natural-log magnitude STFT (Hann window, centred), floored at :data:`SPECTROGRAM_FLOOR`: (B, 2, N) → (B, 2, n_fft/2 + 1, T)."""
    return stft(audio.float(), n_fft, hop).abs().clamp(min=SPECTROGRAM_FLOOR).log()


def lsd(pred_audio: Tensor, true_audio: Tensor) -> Tensor:
    """Log-spectral distance in dB: RMS over frequency of the dB-magnitude difference, mean over frames and ears: (B, 2, N) twice → (B,)."""
    to_db = 20.0 / math.log(10.0)
    diff = to_db * (log_spectrogram(pred_audio) - log_spectrogram(true_audio))  # (B, 2, F, T)
    return diff.square().mean(dim=2).sqrt().mean(dim=(1, 2))


def spectral_ssim(pred_audio: Tensor, true_audio: Tensor) -> Tensor:
    """SSIM of log-spectrograms, mean over both ears: (B, 2, N) twice → (B,).

    Both spectrograms are min-max normalised with the TRUE spectrogram's range (per item,
    over both ears), so the true one spans [0, 1] and the prediction is not rescaled to
    hide a level error; SSIM then uses data range 1.
    """
    pred, true = log_spectrogram(pred_audio), log_spectrogram(true_audio)  # (B, 2, F, T)
    lo = true.amin(dim=(1, 2, 3), keepdim=True)
    span = (true.amax(dim=(1, 2, 3), keepdim=True) - lo).clamp(min=1e-8)
    return _ssim((pred - lo) / span, (true - lo) / span)


def ild_error_db(pred_audio: Tensor, true_audio: Tensor) -> Tensor:
    """Absolute error of the broadband interaural level difference in dB: (B, 2, N) twice → (B,)."""
    return (ild_db(pred_audio.float()) - ild_db(true_audio.float())).abs()


def gradient_energy(frames: Tensor) -> Tensor:
    """Image-gradient energy on [0, 1] pixels: the mean squared forward difference along x plus that along y, over pixels and
    channels: (B, H, W, 3) → (B,). Blur lowers it; a constant frame has 0."""
    x = _unit(frames)  # (B, 3, H, W)
    dx = (x[..., :, 1:] - x[..., :, :-1]).square().mean(dim=(1, 2, 3))
    dy = (x[..., 1:, :] - x[..., :-1, :]).square().mean(dim=(1, 2, 3))
    return dx + dy


def sharpness(pred: Tensor, target: Tensor) -> Tensor:
    """Mean :func:`gradient_energy` of ``pred`` over that of ``target``, pooled over the batch: (B, H, W, 3) twice → a scalar.

    1 for identical frames, below 1 for blurred ones; NaN where the targets are all flat (no gradient to compare with)."""
    real = gradient_energy(target).double().sum()
    return gradient_energy(pred).double().sum() / real if real > 0 else torch.tensor(math.nan, dtype=torch.float64)


def band_ild_db(audio: Tensor, sample_rate: int, band: tuple[float, float] = CUE_BAND) -> Tensor:
    """Interaural level difference (dB, positive when the left ear is louder) in ``band`` of waveforms (B, 2, N) → (B,).

    An ear's band level is the energy of its rfft bins with frequency in [low, high), scaled as Parseval's sum of squares of the
    band-passed signal (2 |X_k|² / N); 10⁻²⁰ is added to each before the ratio. Computed in float64, it equals
    :func:`avworld.eval.sound.band_level_difference`, the real world's own measure."""
    n = audio.shape[-1]
    power = torch.fft.rfft(audio.double(), dim=-1).abs().square()  # (B, 2, F)
    freqs = torch.fft.rfftfreq(n, 1.0 / sample_rate, dtype=torch.float64, device=audio.device)
    inside = (freqs >= band[0]) & (freqs < band[1])
    energy = 2.0 * power[..., inside].sum(dim=-1) / n + 1e-20  # (B, 2)
    return 10.0 * torch.log10(energy[:, 0] / energy[:, 1])


def direction_cues(
    pred_audio: Tensor, true_audio: Tensor, sample_rate: int, clear_db: float = CLEAR_ILD_DB, band: tuple[float, float] = CUE_BAND
) -> tuple[Tensor, Tensor]:
    """Whether imagined sound points to the same side as the real sound: (B, 2, N) twice → ``clear`` (B,) bool, the items
    whose real :func:`band_ild_db` exceeds ``clear_db`` in magnitude, and ``agree`` (B,) bool, those of them whose imagined
    band ILD has the same sign. Direction is ``agree.sum() / clear.sum()`` over all steps scored."""
    real = band_ild_db(true_audio, sample_rate, band)
    imagined = band_ild_db(pred_audio, sample_rate, band)
    clear = real.abs() > clear_db
    return clear, clear & (torch.sign(imagined) == torch.sign(real))
