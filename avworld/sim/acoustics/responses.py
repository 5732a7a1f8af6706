"""Binaural impulse responses of a scene, computed once and cached.

:class:`SceneAcoustics` answers "what does a source at S sound like to a head at P
facing yaw?" for one scene. Listener positions are quantised to
``position_quantum`` metres and yaws to ``yaw_quantum_deg``, and the response is
computed at the quantised pose, so a cached answer never depends on the order of
the questions. Two levels of cache:

- the sound paths (image sources and diffracted path; tens of milliseconds each)
  per (source, quantised position): in memory, and on disk when ``cache_dir`` is set;
- the responses' spectra per (source, quantised position, quantised yaw): in memory,
  bounded by ``cache_mb`` (a response is a few milliseconds from its paths).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

import numpy as np

from avworld.sim.acoustics.binaural import HeadConfig, binaural_ir
from avworld.sim.acoustics.hrtf import HRTFError, load_hrtf
from avworld.sim.acoustics.ir_cache import DiskCache, LRUCache, digest
from avworld.sim.acoustics.propagation import Arrivals, WallOutline, diffracted_path, image_sources
from avworld.sim.acoustics.room import AcousticRoom
from avworld.sim.navigation import GoalField, NavGrid
from avworld.sim.scenes.scene import Scene

ACOUSTICS_VERSION = 2
"""What the sound of the real world is, as data and checkpoints record it (``acoustics_version`` in their metadata).

1: the first acoustics (clipped at ±1; a late tail of independent noise per ear).
2: a master headroom and a soft limiter (no clipped sample); a tail with a diffuse field's interaural coherence and
   equal band levels at the ears; optional measured HRTFs. Data and models of another version are refused, since
   their sound no longer matches the world's.
"""
SELF = "self"
"""Source key of the sounds the agent makes (footsteps, bumps): emitted at its feet."""
FEET_HEIGHT = 0.05
SELF_ORDER = 1
"""Image-source order of the agent's own sounds: floor, ceiling and nearby walls (the tail does the rest)."""


@dataclass
class AcousticsConfig:
    """Room acoustics and the per-step sound of the real world (DESIGN.md: 16 kHz, binaural)."""

    enabled: bool = True
    fs: int = 16_000
    ism_order: int = 3
    """Image-source reflection order: 3 is fast (~2–20 ms per response); 5 costs about a second."""
    tail: bool = True
    """Add the statistical late-reverberation tail (RT60 from Sabine's formula)."""
    max_ir_s: float = 0.6
    """Responses are cut (with a fade) at this length; longer reverberation is truncated."""
    position_quantum: float = 0.1
    yaw_quantum_deg: float = 5.0
    reflecting_furniture_height: float = 1.0
    head: HeadConfig = field(default_factory=HeadConfig)
    hrtf: str | None = None
    """A SOFA file of measured HRIRs (SimpleFreeFieldHRIR) for the direct sound and the image sources, so front and back
    differ; None: the spherical head (avworld.sim.acoustics.hrtf). Read when the config is made: a bad file is refused at once."""
    source_level: float = 1.0
    """Amplitude gain of sources: with 1, a source's direct sound at 1 m has its own amplitude."""
    agent_sounds: bool = True
    """Footsteps on FORWARD and a bump on collision, propagated through the room."""
    agent_sound_level: float = 1.0
    distractors: int = 0
    """Extra sounding objects (other categories) at random places: sounds the agent must not follow."""
    noise_floor_db: float | None = -60.0
    """RMS of the background noise in dB re a source's level (before ``headroom_db``); -inf or None (standard JSON's
    spelling of -inf in metadata) turns it off."""
    headroom_db: float = 12.0
    """Master gain (dB down) of the whole mix, so loud moments fit in full scale; a soft limiter takes the rare rest (audio.py)."""
    sounds: str = "heard"
    """Which sound categories episodes draw from: heard (training), unheard (held out), all, or user (the ids of ``user_sounds``)."""
    user_sounds: dict[str, str] = field(default_factory=dict)
    """Sound id → WAV file (any rate; resampled to ``fs``), for scenes whose sources name them."""
    cache_dir: str | None = None
    """Folder of the on-disk cache of sound paths, shared by every scene and setting (None: memory only)."""
    cache_mb: int = 256
    disk_cache_mb: int = 4096
    """Cap of the whole ``cache_dir``; the least recently used scenes and settings are deleted first (docs/acoustics.md)."""

    def __post_init__(self) -> None:
        if self.noise_floor_db is None:
            self.noise_floor_db = -math.inf
        if isinstance(self.head, dict):
            self.head = HeadConfig(**self.head)
        checks = {
            "fs": 8000 <= self.fs <= 96_000,
            "ism_order": 0 <= self.ism_order <= 8,
            "max_ir_s": 0.05 <= self.max_ir_s <= 4.0,
            "position_quantum": 0.0 < self.position_quantum <= 0.1,
            "yaw_quantum_deg": 0.0 < self.yaw_quantum_deg <= 30.0,
            "source_level": self.source_level > 0,
            "agent_sound_level": self.agent_sound_level >= 0,
            "distractors": 0 <= self.distractors <= 8,
            "noise_floor_db": self.noise_floor_db <= 0,
            "headroom_db": 0 <= self.headroom_db <= 40,
            "sounds": self.sounds in ("heard", "unheard", "all", "user"),
            "cache_mb": self.cache_mb >= 0,
            "disk_cache_mb": self.disk_cache_mb >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"acoustics.{name}: invalid value {getattr(self, name)!r}")
        if self.sounds == "user" and not self.user_sounds:
            raise ValueError("sim.acoustics.sounds=user needs sim.acoustics.user_sounds={id: file.wav, ...}")
        if self.hrtf is not None:
            try:
                load_hrtf(os.fspath(self.hrtf))
            except HRTFError as err:
                raise ValueError(f"acoustics.hrtf: {err}") from None

    @property
    def ir_length(self) -> int:
        return round(self.max_ir_s * self.fs)


