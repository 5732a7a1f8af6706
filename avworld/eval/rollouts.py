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
class Rollout:
    """One real episode for a video, and optionally a world model's open-loop imagination of it.

    ``observations``: the start, then one per step; ``maps``: the top-down map of each; ``actions`` and ``rewards``: one per
    step; ``imagined``: the first ``context`` real observations, then one per imagined step; ``imagined_rewards``: one per
    imagined step.
    """

    observations: list[dict[str, np.ndarray]]
    maps: list[np.ndarray]
    actions: list[int]
    rewards: list[float]
    imagined: list[dict[str, np.ndarray]] | None = None
    imagined_rewards: list[float] = field(default_factory=list)
    context: int = 0


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


def imagine(rollout: Rollout, world: Imagination, sim: SimConfig, seed: int, sampler_steps: int) -> None:
    """Fill ``rollout.imagined``: the world model's open loop (``avworld/Dream-v0``) from the first m real observations,
    fed the actions the real agent took after them."""
    import gymnasium as gym

    fields = ("rgb", "audio") if "audio" in world.modalities else ("rgb",)
    dream = gym.make("avworld/Dream-v0", checkpoint=world, sim=sim, sensors=fields, sampler_steps=sampler_steps)
    k = min(world.context, len(rollout.observations))
    context = {f: np.stack([o[f] for o in rollout.observations[:k]]) for f in fields}  # (k, ...) oldest first
    dream.reset(seed=seed, options={"context": context})
    rollout.imagined, rollout.imagined_rewards, rollout.context = list(rollout.observations[:k]), [], k
    for action in rollout.actions[k - 1 :]:  # actions[i] leads from observation i to i + 1
        obs, reward, terminated, truncated, _ = dream.step(action)
        rollout.imagined.append(obs)
        rollout.imagined_rewards.append(float(reward))
        if terminated or truncated:
            break
    dream.close()


def write_rollout_video(path: Path, rollout: Rollout, sim: SimConfig, fps: float, spectrogram_seconds: float, sound: str = "real") -> None:
    """An MP4 of ``rollout``: the real view (and the imagined one beside it), the map, scrolling spectrograms of the
    soundtrack, and the caption; the soundtrack is the real or the ``sound="imagined"`` binaural audio."""
    from collections.abc import Iterator

    from avworld.sim.acoustics.audio import log_spectrogram
    from avworld.sim.backends.base import Action
    from avworld.viz.panels import PanelConfig, compose
    from avworld.viz.video import write_video

    if sound not in ("real", "imagined"):
        raise ValueError(f"audio must be 'real' or 'imagined', got {sound!r}")
    heard = rollout.observations if sound == "real" else rollout.imagined
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

    def imagined(t: int) -> tuple[np.ndarray | None, str | None]:  # the imagined frame of step t and its note
        if rollout.imagined is None:
            return None, None
        frame = rollout.imagined[min(t, len(rollout.imagined) - 1)]["rgb"]
        if t < rollout.context:
            return frame, "imagined: real context"
        i = t - rollout.context
        return frame, f"imagined reward {rollout.imagined_rewards[i]:+.3f}" if i < len(rollout.imagined_rewards) else "imagination ended"

    def frames() -> Iterator[np.ndarray]:
        for t, (obs, top) in enumerate(zip(rollout.observations, rollout.maps, strict=True)):
            action = Action(rollout.actions[t - 1]).name if t else None
            reward = rollout.rewards[t - 1] if t else None
            view, note = imagined(t)
            for k in range(repeat):
                played = (t * repeat + k + 1) * n // repeat  # samples played by the end of this frame
                shown = max(0, (played - n_fft) // hop + 1)  # spectrogram columns complete by then
                yield compose(
                    obs["rgb"], top, spec[:, :, :shown], imagined=view, step=t, action=action, reward=reward, note=note, config=panel
                )

    write_video(path, frames(), repeat / sim.agent.step_time, audio, sim.acoustics.fs)

