"""``avworld/AudioNav-v0``: audio-goal navigation in the real (simulated) world."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from avworld.envs.registration import StepLimitSpec
from avworld.sim.acoustics.audio import log_spectrogram, spectrogram_bounds
from avworld.sim.acoustics.sounds import AGENT_SOUNDS, CATEGORIES, load_wav
from avworld.sim.backends import make_simulator
from avworld.sim.backends.base import Action, Pose, ShortestPathFollower, SimulatorBackend, to_action
from avworld.sim.config import SimConfig
from avworld.sim.episodes import sample_start, step_reward
from avworld.sim.navigation import GoalField
from avworld.sim.scenes.files import SceneSetting
from avworld.sim.scenes.scene import MAX_EXTENT
from avworld.sim.scenes.source import SceneSource, scene_source
from avworld.sim.topdown import render_topdown

SENSORS = ("rgb", "audio", "depth", "spectrogram", "pointgoal")
AUDIO_SENSORS = ("audio", "spectrogram")
STARTS = ("scene", "random")
RENDER_HEIGHT = 256
"""Height in pixels of each half of ``render()``'s side-by-side image."""
POINTGOAL_RANGE = float(np.float32(MAX_EXTENT * math.sqrt(2.0)))
"""Upper bound (m) of ``pointgoal``'s distance: the diagonal of the largest scene a JSON may hold (``MAX_EXTENT`` a side);
a finite bound keeps the space, and the metadata Minari writes from it, standard JSON. Farther sources (a scanned
habitat-sim scene) read as this distance."""


def observation_space(config: SimConfig, sensors: Sequence[str]) -> spaces.Dict:
    """The observation space of ``sensors`` (names of :data:`SENSORS`) under ``config``; the real and imagined envs share it."""
    r, ac = config.render, config.acoustics
    obs: dict[str, spaces.Space[Any]] = {"rgb": spaces.Box(0, 255, (r.height, r.width, 3), np.uint8)}
    n = round(config.agent.step_time * ac.fs)
    if "audio" in sensors:
        obs["audio"] = spaces.Box(-1.0, 1.0, (2, n), np.float32)
    if "depth" in sensors:
        obs["depth"] = spaces.Box(0.0, r.max_depth, (r.height, r.width, 1), np.float32)
    if "spectrogram" in sensors:
        lo, hi = spectrogram_bounds()
        obs["spectrogram"] = spaces.Box(lo, hi, log_spectrogram(np.zeros((2, n), np.float32)).shape, np.float32)
    if "pointgoal" in sensors:
        low, high = np.array([0.0, -math.pi], np.float32), np.array([POINTGOAL_RANGE, math.pi], np.float32)
        obs["pointgoal"] = spaces.Box(low, high, dtype=np.float32)
    return spaces.Dict(obs)


def check_user_sounds(config: SimConfig) -> None:
    """Refuse, naming the id and the file, a user sound whose id is a built-in one or whose WAV cannot be used."""
    ac = config.acoustics
    for sound, path in ac.user_sounds.items():
        if sound in CATEGORIES or sound in AGENT_SOUNDS:
            raise ValueError(
                f"sim.acoustics.user_sounds.{sound} ({path}): {sound!r} is a built-in sound id; a user sound needs an id of its own "
                f"(e.g. my_{sound})"
            )
        try:
            load_wav(path, ac.fs)
        except ValueError as err:
            raise ValueError(f"sim.acoustics.user_sounds.{sound}: {err}") from None