class SceneAcoustics:
    """Binaural responses of one scene for a head at ``ear_height``; see the module docstring."""

    def __init__(self, scene: Scene, config: AcousticsConfig, ear_height: float, grid: NavGrid | None = None) -> None:
        self.scene, self.config, self.ear_height = scene, config, ear_height
        self.grid = grid if grid is not None else NavGrid(scene, radius=0.18)
        self.room = AcousticRoom(scene, config.fs, self.grid, config.reflecting_furniture_height)
        self.outline = WallOutline(self.room)
        self.scene_key = digest(
            json.dumps(scene.to_dict(), sort_keys=True), config.fs, config.ism_order, config.reflecting_furniture_height
        )
        self.disk = DiskCache(config.cache_dir, self.scene_key, config.disk_cache_mb * 2**20) if config.cache_dir else None
        self._paths = LRUCache(max_bytes=max(config.cache_mb, 1) * 2**18)
        self._spectra = LRUCache(max_bytes=config.cache_mb * 2**20)
        self._fields = LRUCache(max_bytes=max(config.cache_mb, 1) * 2**18)  # one per source position: distractors move each reset

    def quantise(self, x: float, y: float, yaw: float) -> tuple[int, int, int]:
        """Grid indices of a pose: (ix, iy) in ``position_quantum`` steps, yaw in ``yaw_quantum_deg`` steps."""
        q, qy = self.config.position_quantum, math.radians(self.config.yaw_quantum_deg)
        return round(x / q), round(y / q), round(yaw / qy) % round(2 * math.pi / qy)

    def listener(self, ix: int, iy: int) -> np.ndarray:
        """Head centre (3,) of quantised position (ix, iy)."""
        q = self.config.position_quantum
        return np.array([ix * q, iy * q, self.ear_height])

    def paths(self, source: tuple[float, float, float] | str, ix: int, iy: int) -> Arrivals:
        """Sound paths from ``source`` (x, y, z), or :data:`SELF`, to quantised position (ix, iy)."""
        return self._paths.get((source, ix, iy), lambda: self._paths_uncached(source, ix, iy), _nbytes)  # type: ignore[return-value]

    def _paths_uncached(self, source: tuple[float, float, float] | str, ix: int, iy: int) -> Arrivals:
        key = digest(self.scene_key, self.ear_height, source, ix, iy)
        if self.disk is not None and (stored := self.disk.load(key)) is not None:
            return Arrivals(stored["positions"], stored["gains"], stored["orders"])
        head = self.listener(ix, iy)
        if source == SELF:
            arrivals = image_sources(self.room, np.array([head[0], head[1], FEET_HEIGHT]), head, min(SELF_ORDER, self.config.ism_order))
        else:
            src = np.asarray(source, float)
            arrivals = image_sources(self.room, src, head, self.config.ism_order)
            arrivals = arrivals + diffracted_path(self.room, self.outline, self._field(src), src, head)
        if self.disk is not None:
            self.disk.store(key, arrivals.arrays())
        return arrivals

    def _field(self, source: np.ndarray) -> GoalField:
        x, y = (float(v) for v in source[:2])
        return self._fields.get((x, y), lambda: self.grid.goal_field((x, y)), _nbytes)  # type: ignore[return-value]

    def impulse_response(self, source: tuple[float, float, float] | str, x: float, y: float, yaw: float) -> np.ndarray:
        """Binaural response (2, ir_length) float32 at the quantised pose, scaled so 1 m of direct path has gain 1."""
        ix, iy, iyaw = self.quantise(x, y, yaw)
        return self._ir(source, ix, iy, iyaw)

    def _ir(self, source: tuple[float, float, float] | str, ix: int, iy: int, iyaw: int) -> np.ndarray:
        c = self.config
        arrivals = self.paths(source, ix, iy)
        yaw = iyaw * math.radians(c.yaw_quantum_deg)
        order = min(SELF_ORDER, c.ism_order) if source == SELF else c.ism_order
        reverb = self.room.reverb if c.tail else None
        hrtf = load_hrtf(os.fspath(c.hrtf)) if c.hrtf is not None else None
        ir = binaural_ir(arrivals, self.listener(ix, iy), yaw, c.fs, self.room.centers, c.ir_length, c.head, reverb, order, hrtf)
        return ir * np.float32(4 * math.pi)

    def spectrum(self, source: tuple[float, float, float] | str, x: float, y: float, yaw: float, n_fft: int) -> np.ndarray:
        """rfft (2, n_fft//2+1) complex64 of the response at the quantised pose; cached."""
        ix, iy, iyaw = self.quantise(x, y, yaw)
        key = (source, ix, iy, iyaw, n_fft)
        return self._spectra.get(  # type: ignore[return-value]
            key, lambda: np.fft.rfft(self._ir(source, ix, iy, iyaw), n_fft, axis=-1).astype(np.complex64), _nbytes
        )


def _nbytes(value: object) -> int:
    if isinstance(value, Arrivals):
        return value.positions.nbytes + value.gains.nbytes + value.orders.nbytes
    if isinstance(value, GoalField):
        return value.field.nbytes + value.predecessors.nbytes
    return int(value.nbytes)  # type: ignore[attr-defined]
