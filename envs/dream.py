"""``avworld/Dream-v0``: audio-goal navigation imagined by a trained world model (AV-CDiT).

The imagined world has the real world's spaces and contract (DESIGN.md), so a policy
moves between the two unchanged. It starts from real context (a few steps of a real
episode, a window of a collection, or the caller's observations) and from there on
every observation, reward and episode end comes from one :meth:`Imagination.step`
call of the imagination core (:mod:`avworld.models.imagination`). :class:`DreamWorlds` holds B imagined worlds at once
(an :class:`ImaginedState`) and turns them into the real env's observations; :class:`DreamEnv` is one
of them behind ``gymnasium.Env`` and :class:`avworld.envs.dream_vector.DreamVectorEnv`
is B of them behind ``gymnasium.vector.VectorEnv``, stepped in one batched call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from avworld.envs.audio_nav import RENDER_HEIGHT, AudioNavEnv
from avworld.envs.dream_config import DreamConfig, check_learned, dream_sim, dream_spaces, dream_world, step_limit
from avworld.envs.registration import StepLimitSpec
from avworld.models.imagination import FIELDS, Imagination, ImaginedState
from avworld.sim.acoustics.audio import log_spectrogram, spectrogram_bounds
from avworld.sim.backends.base import Action, to_action
from avworld.sim.config import SimConfig


def spectrograms(audio: np.ndarray) -> np.ndarray:
    """Log-magnitude spectrograms of a batch of waveforms: (n, 2, N) → (n, 2, F, T) float32, clipped to the real env's bounds."""
    n = audio.shape[0]
    spec = log_spectrogram(audio.reshape(n * 2, -1))  # (n·2, F, T): rows are independent channels
    lo, hi = spectrogram_bounds()
    return np.clip(spec, lo, hi).reshape(n, 2, *spec.shape[1:])


