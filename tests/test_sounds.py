"""The procedural sound library: every category's contract, distinctness across categories, WAV loading, SoundLibrary."""

from __future__ import annotations

import functools
import itertools
import struct
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

from avworld.sim.acoustics.sounds import (
    AGENT_SOUNDS,
    CATEGORIES,
    HEARD,
    MAX_PEAK,
    SAMPLE_RATE,
    TARGET_RMS,
    UNHEARD,
    AudioFileError,
    SoundLibrary,
    agent_sound,
    load_wav,
    synthesize,
)

FS = SAMPLE_RATE
SCENE_SOUNDS = ("telephone", "alarm", "music", "speech", "fan", "dog", "piano", "kettle", "clock", "radio")


@functools.cache
def sound(category: str, seed: int) -> np.ndarray:
    """synthesize() at the defaults, computed once per test session."""
    return synthesize(category, seed)


def seam_ok(x: np.ndarray, margin: float = 1.25, m: int = 160) -> bool:
    """True if the loop's wrap x[-1] -> x[0] bends the waveform no more than it bends around there (10 ms either side).

    A jump shows in the second difference far more than in the first: a tone's curvature scales with ω², a step's not.
    """
    bend = np.abs(np.diff(np.concatenate([x[-m:], x[:m]]).astype(np.float64), 2))
    return bool(bend[m - 2 : m].max() <= margin * np.delete(bend, [m - 2, m - 1]).max() + 1e-6)


def dominant_hz(x: np.ndarray, fs: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / fs)[np.argmax(spectrum)])


# --- categories ---


def test_split_heard_unheard() -> None:
    assert len(CATEGORIES) >= 22 and len(set(CATEGORIES)) == len(CATEGORIES)
    assert not set(HEARD) & set(UNHEARD)
    assert set(HEARD) | set(UNHEARD) == set(CATEGORIES)
    assert 0.2 <= len(UNHEARD) / len(CATEGORIES) <= 0.3
    assert set(SCENE_SOUNDS) <= set(HEARD)
    assert not set(AGENT_SOUNDS) & set(CATEGORIES)


@pytest.mark.parametrize("category", CATEGORIES)
def test_category_contract(category: str) -> None:
    x = sound(category, 0)
    assert x.shape == (round(4.0 * FS),) and x.dtype == np.float32
    assert np.all(np.isfinite(x)) and np.max(np.abs(x)) <= 1.0
    rms, peak = float(np.sqrt(np.mean(x.astype(np.float64) ** 2))), float(np.max(np.abs(x)))
    assert rms > 0.02  # not silent; impulsive sounds sit below TARGET_RMS
    assert rms <= TARGET_RMS * (1 + 1e-5) and peak <= MAX_PEAK + 1e-6
    assert rms == pytest.approx(TARGET_RMS, rel=1e-5) or peak == pytest.approx(MAX_PEAK, rel=1e-6)
    assert synthesize(category, 0).tobytes() == x.tobytes()
    assert not np.array_equal(sound(category, 1), x)
    for seed in range(3):
        assert seam_ok(sound(category, seed)), f"{category} seed {seed} clicks at the loop point"


@pytest.mark.parametrize("category", CATEGORIES)
def test_other_rates_and_durations(category: str) -> None:
    for fs, duration in ((8_000, 0.5), (22_050, 0.25), (FS, 0.01)):
        x = synthesize(category, 5, fs, duration)
        assert x.shape == (round(duration * fs),) and x.dtype == np.float32 and np.all(np.isfinite(x))
        assert np.max(np.abs(x)) <= 1.0


def test_seam_check_catches_a_cut() -> None:
    """Cutting a rendering where the waveform is far from its first sample makes a click the check must see."""
    for category in ("siren", "alarm", "fan", "engine", "piano", "speech"):
        x = sound(category, 0)
        cut = 3 * FS + 1 + int(np.argmax(np.abs(x[3 * FS : 3 * FS + 800] - x[0])))
        assert not seam_ok(x[:cut]), category


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"unknown sound category 'thunder'.*telephone"):
        synthesize("thunder", 0)
    with pytest.raises(ValueError, match="seed"):
        synthesize("fan", -1)
    with pytest.raises(ValueError, match="fs"):
        synthesize("fan", 0, fs=4000)
    with pytest.raises(ValueError, match="duration"):
        synthesize("fan", 0, duration=0.0)


