"""Physics checks of the room acoustics: interaural cues, distance law, occlusion, reverberation time, agent sounds."""

from __future__ import annotations

import dataclasses
import math

import gymnasium as gym
import numpy as np
import pyroomacoustics as pra
import pytest

import avworld  # noqa: F401
from avworld.sim.acoustics import propagation
from avworld.sim.acoustics.audio import AudioRenderer, Emitter
from avworld.sim.acoustics.ir_cache import DiskCache, LRUCache
from avworld.sim.acoustics.responses import AcousticsConfig, SceneAcoustics
from avworld.sim.config import SimConfig
from avworld.sim.scenes.scene import Door, SoundSource
from tests.conftest import box, two_rooms

FS = 16_000
EAR = 1.5


def direct_only(**kw: object) -> AcousticsConfig:
    return AcousticsConfig(ism_order=0, tail=False, max_ir_s=0.25, **kw)  # type: ignore[arg-type]


def energy(ir: np.ndarray) -> np.ndarray:
    return (ir.astype(np.float64) ** 2).sum(axis=-1)


@pytest.mark.parametrize("side", [1, -1])
def test_a_source_to_one_side_is_louder_and_earlier_in_that_ear(side: int) -> None:
    ac = SceneAcoustics(box(20, 20), direct_only(), EAR)
    ir = ac.impulse_response((10.0, 10.0 + 3.0 * side, EAR), 10.0, 10.0, 0.0)  # facing +x: +y is the left
    near, far = (0, 1) if side == 1 else (1, 0)
    ild_db = 10 * math.log10(energy(ir[near]) / energy(ir[far]))
    assert ild_db > 3.0
    lags = np.arange(-40, 41)
    xcorr = [float(np.dot(ir[far], np.roll(ir[near], k))) for k in lags]
    itd = lags[int(np.argmax(xcorr))]  # how much later the far ear hears it, in samples
    expected = 0.175 / 343.0 * FS  # 8.2 samples for a source at 90°
    assert abs(itd - expected) <= 2


def test_a_source_straight_ahead_gives_no_interaural_difference() -> None:
    ac = SceneAcoustics(box(20, 20), direct_only(), EAR)
    ir = ac.impulse_response((13.0, 10.0, EAR), 10.0, 10.0, 0.0)
    assert abs(10 * math.log10(energy(ir[0]) / energy(ir[1]))) < 0.1


def test_turning_the_head_swaps_the_ears() -> None:
    ac = SceneAcoustics(box(20, 20), direct_only(), EAR)
    src = (10.0, 13.0, EAR)
    facing_x = ac.impulse_response(src, 10.0, 10.0, 0.0)
    facing_back = ac.impulse_response(src, 10.0, 10.0, math.pi)
    np.testing.assert_allclose(facing_x[::-1], facing_back, atol=1e-6)


def test_direct_sound_falls_with_the_inverse_square_law() -> None:
    ac = SceneAcoustics(box(20, 20), direct_only(), EAR)
    irs = [ac.impulse_response((10.0 + d, 10.0, EAR), 10.0, 10.0, 0.0) for d in (1.0, 2.0, 4.0)]
    e = [energy(ir).sum() for ir in irs]
    np.testing.assert_allclose([e[0] / e[1], e[1] / e[2]], [4.0, 4.0], rtol=0.05)
    # Gain 1 at 1 m, less the head shadow of a frontal source (at most -2.4 dB, at high frequencies only).
    assert 10 ** (-4 / 10) < energy(irs[0])[0] <= 1.0


def test_walls_block_sound_and_doors_let_some_through() -> None:
    config = AcousticsConfig(max_ir_s=0.4)
    src, listener = (7.0, 2.0, 1.0), (2.0, 2.0)
    same_room = SceneAcoustics(box(8, 5), config, EAR).impulse_response(src, 5.0, 2.0, 0.0)  # 2 m, line of sight
    door = SceneAcoustics(box(8, 5, partition=Door((4, 4), 0.9)), config, EAR).impulse_response(src, *listener, 0.0)
    wall = SceneAcoustics(box(8, 5, partition=True), config, EAR).impulse_response(src, *listener, 0.0)
    e_los, e_door, e_wall = energy(same_room).sum(), energy(door).sum(), energy(wall).sum()
    assert e_door < e_los / 3  # at least 5 dB quieter round the corner
    assert e_wall < e_door / 1000  # a closed wall lets (next to) nothing through: no direct path, no tail


