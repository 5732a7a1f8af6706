"""Training losses of the tokenizers: spectral and interaural losses for binaural audio, and the VAE's KL term.

Audio tensors are waveforms ``(B, 2, N)``, channel 0 the left ear and 1 the right.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from avworld.models.spectral import stft

MAGNITUDE_FLOOR = 1e-5
"""Floor of STFT magnitudes before a log, so silent bins do not dominate a log-magnitude loss."""

ILD_N_FFT = 512
ILD_BAND_EDGES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
"""Octave bands of :func:`ild_loss`: bin edges of a :data:`ILD_N_FFT`-point STFT (DC and Nyquist left out)."""


def stft_magnitude(x: Tensor, n_fft: int, hop: int) -> Tensor:
    """Magnitude STFT with a Hann window: (..., N) → (..., n_fft // 2 + 1, frames), floored at :data:`MAGNITUDE_FLOOR`.

    The floor is taken on the power, which also keeps the gradient of the square root finite at silent bins.
    """
    spec = stft(x, n_fft, hop)
    power = spec.real.square() + spec.imag.square()
    return power.clamp(min=MAGNITUDE_FLOOR**2).sqrt()


def multi_resolution_stft_loss(pred: Tensor, target: Tensor, sizes: tuple[int, ...] = (256, 512, 1024)) -> Tensor:
    """Multi-resolution STFT loss (Yamamoto et al. 2020, Parallel WaveGAN, eqs. 4–6): a scalar.

    For each FFT size (Hann window of that size, hop size / 4): spectral convergence
    ``‖|S| − |Ŝ|‖_F / ‖|S|‖_F`` plus the mean absolute difference of log magnitudes,
    each per item and channel; averaged over items, channels and resolutions.

    Args:
        pred, target: (B, C, N) waveforms.
    """
    total = pred.new_zeros(())
    for n_fft in sizes:
        p, t = stft_magnitude(pred, n_fft, n_fft // 4), stft_magnitude(target, n_fft, n_fft // 4)  # (B, C, F, T)
        convergence = torch.linalg.vector_norm(t - p, dim=(-2, -1)) / torch.linalg.vector_norm(t, dim=(-2, -1))
        log_mag = (t.log() - p.log()).abs().mean(dim=(-2, -1))
        total = total + (convergence + log_mag).mean()
    return total / len(sizes)


def ild_db(audio: Tensor, eps: float = 1e-10) -> Tensor:
    """Broadband interaural level difference per item, ``10 log10((E_left + eps) / (E_right + eps))`` in dB: (B, 2, N) → (B,).

    ``E`` is the energy (sum of squares) of an ear's waveform; positive when the left ear is louder.
    """
    energy = audio.square().sum(dim=-1)  # (B, 2)
    return 10.0 * torch.log10((energy[:, 0] + eps) / (energy[:, 1] + eps))


def ild_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean absolute difference of per-band ILDs, in natural-log units (``ln(E_L / E_R)``; 1 dB ≈ 0.23): a scalar.

    Energies are summed over STFT frames (Hann window :data:`ILD_N_FFT`, hop a quarter of it) and over
    the octave bands of :data:`ILD_BAND_EDGES`. Each item's band energies get a floor of
    1e-4 × its mean band energy (−40 dB), so bands far below the item's level, whose ILD is
    not heard, do not dominate; the loss is invariant to a common gain on both ears.

    Args:
        pred, target: (B, 2, N) waveforms.
    """
    ratios = []
    for audio in (pred, target):
        power = stft_magnitude(audio, ILD_N_FFT, ILD_N_FFT // 4).square().sum(dim=-1)  # (B, 2, F)
        bands = torch.stack([power[..., lo:hi].sum(dim=-1) for lo, hi in itertools.pairwise(ILD_BAND_EDGES)], dim=-1)  # (B, 2, bands)
        bands = bands + 1e-4 * bands.mean(dim=(1, 2), keepdim=True)
        ratios.append(bands[:, 0].log() - bands[:, 1].log())  # (B, bands)
    return (ratios[0] - ratios[1]).abs().mean()


def kl_divergence(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) ‖ N(0, I)) per latent element, averaged over everything: a scalar (Kingma & Welling 2014)."""
    return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).mean()
