"""The one short-time Fourier transform of avworld's torch code (training losses, evaluation metrics, policy features).

A Hann window (periodic) of the input's dtype and device; every leading axis is a batch axis. The simulator's numpy
spectrogram (:func:`avworld.sim.acoustics.audio.log_spectrogram`, no torch there) uses the same window and, with
``center=False``, the same frames.
"""

from __future__ import annotations

import torch
from torch import Tensor


def stft(x: Tensor, n_fft: int, hop: int, center: bool = True) -> Tensor:
    """Complex STFT: (..., N) → (..., n_fft // 2 + 1, frames); ``center`` pads n_fft // 2 reflected samples at both ends."""
    lead = x.shape[:-1]
    window = torch.hann_window(n_fft, device=x.device, dtype=x.dtype)
    spec = torch.stft(x.reshape(-1, x.shape[-1]), n_fft, hop, window=window, center=center, return_complex=True)
    return spec.reshape(*lead, *spec.shape[-2:])