def test_a_door_sounds_like_it_comes_from_the_door() -> None:
    """Behind the partition the diffracted sound arrives from the door's side."""
    ac = SceneAcoustics(box(8, 5, partition=Door((4, 4), 0.9)), AcousticsConfig(ism_order=0, tail=False), EAR)
    ir = ac.impulse_response((7.0, 1.0, 1.0), 2.0, 1.0, 0.0)  # facing +x; the door (4, 4) is ahead-left
    assert energy(ir[0]) > energy(ir[1]) * 1.5


def test_reverberation_time_of_a_shoebox_matches_pyroomacoustics_theory() -> None:
    """Per octave band, the decay (T20 of the Schroeder curve) follows Sabine's RT60 within 20 %.

    Theory is pyroomacoustics' own: its ``rt60_sabine`` per band on a ``ShoeBox`` with the
    same faces, and its ``rt60_theory`` (bandwidth-weighted harmonic mean over bands)
    against the same mean of the measured band values, within 15 %.
    """
    w, h = 6.0, 4.0
    scene = box(w, h, "plaster")
    ac = SceneAcoustics(scene, AcousticsConfig(max_ir_s=2.5), EAR)
    ir = ac.impulse_response((4.5, 3.0, 1.0), 1.5, 1.5, 0.3).astype(np.float64)
    mats = {k: pra.Material("rough_lime_wash") for k in ("east", "west", "north", "south")}
    mats |= {"floor": pra.Material("carpet_cotton"), "ceiling": pra.Material("ceiling_plasterboard")}
    shoebox = pra.ShoeBox([w, h, scene.height], fs=FS, materials=mats)
    bands = pra.acoustics.OctaveBandsFactory(fs=FS, n_fft=512)
    c, volume = shoebox.c, shoebox.volume
    theory = np.array(
        [
            1 / sum(1 / pra.acoustics.rt60_sabine(wall.area(), volume, wall.absorption[b], 0.0, c) for wall in shoebox.walls)
            for b in range(bands.n_bands)
        ]
    )
    measured = np.array(
        [[pra.experimental.measure_rt60(bands.analysis(ir[ear], band=b), FS, decay_db=20) for b in range(bands.n_bands)] for ear in (0, 1)]
    )
    np.testing.assert_allclose(measured, np.broadcast_to(theory, measured.shape), rtol=0.2)
    bw = bands.get_bw()
    harmonic = bw.sum() / (bw / measured.mean(axis=0)).sum()
    assert harmonic == pytest.approx(shoebox.rt60_theory(), rel=0.15)


def test_agent_sounds_are_heard_only_on_their_actions() -> None:
    """FORWARD adds a footstep, a collision a bump; with the sources silent nothing else is heard."""
    config = AcousticsConfig(noise_floor_db=-math.inf)
    ac = SceneAcoustics(two_rooms(), config, EAR)
    audio = AudioRenderer(ac, 4000)
    pose = (2.0, 2.0, 0.0)
    silent = [Emitter((7.0, 1.0, 1.0), np.zeros(16_000, np.float32))]
    assert not audio.start(silent, pose, seed=0).any()
    assert not audio.step(pose, ()).any()
    step = audio.step(pose, ("footstep",))
    assert np.sqrt(np.mean(step**2)) > 1e-3
    spill_steps = math.ceil(config.max_ir_s / 0.25) + 1
    for _ in range(spill_steps):
        audio.step(pose, ())
    assert not audio.step(pose, ()).any()
    bump = audio.step(pose, ("bump",))
    assert np.sqrt(np.mean(bump**2)) > np.sqrt(np.mean(step**2))


