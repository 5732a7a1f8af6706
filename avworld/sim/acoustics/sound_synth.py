"""How each sound is made: the per-category synthesisers and the agent's one-shots, with their DSP helpers.

Every synthesiser draws all its parameters from the ``rng`` it is given, so the caller's seeding
(:mod:`avworld.sim.acoustics.sounds`) makes its output reproducible. Output is raw float64 at any level; the
caller normalises and loops it. Time is in s, frequency in Hz; partials past 0.45 fs are left out.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.signal import butter, sosfilt

Generator = Callable[[np.random.Generator, int, int], np.ndarray]
"""(rng, fs, n) -> float64 (n,) raw signal of one category, any level."""
OneShot = Callable[[np.random.Generator, int], np.ndarray]
"""(rng, fs) -> float32 (m,) one-shot sound the agent makes, starting and ending at zero."""

# --- building blocks (time in s, frequency in Hz, arrays float64 (n,)) ---


def _filter(x: np.ndarray, fs: int, lo: float | None = None, hi: float | None = None, order: int = 4) -> np.ndarray:
    """x through a Butterworth band-pass [lo, hi] (either edge may be None); a band past 0.45 fs is cut off there."""
    if lo is not None and lo >= 0.45 * fs:
        return np.zeros_like(x)
    hi = None if hi is None or hi >= 0.45 * fs else hi
    if lo is None and hi is None:
        return x
    if lo is None or hi is None:
        sos = butter(order, lo if hi is None else hi, "highpass" if hi is None else "lowpass", fs=fs, output="sos")
    else:
        sos = butter(order, [lo, hi], "bandpass", fs=fs, output="sos")
    return sosfilt(sos, x)


def _noise(rng: np.random.Generator, n: int, fs: int, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Gaussian noise band-limited to [lo, hi] Hz."""
    return _filter(rng.standard_normal(n), fs, lo, hi)


def _harmonics(f0: np.ndarray, fs: int, amps: np.ndarray | list[float], phase0: float = 0.0) -> np.ndarray:
    """Sum of partials k·f0 (f0 (n,) may vary with time) with amplitudes amps[k-1]; partials past 0.45 fs are left out."""
    phase = 2 * np.pi * np.cumsum(f0) / fs + phase0
    top = float(np.max(f0))
    out = np.zeros_like(phase)
    for k, a in enumerate(amps, 1):
        if k * top < 0.45 * fs:
            out += a * np.sin(k * phase)
    return out


def _modes(freqs: np.ndarray | list[float], amps: np.ndarray | list[float], taus: np.ndarray | list[float], fs: int, m: int) -> np.ndarray:
    """m samples of exponentially decaying sinusoids (struck bodies): sum of a·exp(-t/tau)·sin(2πft)."""
    f, a, tau = (np.asarray(v, float)[:, None] for v in (freqs, amps, taus))
    t = np.arange(m) / fs
    return np.sum(np.where(f < 0.45 * fs, a, 0.0) * np.exp(-t / tau) * np.sin(2 * np.pi * f * t), axis=0)


def _adsr(pos: np.ndarray, dur: np.ndarray | float, attack: float, decay: float, sustain: float, release: float) -> np.ndarray:
    """Envelope at time pos into a note of length dur: linear attack, exponential decay to sustain, linear release."""
    body = sustain + (1 - sustain) * np.exp(-pos / decay)
    return np.minimum(pos / attack, 1.0) * body * np.clip((dur - pos) / release, 0.0, 1.0)