class AudioNavEnv(StepLimitSpec, gym.Env[dict[str, np.ndarray], int]):
    """Audio-goal navigation: find and stop next to a sounding object.

    ## Description
    An agent in an indoor scene (a procedural apartment, or a scene loaded from
    JSON) sees egocentric frames, hears binaural sound and must reach the sounding
    object, as in SoundSpaces. Physics, rendering and room acoustics
    (pyroomacoustics on the same geometry) come from :mod:`avworld.sim`.

    ## Action Space
    ``Discrete(4)``: 0 STOP, 1 FORWARD (``sim.agent.forward_step`` m, 0.25 by
    default, with collision and sliding), 2 TURN_LEFT and 3 TURN_RIGHT
    (``sim.agent.turn_deg``, 15° by default).

    ## Observation Space
    A ``Dict`` with the keys of ``sensors``:
    - ``rgb``: uint8 (H, W, 3), egocentric colour image (64×64 by default).
    - ``audio``: float32 (2, N) in [-1, 1], the binaural sound of the step (channel 0
      the left ear; N = step time × 16 kHz = 4000 by default): the source, its
      reverberation, the agent's footsteps and bumps, a low noise floor.
    - ``spectrogram``: float32 (2, F, T), log-magnitude STFT of ``audio``
      (Hann window of 256 samples, hop 128).
    - ``depth``: float32 (H, W, 1), z-depth in metres clipped to ``sim.render.max_depth``.
    - ``pointgoal``: float32 (2,), Euclidean distance (m) and bearing (radians,
      positive to the left) of the source in the agent's frame.

    ## Rewards
    −0.01 per step, plus the decrease of the geodesic distance to the source
    (metres) over the step, plus 10 when STOP is called within the success distance.

    ## Starting State
    Each reset draws a scene from the scene source (:mod:`avworld.sim.scenes.source`): a seed of the split's
    range (procedural scenes; with ``scenes=N`` from its first N only), or one of the given ``scene`` (with
    several, one drawn per reset), and uses that scene's source and, with ``starts="scene"``, its start.
    ``options={"scene_index": i}`` picks the i-th of these scenes, ``options={"scene_seed": s}`` the scene of
    id ``s`` (a procedural scene's seed; −1 − k for the k-th given scene). With
    ``starts="random"`` each reset draws a new start and heading for the scene's
    source, at a geodesic distance in [``sim.episode.min_geodesic``,
    ``sim.episode.max_geodesic``], as SoundSpaces has many episodes per scene. With
    ``sim.backend=habitat`` the scene is habitat-sim's scanned scene ``sim.habitat.scene``
    and its start and source come from ``sim.habitat`` (docs/habitat.md). The source's
    sound category comes from ``sim.acoustics.sounds`` (``heard`` categories by
    default, ``unheard`` for generalisation tests, ``user`` for the WAV files of
    ``sim.acoustics.user_sounds``); its variation is drawn per episode.

    ## Episode End
    Terminates on STOP (success if the geodesic distance to the source is at most
    ``sim.episode.success_distance``, 1 m by default). Truncates after
    ``sim.episode.max_steps`` (500) steps, which ``env.spec.max_episode_steps`` reports (the env truncates
    itself: no ``TimeLimit`` wrapper is registered). The last ``info`` holds ``metrics``:
    success, spl, sna, dtg, path_length, geodesic_start, num_actions, optimal_actions.

    ## Info
    Every step: ``pose`` (x, y, yaw), ``source_position`` (x, y),
    ``geodesic_distance``, ``collided``, ``success``, ``scene_seed`` (None for a given scene),
    ``scene`` (the scene's name).

    ## Arguments
    - ``split``: ``"train"``, ``"val"`` or ``"test"``: the seed range of procedural scenes.
    - ``scene``: a :class:`Scene`, a JSON path, a folder of JSON files or a list of those; overrides
      ``split``. Each is checked when the env is made, its sources' sound ids included (built-in
      ids or those of ``sim.acoustics.user_sounds``). None with ``sim.backend=habitat`` (its scene is ``sim.habitat.scene``).
    - ``sim.acoustics.user_sounds``: ``{id: file.wav}``; checked when the env is made (the file must
      load; the id must not be a built-in one, ``doorbell`` say: pick ``my_doorbell``).
    - ``scenes``: draw scenes from the first ``scenes`` of the split (or of the given scenes) only, and keep their
      simulators (and so their warm acoustic caches) between episodes; None (default) draws from the
      whole split and keeps only the current scene. Memory grows with the scenes visited: ~25 MB per kept
      simulator with ``sim.acoustics.cache_mb=24`` (measured: 8 envs × 64 scenes held ~12 GB).
    - ``starts``: ``"scene"`` (default: the scene's own start, one episode per scene) or ``"random"``
      (a new start per reset, see Starting State).
    - ``sensors``: which observation keys to provide (default ``("rgb", "audio")``;
      ``rgb`` is always included).
    - ``sim``: a :class:`SimConfig` or a nested mapping of its fields; ``sim.backend`` picks the
      simulator (``builtin``, or ``habitat`` for habitat-sim, which must be installed).
    - ``render_mode``: ``"rgb_array"``: first-person view and top-down map side by side.

    ## Version History
    - v0: initial version (lists and folders of scenes, ``sounds=user`` and the ``scene`` info key added since).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(
        self,
        render_mode: str | None = None,
        split: str = "train",
        scene: SceneSetting | None = None,
        sensors: Sequence[str] = ("rgb", "audio"),
        sim: SimConfig | Mapping[str, Any] | None = None,
        scenes: int | None = None,
        starts: str = "scene",
    ) -> None:
        self.config = sim if isinstance(sim, SimConfig) else SimConfig.from_dict(sim or {})
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        unknown = sorted(set(sensors) - set(SENSORS))
        if unknown:
            raise ValueError(f"unknown sensor {unknown[0]!r}; available: {', '.join(SENSORS)}")
        if starts not in STARTS:
            raise ValueError(f"starts must be one of {', '.join(STARTS)}, got {starts!r}")
        self.render_mode, self.split, self.starts = render_mode, split, starts
        self.sensors = tuple(s for s in SENSORS if s in {"rgb", *sensors})
        ac = self.config.acoustics
        if not ac.enabled and set(self.sensors) & set(AUDIO_SENSORS):
            raise ValueError("sensors 'audio' and 'spectrogram' need sim.acoustics.enabled=true")
        check_user_sounds(self.config)
        self.scene_source: SceneSource | None = None
        """Where the env's scenes come from (:func:`~avworld.sim.scenes.source.scene_source` of ``scene``); None with a
        backend that brings its own scene (habitat-sim)."""
        self._ids: Sequence[int] = ()
        if self.config.backend == "builtin":
            self.scene_source = scene_source(scene, self.config)
            self._ids = self.scene_source.ids(split)
            if scenes is not None and not 1 <= scenes <= len(self._ids):
                raise ValueError(f"scenes must lie in [1, {len(self._ids)}] (the {split!r} split's scenes), got {scenes}")
            self._ids = self._ids[:scenes] if scenes is not None else self._ids
        elif scene is not None:
            raise ValueError(f"scene: sim.backend={self.config.backend} simulates the scene of sim.habitat.scene; pass no avworld scene")
        self._pool: dict[int, SimulatorBackend] | None = {} if scenes is not None else None
        self._start_fields: dict[int, GoalField] = {}
        self.observation_space = observation_space(self.config, self.sensors)
        self.action_space = spaces.Discrete(len(Action))
        self.sim: SimulatorBackend | None = None
        if self.scene_source is None:  # a backend with its own scene: built now, so that a missing simulator fails here
            self.sim = make_simulator(None, self.config)
        self._scene_id: int | None = None
        self._done = True
        self._hears = bool(set(self.sensors) & set(AUDIO_SENSORS))
        self._audio: np.ndarray | None = None

    @property
    def max_steps(self) -> int:
        """Steps after which an episode truncates: ``sim.episode.max_steps`` (what ``spec.max_episode_steps`` reports)."""
        return self.config.episode.max_steps

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        options = options or {}
        scene_id = self._pick_scene(options)
        if self.scene_source is not None and (scene_id != self._scene_id or self.sim is None):
            self.sim = self._simulator(scene_id)
            self._scene_id = scene_id
        sim = self.sim
        source = sim.scene.sources[0].position
        start = Pose(sim.scene.start.position[0], sim.scene.start.position[1], sim.scene.start.yaw)
        if self.starts == "random":
            start = self._random_start(sim, source)
        sim.set_episode(start, source)
        self._start = sim.pose
        self._geodesic_start = self._geodesic = sim.geodesic_distance()
        self._steps, self._path_length, self._done = 0, 0.0, False
        self._trail = [(sim.pose.x, sim.pose.y)]
        self._audio = sim.start_audio(self.np_random) if self._hears else None
        return self._observation(), self._info(collided=False, success=False)

    def _pick_scene(self, options: Mapping[str, Any]) -> int | None:
        """The id of the scene this episode plays: the ``options["scene_index"]``-th of the env's scenes,
        ``options["scene_seed"]`` (an id of the scene source), else one drawn from the env's scenes (None: the backend's
        own scene). The draw is made for ``scene_seed`` too, so that the rest of the episode's randomness does not
        depend on how its scene was named."""
        n = len(self._ids)
        if "scene_index" in options:
            index = options["scene_index"]
            if isinstance(index, bool) or not isinstance(index, int | np.integer) or not 0 <= index < max(n, 1):
                raise ValueError(f"options['scene_index'] must be an int in [0, {max(n, 1)}), got {index!r}")
            return self._ids[int(index)] if n else None
        drawn = self._ids[int(self.np_random.integers(n))] if n else None
        if "scene_seed" in options and self.scene_source is not None:
            return int(options["scene_seed"])
        return drawn

    def _simulator(self, scene_id: int) -> SimulatorBackend:
        """The simulator of a scene: from the pool when kept there, else built (and pooled with ``scenes``)."""
        assert self.scene_source is not None
        if self._pool is not None and scene_id in self._pool:
            return self._pool[scene_id]
        if self._pool is None and self.sim is not None:
            self.sim.close()
            self._start_fields.clear()
        sim = make_simulator(self.scene_source.scene(scene_id), self.config)
        if self._pool is not None:
            self._pool[scene_id] = sim
        return sim

    def _random_start(self, sim: SimulatorBackend, source: tuple[float, float]) -> Pose:
        """A start for ``source`` in the episode config's geodesic range (the distance field is kept per scene)."""
        key = id(sim)
        field = self._start_fields.get(key)
        if field is None:
            field = self._start_fields[key] = sim.grid.goal_field(source)
        xy, yaw = sample_start(sim.grid, field, self.np_random, self.config.episode)
        return Pose(float(xy[0]), float(xy[1]), yaw)

    def step(self, action: int) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if self.sim is None or self._done:
            raise RuntimeError("step() called before reset() or after the episode ended; call reset()")
        action = to_action(action)
        sim = self.sim
        before = sim.pose
        collided = sim.step(action)
        self._steps += 1
        self._path_length += math.hypot(sim.pose.x - before.x, sim.pose.y - before.y)
        self._trail.append((sim.pose.x, sim.pose.y))
        geodesic = sim.geodesic_distance()
        terminated = action == Action.STOP
        success = terminated and geodesic <= self.config.episode.success_distance
        reward = step_reward(self._geodesic - geodesic, success)
        self._geodesic = geodesic
        if self._hears:
            self._audio = sim.hear(action, collided)
        truncated = not terminated and self._steps >= self.config.episode.max_steps
        info = self._info(collided, success)
        if terminated or truncated:
            self._done = True
            info["metrics"] = self._metrics(success)
        return self._observation(), float(reward), terminated, truncated, info

    def _observation(self) -> dict[str, np.ndarray]:
        sim = self.sim
        assert sim is not None
        rgb, depth = sim.render()
        obs = {"rgb": rgb}
        if self._audio is not None:
            if "audio" in self.sensors:
                obs["audio"] = self._audio
            if "spectrogram" in self.sensors:
                obs["spectrogram"] = log_spectrogram(self._audio)
        if "depth" in self.sensors:
            obs["depth"] = depth[..., None]
        if "pointgoal" in self.sensors:
            dx, dy = sim.source[0] - sim.pose.x, sim.source[1] - sim.pose.y
            bearing = math.remainder(math.atan2(dy, dx) - sim.pose.yaw, 2 * math.pi)
            obs["pointgoal"] = np.array([min(math.hypot(dx, dy), POINTGOAL_RANGE), bearing], dtype=np.float32)
        return obs

    def _info(self, collided: bool, success: bool) -> dict[str, Any]:
        sim = self.sim
        assert sim is not None
        return {
            "pose": sim.pose.as_array(),
            "source_position": sim.source.copy(),
            "geodesic_distance": self._geodesic,
            "collided": collided,
            "success": success,
            "scene_seed": self._scene_id if self.scene_source is not None and self.scene_source.generated else None,
            "scene": sim.scene.name,
        }

    def _metrics(self, success: bool) -> dict[str, float]:
        """Per-episode navigation metrics as SoundSpaces defines them."""
        sim = self.sim
        assert sim is not None
        s = float(success)
        shortest = self._geodesic_start
        optimal = ShortestPathFollower(sim).count_actions(self._start, self.config.episode.max_steps)
        return {
            "success": s,
            "spl": s * shortest / max(self._path_length, shortest, 1e-9),
            "sna": s * optimal / max(self._steps, optimal),
            "dtg": self._geodesic,
            "path_length": self._path_length,
            "geodesic_start": shortest,
            "num_actions": float(self._steps),
            "optimal_actions": float(optimal),
        }

    def close(self) -> None:
        """Release the simulators (habitat-sim's GPU context); a later reset builds a new one."""
        sims = {id(s): s for s in [self.sim, *(self._pool or {}).values()] if s is not None}
        for sim in sims.values():
            sim.close()
        self.sim, self._scene_id = None, None
        self._pool = {} if self._pool is not None else None
        self._start_fields.clear()

    def render(self) -> np.ndarray | None:
        """First-person view (upscaled) and top-down map side by side, uint8 (256, 256 * (1 + W/H), 3)."""
        if self.render_mode != "rgb_array" or self.sim is None:
            return None
        rgb, _ = self.sim.render()
        h, w, _ = rgb.shape
        rows = (np.arange(RENDER_HEIGHT) * h) // RENDER_HEIGHT
        cols = (np.arange(RENDER_HEIGHT * w // h) * h) // RENDER_HEIGHT
        first_person = rgb[rows][:, cols]
        g = self.sim.grid
        top = render_topdown(
            self.sim.scene,
            pose=(self.sim.pose.x, self.sim.pose.y, self.sim.pose.yaw),
            path=np.asarray(self._trail),
            size=RENDER_HEIGHT,
            free=g.free,
            free_origin=(float(g.origin[0]), float(g.origin[1])),
            free_cell=g.cell,
        )
        return np.concatenate([first_person, top], axis=1)