def test_env_agent_sounds_follow_the_actions() -> None:
    """Same episode with and without agent sounds: they differ on FORWARD steps and their reverberation, not before."""
    actions = [2, 2, 1, 2, 3, 2, 3, 2, 3, 2]

    def run(agent_sounds: bool) -> list[np.ndarray]:
        sim = SimConfig(acoustics=AcousticsConfig(agent_sounds=agent_sounds))
        env = gym.make("avworld/AudioNav-v0", scene=two_rooms(), sim=sim)
        obs, _ = env.reset(seed=3)
        out = [obs["audio"]]
        out += [env.step(a)[0]["audio"] for a in actions]
        return out

    with_sounds, without = run(True), run(False)
    differs = [not np.array_equal(a, b) for a, b in zip(with_sounds, without, strict=True)]
    assert differs[:3] == [False, False, False]  # reset, TURN, TURN
    assert differs[3]  # the FORWARD step
    assert differs[-1] is False  # 0.6 s of reverberation are over after 7 more steps


def test_step_boundaries_have_no_clicks_while_moving() -> None:
    config = AcousticsConfig(noise_floor_db=-math.inf, agent_sounds=False)
    ac = SceneAcoustics(two_rooms(), config, EAR)
    audio = AudioRenderer(ac, 4000)
    t = np.arange(32_000) / FS
    tone = (0.3 * np.sin(2 * math.pi * 440 * t)).astype(np.float32)
    steps = [audio.start([Emitter((7.0, 1.0, 1.0), tone)], (1.5, 1.5, 0.0), seed=0)]
    for k in range(1, 8):
        steps.append(audio.step((1.5 + 0.25 * k, 1.5, 0.2 * k), ()))
    signal = np.concatenate(steps, axis=1)
    jumps = np.abs(np.diff(signal, axis=1))
    boundaries = [4000 * k - 1 for k in range(1, 8)]
    assert jumps[:, boundaries].max() <= 1.5 * np.percentile(jumps, 99.9)


def test_paths_come_from_the_disk_cache_without_recomputing(tmp_path, monkeypatch) -> None:
    config = AcousticsConfig(cache_dir=str(tmp_path))
    first = SceneAcoustics(two_rooms(), config, EAR).impulse_response((7.0, 1.0, 1.0), 1.0, 1.0, 0.0)
    assert list(tmp_path.rglob("*.npz"))

    def fail(*args: object) -> None:
        raise AssertionError("image sources recomputed despite the disk cache")

    monkeypatch.setattr("avworld.sim.acoustics.responses.image_sources", fail)
    second = SceneAcoustics(two_rooms(), config, EAR).impulse_response((7.0, 1.0, 1.0), 1.0, 1.0, 0.0)
    np.testing.assert_array_equal(first, second)


def test_a_corrupted_cache_file_is_recomputed_with_a_warning(tmp_path) -> None:
    config = AcousticsConfig(cache_dir=str(tmp_path))
    first = SceneAcoustics(two_rooms(), config, EAR).impulse_response((7.0, 1.0, 1.0), 1.0, 1.0, 0.0)
    for f in tmp_path.rglob("*.npz"):
        f.write_bytes(b"not a zip file")
    with pytest.warns(RuntimeWarning, match="unreadable cache file"):
        second = SceneAcoustics(two_rooms(), config, EAR).impulse_response((7.0, 1.0, 1.0), 1.0, 1.0, 0.0)
    np.testing.assert_array_equal(first, second)


def test_disk_cache_writes_are_atomic(tmp_path, monkeypatch) -> None:
    cache = DiskCache(tmp_path, "0" * 16)

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        cache.store("ab" * 32, {"x": np.zeros(3)})
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.name != DiskCache.STAMP]
    assert cache.load("ab" * 32) is None


def test_disk_cache_keeps_a_folder_per_setting_under_one_cap(tmp_path) -> None:
    import os

    entry = {"x": np.zeros(125)}  # 1,000 bytes of data
    old = DiskCache(tmp_path, "a" * 64)
    for k in range(8):
        old.store(f"{k:02d}" * 32, entry)
    os.utime(old.folder / DiskCache.STAMP, (1, 1))  # used long ago
    (tmp_path / "ab").mkdir()  # not a cache group (the old flat layout, or the user's): never deleted
    (tmp_path / "ab" / "keep.npz").write_bytes(b"x")
    assert sum(size for _, size in old.groups().values()) > 8_000

    cap = 4_000
    new = DiskCache(tmp_path, "b" * 64, max_bytes=cap)
    assert not old.folder.exists() and new.folder == tmp_path / ("b" * 16) and (tmp_path / "ab" / "keep.npz").exists()
    with pytest.warns(RuntimeWarning, match=r"acoustic disk cache full \(0 MB\); new entries are not stored"):
        for k in range(8):
            new.store(f"{k:02d}" * 32, entry)
    stored = [k for k in range(8) if new.load(f"{k:02d}" * 32) is not None]
    assert stored == [0, 1] and sum(size for _, size in new.groups().values()) <= cap
    again = DiskCache(tmp_path, "b" * 64, max_bytes=cap)  # reopening its own group keeps it
    assert again.load("00" * 32) is not None