# --- categories are acoustically distinct ---

_MOD_BANDS = [0.3, 1.5, 4, 12, 31]  # Hz of envelope modulation


def descriptors(x: np.ndarray, fs: int = FS, hop: int = 256) -> np.ndarray:
    """Level-free timbre and rhythm descriptors of a sound: (10,).

    log2 spectral centroid, spread around it (octaves), spectral flatness (tonal vs noisy), envelope variation,
    spectral flux (how fast the spectrum changes), envelope modulation in four bands, rhythmic regularity
    (peak of the envelope's autocorrelation over 0.15-2 s lags).
    """
    frames = x[: len(x) // hop * hop].astype(np.float64).reshape(-1, hop)
    spec = np.abs(np.fft.rfft(frames * np.hanning(hop), axis=1)) ** 2 + 1e-12  # (T, F)
    f = np.fft.rfftfreq(hop, 1 / fs)
    p = spec.mean(0) / spec.mean(0).sum()
    centroid = float(f @ p)
    spread = np.sqrt(np.log2(f[1:] / centroid) ** 2 @ p[1:])
    loud = spec.sum(1)
    w = loud / loud.sum()
    flatness = np.log10(w @ (np.exp(np.log(spec).mean(1)) / spec.mean(1)))
    env = np.sqrt(loud)
    variation = np.log10(env.std() / env.mean() + 0.01)
    flux = np.log10(w[1:] @ np.abs(np.diff(spec / loud[:, None], axis=0)).sum(1))
    e = env - env.mean()
    fm = np.fft.rfftfreq(len(e), hop / fs)
    power = np.abs(np.fft.rfft(e)) ** 2 / (env.mean() ** 2 * len(e))
    modulation = [np.log10(power[(fm >= lo) & (fm < hi)].sum() + 1e-3) for lo, hi in itertools.pairwise(_MOD_BANDS)]
    lags = np.arange(len(e)) * hop / fs
    regular = (np.correlate(e, e, "full")[len(e) - 1 :] / (e @ e + 1e-12))[(lags > 0.15) & (lags < 2.0)].max()
    return np.array([np.log2(centroid), spread, flatness, variation, flux, *modulation, 2 * regular])


def test_categories_are_recognisable_across_seeds() -> None:
    """Nearest-centroid over standardised descriptors: seeds 0-3 make the centroids, seeds 4-7 must be recognised.

    Every category must be far from every other (at least one standard deviation of the pooled features), and
    held-out variations must land on their own category at least 90% of the time.
    """
    feats = np.array([[descriptors(sound(c, s)) for s in range(8)] for c in CATEGORIES])  # (C, 8, D)
    feats = (feats - feats.mean((0, 1))) / feats.std((0, 1))
    centroids = feats[:, :4].mean(1)  # (C, D)
    gaps = np.linalg.norm(centroids[:, None] - centroids[None], axis=-1) + np.diag(np.full(len(CATEGORIES), np.inf))
    i, j = np.unravel_index(np.argmin(gaps), gaps.shape)
    assert gaps[i, j] > 1.0, f"{CATEGORIES[i]} and {CATEGORIES[j]} sound alike"
    guesses = np.linalg.norm(feats[:, 4:, None] - centroids[None, None], axis=-1).argmin(-1)  # (C, 4)
    right = guesses == np.arange(len(CATEGORIES))[:, None]
    assert right.mean() >= 0.9, [(CATEGORIES[c], CATEGORIES[guesses[c, s]]) for c, s in zip(*np.nonzero(~right), strict=True)]


# --- agent sounds ---


@pytest.mark.parametrize("kind", AGENT_SOUNDS)
def test_agent_sounds(kind: str) -> None:
    lo, hi = (0.1, 0.15) if kind == "footstep" else (0.15, 0.25)
    for seed in range(4):
        x = agent_sound(kind, seed)
        assert x.dtype == np.float32 and lo * FS <= len(x) <= hi * FS and np.all(np.isfinite(x))
        peak = np.max(np.abs(x))
        assert abs(x[0]) < 0.01 * peak and np.max(np.abs(x[-8:])) < 1e-3 * peak
        assert agent_sound(kind, seed).tobytes() == x.tobytes()
    assert not np.array_equal(agent_sound(kind, 0), agent_sound(kind, 1))
    with pytest.raises(ValueError, match="footstep"):
        agent_sound("sneeze", 0)


def test_bump_is_louder_and_lower_than_footstep() -> None:
    def centroid(x: np.ndarray) -> float:
        p = np.abs(np.fft.rfft(x)) ** 2
        return float(np.fft.rfftfreq(len(x), 1 / FS) @ p / p.sum())

    for seed in range(4):
        step, bump = agent_sound("footstep", seed), agent_sound("bump", seed)
        assert np.max(np.abs(bump)) > 2 * np.max(np.abs(step))
        assert centroid(bump) < centroid(step)


# --- WAV files ---


def tone(hz: float, fs: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * hz * np.arange(round(seconds * fs)) / fs)


def test_int16_resampled_keeps_length_and_pitch(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    wavfile.write(path, 8_000, np.round(tone(440, 8_000, 0.5) * 32767).astype(np.int16))
    x = load_wav(path)
    assert x.dtype == np.float32 and x.shape == (8_000,)
    assert dominant_hz(x, FS) == pytest.approx(440, abs=3)
    assert np.max(np.abs(x[1000:-1000])) == pytest.approx(0.5, abs=0.01)
    assert load_wav(path, fs=8_000).shape == (4_000,)


def test_stereo_uint8_int32_and_float_files(tmp_path: Path) -> None:
    left, right = tone(300, FS, 0.25), tone(300, FS, 0.25, 0.1)
    wavfile.write(tmp_path / "s.wav", FS, np.round(np.stack([left, right], 1) * 2**31).clip(-(2**31), 2**31 - 1).astype(np.int32))
    np.testing.assert_allclose(load_wav(tmp_path / "s.wav"), (left + right) / 2, atol=1e-6)
    wavfile.write(tmp_path / "u.wav", FS, np.round(128 + 127 * left).astype(np.uint8))
    np.testing.assert_allclose(load_wav(tmp_path / "u.wav"), left * 127 / 128, atol=1 / 128)
    wavfile.write(tmp_path / "f.wav", FS, left.astype(np.float32))
    np.testing.assert_allclose(load_wav(tmp_path / "f.wav"), left, atol=1e-7)
    wavfile.write(tmp_path / "loud.wav", 48_000, (4 * tone(300, 48_000, 0.25)).astype(np.float32))
    loud = load_wav(tmp_path / "loud.wav")
    assert loud.shape == (4_000,) and np.max(np.abs(loud)) <= 1.0 and np.max(np.abs(loud)) > 0.9


def wav_header(channels: int, data: bytes = b"", fs: int = FS, bits: int = 16) -> bytes:
    """A hand-made PCM WAV: lets a test write headers scipy refuses to write (zero channels)."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, fs, fs * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, pattern the error must match)."""
    (tmp_path / "text.wav").write_text("not audio at all, just words")
    wavfile.write(tmp_path / "empty.wav", FS, np.zeros(0, np.int16))
    wavfile.write(tmp_path / "nan.wav", FS, np.array([0.0, np.nan, 0.5], np.float32))
    (tmp_path / "zero_channels.wav").write_bytes(wav_header(0, b"\0\0\0\0"))
    (tmp_path / "truncated.wav").write_bytes(wav_header(1, b"\0\0")[:30])
    (tmp_path / "zero_rate.wav").write_bytes(wav_header(1, b"\0\0", fs=0))
    wavfile.write(tmp_path / "silent.wav", FS, np.zeros(FS, np.int16))
    wavfile.write(tmp_path / "hiss.wav", FS, np.where(np.arange(FS) % 2, 1, -1).astype(np.int16))  # ±1 LSB
    wavfile.write(tmp_path / "one_sample.wav", FS, np.array([12000], np.int16))
    wavfile.write(tmp_path / "one_hz.wav", 1, np.round(tone(0.2, 1, 10.0) * 20000).astype(np.int16))
    return {
        "missing": (tmp_path / "missing.wav", "no such file"),
        "text": (tmp_path / "text.wav", "not a readable WAV"),
        "empty": (tmp_path / "empty.wav", "no samples"),
        "nan": (tmp_path / "nan.wav", "non-finite"),
        "zero_channels": (tmp_path / "zero_channels.wav", "zero channels"),
        "truncated": (tmp_path / "truncated.wav", "not a readable WAV"),
        "zero_rate": (tmp_path / "zero_rate.wav", "sample rate"),
        "silent": (tmp_path / "silent.wav", r"silent \(peak every sample 0, below -80 dBFS\): a silent target is never heard"),
        "hiss": (tmp_path / "hiss.wav", r"silent \(peak -90\.3 dBFS"),
        "one_sample": (tmp_path / "one_sample.wav", r"too short: 1 samples \(6\.25e-05 s\), at least 0\.1 s needed"),
        "one_hz": (tmp_path / "one_hz.wav", r"sample rate 1 Hz is below 8000 Hz"),
    }


@pytest.mark.parametrize(
    "case", ["missing", "text", "empty", "nan", "zero_channels", "truncated", "zero_rate", "silent", "hiss", "one_sample", "one_hz"]
)
def test_bad_files_name_the_path(tmp_path: Path, case: str) -> None:
    path, pattern = bad_files(tmp_path)[case]
    with pytest.raises(AudioFileError, match=pattern) as err:
        load_wav(path)
    assert str(err.value).startswith(str(path)) and err.value.path == str(path)
    assert isinstance(err.value, ValueError)


# --- SoundLibrary ---


def test_library_builtin_and_user_sounds(tmp_path: Path) -> None:
    wavfile.write(tmp_path / "hum.wav", 8_000, np.round(tone(500, 8_000, 0.7) * 20000).astype(np.int16))
    wavfile.write(tmp_path / "long.wav", 32_000, tone(250, 32_000, 5.0).astype(np.float32))
    lib = SoundLibrary(user_files={"hum": str(tmp_path / "hum.wav"), "long": tmp_path / "long.wav"})
    assert lib.ids() == (*CATEGORIES, "hum", "long")
    assert np.array_equal(lib.signal("fan", 3), synthesize("fan", 3))
    assert lib.signal("fan", 3) is lib.signal("fan", 3)  # cached
    for sound_id, hz in (("hum", 500), ("long", 250)):
        x = lib.signal(sound_id, 0)
        assert x.shape == (4 * FS,) and x.dtype == np.float32 and not x.flags.writeable
        assert dominant_hz(x, FS) == pytest.approx(hz, abs=2)
        assert float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) == pytest.approx(TARGET_RMS, rel=1e-3)
        assert seam_ok(x)
        assert np.array_equal(lib.signal(sound_id, 7), lib.signal(sound_id, 7))
        assert not np.array_equal(lib.signal(sound_id, 7), x)  # started elsewhere in the loop
    short = SoundLibrary(fs=8_000, loop_seconds=1.0, user_files={"hum": tmp_path / "hum.wav"})
    assert short.signal("hum", 0).shape == (8_000,) and short.signal("telephone", 0).shape == (8_000,)


def test_library_errors(tmp_path: Path) -> None:
    lib = SoundLibrary(user_files={"gone": tmp_path / "gone.wav"})
    with pytest.raises(ValueError, match=r"unknown sound 'thunder'; known: telephone.*gone"):
        lib.signal("thunder", 0)
    with pytest.raises(AudioFileError, match=r"gone\.wav: no such file"):
        lib.signal("gone", 0)
    with pytest.raises(ValueError, match="shadow"):
        SoundLibrary(user_files={"telephone": tmp_path / "x.wav"})
    with pytest.raises(ValueError, match="loop_seconds"):
        SoundLibrary(loop_seconds=0.0)
