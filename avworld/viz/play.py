"""Play mode: drive the agent with the keyboard, see and hear the real or the imagined world, and switch between them.

:class:`PlaySession` holds the game: it takes key names (pygame's, e.g. ``"up"``, ``"tab"``) and returns
:class:`View` s (the frame to show and the sound of the step). It is plain Python over two Gymnasium envs with the
avworld contract (DESIGN.md), handed in by the caller, so it is tested without a window. :func:`run` is the thin
pygame loop around it: a window, the keyboard, and each step's binaural sound through ``pygame.mixer``. With SDL's
dummy drivers (``SDL_VIDEODRIVER=dummy``, ``SDL_AUDIODRIVER=dummy``) it runs headless.

Keys: up/W FORWARD, left/A TURN_LEFT, right/D TURN_RIGHT, space STOP; TAB switches between the real and the
imagined world (the imagined one restarts from the real world's last observations each time it is entered, as in
DIAMOND's play mode); R starts a new episode; ESC quits.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from avworld.viz.panels import PanelConfig, compose

ACTION_NAMES = ("STOP", "FORWARD", "TURN_LEFT", "TURN_RIGHT")
"""The contract's ``Discrete(4)`` actions, by index."""
MOVES = {"up": 1, "w": 1, "left": 2, "a": 2, "right": 3, "d": 3, "space": 0}
"""Key name → action."""
SWITCH, RESET, QUIT = "tab", "r", "escape"
WORLDS = ("real", "dream")
HEARD_STEPS = 12
"""Steps of past sound the scrolling spectrograms show."""


@dataclass
class View:
    """What to show and play after a key: ``frame`` uint8 (H, W, 3); ``audio`` float32 (2, N), the sound of the step
    just taken (None when no step was taken); ``world`` "real" or "dream"."""

    frame: np.ndarray
    audio: np.ndarray | None
    world: str


class PlaySession:
    """One player's game over a real env and, optionally, an imagined one (``avworld/Dream-v0``).

    ``real``: an ``avworld/AudioNav-v0`` env made with ``render_mode="rgb_array"`` (its map is shown) and the sensors
    ``rgb``, ``audio`` and ``spectrogram`` (the last two optional); ``dream``: an imagined env with the same sensors,
    started with ``reset(options={"context": ...})`` from the real world's last ``context`` observations whenever the
    player switches to it. ``seed`` and ``options`` go to the first reset of the real env. The real world keeps its
    state while the player is in the imagined one: switching back resumes it where it was left.
    """

    def __init__(
        self,
        real: Any,
        dream: Any | None = None,
        *,
        context: int = 1,
        seed: int | None = None,
        options: Mapping[str, Any] | None = None,
        height: int = 256,
    ) -> None:
        if context < 1:
            raise ValueError(f"context: expected at least 1 observation, got {context}")
        self.real, self.dream = real, dream
        self.world = "real"
        self.running = True
        self._seed, self._options = seed, dict(options or {})
        self._recent: deque[dict[str, np.ndarray]] = deque(maxlen=context)  # the real world's last observations
        self._heard: deque[np.ndarray] = deque(maxlen=HEARD_STEPS)  # per-step spectrograms (2, F, T)
        self._steps = dict.fromkeys(WORLDS, 0)
        self._done = dict.fromkeys(WORLDS, False)
        self._info: dict[str, Any] = {}
        self._obs: dict[str, np.ndarray] = {}
        self._panel = self._panel_config(real.observation_space, height)
        self.view = self.reset()

    @property
    def pose(self) -> np.ndarray:
        """The real agent's pose (x, y, yaw in radians)."""
        return np.asarray(self._info["pose"])

    def press(self, key: str) -> View | None:
        """Act on the key named ``key`` (pygame's name, any case); the new view, or None for a key with no meaning."""
        key = key.lower()
        if key == QUIT:
            self.running = False
            return None
        if key == RESET:
            self.view = self.reset()
        elif key == SWITCH:
            if self.dream is None:
                return None
            self.view = self._enter("real" if self.world == "dream" else "dream")
        elif key in MOVES:
            self.view = self._act(MOVES[key])
        else:
            return None
        return self.view

    def reset(self) -> View:
        """A new real episode (and, in the imagined world, a new imagination of it)."""
        obs, self._info = self.real.reset(seed=self._seed, options=self._options or None)
        self._seed = None  # later episodes follow the env's generator
        self._recent.clear()
        self._recent.append(obs)
        self._heard.clear()
        self._steps["real"], self._done["real"] = 0, False
        if self.world == "dream":
            return self._enter("dream")
        self._obs = obs
        return self._view(None, None, "new episode")

    def _enter(self, world: str) -> View:
        """Switch to ``world``; the imagined one starts from the real world's recent observations."""
        self.world = world
        if world == "real":
            self._obs = self._recent[-1]
            return self._view(None, None, "back in the real world")
        fields = [k for k in ("rgb", "audio") if k in self._recent[-1]]
        context = {k: np.stack([o[k] for o in self._recent]) for k in fields}  # (k, ...) oldest first
        self._obs, _ = self.dream.reset(options={"context": context})
        self._steps["dream"], self._done["dream"] = 0, False
        return self._view(None, None, "imagining from here")

    def _act(self, action: int) -> View:
        """One step of the current world, unless its episode is over."""
        world = self.world
        if self._done[world]:
            return self._view(None, None, "episode over: R starts a new one" + (", TAB switches" if self.dream is not None else ""))
        env = self.real if world == "real" else self.dream
        obs, reward, terminated, truncated, info = env.step(action)
        self._obs = obs
        self._steps[world] += 1
        self._done[world] = bool(terminated or truncated)
        if world == "real":
            self._info = info
            self._recent.append(obs)
        if "spectrogram" in obs:
            self._heard.append(obs["spectrogram"])
        ended = ""
        if self._done[world]:
            ended = "success!" if info.get("success") else "episode over"
        return self._view(action, float(reward), ended)

    def _view(self, action: int | None, reward: float | None, message: str) -> View:
        """The frame of the current observation: first-person view, the real world's map, the heard sound, a caption."""
        audio = self._obs.get("audio") if action is not None else None
        spectrogram = None
        if "spectrogram" in self._obs:
            spectrogram = np.concatenate(list(self._heard), axis=2) if self._heard else self._obs["spectrogram"][:, :, :0]
        image = self.real.render()
        topdown = None if image is None else image[:, -image.shape[0] :]
        where = "imagined world (map: the real agent)" if self.world == "dream" else "real world"
        frame = compose(
            self._obs["rgb"],
            topdown,
            spectrogram,
            step=self._steps[self.world],
            action=ACTION_NAMES[action] if action is not None else None,
            reward=reward,
            note=" - ".join(part for part in (where, message) if part),
            config=self._panel,
        )
        return View(frame, audio, self.world)

    @staticmethod
    def _panel_config(space: Any, height: int) -> PanelConfig:
        """Panel sizes for the real env's observation space: square spectrograms spanning :data:`HEARD_STEPS` steps."""
        if "spectrogram" not in space.spaces:
            return PanelConfig(height=height)
        box = space["spectrogram"]
        return PanelConfig(
            height=height,
            spectrogram_width=height,
            spectrogram_columns=HEARD_STEPS * box.shape[-1],
            spectrogram_range=(float(np.min(box.low)), float(np.max(box.high))),
        )