def test_lru_cache_is_bounded_by_bytes() -> None:
    lru = LRUCache(max_bytes=3 * 800)
    calls = []
    for key in [0, 1, 2, 0, 3, 1]:
        lru.get(key, lambda k=key: calls.append(k) or np.zeros(100), lambda v: v.nbytes)
    assert calls == [0, 1, 2, 3, 1]  # 0 was reused; 1 was evicted by 3 (least recently used)
    assert lru.nbytes <= 3 * 800 and len(lru) == 3


def test_quantised_poses_share_one_response() -> None:
    ac = SceneAcoustics(two_rooms(), AcousticsConfig(), EAR)
    a = ac.impulse_response((7.0, 1.0, 1.0), 1.01, 1.02, 0.01)
    b = ac.impulse_response((7.0, 1.0, 1.0), 0.99, 0.98, -0.01)
    np.testing.assert_array_equal(a, b)


def test_image_sources_match_pyroomacoustics_room_for_a_shoebox() -> None:
    """Our room build gives the same first-order image count as pyroomacoustics' own shoebox (6 faces + direct)."""
    ac = SceneAcoustics(box(6, 4), AcousticsConfig(ism_order=1), EAR)
    arrivals = propagation.image_sources(ac.room, np.array([4.0, 3.0, 1.0]), np.array([1.5, 1.5, EAR]), 1)
    assert sorted(np.bincount(arrivals.orders).tolist()) == [1, 6]


def test_bad_acoustics_config_is_refused_by_field() -> None:
    with pytest.raises(ValueError, match=r"acoustics\.ism_order"):
        AcousticsConfig(ism_order=-1)
    with pytest.raises(ValueError, match=r"acoustics\.sounds"):
        dataclasses.replace(AcousticsConfig(), sounds="everything")


def test_distractors_add_other_sounds_reproducibly() -> None:
    def first_audio(distractors: int, seed: int) -> np.ndarray:
        sim = SimConfig(acoustics=AcousticsConfig(distractors=distractors))
        env = gym.make("avworld/AudioNav-v0", scene=two_rooms(), sim=sim)
        return env.reset(seed=seed)[0]["audio"]

    plain, busy = first_audio(0, 5), first_audio(2, 5)
    assert not np.array_equal(plain, busy)
    np.testing.assert_array_equal(busy, first_audio(2, 5))


def test_a_user_wav_file_plays_as_the_source(tmp_path) -> None:
    from scipy.io import wavfile

    t = np.arange(8000) / 8000
    wavfile.write(tmp_path / "hum.wav", 8000, (0.5 * np.sin(2 * math.pi * 300 * t) * 32767).astype(np.int16))
    scene = dataclasses.replace(two_rooms(), sources=(SoundSource((3.0, 1.0), "hum"),))
    sim = SimConfig(acoustics=AcousticsConfig(user_sounds={"hum": str(tmp_path / "hum.wav")}, noise_floor_db=-math.inf))
    audio = gym.make("avworld/AudioNav-v0", scene=scene, sim=sim).reset(seed=0)[0]["audio"]
    spectrum = np.abs(np.fft.rfft(audio[0]))
    assert np.fft.rfftfreq(audio.shape[1], 1 / FS)[np.argmax(spectrum)] == pytest.approx(300, abs=8)
    bad = SimConfig(acoustics=AcousticsConfig(user_sounds={"hum": str(tmp_path / "missing.wav")}))
    with pytest.raises(ValueError, match=r"missing\.wav"):
        gym.make("avworld/AudioNav-v0", scene=scene, sim=bad).reset(seed=0)