def _sequence(n: int, fs: int, durs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Back-to-back segments of lengths durs (s): each sample's segment index and time into it (s), both (n,)."""
    starts = np.concatenate([[0.0], np.cumsum(durs)[:-1]])
    idx = np.clip(np.searchsorted(starts, np.arange(n) / fs, side="right") - 1, 0, len(durs) - 1)
    return idx, np.arange(n) / fs - starts[idx]


def _add(out: np.ndarray, event: np.ndarray, start: float, fs: int) -> None:
    """Add event into out from time start (s) on; what runs past the end is cut."""
    s = round(start * fs)
    m = min(len(event), len(out) - s)
    if s >= 0 and m > 0:
        out[s : s + m] += event[:m]


def _fade(x: np.ndarray, fs: int, attack: float, release: float) -> np.ndarray:
    """x with raised-cosine fades in and out, so an event starts and ends at zero."""
    a, r = min(round(attack * fs), len(x)), min(round(release * fs), len(x))
    w = np.ones(len(x))
    w[:a] = 0.5 - 0.5 * np.cos(np.pi * np.arange(a) / max(a, 1))
    w[len(x) - r :] *= 0.5 + 0.5 * np.cos(np.pi * np.arange(1, r + 1) / max(r, 1))
    return x * w


def _gate(on: np.ndarray, fs: int, ramp: float = 0.005) -> np.ndarray:
    """A 0/1 gate (n,) with its edges smoothed over `ramp` seconds."""
    k = np.hanning(max(3, round(ramp * fs)))
    return np.convolve(on.astype(float), k / k.sum())[(len(k) - 1) // 2 :][: len(on)]


def _formants(x: np.ndarray, fs: int, freqs: np.ndarray, gains: tuple[float, ...] = (1.0, 0.5, 0.25)) -> np.ndarray:
    """x through parallel resonators at the formant frequencies (a vowel), bandwidth ~12% each."""
    out = np.zeros_like(x)
    for f, g in zip(freqs, gains, strict=False):
        if f * 1.06 < 0.45 * fs:
            bw = max(60.0, 0.12 * f)
            out += g * _filter(x, fs, f - bw / 2, f + bw / 2, order=1)
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    """x scaled to unit standard deviation (silence stays silent)."""
    return x / (np.std(x) + 1e-12)


def _midi_hz(note: np.ndarray | float) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(note, float) - 69) / 12)


_VOWELS = np.array([[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240], [530, 1840, 2480], [570, 840, 2410]], float)
"""Formants F1-F3 (Hz) of /a i u e o/ for an adult voice."""


def _voiced(rng: np.random.Generator, fs: int, n: int, f0: np.ndarray, vowel: np.ndarray, scale: float) -> np.ndarray:
    """A harmonic source at pitch f0 (n,) through the formants of vowel (n,) (indices into _VOWELS), scaled by `scale`."""
    src = _harmonics(f0, fs, 1.0 / np.arange(1, 41), rng.uniform(0, 2 * np.pi))
    return sum(np.where(vowel == v, _formants(src, fs, _VOWELS[v] * scale), 0.0) for v in np.unique(vowel))


# --- categories: each (rng, fs, n) -> (n,) ---


def _telephone(rng: np.random.Generator, fs: int, n: int) -> np.ndarray:
    t = np.arange(n) / fs
    f1 = rng.uniform(380, 480)
    tone = np.tanh(2 * (np.sin(2 * np.pi * f1 * t) + np.sin(2 * np.pi * (f1 + rng.uniform(25, 60)) * t + rng.uniform(0, 6))))
    on, gap, period = rng.uniform(0.3, 0.45), rng.uniform(0.15, 0.25), rng.uniform(2.5, 3.5)
    ph = (t - rng.uniform(0, period)) % period
    return tone * _gate((ph < on) | ((ph >= on + gap) & (ph < 2 * on + gap)), fs)


def _alarm(rng: np.random.Generator, fs: int, n: int) -> np.ndarray:
    t = np.arange(n) / fs
    fa, rate, ratio = rng.uniform(700, 1100), rng.uniform(4, 9), rng.uniform(1.25, 1.6)
    high = _gate((t * rate + rng.random()) % 1 < 0.5, fs, 0.003)
    return _harmonics(fa * (1 + (ratio - 1) * high), fs, [1, 0, 1 / 3, 0, 1 / 5, 0, 1 / 7])  # square-ish


def _beeps(rng: np.random.Generator, fs: int, n: int) -> np.ndarray:
    f, dur, gap, period = rng.uniform(1000, 3000), rng.uniform(0.05, 0.15), rng.uniform(0.08, 0.2), rng.uniform(0.8, 1.6)
    beep = _fade(np.sin(2 * np.pi * f * np.arange(round(dur * fs)) / fs), fs, 0.005, 0.005)
    out, count = np.zeros(n), int(rng.integers(1, 4))
    for start in np.arange(rng.uniform(0, period) - period, n / fs, period):
        for i in range(count):
            _add(out, beep, start + i * (dur + gap), fs)
    return out