class ContextSource:
    """Real context for an imagined world: {field: (k, ...)} arrays of k ≤ m consecutive real observations, oldest first.

    ``start="episode"``: a fresh real ``AudioNav-v0`` episode of ``split``, seeded from the world's generator, run for m − 1
    random moves (FORWARD, TURN_LEFT, TURN_RIGHT: never STOP); a source object (``start=source``): ``source(rng)``,
    checked like the caller's context. ``options["context"]`` overrides both.
    """

    def __init__(self, config: DreamConfig, world: Imagination, sim: SimConfig, where: Path) -> None:
        self.context = world.context
        self.fields = tuple(FIELDS[m] for m in world.modalities)
        self.shapes = {"rgb": (sim.render.height, sim.render.width, 3), "audio": (2, round(sim.agent.step_time * sim.acoustics.fs))}
        self.real: AudioNavEnv | None = None
        self.source = None if isinstance(config.start, str) else config.start
        if self.source is None:
            self.real = AudioNavEnv(split=config.split, sensors=self.fields, sim=sim)
        elif isinstance(getattr(self.source, "sim", None), SimConfig):
            check_learned(self.source.sim, sim, str(getattr(self.source, "where", "the context source")), str(where))  # type: ignore[attr-defined]

    def __call__(self, rng: np.random.Generator, options: Mapping[str, Any]) -> dict[str, np.ndarray]:
        extra = sorted(set(options) - {"context", "scene_seed", "actions"})
        if extra:
            raise ValueError(f"options: unknown key {extra[0]!r}; Dream-v0's reset takes context, scene_seed, actions")
        if self.real is None and {"scene_seed", "actions"} & set(options):
            raise ValueError("options: 'scene_seed' and 'actions' choose a real context episode; they need start='episode'")
        if "context" in options:
            return self.given(options["context"])
        if self.real is not None:
            return self._episode(rng, options)
        assert self.source is not None
        return self.given(self.source(rng), "the context source's")

    def _episode(self, rng: np.random.Generator, options: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Observations of a real episode: reset (``options["scene_seed"]`` picks the scene), then ``options["actions"]`` or
        m − 1 random moves; the last m observations (fewer if the episode ends first)."""
        assert self.real is not None
        reset_options = {"scene_seed": int(options["scene_seed"])} if "scene_seed" in options else None
        obs, _ = self.real.reset(seed=int(rng.integers(2**31)), options=reset_options)
        actions = options.get("actions")
        if actions is None:
            actions = rng.integers(Action.FORWARD, len(Action), size=self.context - 1)
        frames = [obs]
        for a in actions:
            obs, _, terminated, truncated, _ = self.real.step(int(a))
            frames.append(obs)
            if terminated or truncated:
                break
        frames = frames[-self.context :]
        return {f: np.stack([o[f] for o in frames]) for f in self.fields}

    def given(self, context: Mapping[str, Any], what: str = "options['context']") -> dict[str, np.ndarray]:
        """A given context {"rgb": uint8 (k, H, W, 3), "audio": float (k, 2, N)}, 1 ≤ k ≤ m, checked (``what`` names it)."""
        out, steps = {}, set()
        for f in self.fields:
            if f not in context:
                raise ValueError(f"{what} needs {f!r} (this world model imagines {', '.join(self.fields)})")
            x = np.asarray(context[f])
            if x.ndim != 1 + len(self.shapes[f]) or x.shape[1:] != self.shapes[f] or not 1 <= x.shape[0] <= self.context:
                shape = ", ".join(map(str, self.shapes[f]))
                raise ValueError(f"{what}[{f!r}] must have shape (k, {shape}), 1 ≤ k ≤ {self.context}, got {x.shape}")
            if f == "rgb" and x.dtype != np.uint8:
                raise ValueError(f"{what}['rgb'] must be uint8, got {x.dtype}")
            out[f] = x if f == "rgb" else np.clip(x, -1.0, 1.0).astype(np.float32)
            steps.add(x.shape[0])
        if len(steps) > 1:
            raise ValueError(f"{what} arrays must hold the same number of steps, got {sorted(steps)}")
        return out


class DreamWorlds:
    """B imagined worlds on one device (an :class:`ImaginedState`) and the real env's observations of them.

    Each world draws its sampler noise from its own ``np.random.Generator`` (passed per call), so world i of a batch
    imagines what a single env seeded alike imagines, whatever the batch holds; one :meth:`Imagination.step` call
    steps every world of a call.
    """

    def __init__(self, config: DreamConfig, batch: int) -> None:
        if batch < 1:
            raise ValueError(f"num_envs must be ≥ 1, got {batch}")
        assert config.checkpoint is not None
        self.config, self.batch = config, batch
        self.world, where = dream_world(config.checkpoint, config.device, config.amp, config.compile)
        if config.ctx_noise is not None:
            self.world.ctx_noise = config.ctx_noise
        if "audio" not in self.world.modalities and {"audio", "spectrogram"} & set(config.sensors):
            raise ValueError(f"sensors: the world model {where} imagines no audio; use sensors=('rgb',)")
        self.max_steps = step_limit(config)
        sim = dream_sim(self.world, config.sim, where)
        self.sim = dataclasses.replace(sim, episode=dataclasses.replace(sim.episode, max_steps=self.max_steps))
        self.observation_space, self.decoded_space = dream_spaces(self.world, config, self.sim)
        self.action_space = spaces.Discrete(len(Action))
        self.source = ContextSource(config, self.world, self.sim, where)
        self.shapes = self.world.latent_shapes()
        m, device = self.world.context, self.world.device
        self.state = ImaginedState({mod: torch.zeros((batch, m, *shape), device=device) for mod, shape in self.shapes.items()})

    @property
    def latest(self) -> dict[str, torch.Tensor]:
        """The newest latents of every world: {modality: (B, *latent)}."""
        return self.state.latest

    def start(self, index: np.ndarray, contexts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """(Re)start worlds ``index`` (n,) from real contexts (each {field: (k, ...)}, padded to m); their first observations (n, ...).

        The first observation is the last real context step (in latent mode, its latents).
        """
        started = self.world.start([{f: torch.from_numpy(np.asarray(c[f])) for f in self.source.fields} for c in contexts])
        self.state.put(torch.as_tensor(index, device=self.world.device), started)
        if self.config.latent:
            return {mod: z.cpu().numpy() for mod, z in started.latest.items()}
        return self._observations({f: np.stack([np.asarray(c[f])[-1] for c in contexts]) for f in self.source.fields})

    def step(
        self, index: np.ndarray, actions: np.ndarray, rngs: Sequence[np.random.Generator]
    ) -> tuple[dict[str, torch.Tensor], np.ndarray, np.ndarray]:
        """Imagine one step of worlds ``index`` (n,) under ``actions`` (n,), world i's noise from ``rngs[i]``, in one step call.

        Returns the new latents {modality: (n, *latent)}, rewards (n,) float64 and termination probabilities (n,) float64.
        """
        device = self.world.device
        rows = torch.as_tensor(index, device=device)
        def draw(shape: tuple[int, ...]) -> torch.Tensor:  # (n, *shape), world i's part from rngs[i]
            return torch.from_numpy(np.stack([rng.standard_normal(shape, dtype=np.float32) for rng in rngs])).to(device)

        noise = {mod: draw(shape) for mod, shape in self.shapes.items()}
        m = self.world.context
        ctx_eps = {mod: draw((m, *shape)) for mod, shape in self.shapes.items()} if self.world.ctx_noise > 0 else None
        action = torch.as_tensor(np.asarray(actions, np.int64), device=device)
        step = self.world.step(self.state.take(rows), action, self.config.sampler_steps, noise=noise, ctx_eps=ctx_eps)
        self.state.put(rows, step.state)
        return step.latents, step.reward.double().cpu().numpy(), step.termination.double().cpu().numpy()

    def terminated(self, actions: np.ndarray, termination: np.ndarray) -> np.ndarray:
        """Episode ends (n,) bool: on STOP, as in the real env (``termination="stop"``), or where the model's termination
        probability exceeds ``termination_threshold`` (``termination="model"``)."""
        if self.config.termination == "stop":
            return np.asarray(actions) == Action.STOP
        return termination > self.config.termination_threshold

    def observe(self, latents: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """Observations (n, ...) of new latents (n, *latent): the latents themselves in latent mode, else decoded."""
        if self.config.latent:
            return {mod: z.float().cpu().numpy() for mod, z in latents.items()}
        return self._observations({f: x.cpu().numpy() for f, x in self.world.observations(dict(latents)).items()})

    def decode(self, latents: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Decoded observations of latents {modality: (..., *latent)} (any leading dims): {sensor: (..., *shape)}."""
        missing = [mod for mod in self.shapes if mod not in latents]
        if missing:
            raise ValueError(f"decode: latents need {missing[0]!r} (this world model imagines {', '.join(self.shapes)})")
        z = {mod: torch.as_tensor(np.asarray(latents[mod], np.float32), device=self.world.device) for mod in self.shapes}
        lead = z["video"].shape[: z["video"].dim() - len(self.shapes["video"])]
        for mod, x in z.items():
            if tuple(x.shape) != (*lead, *self.shapes[mod]):
                raise ValueError(
                    f"decode: latents[{mod!r}] must have shape (..., {', '.join(map(str, self.shapes[mod]))}), got {tuple(x.shape)}"
                )
        flat = {mod: x.reshape(-1, *self.shapes[mod]) for mod, x in z.items()}
        obs = self._observations({f: x.cpu().numpy() for f, x in self.world.observations(flat).items()})
        return {k: v.reshape(*lead, *v.shape[1:]) for k, v in obs.items()}

    def _observations(self, fields: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Sensor observations (n, ...) from ``rgb`` (n, H, W, 3) and ``audio`` (n, 2, N), clipped to the space (real context
        audio may not be)."""
        obs = {"rgb": np.ascontiguousarray(fields["rgb"], dtype=np.uint8)}
        sensors = self.config.sensors
        if "audio" in sensors or "spectrogram" in sensors:
            audio = np.clip(fields["audio"], -1.0, 1.0).astype(np.float32)
            if "audio" in sensors:
                obs["audio"] = audio
            if "spectrogram" in sensors:
                obs["spectrogram"] = spectrograms(audio)
        return obs


def upscale(rgb: np.ndarray, height: int = RENDER_HEIGHT) -> np.ndarray:
    """Nearest-neighbour upscaling of a frame (H, W, 3) to (height, height · W / H, 3)."""
    h, w, _ = rgb.shape
    rows = (np.arange(height) * h) // height
    cols = (np.arange(height * w // h) * h) // height
    return rgb[rows][:, cols]


class DreamEnv(StepLimitSpec, gym.Env[dict[str, np.ndarray], int]):
    """Audio-goal navigation imagined by a world model: ``AudioNav-v0``'s interface, AV-CDiT's dynamics.

    ## Description
    A trained world model (AV-CDiT with its video and audio tokenizers, a checkpoint directory) imagines the agent's
    next frame, binaural sound, reward and episode end from the last m observations (its context, m = 4 by default) and
    the action. Each episode starts from real context, then every step is imagined: agents learn and plan here and are
    judged in ``avworld/AudioNav-v0``.

    ## Action Space
    ``Discrete(4)``: 0 STOP, 1 FORWARD, 2 TURN_LEFT, 3 TURN_RIGHT, as in the real env. Anything else raises ``ValueError``.

    ## Observation Space
    The real env's ``Dict`` for ``sensors`` under the checkpoint's simulator settings (``rgb`` always):
    - ``rgb``: uint8 (H, W, 3), the decoded imagined frame.
    - ``audio``: float32 (2, N) in [-1, 1], the decoded imagined binaural waveform of the step (clipped).
    - ``spectrogram``: float32 (2, F, T), the real env's log-magnitude STFT of the imagined ``audio``.
    ``depth`` and ``pointgoal`` are refused: the model does not imagine them. With ``latent=True`` the observation is
    instead ``{"video": (C, h, w), "audio": (C_a, n)}`` float32 latents (unbounded ``Box``es), for fast imagination
    training; :meth:`decode` turns latents into the observations above on demand.

    ## Rewards
    The model's reward head: its estimate of the real reward (−0.01 per step, plus the decrease of the geodesic
    distance, plus 10 for a successful STOP).

    ## Starting State
    ``reset`` builds the context from real observations and returns the last of them (real, not imagined):
    - ``start="episode"`` (default): a fresh real episode of ``split`` (default ``"test"`` scenes), seeded from this env's
      ``np_random``, for m − 1 random moves (never STOP); ``options={"scene_seed": s}`` picks the scene and
      ``options={"actions": [...]}`` the moves (the last m observations are kept).
    - ``start=source``, a context source made by the caller: ``source(rng)`` returns a context as below, drawn from this
      env's ``np_random``; e.g. ``avworld.data.contexts.CollectionContexts(root, name, split)``, the first m observations of
      a random window of a collection (its simulator settings are checked against the model's).
    - ``options={"context": {"rgb": uint8 (k, H, W, 3), "audio": float (k, 2, N)}}``, 1 ≤ k ≤ m: the caller's context.
    Contexts shorter than m are padded in front with their oldest step (as if the agent had stood still).

    ## Episode End
    ``termination="stop"`` (default): terminates exactly when the action is STOP, as the real env does; the model's
    termination head (trained on that very event) is reported in ``info["termination_prob"]`` but decides nothing, so an
    imperfect model never ends an episode the real world would not. ``termination="model"``: terminates when the
    predicted probability exceeds ``termination_threshold`` (0.5), for models of tasks whose ends are not known in
    advance. Truncates after ``max_steps`` imagined steps: by default the real env's limit (``sim.episode.max_steps``
    of the ``sim`` argument where given, else AudioNav-v0's 500), never the checkpoint's, which is only the episode limit
    of its training collection. ``env.spec.max_episode_steps`` reports it.

    ## Info
    ``imagined`` (False at reset, True after a step), ``step`` (imagined steps so far), ``termination_prob`` (0 at reset).
    The real env's ``pose``, geodesic distance and metrics do not exist in imagination.

    ## Arguments
    - ``checkpoint``: a world-model checkpoint directory (or an :class:`Imagination`); checked at make time.
    - ``sensors``: ``("rgb", "audio")`` by default; any of ``rgb``, ``audio``, ``spectrogram``.
    - ``max_steps``: imagined steps before truncation (see Episode End). ``sampler_steps``: Euler steps of the flow sampler (4).
    - ``ctx_noise``: the level the context is noised at before each imagined step, as in training
      (:attr:`Imagination.ctx_noise`; None keeps the world model's, 0 for a loaded one); drawn from each world's own generator.
    - ``device``: ``"cpu"`` or ``"cuda"``. ``amp``: decode observations under bf16 where the device does bf16 in
      hardware (CUDA, AMX / AVX512-BF16 CPUs; 1.5x faster small decoders). ``compile``: ``torch.compile`` the sampler's
      net (CUDA graphs) and the decoders (:meth:`Imagination.compile`; off by default, for GPUs; a part that fails to
      compile warns and runs eagerly). ``start``, ``split``: see Starting State.
    - ``latent``: observations are latents (see Observation Space).
    - ``termination``, ``termination_threshold``: see Episode End.
    - ``sim``: overrides of the checkpoint's simulator settings (a mapping merged over them, or a :class:`SimConfig`);
      those the model learned (render size and field of view, audio rate and step samples, agent motion) must match.
    - ``render_mode``: ``"rgb_array"``: the current frame, upscaled to 256 pixels high.

    ## Version History
    - v0: initial version (``max_steps``, defaulting to the real env's limit, replaced ``horizon``, which defaulted to
      the checkpoint's collection limit).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.render_mode = render_mode
        self.worlds = DreamWorlds(_config(kwargs), 1)
        self.max_steps = self.worlds.max_steps
        self.observation_space = self.worlds.observation_space
        self.action_space = self.worlds.action_space
        self._steps, self._done, self._started = 0, True, False
        self._frame: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        context = self.worlds.source(self.np_random, options or {})
        obs = self.worlds.start(np.zeros(1, np.int64), [context])
        self._steps, self._done, self._started = 0, False, True
        self._frame = context["rgb"][-1]
        return {k: v[0] for k, v in obs.items()}, {"imagined": False, "step": 0, "termination_prob": 0.0}

    def step(self, action: int) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if self._done:
            raise RuntimeError("step() called before reset() or after the episode ended; call reset()")
        actions = np.array([to_action(action)], np.int64)
        latents, reward, termination = self.worlds.step(np.zeros(1, np.int64), actions, [self.np_random])
        self._steps += 1
        terminated = bool(self.worlds.terminated(actions, termination)[0])
        truncated = not terminated and self._steps >= self.max_steps
        self._done = terminated or truncated
        obs = {k: v[0] for k, v in self.worlds.observe(latents).items()}
        self._frame = obs.get("rgb")
        info = {"imagined": True, "step": self._steps, "termination_prob": float(termination[0])}
        return obs, float(reward[0]), terminated, truncated, info

    def decode(self, latents: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Decoded observations of latents {"video": (..., C, h, w), "audio": (..., C_a, n)}: {sensor: (..., *shape)}."""
        return self.worlds.decode(latents)

    def render(self) -> np.ndarray | None:
        """The current frame (the last real one after reset, then imagined), upscaled: uint8 (256, 256 · W / H, 3)."""
        if self.render_mode != "rgb_array" or not self._started:
            return None
        frame = self._frame
        if frame is None:  # latent mode: decode the newest video latent
            frame = self.worlds.decode({m: z[0].cpu().numpy() for m, z in self.worlds.latest.items()})["rgb"]
        return upscale(frame)


def _config(kwargs: Mapping[str, Any]) -> DreamConfig:
    """The :class:`DreamConfig` of env keyword arguments; an unknown one raises naming it."""
    known = {f.name for f in dataclasses.fields(DreamConfig)}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ValueError(f"unknown argument {unknown[0]!r}; Dream-v0 takes render_mode, {', '.join(sorted(known))}")
    return DreamConfig(**kwargs)
