"""Procedural sound library: seeded, seamlessly looping source signals for the sounding objects.

Each category of :data:`CATEGORIES` is synthesised from a few parameters (pitch, tempo, timbre,
rhythm) drawn from ``np.random.default_rng([zlib.crc32(category), seed])``, so each episode seed
gives its own variation of the category and the same arguments give byte-identical samples.
Signals are mono float32 in [-1, 1]; the acoustics play them round and round and scale them by a
calibrated gain, so a loop's last sample runs into its first without a click.

Level: a loop is scaled to an RMS of :data:`TARGET_RMS` (-20 dBFS) unless that would lift its peak
past :data:`MAX_PEAK`; then its peak is :data:`MAX_PEAK` (impulsive sounds such as a clock end up
quieter than TARGET_RMS; nothing is ever clipped). User WAV files get the same treatment.
"""

from __future__ import annotations

import math
import os
import struct
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
from scipy.io import wavfile
from scipy.signal import resample_poly

from avworld.sim.acoustics.sound_synth import GENERATORS, ONE_SHOTS

SAMPLE_RATE = 16_000
MIN_SAMPLE_RATE = 8_000
TARGET_RMS = 0.1
MAX_PEAK = 0.95
LOOP_FADE_S = 0.05
MIN_WAV_SECONDS = 0.1
"""User WAV files shorter than this are refused: a loop made of a click is no sound to follow."""
MIN_WAV_PEAK_DB = -80.0
"""User WAV files whose peak is below this (dB re full scale) are refused as silent: a silent target is never heard."""
"""Length (s) of the equal-power cross-fade that joins a loop's tail to its head."""
AGENT_SOUNDS: tuple[str, ...] = tuple(ONE_SHOTS)
"""The one-shots the agent makes: ``"footstep"``, ``"bump"``."""
CATEGORIES: tuple[str, ...] = tuple(GENERATORS)
UNHEARD: tuple[str, ...] = ("doorbell", "microwave", "baby", "washing_machine", "cat", "guitar")
"""Held-out categories for generalisation tests (a quarter of them); each shares a family with heard ones."""
HEARD: tuple[str, ...] = tuple(c for c in CATEGORIES if c not in UNHEARD)
SOUND_SETS: dict[str, tuple[str, ...]] = {"heard": HEARD, "unheard": UNHEARD, "all": HEARD + UNHEARD}
"""The categories ``sim.acoustics.sounds`` names."""
USER_SOUNDS = "user"
"""``sim.acoustics.sounds=user``: scenes draw their source's sound from the ids of ``sim.acoustics.user_sounds``."""



def sound_set(sounds: str, user_sounds: Mapping[str, str]) -> tuple[str, ...]:
    """The sound ids a procedural scene draws its source from: the built-in set ``sounds`` names, or the user's WAV ids
    (``sounds=user``)."""
    return tuple(user_sounds) if sounds == USER_SOUNDS else SOUND_SETS[sounds]


class AudioFileError(ValueError):
    """An audio file cannot be used; ``str(err)`` starts with the path."""

    def __init__(self, path: str | os.PathLike, message: str) -> None:
        self.path = os.fspath(path)
        super().__init__(f"{self.path}: {message}")


