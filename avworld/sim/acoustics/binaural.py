"""Binaural impulse responses from sound paths: two ears, head shadow, and a late reverberant tail.

Ears sit ``ear_distance`` apart on the axis through the head centre perpendicular to
the agent's heading (yaw 0 faces +x; the left ear is at +90°). Every path reaches each
ear with its own delay (so interaural time differences follow the geometry) and
through a head-shadow filter: Brown & Duda's one-pole/one-zero spherical-head model
(Brown and Duda, "A structural model for binaural sound synthesis", IEEE TSAP 1998),

    H(ω, θ) = (1 + j α(θ) ω / 2ω₀) / (1 + j ω / 2ω₀),   ω₀ = c / a,
    α(θ) = (1 + α_min/2) + (1 − α_min/2) cos(θ / θ_min · π),

evaluated at each octave band centre, θ being the angle between the ear's outward
axis and the arrival direction. The near ear gets up to +6 dB at high frequencies,
the far ear down to −20 dB: level differences grow with frequency, as for a head.

Each path is laid down per octave band as a windowed-sinc fractional delay; the bands
are recombined with complementary raised-cosine masks on the FFT grid.

**Late tail.** Image sources stop at a reflection order K. The reflections after
them are added as exponentially decaying noise that decays per band with the room's
Sabine RT60. Its level is diffuse-field theory's reverberant energy of the room,
(1 − ᾱ) / (π A) for a unit source (A = Σ S·α; the direct energy at r is 1 / (4πr)²),
times the share that arrives after the tail starts (K mean free paths after the first
arrival). A listener the image sources reach poorly is coupled to that field only as
well as they reach it: the tail is scaled by the ratio (at most 1) of the early energy
found (reflections, plus the reverberation (1 − ᾱ)/ᾱ that a diffracted path excites) to
the early energy theory expects. So a listener no path reaches hears no tail: the tail
leaks through walls no more than the early sound does.

The two ears hear one field, not two independent noises:

- *coherence*: the ears' noises are mixed from two independent streams so that their
  coherence is a diffuse field's between two points ``ear_distance`` apart,
  γ(f) = sin(kd) / (kd) with k = 2πf / c (Cook et al., "Measurement of correlation
  coefficients in reverberant sound fields", JASA 1955): near 1 below a few hundred
  hertz, near 0 in the band where the head shadows;
- *level*: the tail continues the latest reflections the image sources found (order K,
  through the head's shadow), so it divides its energy between the ears per band as they
  do: reflections that still arrive mostly from the source's side keep the far ear
  quieter, as a high-order image-source model does (tested against one at order 12).
  Where the last order holds no path, the ears share it equally.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np

from avworld.sim.acoustics.hrtf import HRTF, head_frame
from avworld.sim.acoustics.propagation import DIFFRACTED, Arrivals
from avworld.sim.acoustics.room import Reverb

SPEED_OF_SOUND = 343.0
_TAPS = 16  # windowed-sinc fractional-delay length


@dataclass
class HeadConfig:
    """The listener's head: ear spacing and the spherical-head shadow model."""

    ear_distance: float = 0.175
    alpha_min: float = 0.1
    theta_min_deg: float = 150.0

    def __post_init__(self) -> None:
        if not 0.05 <= self.ear_distance <= 0.5:
            raise ValueError(f"acoustics.head.ear_distance must be in [0.05, 0.5] m, got {self.ear_distance}")


def ear_positions(center: np.ndarray, yaw: float, ear_distance: float) -> np.ndarray:
    """Left and right ear positions (2, 3) of a head at ``center`` (3,) facing ``yaw``."""
    left = np.array([-math.sin(yaw), math.cos(yaw), 0.0])
    return np.stack([center + left * ear_distance / 2, center - left * ear_distance / 2])


def head_shadow(cos_theta: np.ndarray, freqs: np.ndarray, head: HeadConfig) -> np.ndarray:
    """|H(ω, θ)| of Brown & Duda's model: ``cos_theta`` (...,) → gains (..., F) at ``freqs`` (F,) Hz."""
    theta = np.arccos(np.clip(cos_theta, -1.0, 1.0))
    alpha = (1 + head.alpha_min / 2) + (1 - head.alpha_min / 2) * np.cos(
        np.minimum(theta / math.radians(head.theta_min_deg), 1.0) * math.pi
    )
    w = math.pi * freqs * (head.ear_distance / 2) / SPEED_OF_SOUND  # ω / 2ω₀ with ω₀ = c / a
    return np.sqrt(1 + (alpha[..., None] * w) ** 2) / np.sqrt(1 + w**2)