def _music(rng: np.random.Generator, fs: int, n: int) -> np.ndarray:
    t = np.arange(n) / fs
    eighth, root = 30 / rng.uniform(90, 150), 55 + int(rng.integers(0, 8))
    scale = np.array([0, 2, 4, 7, 9, 12, 14, 16, 19])
    count = int(n / fs / eighth) + 2
    lengths = rng.choice([1, 1, 2, 2, 3], count) * eighth
    notes = root + 12 + scale[np.clip(np.cumsum(rng.integers(-2, 3, count)) + 4, 0, len(scale) - 1)]
    idx, pos = _sequence(n, fs, lengths)
    lead = _harmonics(_midi_hz(notes)[idx] * (1 + 0.004 * np.sin(2 * np.pi * 5.5 * t)), fs, 0.6 ** np.arange(8))
    lead *= _adsr(pos, lengths[idx], 0.02, 0.15, 0.6, 0.04)
    bidx, bpos = _sequence(n, fs, np.full(count, 2 * eighth))
    bass_notes = root - 12 + np.array([0, 7, 5, 9])[rng.integers(0, 4, count)]
    bass = _harmonics(_midi_hz(bass_notes)[bidx], fs, [1, 0.5, 0.25]) * _adsr(bpos, 2 * eighth, 0.005, 0.2, 0.3, 0.02)
    kick = np.sin(2 * np.pi * (50 * bpos + 2.1 * (1 - np.exp(-bpos / 0.03)))) * _adsr(bpos, 2 * eighth, 0.002, 0.12, 0, 0.01)
    hat = _noise(rng, n, fs, lo=6000) * _adsr(t % eighth, eighth, 0.001, 0.015, 0, 0.005)
    return 0.5 * lead + 0.4 * bass + 0.6 * kick + 0.15 * hat


def _piano_note(rng: np.random.Generator, fs: int, note: float, inharmonicity: float) -> np.ndarray:
    f, k = float(_midi_hz(note)), np.arange(1, 13)
    m = round(1.5 * fs)
    body = _modes(k * f * np.sqrt(1 + inharmonicity * k**2), k**-1.1 * rng.uniform(0.7, 1.0, 12), 0.9 * (262 / f) ** 0.5 / k**0.6, fs, m)
    hammer = _noise(rng, m, fs, hi=3000) * np.exp(-np.arange(m) / fs / 0.004)
    return _fade(body + 0.05 * hammer, fs, 0.002, 0.05)


def _piano(rng: np.random.Generator, fs: int, n: int) -> np.ndarray:
    beat, root, b = 60 / rng.uniform(60, 110), 45 + int(rng.integers(0, 12)), rng.uniform(1e-4, 4e-4)
    degrees = np.array([0, 2, 4, 5, 7, 9, 11, 12, 14, 16, 17, 19, 21, 24])
    out = np.zeros(n)
    for start in np.arange(rng.uniform(0, beat) - beat, n / fs, beat):
        for d in rng.choice(degrees, int(rng.integers(1, 4)), replace=False):
            _add(out, _piano_note(rng, fs, root + d, b), start + rng.uniform(0, 0.02), fs)
    return out


def _speech(rng: np.random.Generator, fs: int, n: int) -> np.ndarray:
    t = np.arange(n) / fs
    f0 = rng.uniform(95, 230)
    count = int(n / fs / 0.12) + 1
    durs = rng.uniform(0.12, 0.32, count)
    idx, pos = _sequence(n, fs, durs)
    voiced = (rng.random(count) > 0.15)[idx]
    pitch = f0 * (1 + 0.12 * np.sin(2 * np.pi * rng.uniform(0.3, 0.8) * t + rng.uniform(0, 6)) - 0.1 * pos / durs[idx])
    env = np.sin(np.pi * pos / durs[idx]) ** 0.7 * voiced
    vowels = _voiced(rng, fs, n, pitch, rng.integers(0, 5, count)[idx], (f0 / 150) ** 0.2)
    fricative = _noise(rng, n, fs, 3000, 7000) * (rng.random(count) < 0.4)[idx] * voiced * _adsr(pos, 0.07, 0.01, 0.02, 0.3, 0.02)
    return vowels * env + 0.3 * fricative


