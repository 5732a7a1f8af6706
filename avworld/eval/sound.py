"""Checks of the real world's sound that an agent relies on: no clipping, and a direction cue it can trust.

The *direction cue* is the interaural level difference in the 1.5-6 kHz band, where the
head shadows the far ear: at a step whose source is heard directly (line of sight), within
``max_distance`` metres and 35-145° to one side, the louder ear should be the one on the
source's side. Only turn steps count, since a turn makes no agent sound (footsteps and
bumps are heard at both ears and would blur what the room does to the source).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import numpy as np

from avworld.data.behaviours import make_behaviour
from avworld.envs.audio_nav import AudioNavEnv
from avworld.sim.acoustics.audio import AudioRenderer, Emitter
from avworld.sim.acoustics.responses import SceneAcoustics
from avworld.sim.backends.base import SimulatorBackend

CUE_BAND = (1500.0, 6000.0)
"""Hz: the band of the direction cue."""
SIDE_ON = (35.0, 145.0)
"""Degrees of source azimuth (either side) that count as side-on."""
AUDIBLE_DB = 10.0
"""A step's source is heard in the band when the band holds this much more energy than the noise floor alone."""
FULL_SCALE = 1.0


def band_energy(audio: np.ndarray, fs: int, band: tuple[float, float] = CUE_BAND) -> np.ndarray:
    """Energy per ear in ``band`` of ``audio`` (..., 2, N) → (..., 2), as the sum of squared samples of the band-passed signal."""
    spec = np.abs(np.fft.rfft(audio, axis=-1)) ** 2  # (..., 2, F)
    f = np.fft.rfftfreq(audio.shape[-1], 1 / fs)
    return 2 * spec[..., (f >= band[0]) & (f < band[1])].sum(axis=-1) / audio.shape[-1]


def band_level_difference(audio: np.ndarray, fs: int, band: tuple[float, float] = CUE_BAND) -> np.ndarray:
    """Left minus right ear level (dB) in ``band`` of ``audio`` (..., 2, N) → (...,)."""
    energy = band_energy(audio, fs, band) + 1e-20  # (..., 2)
    return 10 * np.log10(energy[..., 0] / energy[..., 1])


def source_side(pose: tuple[float, float, float], source: tuple[float, float], side_on: tuple[float, float] = SIDE_ON) -> int:
    """+1 if the source is side-on to the left of a head at ``pose``, -1 to the right, 0 otherwise."""
    x, y, yaw = pose
    azimuth = math.degrees(math.remainder(math.atan2(source[1] - y, source[0] - x) - yaw, 2 * math.pi))
    if side_on[0] <= abs(azimuth) <= side_on[1]:
        return 1 if azimuth > 0 else -1
    return 0


@dataclass
class SoundCheck:
    """What :func:`check_sound` measured."""

    steps: int
    samples: int
    clipped_samples: int
    """Samples at or beyond full scale (|x| ≥ 1)."""
    clipped_steps: int
    peak: float
    cue_steps: int
    """Turn steps heard directly, within the distance, side-on."""
    cue_agree: int
    """Of those, the steps whose louder ear (1.5-6 kHz) is on the source's side."""
    audible_steps: int
    """Of the cue steps, those whose band rises :data:`AUDIBLE_DB` above the noise floor (the source sounds in the band)."""
    audible_agree: int
    mean_abs_ild_db: float
    by_sound: dict[str, list[int]] = field(default_factory=dict)
    """Sound id → [audible cue steps, of which agree]."""

    @property
    def cue_agreement(self) -> float:
        return self.cue_agree / max(self.cue_steps, 1)

    @property
    def audible_agreement(self) -> float:
        return self.audible_agree / max(self.audible_steps, 1)

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self) | {"cue_agreement": self.cue_agreement, "audible_agreement": self.audible_agreement}