@cache
def band_masks(n_fft: int, fs: int, centers: tuple[float, ...]) -> np.ndarray:
    """Complementary masks (B, n_fft//2+1) summing to 1: raised cosines in log frequency between band centres."""
    f = np.fft.rfftfreq(n_fft, 1 / fs)
    c = np.asarray(centers)
    masks = np.zeros((len(c), len(f)))
    masks[0, f <= c[0]] = 1.0
    masks[-1, f >= c[-1]] = 1.0
    for b in range(len(c) - 1):
        sel = (f > c[b]) & (f < c[b + 1])
        x = np.log2(f[sel] / c[b]) / np.log2(c[b + 1] / c[b])
        masks[b, sel] += np.cos(math.pi / 2 * x) ** 2
        masks[b + 1, sel] += np.sin(math.pi / 2 * x) ** 2
    masks[:, f == c[-1]] = 0.0
    masks[-1, f == c[-1]] = 1.0
    return masks


@lru_cache(maxsize=64)
def diffuse_noise(length: int, fs: int, ear_distance: float, seed: int = 0) -> np.ndarray:
    """Unit-variance noise (2, length) for the two ears, with a diffuse field's coherence γ(f) = sin(kd)/(kd) between them.

    Per frequency bin, left = e^{i(θ + sψ)} and right = e^{i(θ − sψ)}: a random phase θ, a random sign s and
    cos 2ψ = γ. Both ears have the same (flat) magnitude in every bin, so the noise adds no level difference of its own
    in any band, while the cross-spectrum e^{2isψ}, averaged over neighbouring bins, tends to γ. Seeded, so responses
    are reproducible; :func:`binaural_ir` seeds it by place, so its fine structure changes from place to place as a
    room's does, rather than one draw biasing every response alike.
    """
    rng = np.random.default_rng([seed, length])
    f = np.fft.rfftfreq(length, 1 / fs)
    theta = rng.uniform(-np.pi, np.pi, len(f))
    sign = rng.choice([-1.0, 1.0], len(f))
    psi = np.arccos(np.sinc(2 * f * ear_distance / SPEED_OF_SOUND)) / 2  # np.sinc(x) = sin(πx)/(πx): x = kd/π
    spectra = np.exp(1j * (theta + np.stack([sign, -sign]) * psi))  # (2, F)
    spectra[:, 0] = 0.0  # no DC
    ears = np.fft.irfft(spectra, length, axis=-1)
    return ears / ears.std(axis=-1, keepdims=True)