def _radio(rng: np.random.Generator, fs: int, n: int) -> np.ndarray:
    voice, music = _speech(rng, fs, n), _music(rng, fs, n)
    content = _unit(voice) + rng.uniform(0.2, 0.6) * _unit(music)
    band = _filter(content, fs, rng.uniform(250, 400), rng.uniform(2800, 3800), order=6)
    crackle = _filter(rng.standard_normal(n) * (rng.random(n) < 2e-3), fs, lo=1000)
    return np.tanh(1.5 * _unit(band)) + 0.25 * rng.standard_normal(n) + 2 * crackle


def _fan(rng: np.random.Generator, fs: int, n: int) -> np.ndarray:
    t = np.arange(n) / fs
    blade = rng.uniform(20, 60)
    hum = _harmonics(np.full(n, blade), fs, [1, 0.5, 0.3], rng.uniform(0, 6))
    air = _noise(rng, n, fs, hi=rng.uniform(300, 800)) * (1 + 0.3 * np.sin(2 * np.pi * blade * t))
    return hum + 1.5 * _unit(air) + 0.2 * _unit(_noise(rng, n, fs, 200, 2000))


def _dog(rng: np.random.Generator, fs: int, n: int) -> np.ndarray:
    f0, period = rng.uniform(350, 700), rng.uniform(1.2, 2.5)
    out = np.zeros(n)
    for group in np.arange(rng.uniform(0, period) - period, n / fs, period):
        for i in range(int(rng.integers(1, 4))):
            m = round(rng.uniform(0.1, 0.22) * fs)
            pos = np.arange(m) / m
            pitch = f0 * rng.uniform(0.9, 1.1) * (1 + 0.3 * np.sin(np.pi * pos) - 0.3 * pos)
            src = _harmonics(pitch, fs, 0.8 ** np.arange(15)) + 0.3 * rng.standard_normal(m)
            bark = _formants(src, fs, np.array([800, 1600, 2600]) * rng.uniform(0.9, 1.1))
            _add(out, _fade(bark * np.exp(-3 * pos), fs, 0.008, 0.03), group + i * rng.uniform(0.25, 0.35), fs)
    return out


def _kettle(rng: np.random.Generator, fs: int, n: int) -> np.ndarray:
    t = np.arange(n) / fs
    swell = 0.6 - 0.4 * np.cos(2 * np.pi * t / t[-1])
    fw = rng.uniform(1500, 3000) * (1 + 0.03 * t / t[-1] + 0.01 * np.sin(2 * np.pi * rng.uniform(4, 8) * t))
    whistle = _harmonics(fw, fs, [1, 0.1]) * swell**2
    hiss = _noise(rng, n, fs, 1500, 6000) * (0.5 + swell)
    return 0.5 * whistle + 0.4 * _unit(hiss) + 0.3 * _unit(_noise(rng, n, fs, 100, 500))


def _clock(rng: np.random.Generator, fs: int, n: int) -> np.ndarray:
    period, f = rng.choice([0.5, 1.0]) * rng.uniform(0.97, 1.03), rng.uniform(2000, 4500)
    out = np.zeros(n)
    for i, start in enumerate(np.arange(rng.uniform(0, period), n / fs, period)):
        fi = f * (0.8 if i % 2 else 1.0)
        tick = _modes([fi, 1.7 * fi, 600], [1, 0.5, 0.3], [0.003, 0.002, 0.008], fs, round(0.04 * fs))
        _add(out, _fade(tick, fs, 0.0003, 0.01), start, fs)
    return out


