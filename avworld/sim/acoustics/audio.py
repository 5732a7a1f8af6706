"""The sound of each step: every source's looping signal through the current binaural responses.

Step t covers samples [tN, (t+1)N) of each source's loop (N = step time × fs). Its
output is the *steady-state* convolution of the loop with a response: the last N
samples of the linear convolution of the loop's samples [tN − L + 1, (t+1)N) with the
L-sample response, so the reverberation of earlier steps is there from the first
step. When the head moves or turns, the step is rendered through both the previous
and the new responses and cross-faded with complementary raised-cosine gains over
the step: at the boundary the output continues exactly where the previous step
ended, so there are no clicks.

The agent's own sounds (a footstep on FORWARD, a bump on collision) are one-shots
convolved with the response from its feet to its ears; their reverberation spills
over into the next steps through an overlap-add buffer. A low noise floor is added
last.

**Levels.** The mix is scaled by ``acoustics.headroom_db`` (a master gain: source,
footsteps, bumps and noise keep their relative loudness) so that its loud moments (a
bump next to a wall, the source at arm's length) fit in full scale, then passed through
a soft limiter that leaves every sample below :data:`LIMIT_KNEE` untouched and bends the
rare louder ones smoothly towards, never onto, ±1 (:func:`soft_limit`): the observation
never holds a clipped sample.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft

from avworld.sim.acoustics.responses import SELF, AcousticsConfig, SceneAcoustics
from avworld.sim.acoustics.sounds import AGENT_SOUNDS, agent_sound

EMIT_AT = 0.1
"""Where in its step an agent sound starts, as a fraction of the step."""
N_VARIANTS = 4
"""One-shot variants per agent sound per episode, so footsteps do not all sound alike."""
LIMIT_KNEE = 0.9
"""Samples up to this magnitude pass the limiter unchanged."""
LIMIT_CEILING = 0.999
"""No sample leaves the limiter louder than this (-0.01 dBFS): a float32 observation never touches ±1."""


def soft_limit(x: np.ndarray, knee: float = LIMIT_KNEE, ceiling: float = LIMIT_CEILING) -> np.ndarray:
    """Identity for |x| ≤ ``knee``; above it, knee + (ceiling − knee)·tanh((|x| − knee)/(ceiling − knee)) with x's sign.

    Continuous with a continuous slope at the knee, monotone, and at most ``ceiling`` in magnitude.
    """
    over = np.abs(x) > knee
    if not over.any():
        return x
    span = ceiling - knee
    soft = np.sign(x) * (knee + span * np.tanh((np.abs(x) - knee) / span))
    return np.where(over, soft, x).astype(x.dtype)


@dataclass(frozen=True)
class Emitter:
    """A sounding object of an episode: position (x, y, z) and its loop (mono float32)."""

    position: tuple[float, float, float]
    signal: np.ndarray


class AudioRenderer:
    """Per-step binaural audio for one episode at a time; see the module docstring."""

    def __init__(self, acoustics: SceneAcoustics, step_samples: int) -> None:
        self.acoustics, self.n = acoustics, step_samples
        c: AcousticsConfig = acoustics.config
        self.length = c.ir_length
        self.n_fft = sfft.next_fast_len(step_samples + self.length - 1, real=True)
        t = np.arange(step_samples) / step_samples
        self.fade_in = (np.sin(t * math.pi / 2) ** 2).astype(np.float32)  # (N,)
        self.emitters: list[Emitter] = []
        self.variants: dict[str, list[np.ndarray]] = {}
        self.noise = np.zeros(0, np.float32)
        self.spill = np.zeros((2, 0), np.float32)
        self.step_index = 0
        self.pose: tuple[float, float, float] | None = None

    def start(self, emitters: list[Emitter], pose: tuple[float, float, float], seed: int) -> np.ndarray:
        """Begin an episode; returns the sound of its first step (2, N) float32."""
        c = self.acoustics.config
        self.emitters = emitters
        rng = np.random.default_rng([seed, 0xA0D10])
        self.variants = {k: [agent_sound(k, int(s), c.fs) for s in rng.integers(0, 2**31, N_VARIANTS)] for k in AGENT_SOUNDS}
        self.noise = self._noise(rng, c.noise_floor_db)
        self.spill = np.zeros((2, 0), np.float32)
        self.step_index = 0
        self.pose = pose
        return self._mix(pose, pose, ())

    def fork(self) -> AudioRenderer:
        """A renderer that continues this episode's sound on its own, for branching futures (a planner's perfect model):
        it shares the read-only emitters, agent-sound variants, noise and acoustics, and has its own step count, head pose
        and ringing agent sounds (never changed in place, so a shallow copy parts them)."""
        return copy.copy(self)

    def step(self, pose: tuple[float, float, float], events: tuple[str, ...]) -> np.ndarray:
        """The sound (2, N) float32 of the next step, the head now at ``pose``; ``events`` names agent sounds made."""
        if self.pose is None:
            raise RuntimeError("AudioRenderer.step before start")
        self.step_index += 1
        previous, self.pose = self.pose, pose
        return self._mix(previous, pose, events)

    def _mix(self, previous: tuple[float, float, float], pose: tuple[float, float, float], events: tuple[str, ...]) -> np.ndarray:
        ac, n, n_fft = self.acoustics, self.n, self.n_fft
        moved = ac.quantise(*previous) != ac.quantise(*pose)
        out = np.zeros((2, n), np.float32)
        if self.emitters:
            segs = np.stack([self._segment(e.signal) for e in self.emitters])  # (S, N + L - 1)
            spectra = sfft.rfft(segs, n_fft, axis=-1)  # (S, F)
            new = sum(spectra[i] * ac.spectrum(e.position, *pose, n_fft) for i, e in enumerate(self.emitters))  # (2, F)
            if moved:
                old = sum(spectra[i] * ac.spectrum(e.position, *previous, n_fft) for i, e in enumerate(self.emitters))
                both = sfft.irfft(np.stack([new, old]), n_fft, axis=-1)[..., self.length - 1 : self.length - 1 + n]  # (2, 2, N)
                out += both[0] * self.fade_in + both[1] * (1 - self.fade_in)
            else:
                out += sfft.irfft(new, n_fft, axis=-1)[:, self.length - 1 : self.length - 1 + n]
            out *= ac.config.source_level
        out += self._agent_sounds(pose, events)
        if self.noise.size:
            start = (self.step_index * n) % self.noise.shape[1]
            out += np.take(self.noise, np.arange(start, start + n), axis=1, mode="wrap")
        out *= np.float32(10 ** (-ac.config.headroom_db / 20))
        return soft_limit(out).astype(np.float32)

    def _segment(self, loop: np.ndarray) -> np.ndarray:
        """Samples [tN − L + 1, (t+1)N) of a loop, wrapping around it."""
        end = (self.step_index + 1) * self.n
        return np.take(loop, np.arange(end - self.n - self.length + 1, end), mode="wrap")

    def _agent_sounds(self, pose: tuple[float, float, float], events: tuple[str, ...]) -> np.ndarray:
        c = self.acoustics.config
        n = self.n
        if events and c.agent_sounds and c.agent_sound_level > 0:
            offset = round(EMIT_AT * n)
            shots = [self.variants[k][self.step_index % N_VARIANTS] for k in events]
            length = offset + max(len(s) for s in shots)
            dry = np.zeros(length, np.float32)
            for s in shots:
                dry[offset : offset + len(s)] += s
            n_fft = sfft.next_fast_len(length + self.length - 1, real=True)
            wet = sfft.irfft(sfft.rfft(dry, n_fft) * self.acoustics.spectrum(SELF, *pose, n_fft), n_fft, axis=-1)[
                :, : length + self.length - 1
            ]
            wet *= c.agent_sound_level
            spill = np.zeros((2, max(wet.shape[1], self.spill.shape[1])), np.float32)
            spill[:, : self.spill.shape[1]] += self.spill
            spill[:, : wet.shape[1]] += wet
            self.spill = spill
        head = np.zeros((2, n), np.float32)
        k = min(n, self.spill.shape[1])
        head[:, :k] = self.spill[:, :k]
        self.spill = self.spill[:, n:]
        return head

    def _noise(self, rng: np.random.Generator, level_db: float) -> np.ndarray:
        """A 4-second loop (2, 4 fs) of pink-ish background noise at ``level_db`` RMS; empty if -inf."""
        if not math.isfinite(level_db):
            return np.zeros((2, 0), np.float32)
        fs = self.acoustics.config.fs
        white = rng.standard_normal((2, 4 * fs))
        spec = np.fft.rfft(white, axis=-1)
        f = np.fft.rfftfreq(white.shape[1], 1 / fs)
        spec /= np.sqrt(np.maximum(f, 20.0))  # 1/f power: pink
        pink = np.fft.irfft(spec, white.shape[1], axis=-1)
        pink *= 10 ** (level_db / 20) / np.sqrt(np.mean(pink**2))
        return pink.astype(np.float32)


SPECTROGRAM_FLOOR = 1e-5


def log_spectrogram(audio: np.ndarray, n_fft: int = 256, hop: int = 128) -> np.ndarray:
    """Log-magnitude STFT (2, n_fft//2+1, T) float32 of ``audio`` (2, N) with a Hann window; T = 1 + (N − n_fft) // hop."""
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(audio, n_fft, axis=-1)[:, ::hop]  # (2, T, n_fft)
    mag = np.abs(np.fft.rfft(frames * window, axis=-1))  # (2, T, F)
    return np.log(mag + SPECTROGRAM_FLOOR).transpose(0, 2, 1).astype(np.float32)


def spectrogram_bounds(n_fft: int = 256) -> tuple[float, float]:
    """The range of :func:`log_spectrogram` values for audio in [-1, 1]."""
    window = np.hanning(n_fft + 1)[:-1]
    return math.log(SPECTROGRAM_FLOOR), math.log(float(window.sum()) + SPECTROGRAM_FLOOR)