def _fractional_delays(delays: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and weights (..., TAPS) of Hann-windowed sinc interpolators for delays (...,) in samples."""
    start = np.floor(delays).astype(np.int64) - _TAPS // 2 + 1
    idx = start[..., None] + np.arange(_TAPS)  # (..., TAPS)
    x = idx - delays[..., None]
    w = np.sinc(x) * (0.5 + 0.5 * np.cos(math.pi * x / (_TAPS / 2)))
    w = np.where((idx >= 0) & (idx < length), w, 0.0)
    return np.clip(idx, 0, length - 1), w


def tail_energy(arrivals: Arrivals, listener: np.ndarray, reverb: Reverb, start: float) -> np.ndarray:
    """Energy per band (B,) of the late tail from ``start`` seconds after the first arrival (module docstring)."""
    a = reverb.mean_absorption
    diffuse = (1 - a) / (math.pi * reverb.absorption_area)  # (B,) reverberant energy of a unit source, same room
    late = diffuse * np.exp(-6 * math.log(10) * start / reverb.rt60)
    e = arrivals.energies(listener)  # (B, K)
    found = e[:, arrivals.orders >= 1].sum(axis=1) + e[:, arrivals.orders == DIFFRACTED].sum(axis=1) * (1 - a) / a
    coupling = np.minimum(found / np.maximum(diffuse - late, 1e-12), 1.0)
    return coupling * late


def binaural_ir(
    arrivals: Arrivals,
    center: np.ndarray,
    yaw: float,
    fs: int,
    centers: np.ndarray,
    length: int,
    head: HeadConfig,
    reverb: Reverb | None,
    max_order: int,
    hrtf: HRTF | None = None,
) -> np.ndarray:
    """The binaural impulse response (2, length) float32 of ``arrivals`` at a head at ``center`` (3,) facing ``yaw``.

    Channel 0 is the left ear. Delays are absolute (time 0 = emission); pressure at 1 m of
    a direct path is 1/(4π), as in pyroomacoustics. ``hrtf``: measured band gains for every
    arrival instead of the spherical head's shadow (:mod:`avworld.sim.acoustics.hrtf`).
    """
    n_bands = len(centers)
    ears = ear_positions(center, yaw, head.ear_distance)  # (2, 3)
    h = np.zeros((2, n_bands, length))
    if not arrivals.positions.shape[1]:
        return np.zeros((2, length), np.float32)
    to_src = arrivals.positions.T[None] - ears[:, None]  # (2, K, 3)
    dist = np.maximum(np.linalg.norm(to_src, axis=-1), 0.05)  # (2, K)
    axis = ears - center  # (2, 3), outward
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    cos_theta = np.einsum("ekd,ed->ek", to_src, axis) / dist  # (2, K)
    if hrtf is None:
        shadow = head_shadow(cos_theta, centers, head)  # (2, K, B)
    else:
        shadow = hrtf.gains(head_frame(arrivals.positions.T - center, yaw), centers)  # (2, K, B)
    gain = arrivals.gains.T[None] * shadow / (4 * math.pi * dist[..., None])  # (2, K, B)
    idx, w = _fractional_delays(dist * fs / SPEED_OF_SOUND, length)  # (2, K, T)
    flat = (np.arange(2)[:, None, None, None] * n_bands + np.arange(n_bands)[None, None, :, None]) * length + idx[:, :, None, :]
    vals = gain[..., None] * w[:, :, None, :]  # (2, K, B, T)
    h = np.bincount(flat.ravel(), vals.ravel(), minlength=2 * n_bands * length).reshape(2, n_bands, length)
    n_fft = 2 * length
    masks = band_masks(n_fft, fs, tuple(float(c) for c in centers))  # (B, F)
    spectra = np.fft.rfft(h, n_fft, axis=-1) * masks  # (2, B, F)
    if reverb is not None:
        tail = np.fft.rfft(_tail(arrivals, center, fs, length, reverb, max_order, head.ear_distance), n_fft, axis=-1) * masks
        energy = (np.abs(tail) ** 2).sum(axis=-1)  # (2, B): one noise draw's band energies differ a little between the ears
        spectra += tail * np.sqrt(energy.mean(axis=0) / np.maximum(energy, 1e-30))[..., None]  # a diffuse field: equal per band
    out = np.fft.irfft(spectra.sum(axis=1), n_fft, axis=-1)[:, :length]
    fade = max(length // 20, 1)
    out[:, -fade:] *= np.cos(np.linspace(0, math.pi / 2, fade)) ** 2
    return out.astype(np.float32)


def _tail(arrivals: Arrivals, center: np.ndarray, fs: int, length: int, reverb: Reverb, max_order: int, ear_distance: float) -> np.ndarray:
    """The late tail (2, B, length) per ear and band, before band masking and before its division between the ears."""
    first = float(np.min(np.linalg.norm(arrivals.positions - center[:, None], axis=0)))
    delay = max(max_order, 1) * reverb.mean_free_path / SPEED_OF_SOUND  # the image sources' span after the first arrival
    energy = tail_energy(arrivals, center, reverb, delay)  # (B,)
    start = first / SPEED_OF_SOUND + delay
    rise = reverb.mean_free_path / SPEED_OF_SOUND
    t = np.arange(length) / fs
    onset = np.clip((t - start + rise) / rise, 0.0, 1.0) ** 2  # (L,) smooth rise up to ``start``
    decay = np.exp(-3 * math.log(10) * np.maximum(t - start, 0.0)[None] / reverb.rt60[:, None])  # (B, L): −60 dB per RT60
    envelope = onset[None] * decay  # (B, L)
    scale = np.sqrt(energy / np.maximum((envelope**2).sum(axis=1), 1e-12))  # unit-variance noise
    place = np.round(np.concatenate([center, arrivals.positions.sum(axis=1)]), 2)  # listener and paths: the same place, the same draw
    seed = zlib.crc32(np.ascontiguousarray(place, np.float64).tobytes())
    return diffuse_noise(length, fs, ear_distance, seed)[:, None, :] * (envelope * scale[:, None])[None]