def _water(rng: np.random.Generator, fs: int, n: int) -> np.ndarray:
    stream = _noise(rng, n, fs, 400, 4000) * np.exp(0.3 * _unit(_noise(rng, n, fs, hi=8)))
    out = 0.3 * _unit(stream)
    rate = rng.uniform(20, 60)
    for start in np.sort(rng.uniform(0, n / fs, int(rate * n / fs))):
        m, f, tau = round(0.04 * fs), rng.uniform(500, 3000), rng.uniform(0.005, 0.02)
        t = np.arange(m) / fs
        bubble = np.sin(2 * np.pi * f * (t + 0.5 * t**2 / tau * 0.1)) * np.exp(-t / tau)
        _add(out, _fade(bubble, fs, 0.001, 0.005) * rng.uniform(0.2, 1.0), start, fs)
    return out


def _knock(rng: np.random.Generator, fs: int, n: int) -> np.ndarray:
    modes, period, spacing = rng.uniform(150, 600, 3), rng.uniform(1.5, 3.0), rng.uniform(0.15, 0.3)
    out = np.zeros(n)
    for group in np.arange(rng.uniform(0, period) - period, n / fs, period):
        for i in range(int(rng.integers(2, 5))):
            m = round(0.12 * fs)
            hit = _modes(modes * rng.uniform(0.97, 1.03), [1, 0.6, 0.4], rng.uniform(0.015, 0.04, 3), fs, m)
            hit += 0.3 * _noise(rng, m, fs, hi=3000) * np.exp(-np.arange(m) / fs / 0.003)
            _add(out, _fade(hit, fs, 0.0005, 0.02) * rng.uniform(0.7, 1.0), group + i * spacing, fs)
    return out


def _vacuum(rng: np.random.Generator, fs: int, n: int) -> np.ndarray:
    t = np.arange(n) / fs
    motor = rng.uniform(400, 900) * (1 + 0.01 * np.sin(2 * np.pi * rng.uniform(0.2, 0.5) * t))
    roar = _noise(rng, n, fs, 800, 5000) + 0.5 * _noise(rng, n, fs, 100, 800)
    return (0.5 * _harmonics(motor, fs, [1, 0.6, 0.4, 0.3]) + _unit(roar)) * (1 + 0.15 * np.sin(2 * np.pi * 0.3 * t))


def _birds(rng: np.random.Generator, fs: int, n: int) -> np.ndarray:
    top, period = rng.uniform(3000, 6000), rng.uniform(0.6, 1.5)
    out = np.zeros(n)
    for group in np.arange(rng.uniform(0, period) - period, n / fs, period):
        dur, sweep = rng.uniform(0.03, 0.09), rng.uniform(-0.5, 0.3)
        for i in range(int(rng.integers(3, 9))):
            pos = np.arange(round(dur * fs)) / round(dur * fs)
            f = np.minimum(top * (1 + sweep * pos), 0.4 * fs)
            _add(out, _harmonics(f, fs, [1, 0.15]) * np.sin(np.pi * pos) ** 2, group + i * dur * 1.4, fs)
    return out


def _engine(rng: np.random.Generator, fs: int, n: int) -> np.ndarray:
    t = np.arange(n) / fs
    fire = rng.uniform(20, 45) * (1 + 0.03 * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t))
    pulses = _harmonics(fire, fs, np.arange(1, 31) ** -0.7) * np.exp(0.2 * _unit(_noise(rng, n, fs, hi=30)))
    return _filter(pulses, fs, hi=1000) + 0.5 * _unit(_noise(rng, n, fs, 30, 300))


def _siren(rng: np.random.Generator, fs: int, n: int) -> np.ndarray:
    t = np.arange(n) / fs
    f = rng.uniform(900, 1100) + rng.uniform(300, 500) * np.sin(2 * np.pi * t / rng.uniform(2, 4) + rng.uniform(0, 6))
    return _harmonics(f, fs, [1, 0, 0.3])


def _typing(rng: np.random.Generator, fs: int, n: int) -> np.ndarray:
    gaps = rng.exponential(rng.uniform(0.1, 0.2), int(n / fs / 0.05) + 1) + 0.04
    gaps[rng.random(len(gaps)) < 0.08] += 0.6
    out, key = np.zeros(n), rng.uniform(2000, 4000)
    m = round(0.03 * fs)
    snap = np.exp(-np.arange(m) / fs / 0.002)
    for start in np.cumsum(gaps) - gaps[0] * rng.random():
        f = key if rng.random() > 0.15 else key / 4  # now and then the space bar
        click = _modes([f, 1.5 * f], [1, 0.5], [0.004, 0.002], fs, m) + 0.5 * _noise(rng, m, fs, lo=4000) * snap
        _add(out, _fade(click, fs, 0.0003, 0.01) * rng.uniform(0.5, 1.0), start, fs)
    return out


