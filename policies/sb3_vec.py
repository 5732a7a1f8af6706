"""Vector envs for stable-baselines3: a Gymnasium ``VectorEnv`` behind SB3's ``VecEnv`` API, several ``VecEnv``\\ s as one,
and a counter of real env steps.

SB3 and Gymnasium disagree on what a vector env returns on the step where an episode ends. SB3 (like Gymnasium's
``SAME_STEP`` mode) returns the *next* episode's first observation, with the final one in
``infos[i]["terminal_observation"]`` and ``infos[i]["TimeLimit.truncated"]`` telling a time-out from a true end (PPO
bootstraps the value of a truncated episode's final observation). Gymnasium's default ``NEXT_STEP`` mode, which
:class:`~avworld.envs.dream_vector.DreamVectorEnv` implements, returns the final observation in the batch and restarts
on the following ``step``, ignoring that step's action. :class:`GymVecToSB3` converts one into the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn


def unbatch_infos(infos: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Gymnasium's batched infos ({key: (n,) values, "_key": (n,) mask}, nested dicts alike) → n per-env dicts."""
    out: list[dict[str, Any]] = [{} for _ in range(n)]
    for key, value in infos.items():
        if key.startswith("_"):
            continue
        mask = infos.get(f"_{key}", np.ones(n, bool))
        parts = unbatch_infos(value, n) if isinstance(value, dict) else None
        for i in np.flatnonzero(mask):
            out[i][key] = parts[i] if parts is not None else value[i]
    return out


def _row(obs: VecEnvObs, i: int) -> Any:
    """Observation i of a batch (a dict of arrays or an array), copied."""
    if isinstance(obs, dict):
        return {k: np.array(v[i]) for k, v in obs.items()}
    return np.array(obs[i])  # type: ignore[index]


def _put_rows(obs: VecEnvObs, rows: np.ndarray, source: VecEnvObs) -> None:
    """obs[rows] = source[rows], key by key for dict observations."""
    if isinstance(obs, dict):
        for k in obs:
            obs[k][rows] = source[k][rows]  # type: ignore[index]
    else:
        obs[rows] = source[rows]  # type: ignore[index]


class GymVecToSB3(VecEnv):
    """A Gymnasium ``VectorEnv`` (autoreset ``NEXT_STEP`` or ``DISABLED``) as an SB3 ``VecEnv``, batching kept.

    On a step where env i ends, its final observation goes to ``infos[i]["terminal_observation"]`` and
    ``infos[i]["TimeLimit.truncated"]`` is ``truncated and not terminated``; then the finished envs alone are reset at
    once with ``reset(options={"reset_mask": done})`` and their first observations replace the final ones in the
    returned batch. That reset clears the pending ``NEXT_STEP`` autoreset, so the next ``step`` acts in the new episodes
    (no action is ever ignored). ``SAME_STEP`` envs are refused. Gymnasium's batched infos become SB3's list of dicts.

    ``restarts`` counts episodes started (every env at :meth:`reset`, each finished env after); for Dream-v0 each
    restart builds a new real context. ``seed(s)`` seeds env i with ``s + i`` at the next :meth:`reset`.
    Attributes (``get_attr``/``set_attr``) are the vector env's own, the same for every index.
    """

    def __init__(self, env: gym.vector.VectorEnv) -> None:
        mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.DISABLED):
            raise ValueError(f"env: GymVecToSB3 takes NEXT_STEP or DISABLED autoreset vector envs, got {mode}")
        self.env = env
        self.restarts = 0
        self._actions: np.ndarray | None = None
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)

    def reset(self) -> VecEnvObs:
        seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
        obs, infos = self.env.reset(seed=seeds)
        self.restarts += self.num_envs
        self.reset_infos = unbatch_infos(infos, self.num_envs)
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async()")
        obs, rewards, terminated, truncated, batched = self.env.step(self._actions)
        self._actions = None
        dones = np.asarray(terminated, bool) | np.asarray(truncated, bool)
        infos = unbatch_infos(batched, self.num_envs)
        ended = np.flatnonzero(dones)
        for i in ended:
            infos[i]["terminal_observation"] = _row(obs, i)
            infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        if len(ended):
            fresh, reset_infos = self.env.reset(options={"reset_mask": dones})
            _put_rows(obs, ended, fresh)
            started = unbatch_infos(reset_infos, self.num_envs)
            for i in ended:
                self.reset_infos[i] = started[i]
            self.restarts += len(ended)
        return obs, np.asarray(rewards, np.float32), dones, infos

    def close(self) -> None:
        self.env.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self.env, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self.env, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any) -> list[Any]:
        raise NotImplementedError(f"env_method({method_name!r}): the worlds of a Gymnasium vector env have no per-env methods")

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]