def check_sound(
    env: AudioNavEnv,
    episodes: Iterable[tuple[int, str]],
    max_distance: float = 4.0,
    behaviour_noise_seed: int = 0,
) -> SoundCheck:
    """Run ``episodes`` ((reset seed, behaviour) pairs: toward, away, explore) in ``env`` (sensors incl. ``audio``); measure.

    Line of sight is the acoustics' own: the source's direct path reaches the head (order-0 arrival present).
    """
    fs = env.config.acoustics.fs
    steps = samples = clipped = clipped_steps = cue_steps = agree = audible = audible_agree = 0
    peak, ild_sum = 0.0, 0.0
    by_sound: dict[str, list[int]] = {}
    for seed, name in episodes:
        obs, info = env.reset(seed=seed)
        floor = noise_floor(env)
        behaviour = make_behaviour(name)
        rng = np.random.default_rng([behaviour_noise_seed, seed])
        done = False
        while not done:
            assert env.sim is not None
            action = int(behaviour.act(env.sim, rng))
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            audio = obs["audio"]
            n_clip = int(np.count_nonzero(np.abs(audio) >= FULL_SCALE))
            steps, samples, clipped = steps + 1, samples + audio.size, clipped + n_clip
            clipped_steps += n_clip > 0
            peak = max(peak, float(np.abs(audio).max()))
            if action not in (2, 3):
                continue
            pose, source = tuple(info["pose"]), tuple(info["source_position"])
            side = source_side(pose, source)
            if side == 0 or math.dist(pose[:2], source) > max_distance or not heard_directly(env, pose):
                continue
            ild = float(band_level_difference(audio, fs))
            right = (ild > 0) == (side > 0)
            cue_steps, agree, ild_sum = cue_steps + 1, agree + right, ild_sum + abs(ild)
            if band_energy(audio, fs).sum() >= floor * 10 ** (AUDIBLE_DB / 10):
                audible, audible_agree = audible + 1, audible_agree + right
                tally = by_sound.setdefault(env.sim.scene.sources[0].sound, [0, 0])
                tally[0], tally[1] = tally[0] + 1, tally[1] + right
    mean_ild = ild_sum / max(cue_steps, 1)
    return SoundCheck(steps, samples, clipped, clipped_steps, peak, cue_steps, agree, audible, audible_agree, mean_ild, by_sound)


def noise_floor(env: AudioNavEnv) -> float:
    """Band energy (both ears) of the env's background noise alone over one step, as it reaches the observation."""
    sim = env.sim
    assert sim is not None and sim.audio is not None
    renderer, ac = sim.audio, env.config.acoustics
    if not renderer.noise.size:
        return 0.0
    loop = renderer.noise[:, : renderer.noise.shape[1] // renderer.n * renderer.n]  # whole steps of the loop
    steps = loop.reshape(2, -1, renderer.n).transpose(1, 0, 2)  # (S, 2, N)
    gain = 10 ** (-getattr(ac, "headroom_db", 0.0) / 10)
    return float(band_energy(steps, ac.fs).sum(axis=-1).mean() * gain)


def heard_directly(env: AudioNavEnv, pose: tuple[float, float, float]) -> bool:
    """Whether the target's direct path reaches the head at ``pose`` (the acoustics' visibility, at its quantised position)."""
    sim = env.sim
    assert sim is not None and sim.audio is not None
    acoustics = sim.audio.acoustics
    src = sim.scene.sources[0]
    ix, iy, _ = acoustics.quantise(*pose)
    arrivals = acoustics.paths((src.position[0], src.position[1], src.height), ix, iy)
    return bool(np.any(arrivals.orders == 0))


@dataclass
class TurnCue:
    """What :func:`turn_cue` measured: side-on turn steps heard directly, and those whose louder ear is the source's side."""

    steps: int
    agree: int

    @property
    def agreement(self) -> float:
        return self.agree / max(self.steps, 1)


def turn_cue(
    sim: SimulatorBackend, sound: str, steps: int, seed: int = 0, max_distance: float = 4.0, max_tries: int = 5000
) -> TurnCue:
    """The direction cue at ``steps`` random turn steps of a simulator's scene: the head at a random navigable position with
    line of sight to the target within ``max_distance``, side-on to it; the target plays ``sound``; one turn (left or
    right, the agent's turn angle) is rendered and its 1.5-6 kHz level difference compared with the source's side.
    """
    ac = sim.config.acoustics
    acoustics = SceneAcoustics(sim.scene, ac, sim.config.agent.height, sim.grid)
    target = sim.scene.sources[0]
    source = (target.position[0], target.position[1], target.height)
    rng = np.random.default_rng(seed)
    free = np.argwhere(sim.grid.free)  # (n, 2) cells
    turn = math.radians(sim.config.agent.turn_deg)
    done = agree = 0
    for _ in range(max_tries):
        if done == steps:
            break
        x, y = sim.grid.to_world(*free[rng.integers(len(free))]).tolist()
        if math.dist((x, y), source[:2]) > max_distance:
            continue
        ix, iy, _ = acoustics.quantise(x, y, 0.0)
        if not np.any(acoustics.paths(source, ix, iy).orders == 0):
            continue
        side = 1 if rng.random() < 0.5 else -1
        bearing = math.atan2(source[1] - y, source[0] - x)
        yaw = bearing - side * math.radians(rng.uniform(SIDE_ON[0] + 15, SIDE_ON[1] - 15))
        renderer = AudioRenderer(acoustics, sim.step_samples)
        renderer.start([Emitter(source, sim.library.signal(sound, int(rng.integers(2**31))))], (x, y, yaw), int(rng.integers(2**31)))
        after = (x, y, yaw + (turn if rng.random() < 0.5 else -turn))
        audio = renderer.step(after, ())
        done += 1
        agree += (float(band_level_difference(audio, ac.fs)) > 0) == (source_side(after, source[:2]) > 0)
    return TurnCue(done, agree)