def _doorbell(rng: np.random.Generator, fs: int, n: int) -> np.ndarray:
    f, period = rng.uniform(600, 900), rng.uniform(2.0, 3.5)
    out, m = np.zeros(n), round(1.5 * fs)
    ding, dong = (_modes(f * r * np.array([1, 2.0, 2.76, 5.4]), [1, 0.5, 0.35, 0.15], [1.0, 0.5, 0.3, 0.15], fs, m) for r in (1, 0.8))
    for start in np.arange(rng.uniform(0, period) - period, n / fs, period):
        _add(out, _fade(ding, fs, 0.001, 0.1), start, fs)
        _add(out, _fade(dong, fs, 0.001, 0.1), start + rng.uniform(0.4, 0.6), fs)
    return out


def _microwave(rng: np.random.Generator, fs: int, n: int) -> np.ndarray:
    t = np.arange(n) / fs
    buzz = _harmonics(np.full(n, rng.choice([100.0, 120.0])), fs, np.arange(1, 21) ** -0.8, rng.uniform(0, 6))
    fan = _noise(rng, n, fs, 300, 2500)
    rattle = _noise(rng, n, fs, 2000, 5000) * (1 + np.sin(2 * np.pi * rng.uniform(3, 7) * t)) ** 2
    return buzz + 2 * _unit(fan) + 0.3 * _unit(rattle)


def _baby(rng: np.random.Generator, fs: int, n: int) -> np.ndarray:
    f0, count = rng.uniform(350, 550), int(n / fs / 0.5) + 1
    durs = np.where(np.arange(count) % 2 == 0, rng.uniform(0.6, 1.2, count), rng.uniform(0.2, 0.5, count))
    idx, pos = _sequence(n, fs, durs)
    cry = np.arange(count)[idx] % 2 == 0
    pitch = f0 * (1 + 0.25 * np.sin(np.pi * pos / durs[idx]) * cry) * (1 + 0.01 * _unit(_noise(rng, n, fs, hi=30)))
    wail = _voiced(rng, fs, n, pitch, rng.choice([0, 3], count)[idx], 1.4) * np.sin(np.pi * pos / durs[idx]) ** 0.5 * cry
    inhale = _noise(rng, n, fs, 1000, 4000) * np.sin(np.pi * pos / durs[idx]) * ~cry
    return _unit(wail) + 0.05 * _unit(inhale)


def _washing_machine(rng: np.random.Generator, fs: int, n: int) -> np.ndarray:
    t = np.arange(n) / fs
    turn = rng.uniform(0.8, 1.5)
    slosh = _noise(rng, n, fs, 100, 1000) * np.abs(np.sin(np.pi * turn * t + rng.uniform(0, 3))) ** 4
    motor = _harmonics(np.full(n, rng.uniform(50, 100)), fs, [1, 0.5, 0.3, 0.2])
    out = _unit(slosh) + 0.3 * motor
    clunk = _fade(_modes([80, 190], [1.5, 0.7], [0.05, 0.03], fs, round(0.2 * fs)), fs, 0.002, 0.05)
    for start in np.arange(rng.uniform(0, 1 / turn), n / fs, 1 / turn):
        _add(out, clunk, start, fs)
    return out


def _cat(rng: np.random.Generator, fs: int, n: int) -> np.ndarray:
    f0, period = rng.uniform(500, 800), rng.uniform(1.3, 2.5)
    out = np.zeros(n)
    for start in np.arange(rng.uniform(0, period) - period, n / fs, period):
        m = round(rng.uniform(0.4, 0.9) * fs)
        pos = np.arange(m) / m
        src = _harmonics(f0 * (1 + 0.3 * np.sin(np.pi * pos**0.7)), fs, 0.7 ** np.arange(12))
        ee, ow = _formants(src, fs, _VOWELS[1] * 1.3), _formants(src, fs, _VOWELS[2] * 1.3)
        _add(out, _fade((1 - pos) * ee + pos * ow, fs, 0.05, 0.15), start, fs)
    return out