def _check(fs: int, seed: int) -> None:
    if isinstance(fs, bool) or not isinstance(fs, int | np.integer) or fs < MIN_SAMPLE_RATE:
        raise ValueError(f"fs must be an integer sample rate >= {MIN_SAMPLE_RATE} Hz, got {fs!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def _rng(name: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([zlib.crc32(name.encode()), int(seed)])


def _loop(y: np.ndarray, n: int, fade: int) -> np.ndarray:
    """n samples of y (len(y) >= n + fade), the head cross-faded (equal power) with y[n:n+fade].

    The loop's wrap out[n-1] -> out[0] is then y's own step y[n-1] -> y[n]: no click.
    """
    out = y[:n].copy()
    theta = 0.5 * np.pi * (np.arange(fade) + 0.5) / max(fade, 1)
    out[:fade] = y[:fade] * np.sin(theta) + y[n : n + fade] * np.cos(theta)
    return out


def _normalise(x: np.ndarray) -> np.ndarray:
    """float32 x scaled to RMS TARGET_RMS, or to peak MAX_PEAK if that is lower; silence stays silent."""
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    if peak == 0.0:
        return np.zeros(len(x), np.float32)
    gain = min(TARGET_RMS / float(np.sqrt(np.mean(x**2))), MAX_PEAK / peak)
    return (x * gain).astype(np.float32)


def synthesize(category: str, seed: int, fs: int = SAMPLE_RATE, duration: float = 4.0) -> np.ndarray:
    """A seamless loop of ``duration`` s of ``category``, float32 (round(duration * fs),), level as the module says.

    ``seed`` (>= 0) picks the episode's variation (pitch, tempo, timbre, rhythm); the same arguments give
    byte-identical output. The loop is rendered ``LOOP_FADE_S`` longer and that tail is cross-faded into its head.
    """
    if category not in GENERATORS:
        raise ValueError(f"unknown sound category {category!r}; known: {', '.join(CATEGORIES)}")
    _check(fs, seed)
    if not (math.isfinite(duration) and duration > 0):
        raise ValueError(f"duration must be positive seconds, got {duration!r}")
    n = max(1, round(duration * fs))
    fade = min(round(LOOP_FADE_S * fs), n)
    raw = GENERATORS[category](_rng(category, seed), int(fs), n + fade)
    return _normalise(_loop(raw, n, fade))


def agent_sound(kind: str, seed: int, fs: int = SAMPLE_RATE) -> np.ndarray:
    """A one-shot sound the agent makes, float32 (m,), starting and ending at zero.

    ``"footstep"``: 0.10-0.15 s soft thud and scuff, peak 0.3. ``"bump"``: ~0.2 s low thump of a body hitting
    a wall, peak 0.8. ``seed`` varies length and timbre.
    """
    if kind not in AGENT_SOUNDS:
        raise ValueError(f"unknown agent sound {kind!r}; known: {', '.join(AGENT_SOUNDS)}")
    _check(fs, seed)
    return ONE_SHOTS[kind](_rng(kind, seed), fs)


def load_wav(path: str | os.PathLike, fs: int = SAMPLE_RATE) -> np.ndarray:
    """A WAV file (PCM uint8/int16/int32/int64 or float) as mono float32 (m,) at ``fs``.

    Channels are averaged; integers are scaled to [-1, 1); float data louder than 1 is scaled down by its
    peak; the rate is converted with an exact polyphase ratio and the result clipped to [-1, 1].
    Raises :class:`AudioFileError` naming the file for a missing, unreadable, malformed or empty file, one sampled
    below :data:`MIN_SAMPLE_RATE`, one shorter than :data:`MIN_WAV_SECONDS` and a silent one (peak below
    :data:`MIN_WAV_PEAK_DB`).
    """
    _check(fs, 0)
    if not os.path.isfile(path):
        raise AudioFileError(path, "no such file")
    try:
        rate, data = wavfile.read(path)
    except ZeroDivisionError:
        raise AudioFileError(path, "malformed WAV header (zero channels or zero-size samples)") from None
    except (OSError, ValueError, EOFError, struct.error) as err:
        raise AudioFileError(path, f"not a readable WAV file ({err})") from None
    if rate < MIN_SAMPLE_RATE:
        raise AudioFileError(path, f"sample rate {rate} Hz is below {MIN_SAMPLE_RATE} Hz")
    if data.shape[0] == 0:
        raise AudioFileError(path, "no samples")
    if data.dtype.kind == "u":
        x = (data.astype(np.float64) - 128.0) / 128.0
    elif data.dtype.kind == "i":
        x = data.astype(np.float64) / -float(np.iinfo(data.dtype).min)
    else:
        x = data.astype(np.float64)
        if not np.all(np.isfinite(x)):
            raise AudioFileError(path, "non-finite samples (NaN or inf)")
        x /= max(1.0, float(np.max(np.abs(x))))
    if x.ndim == 2:
        x = x.mean(axis=1)
    if data.shape[0] < MIN_WAV_SECONDS * rate:
        raise AudioFileError(
            path, f"too short: {data.shape[0]} samples ({data.shape[0] / rate:.4g} s), at least {MIN_WAV_SECONDS} s needed"
        )
    peak = float(np.max(np.abs(x)))
    if peak < 10 ** (MIN_WAV_PEAK_DB / 20):
        level = f"{20 * math.log10(peak):.1f} dBFS" if peak > 0 else "every sample 0"
        raise AudioFileError(path, f"silent (peak {level}, below {MIN_WAV_PEAK_DB:g} dBFS): a silent target is never heard")
    if fs != rate:
        g = math.gcd(int(fs), int(rate))
        x = resample_poly(x, int(fs) // g, int(rate) // g)
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def _as_loop(x: np.ndarray, n: int, fade: int) -> np.ndarray:
    """A seamless loop of n samples from a clip of any length: the clip is looped on itself, repeated, and looped again."""
    if len(x) < n + fade:
        inner = min(fade, len(x) // 2)
        x = np.resize(_loop(x, len(x) - inner, inner), n + fade)
    return _loop(x, n, fade)


_CACHE_SIZE = 64


@dataclass(frozen=True)
class SoundLibrary:
    """The sounds a scene may name: the built-in categories plus user WAV files (``user_files``: id -> path).

    ``signal`` returns read-only float32 loops of ``loop_seconds`` at ``fs``, cached (at most 64 entries).
    A user file is normalised like the built-ins, looped, and started at a seed-dependent point.
    """

    fs: int = SAMPLE_RATE
    loop_seconds: float = 4.0
    user_files: Mapping[str, str | os.PathLike] = field(default_factory=dict)
    _cache: dict[tuple[str, int], np.ndarray] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check(self.fs, 0)
        if not (math.isfinite(self.loop_seconds) and self.loop_seconds > 0):
            raise ValueError(f"loop_seconds must be positive, got {self.loop_seconds!r}")
        for sound in self.user_files:
            if not isinstance(sound, str) or not sound:
                raise ValueError(f"user sound ids must be non-empty strings, got {sound!r}")
            if sound in CATEGORIES or sound in AGENT_SOUNDS:
                raise ValueError(f"user sound id {sound!r} would shadow a built-in sound; pick another id")
        object.__setattr__(self, "user_files", MappingProxyType(dict(self.user_files)))

    def ids(self) -> tuple[str, ...]:
        """Every sound id: the built-in categories, then the user ids."""
        return CATEGORIES + tuple(self.user_files)

    def signal(self, sound: str, seed: int) -> np.ndarray:
        """The loop of ``sound`` for episode ``seed``: read-only float32 (round(loop_seconds * fs),)."""
        if sound not in CATEGORIES and sound not in self.user_files:
            raise ValueError(f"unknown sound {sound!r}; known: {', '.join(self.ids())}")
        _check(self.fs, seed)
        if sound in CATEGORIES:
            return self._cached((sound, int(seed)), lambda: synthesize(sound, seed, self.fs, self.loop_seconds))
        n = max(1, round(self.loop_seconds * self.fs))
        loop = self._cached(
            (sound, -1), lambda: _normalise(_as_loop(load_wav(self.user_files[sound], self.fs), n, min(round(LOOP_FADE_S * self.fs), n)))
        )
        shifted = np.roll(loop, -int(_rng(sound, seed).integers(n)))
        shifted.setflags(write=False)
        return shifted

    def _cached(self, key: tuple[str, int], make: Callable[[], np.ndarray]) -> np.ndarray:
        if key in self._cache:
            self._cache[key] = self._cache.pop(key)  # most recently used last
        else:
            if len(self._cache) >= _CACHE_SIZE:
                del self._cache[next(iter(self._cache))]
            value = make()
            value.setflags(write=False)
            self._cache[key] = value
        return self._cache[key]