def run(session: PlaySession, fps: float = 30.0, script: Sequence[str] = (), sample_rate: int = 16000) -> None:
    """Show ``session`` in a pygame window and play it with the keyboard until ESC or the window is closed.

    ``script``: key names pressed in order before the keyboard takes over (posted as key events, so they take the
    keyboard's path); end it with ``"escape"`` to run without a player. Each step's sound plays at ``sample_rate``.
    """
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame

    pygame.display.init()
    try:
        mixer = _open_mixer(pygame, sample_rate)
        height, width = session.view.frame.shape[:2]
        screen = pygame.display.set_mode((width, height))
        pygame.display.set_caption("avworld play: arrows/WASD move, space STOP, TAB real/imagined, R reset, ESC quit")
        for name in script:
            try:
                code = pygame.key.key_code(name)
            except ValueError:
                raise ValueError(
                    f"script: unknown key name {name!r} (pygame's names: up, left, right, space, tab, r, escape, w, a, d)"
                ) from None
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=code))
        _draw(pygame, screen, session.view)
        clock = pygame.time.Clock()
        while session.running:
            for event in pygame.event.get():
                if event.type == pygame.QUIT:
                    session.running = False
                elif event.type == pygame.KEYDOWN and (view := session.press(pygame.key.name(event.key))) is not None:
                    _draw(pygame, screen, view)
                    if mixer and view.audio is not None:
                        _play(pygame, view.audio)
            clock.tick(fps)
    finally:
        pygame.quit()


def _open_mixer(pygame: Any, sample_rate: int) -> bool:
    """Open stereo 16-bit output at ``sample_rate`` (SDL converts for the device); False, with a note, without sound."""
    try:
        pygame.mixer.init(frequency=sample_rate, size=-16, channels=2, allowedchanges=0)
    except pygame.error as error:
        print(f"play: no sound ({error}); set SDL_AUDIODRIVER to pick an audio driver")
        return False
    return True


def _play(pygame: Any, audio: np.ndarray) -> None:
    """Play a step's sound (2, N) float in [-1, 1] on channel 0, replacing what still plays there."""
    samples = np.ascontiguousarray((np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16).T)  # (N, 2) interleaved L, R
    pygame.mixer.Channel(0).play(pygame.mixer.Sound(array=samples))


def _draw(pygame: Any, screen: Any, view: View) -> None:
    screen.blit(pygame.surfarray.make_surface(view.frame.swapaxes(0, 1)), (0, 0))  # surfarray is (W, H, 3)
    pygame.display.flip()