def _guitar(rng: np.random.Generator, fs: int, n: int) -> np.ndarray:
    step, root = 30 / rng.uniform(90, 150), 40 + int(rng.integers(0, 12))
    chord = root + np.array([0, 7, 12, 16, 19, 24])[rng.permutation(6)]
    out, m, k = np.zeros(n), round(0.6 * fs), np.arange(1, 25)
    pluck = rng.uniform(0.1, 0.3)  # where along the string it is plucked: partials with a node there are missing
    for i, start in enumerate(np.arange(rng.uniform(0, step) - step, n / fs, step)):
        f = float(_midi_hz(chord[i % 6]))
        note = _modes(k * f, np.abs(np.sin(np.pi * k * pluck)) / k, 0.3 / (1 + (k * f / 2500) ** 1.5), fs, m)
        _add(out, _fade(note, fs, 0.001, 0.05), start, fs)
    return out


GENERATORS: dict[str, Generator] = {
    "telephone": _telephone, "alarm": _alarm, "music": _music, "speech": _speech, "fan": _fan,
    "dog": _dog, "piano": _piano, "kettle": _kettle, "clock": _clock, "radio": _radio,
    "beeps": _beeps, "water": _water, "knock": _knock, "vacuum": _vacuum, "birds": _birds,
    "engine": _engine, "siren": _siren, "typing": _typing,
    "doorbell": _doorbell, "microwave": _microwave, "baby": _baby, "washing_machine": _washing_machine,
    "cat": _cat, "guitar": _guitar,
}  # fmt: skip

# --- the agent's one-shots: each (rng, fs) -> float32 (m,) ---


def _one_shot(x: np.ndarray, fs: int, peak: float) -> np.ndarray:
    """x faded in and out to start and end at zero, scaled to ``peak``, as float32."""
    x = _fade(x, fs, 0.002, 0.02)
    return (x * peak / np.max(np.abs(x))).astype(np.float32)


def _footstep(rng: np.random.Generator, fs: int) -> np.ndarray:
    """A 0.10-0.15 s soft thud and scuff, peak 0.3."""
    m = round(rng.uniform(0.10, 0.15) * fs)
    t = np.arange(m) / fs
    thud = _modes([rng.uniform(60, 110), rng.uniform(150, 250)], [1, 0.4], [0.025, 0.012], fs, m)
    thud = thud / np.max(np.abs(thud)) + 0.4 * _unit(_noise(rng, m, fs, hi=400)) * np.exp(-t / 0.015)
    scuff = _noise(rng, m, fs, 1500, 6000) * np.exp(-(((t - rng.uniform(0.03, 0.05)) / 0.02) ** 2))
    return _one_shot(thud / np.max(np.abs(thud)) + rng.uniform(0.2, 0.5) * scuff / np.max(np.abs(scuff)), fs, 0.3)


def _bump(rng: np.random.Generator, fs: int) -> np.ndarray:
    """A ~0.2 s low thump of a body hitting a wall, peak 0.8."""
    m = round(rng.uniform(0.18, 0.22) * fs)
    t = np.arange(m) / fs
    f, drop = rng.uniform(45, 70), 0.02  # pitch falls from 1.5 f to f within ~drop s
    thump = np.sin(2 * np.pi * f * (t + 0.5 * drop * (1 - np.exp(-t / drop)))) * np.exp(-t / 0.06)
    knock = _modes([rng.uniform(180, 300), rng.uniform(400, 700)], [0.5, 0.3], [0.03, 0.015], fs, m)
    crack = _noise(rng, m, fs, hi=2500) * np.exp(-t / 0.008)
    return _one_shot(thump + knock + 0.4 * crack / np.max(np.abs(crack)), fs, 0.8)


ONE_SHOTS: dict[str, OneShot] = {"footstep": _footstep, "bump": _bump}
