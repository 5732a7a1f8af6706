"""Episodes to look at: a real episode with its maps, a world model's open-loop imagination of it, and its video.

Used by ``avworld viz``, the HTML report of ``avworld eval ... report=true`` and ``avworld demo``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from avworld.models.imagination import Imagination
from avworld.policies.base import Policy
from avworld.sim.config import SimConfig


@dataclass
class Imagined:
    """One world model's open-loop imagination of a rollout: ``observations``: the first ``context`` real observations,
    then one per imagined step; ``rewards``: one per imagined step; ``name`` labels its panel and caption in the video."""

    name: str
    observations: list[dict[str, np.ndarray]]
    rewards: list[float]
    context: int


@dataclass
class Rollout:
    """One real episode for a video, and the open-loop imaginations of it by any number of world models.

    ``observations``: the start, then one per step; ``maps``: the top-down map of each; ``actions`` and ``rewards``: one per
    step; ``imagined``: one :class:`Imagined` per world model, in the order their panels are shown.
    """

    observations: list[dict[str, np.ndarray]]
    maps: list[np.ndarray]
    actions: list[int]
    rewards: list[float]
    imagined: list[Imagined] = field(default_factory=list)


def run_episode(
    sim: SimConfig, policy: Policy, split: str, seed: int, scene_seed: int | None, max_steps: int, progress: bool = True, scene: Any = None
) -> Rollout:
    """One episode of ``policy`` in the real world, at most ``max_steps`` steps, with the top-down map of every step; ``scene``
    (the env's argument: JSON files, a folder) plays the user's scenes instead of ``split``'s procedural ones."""
    import gymnasium as gym
    from tqdm import tqdm

    import avworld  # noqa: F401

    env = gym.make("avworld/AudioNav-v0", split=split, sim=sim, sensors=("rgb", "audio"), render_mode="rgb_array", scene=scene)

    def topdown() -> np.ndarray:  # the right half of render(): the map
        image = env.render()
        return image[:, -image.shape[0] :].copy()

    options = None if scene_seed is None else {"scene_seed": int(scene_seed)}
    obs, info = env.reset(seed=seed, options=options)
    policy.reset(env, seed=seed)
    rollout = Rollout([obs], [topdown()], [], [])
    with tqdm(total=max_steps, desc="steps", unit="step", disable=not progress) as bar:
        for _ in range(max_steps):
            action = int(policy.act(obs, info))
            obs, reward, terminated, truncated, info = env.step(action)
            rollout.observations.append(obs)
            rollout.maps.append(topdown())
            rollout.actions.append(action)
            rollout.rewards.append(float(reward))
            bar.update()
            if terminated or truncated:
                break
    env.close()
    return rollout


def imagine(rollout: Rollout, world: Imagination, sim: SimConfig, seed: int, sampler_steps: int, name: str = "imagined") -> Imagined:
    """Add ``world``'s open loop (``avworld/Dream-v0``) to ``rollout.imagined`` as ``name``: started from the first m real
    observations, fed the actions the real agent took after them. Each world model gets the same ``seed``."""
    import gymnasium as gym

    if any(other.name == name for other in rollout.imagined):
        raise ValueError(f"name: the rollout already has an imagined world named {name!r}")
    fields = ("rgb", "audio") if "audio" in world.modalities else ("rgb",)
    dream = gym.make("avworld/Dream-v0", checkpoint=world, sim=sim, sensors=fields, sampler_steps=sampler_steps)
    k = min(world.context, len(rollout.observations))
    context = {f: np.stack([o[f] for o in rollout.observations[:k]]) for f in fields}  # (k, ...) oldest first
    dream.reset(seed=seed, options={"context": context})
    imagined = Imagined(name, list(rollout.observations[:k]), [], k)
    for action in rollout.actions[k - 1 :]:  # actions[i] leads from observation i to i + 1
        obs, reward, terminated, truncated, _ = dream.step(action)
        imagined.observations.append(obs)
        imagined.rewards.append(float(reward))
        if terminated or truncated:
            break
    dream.close()
    rollout.imagined.append(imagined)
    return imagined


def write_rollout_video(path: Path, rollout: Rollout, sim: SimConfig, fps: float, spectrogram_seconds: float, sound: str = "real") -> None:
    """An MP4 of ``rollout``: the real view and each imagined one beside it, the map, scrolling spectrograms of the
    soundtrack, and the caption; the soundtrack is the real or (``sound="imagined"``) the first imagined world's binaural audio."""
    from collections.abc import Iterator

    from avworld.sim.acoustics.audio import log_spectrogram
    from avworld.sim.backends.base import Action
    from avworld.viz.panels import PanelConfig, compose
    from avworld.viz.video import write_video

    if sound not in ("real", "imagined"):
        raise ValueError(f"audio must be 'real' or 'imagined', got {sound!r}")
    heard = rollout.observations if sound == "real" else rollout.imagined[0].observations if rollout.imagined else None
    if heard is None or "audio" not in heard[0]:
        raise ValueError("audio=imagined needs checkpoint=DIR, a world model that imagines audio")
    audio = np.concatenate([o["audio"] for o in heard], axis=1)  # (2, T * N): step t's sound plays under frame t
    n = heard[0]["audio"].shape[1]
    n_fft, hop = 256, 128
    spec = log_spectrogram(audio, n_fft, hop)  # (2, F, C); column c covers samples [c * hop, c * hop + n_fft)
    repeat = max(1, round(fps * sim.agent.step_time))
    panel = PanelConfig(
        spectrogram_columns=max(2, round(spectrogram_seconds * sim.acoustics.fs / hop)),
        spectrogram_range=(float(np.percentile(spec, 1)), float(spec.max()) + 1e-3),
    )

    def imagined(world: Imagined, t: int) -> tuple[np.ndarray, str]:  # its frame of step t and its caption note
        frame = world.observations[min(t, len(world.observations) - 1)]["rgb"]
        if t < world.context:
            return frame, f"{world.name}: real context"
        i = t - world.context
        return frame, f"{world.name} reward {world.rewards[i]:+.3f}" if i < len(world.rewards) else f"{world.name}: ended"

    def frames() -> Iterator[np.ndarray]:
        for t, (obs, top) in enumerate(zip(rollout.observations, rollout.maps, strict=True)):
            action = Action(rollout.actions[t - 1]).name if t else None
            reward = rollout.rewards[t - 1] if t else None
            seen = [imagined(world, t) for world in rollout.imagined]  # (frame, note) of each world
            views = {world.name: frame for world, (frame, _) in zip(rollout.imagined, seen, strict=True)}
            note = "   ".join(n for _, n in seen) or None
            for k in range(repeat):
                played = (t * repeat + k + 1) * n // repeat  # samples played by the end of this frame
                shown = max(0, (played - n_fft) // hop + 1)  # spectrogram columns complete by then
                yield compose(
                    obs["rgb"], top, spec[:, :, :shown], imagined=views, step=t, action=action, reward=reward, note=note, config=panel
                )

    write_video(path, frames(), repeat / sim.agent.step_time, audio, sim.acoustics.fs)
