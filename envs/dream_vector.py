"""B imagined worlds behind ``gymnasium.vector.VectorEnv``, stepped by one batched world-model call."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from avworld.envs.dream import DreamWorlds, _config


class DreamVectorEnv(VectorEnv[dict[str, np.ndarray], np.ndarray, np.ndarray]):
    """``num_envs`` worlds of ``avworld/Dream-v0`` (see :class:`~avworld.envs.dream.DreamEnv`, whose arguments it takes).

    Every :meth:`step` imagines all running worlds in one :meth:`Imagination.step` call, and decodes (or, in latent
    mode, returns) their latents in one batched call per modality. ``single_observation_space`` and
    ``single_action_space`` are Dream-v0's; the batched spaces come from ``gymnasium.vector.utils.batch_space``.

    ## Autoreset
    ``metadata["autoreset_mode"]`` is ``AutoresetMode.NEXT_STEP``, Gymnasium's default, exactly as ``SyncVectorEnv``
    implements it: the step on which world i terminates or truncates returns its true last observation; on the next
    :meth:`step` world i ignores its action and restarts from new real context (from its own generator), returning
    that first observation with reward 0, ``terminated = truncated = False`` and the reset info. So the final
    observation of an episode is in the returned batch itself (no ``info["final_obs"]``), which suits value
    bootstrapping in imagination training.

    ## Seeding
    ``reset(seed=s)`` seeds world i with ``s + i`` (a list of seeds, one each, works too), and world i draws its context
    and its sampler noise only from its own generator: world i imagines what ``DreamEnv`` reset with seed ``s + i`` and
    given the same actions imagines (to float tolerance), whatever the other worlds do.

    ## Reset options
    Those of Dream-v0, given to every world being reset, except ``"context"``, whose arrays carry a leading batch axis
    (B, k, ...); ``"reset_mask"`` (bool (B,)) resets only the marked worlds, as in ``SyncVectorEnv``.

    ## Infos
    ``imagined``, ``step``, ``termination_prob``, each (B,) with its ``_key`` mask, as ``SyncVectorEnv`` gathers them.
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, **kwargs: Any) -> None:
        self.worlds = DreamWorlds(_config(kwargs), num_envs)
        self.num_envs = num_envs
        self.single_observation_space = self.worlds.observation_space
        self.single_action_space = self.worlds.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._rngs: list[np.random.Generator | None] = [None] * num_envs
        self._steps = np.zeros(num_envs, np.int64)
        self._autoreset = np.zeros(num_envs, bool)
        self._obs: dict[str, np.ndarray] | None = None

    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Reset all worlds (or those of ``options["reset_mask"]``); returns the batched first observations and infos."""
        seeds = self._seeds(seed)
        if isinstance(seed, int):
            super().reset(seed=seed)
        options = dict(options or {})
        mask = self._mask(options.pop("reset_mask", None))
        if self._obs is None and not mask.all():
            raise RuntimeError("the first reset() must reset every world (no reset_mask)")
        index = np.flatnonzero(mask)
        for i in index:
            if seeds[i] is not None or self._rngs[i] is None:
                self._rngs[i], _ = seeding.np_random(seeds[i])
        obs = self._restart(index, options)
        if self._obs is None:
            self._obs = {k: np.empty((self.num_envs, *v.shape[1:]), v.dtype) for k, v in obs.items()}
        self._write(index, obs)
        self._autoreset[index] = False
        infos = self._infos(index, mask, np.zeros(len(index)))
        return {k: v.copy() for k, v in self._obs.items()}, infos

    def step(self, actions: Any) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One imagined step of every running world (one model call); worlds that ended on the last step restart instead."""
        if self._obs is None:
            raise RuntimeError("step() called before reset(); call reset()")
        actions = self._actions(actions)
        rewards = np.zeros(self.num_envs, np.float64)
        terminations = np.zeros(self.num_envs, bool)
        truncations = np.zeros(self.num_envs, bool)
        probs = np.zeros(self.num_envs, np.float64)
        running = np.flatnonzero(~self._autoreset)
        restarting = np.flatnonzero(self._autoreset)
        if len(running):
            rngs = [self._rngs[i] for i in running]
            latents, reward, prob = self.worlds.step(running, actions[running], rngs)  # type: ignore[arg-type]
            self._steps[running] += 1
            ended = self.worlds.terminated(actions[running], prob)
            rewards[running], probs[running], terminations[running] = reward, prob, ended
            truncations[running] = ~ended & (self._steps[running] >= self.worlds.max_steps)
            self._write(running, self.worlds.observe(latents))
        if len(restarting):
            self._write(restarting, self._restart(restarting, {}))
        infos = self._infos(np.arange(self.num_envs), self._autoreset, probs)
        self._autoreset = terminations | truncations
        return {k: v.copy() for k, v in self._obs.items()}, rewards, terminations, truncations, infos

    def decode(self, latents: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Decoded observations of latents {"video": (..., C, h, w), "audio": (..., C_a, n)}: {sensor: (..., *shape)}."""
        return self.worlds.decode(latents)

    def _restart(self, index: np.ndarray, options: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """New real contexts for worlds ``index``, each from its own generator; their first observations (n, ...)."""
        given = options.get("context")
        shared = {k: v for k, v in options.items() if k != "context"}
        contexts = []
        for i in index:
            rng = self._rngs[i]
            assert rng is not None
            world_options = shared if given is None else {**shared, "context": {k: np.asarray(v)[i] for k, v in given.items()}}
            contexts.append(self.worlds.source(rng, world_options))
        self._steps[index] = 0
        return self.worlds.start(index, contexts)

    def _write(self, index: np.ndarray, obs: Mapping[str, np.ndarray]) -> None:
        assert self._obs is not None
        for k, v in obs.items():
            self._obs[k][index] = v

    def _infos(self, index: np.ndarray, restarted: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
        """Infos of worlds ``index`` in ``SyncVectorEnv``'s layout; ``restarted`` (B,) marks worlds showing a first observation."""
        present = np.zeros(self.num_envs, bool)
        present[index] = True
        imagined = np.zeros(self.num_envs, bool)
        imagined[index] = ~restarted[index]
        prob = np.zeros(self.num_envs, np.float64)
        prob[index] = probs
        steps = np.where(present, self._steps, 0)
        return {
            "imagined": imagined,
            "_imagined": present.copy(),
            "step": steps,
            "_step": present.copy(),
            "termination_prob": prob,
            "_termination_prob": present.copy(),
        }

    def _seeds(self, seed: int | Sequence[int | None] | None) -> list[int | None]:
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, int):
            return [seed + i for i in range(self.num_envs)]
        seeds = list(seed)
        if len(seeds) != self.num_envs:
            raise ValueError(f"seed: a list of seeds must have num_envs = {self.num_envs} entries, got {len(seeds)}")
        return seeds

    def _mask(self, mask: Any) -> np.ndarray:
        if mask is None:
            return np.ones(self.num_envs, bool)
        mask = np.asarray(mask)
        if mask.shape != (self.num_envs,) or mask.dtype != np.bool_ or not mask.any():
            raise ValueError(f"options['reset_mask'] must be a bool array of shape ({self.num_envs},) with a True, got {mask!r}")
        return mask

    def _actions(self, actions: Any) -> np.ndarray:
        """Actions (B,) int64, refused unless integers in [0, 4)."""
        a = np.asarray(actions)
        if a.shape != (self.num_envs,) or not np.issubdtype(a.dtype, np.integer) or a.min() < 0 or a.max() >= self.single_action_space.n:
            expected = f"{self.num_envs} ints in [0, 4) (0 STOP, 1 FORWARD, 2 TURN_LEFT, 3 TURN_RIGHT)"
            raise ValueError(f"invalid actions {actions!r}: expected {expected}")
        return a.astype(np.int64)