class ConcatVecEnv(VecEnv):
    """Several ``VecEnv``\\ s with equal spaces as one: env indices run through ``parts`` in order.

    Used to mix real and imagined envs in one PPO rollout (each rollout then holds a fixed fraction of real steps).
    ``seed(s)`` seeds the parts with ``s + offset`` (offset = index of their first env), so every env gets ``s + i``;
    ``seed(None)`` lets each part draw its own.
    """

    def __init__(self, parts: Sequence[VecEnv]) -> None:
        if not parts:
            raise ValueError("parts: ConcatVecEnv needs at least one VecEnv")
        for j, part in enumerate(parts[1:], 1):
            if part.observation_space != parts[0].observation_space or part.action_space != parts[0].action_space:
                raise ValueError(
                    f"parts[{j}] has observation space {part.observation_space} and action space {part.action_space}; "
                    f"parts[0] has {parts[0].observation_space} and {parts[0].action_space}"
                )
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [p.num_envs for p in parts])  # part j holds envs offsets[j] .. offsets[j+1] − 1
        super().__init__(int(self.offsets[-1]), parts[0].observation_space, parts[0].action_space)

    def _locate(self, indices: VecEnvIndices) -> list[tuple[VecEnv, int]]:
        """(part, index inside it) of each env of ``indices``."""
        out = []
        for i in self._get_indices(indices):
            j = int(np.searchsorted(self.offsets, i, side="right")) - 1
            out.append((self.parts[j], i - int(self.offsets[j])))
        return out

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        if seed is None:
            return [s for part in self.parts for s in part.seed(None)]
        return [s for part, offset in zip(self.parts, self.offsets[:-1], strict=True) for s in part.seed(seed + int(offset))]

    def reset(self) -> VecEnvObs:
        obs = [part.reset() for part in self.parts]
        self.reset_infos = [info for part in self.parts for info in part.reset_infos]
        return _concat(obs)

    def step_async(self, actions: np.ndarray) -> None:
        for part, chunk in zip(self.parts, np.split(np.asarray(actions), self.offsets[1:-1]), strict=True):
            part.step_async(chunk)

    def step_wait(self) -> VecEnvStepReturn:
        results = [part.step_wait() for part in self.parts]
        self.reset_infos = [info for part in self.parts for info in part.reset_infos]
        obs, rewards, dones, infos = zip(*results, strict=True)
        return _concat(list(obs)), np.concatenate(rewards), np.concatenate(dones), [i for part in infos for i in part]

    def close(self) -> None:
        for part in self.parts:
            part.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [part.get_attr(attr_name, [i])[0] for part, i in self._locate(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        for part, i in self._locate(indices):
            part.set_attr(attr_name, value, [i])

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any) -> list[Any]:
        return [part.env_method(method_name, *method_args, indices=[i], **method_kwargs)[0] for part, i in self._locate(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [part.env_is_wrapped(wrapper_class, [i])[0] for part, i in self._locate(indices)]


def _concat(batches: list[VecEnvObs]) -> VecEnvObs:
    """Observation batches (dicts of arrays or arrays) joined along the env axis."""
    if isinstance(batches[0], dict):
        return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}  # type: ignore[index]
    return np.concatenate(batches)  # type: ignore[arg-type]


class CountSteps(VecEnvWrapper):
    """Counts the steps taken (``steps``: one per env per ``step``) and episodes started (``episodes``) by a ``VecEnv``."""

    def __init__(self, venv: VecEnv) -> None:
        super().__init__(venv)
        self.steps = 0
        self.episodes = 0

    def reset(self) -> VecEnvObs:
        self.episodes += self.num_envs
        return self.venv.reset()

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        self.steps += self.num_envs
        self.episodes += int(np.sum(dones))
        return obs, rewards, dones, infos
