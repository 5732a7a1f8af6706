"""Training an agent inside a world model from offline data alone: behaviour cloning, then actor-critic in imagination.

As Dreamer 4 (Hafner et al., 2025) trains its agent purely in a world model learned from offline data, and with
DreamerV3's actor-critic (Hafner et al., 2023):

1. **Offline latents.** Every observation of the collection's ``split`` scenes with a next action is encoded by the
   world model's tokenizers (as :meth:`Imagination.encode`, what :meth:`Imagination.start` does to contexts; read from
   the collection's latent cache, :func:`~avworld.models.latents.latent_cache`, built on the first run and shared
   with world-model training on the same tokenizers) into its
   context window of the last m steps (padded at an episode's start with the first step, as the core pads), beside the
   previous action and the action the collection took (:class:`OfflineLatents`).
2. **Behaviour cloning** (``bc_steps``): the actor is fitted to the collection's actions by cross-entropy; a frozen copy
   is kept as the prior of step 3. With ``bc_top`` < 1 only the best-returning share of the collection's episodes is
   cloned (%BC, Chen et al., 2021): a collection of mixed behaviours (toward, away, explore) has no single policy to copy.
3. **Imagination** (``updates``): B worlds start from real contexts of the collection (and of ``start_data``, a
   collection that only gives start states: scenes cloning never saw), the actor samples actions for
   ``horizon`` imagined steps (one batched :meth:`Imagination.step` per step; rewards and termination probabilities
   from the world model's heads, continuation c = 1 − p), λ-returns are bootstrapped with a slow (EMA) critic, the critic
   regresses them and the actor follows REINFORCE with percentile-normalised advantages, an entropy bonus and an
   optional KL to the cloned prior (:func:`~avworld.policies.actor_critic.actor_critic_losses`); with ``uncertainty`` > 0
   each imagined reward is drawn K times and its spread subtracted (a pessimistic reward, against the actor climbing what
   the model only imagines). The first
   ``critic_warmup`` updates train the critic alone, so the actor leaves the clone only once its advantages mean something.
   With ``critic_real`` > 0 the critic is also fitted to the collection's real returns-to-go at the cloned states,
   during cloning and in every update, so the imagined λ-returns bootstrap from values the real episodes earned.

No real env is stepped: the collection is the only real data. ``out/checkpoint`` (kind ``imagination_agent``) holds
``model.safetensors`` (``net.*``: the actor-critic; ``slow.*``: the slow critic; ``prior.*``: the cloned actor),
``config.yaml`` (the network and training settings), ``meta.json``, the world model attached as ``world/`` (the agent
encodes its real observations with its tokenizers) and, for resuming, ``training.safetensors`` (Adam moments, the torch
generator) + ``training.json`` (phase and step counters, the return scale, the numpy generator). A resumed run restores
all of it and continues bit for bit. TensorBoard logs go to ``out/tb``.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from avworld.data.expert import expert_actions
from avworld.data.storage import DataSplit
from avworld.data.windows import scene_split, within_reach
from avworld.models.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    optimizer_from_checkpoint,
    optimizer_to_checkpoint,
    save_checkpoint,
)
from avworld.models.imagination import FIELDS, Imagination, ImaginedState, load_world
from avworld.models.latents import latent_cache
from avworld.models.pretrained import provenance_recipe, recipe_of, resolve_checkpoint
from avworld.policies.actor_critic import (
    NO_ACTION,
    ActorCriticConfig,
    LatentActorCritic,
    ReturnScale,
    actor_critic_losses,
    ema_update,
    lambda_returns,
    without_stop,
)
from avworld.policies.worlds import stage_data
from avworld.sim.backends.base import Action

KIND = "imagination_agent"
TERMINATIONS = ("model", "stop")
STOPPERS = ("actor", "goal")
LABELS = ("taken", "expert")
STOP = int(Action.STOP)


@dataclass
class ImaginationTrainConfig:
    """Imagination training (module docstring). ``checkpoint``: the world model (a directory or ``pretrained[:<name>]``)."""

    checkpoint: str = ""
    data: DataSplit = field(default_factory=lambda: DataSplit(split="train"))
    """The offline collection (``avworld collect`` output): its ``split`` scenes give the start states and the cloning labels."""
    steps: int | None = None
    """Context steps the networks read (the last ones of the window); None: all m."""
    hidden: int = 256
    layers: int = 2
    batch: int = 16
    """Imagined worlds per update (B)."""
    horizon: int = 15
    """Imagined steps per update (H)."""
    updates: int = 1000
    discount: float = 0.99
    lam: float = 0.95
    actor_lr: float = 1e-4
    critic_lr: float = 3e-4
    entropy: float = 3e-3
    """η, the entropy bonus (advantages are normalised: DreamerV3's 3e-4 is tuned for its returns)."""
    prior: float = 0.0
    """β, the weight of KL(π ‖ π_cloned) in the actor's loss (Dreamer 4's behavioural prior); 0: none."""
    slow_rate: float = 0.02
    """EMA rate of the slow critic that bootstraps the λ-returns."""
    critic_warmup: int = 0
    """The first imagination updates that train the critic alone, the actor kept as cloned: a fresh critic's advantages
    are noise that would move the clone at random (the PPO warm start's critic warm-up, in imagination)."""
    grad_clip: float = 10.0
    bc_steps: int = 500
    bc_batch: int = 64
    bc_lr: float = 1e-3
    bc_top: float = 1.0
    """The share of the collection's episodes, highest return first, that behaviour cloning fits (%BC); 1: all. The
    imagination phase still starts from every state."""
    labels: str = "taken"
    """What behaviour cloning fits. taken: the moves the collection's behaviours took. expert: the shortest-path
    follower's move from each recorded pose (:func:`~avworld.data.expert.expert_actions`; a privileged label known
    after the fact, as Habitat's shortest-path actions, where the behaviours move at random 20 % of the time or do not
    seek the source at all)."""
    stop: str = "actor"
    """Who decides STOP. actor: the actor, cloned from the collection's STOPs. goal: a goal head fitted during cloning to
    whether STOP would succeed at every offline state (the recorded distance within the success distance, whatever the
    behaviour did there), the agent STOPs where it says so (``goal_threshold``) and the actor learns and imagines moves
    only. Cloned STOPs are few and a sampled policy pays their small probability at every step: 88 % of 60-step
    episodes of the best-half clone STOP early (docs/results.md)."""
    goal_threshold: float = 0.5
    goal_data: DataSplit | None = None
    """Another collection (``avworld collect`` output) whose ``split`` states also teach the goal head, beside the cloned
    collection's: one collected with ``collect.behaviours`` linger holds many states just inside and just outside the
    success distance, which make up 1 % of a toward/away/explore mix. None: the cloned collection only."""
    start_data: DataSplit | None = None
    """Another collection (``avworld collect`` output) whose ``split`` states are also imagination's start states,
    pooled with the cloned collection's: start states from scenes that cloning never saw (a collection of many short
    episodes in other train scenes costs little), where the world model, not the collection, says what follows. None:
    the cloned collection only. Like ``horizon``, a setting of the imagination phase, not of the agent: a copy of a
    clone (``updates=0``) may resume with it."""
    goal_batch: int | None = 256
    """States per goal-head step (one per cloning step); None: ``bc_batch``. The states within reach are about 1 % of a
    collection: at 64 per step the head meets ~650 of them in 1,000 steps, and whether it ever says STOP depends on the
    draw (recall 0.07 or 0.38 on its own states); 256 took the expert-label clone's SPL from 0.13 to 0.27 (heard) and
    0.28 (unheard) on 100 test episodes per set (docs/results.md, 2026-12-07 eighth session)."""
    sampler_steps: int = 4
    termination: str = "model"
    """model: continuation 1 − the termination head's probability; stop: 0 exactly after STOP, as the real env ends."""
    uncertainty: float = 0.0
    """λ of a pessimistic reward r̃ = mean − λ · std over ``uncertainty_samples`` world samples of each imagined step (as
    MOPO, Yu et al., 2020, penalises an ensemble's disagreement; here the flow's own noise draws disagree where the data
    did not pin the model down); 0: one sample, its reward as it is."""
    uncertainty_samples: int = 4
    """K world samples per imagined step when ``uncertainty`` > 0 (each update costs about K times as much)."""
    critic_real: float = 0.0
    """Weight of a critic loss on real returns: ½ (v(s) − G)² at the cloned states s of the collection, G their discounted
    return-to-go in the collection, fitted beside the cloning (the slow critic starts from it) and kept in every
    imagination update. It grounds the values that bootstrap the imagined λ-returns in what the real episodes earned,
    the success bonus included, which imagined moves alone never see (with ``stop=goal`` nothing STOPs in imagination);
    0: the critic learns from imagined returns only."""
    checkpoint_every: int = 100
    log_every: int = 10
    seed: int = 0
    device: str | None = "cpu"

    def __post_init__(self) -> None:
        if isinstance(self.data, dict):
            self.data = DataSplit(**self.data)
        if isinstance(self.goal_data, dict):
            self.goal_data = DataSplit(**self.goal_data)
        if isinstance(self.start_data, dict):
            self.start_data = DataSplit(**self.start_data)
        if self.goal_data is not None and self.stop != "goal":
            raise ValueError("imagination.goal_data teaches the goal head; it needs imagination.stop=goal")
        if self.termination not in TERMINATIONS:
            raise ValueError(f"termination must be one of {', '.join(TERMINATIONS)}, got {self.termination!r}")
        if self.labels not in LABELS:
            raise ValueError(f"imagination.labels must be one of {', '.join(LABELS)}, got {self.labels!r}")
        if self.stop not in STOPPERS:
            raise ValueError(f"imagination.stop must be one of {', '.join(STOPPERS)}, got {self.stop!r}")
        counts = {"batch": self.batch, "horizon": self.horizon, "bc_batch": self.bc_batch,
                  "goal_batch": self.bc_batch if self.goal_batch is None else self.goal_batch, "sampler_steps": self.sampler_steps,
                  "checkpoint_every": self.checkpoint_every, "log_every": self.log_every}
        if bad := [k for k, v in counts.items() if v < 1]:
            raise ValueError(f"imagination: {', '.join(bad)} must be ≥ 1")
        if self.critic_real < 0:
            raise ValueError(f"imagination.critic_real is a loss weight ≥ 0, got {self.critic_real}")
        if self.uncertainty < 0 or (self.uncertainty > 0 and self.uncertainty_samples < 2):
            raise ValueError(f"imagination: uncertainty must be ≥ 0 and, when > 0, uncertainty_samples ≥ 2; got {self.uncertainty}, "
                             f"{self.uncertainty_samples}")
        if self.updates < 0 or self.bc_steps < 0 or self.critic_warmup < 0:
            raise ValueError(f"imagination: updates, bc_steps and critic_warmup must be ≥ 0, got {self.updates}, {self.bc_steps}, "
                             f"{self.critic_warmup}")
        if not 0.0 < self.bc_top <= 1.0:
            raise ValueError(f"imagination.bc_top is a share of the episodes in (0, 1], got {self.bc_top}")
        if not (0.0 < self.discount <= 1.0 and 0.0 <= self.lam <= 1.0 and 0.0 < self.slow_rate <= 1.0):
            raise ValueError(f"imagination: discount in (0, 1], lam in [0, 1], slow_rate in (0, 1]; got {self.discount}, {self.lam}, "
                             f"{self.slow_rate}")


IDENTITY = ("checkpoint", "steps", "hidden", "layers", "stop", "labels", "bc_top", "goal_data", "goal_batch")
"""Settings that define the agent: a resumed run must keep them (one its saved config lacks, written before the setting
existed, counts as what those runs did: :data:`BEFORE`, else today's default)."""
BEFORE = {"goal_batch": None}
"""What a run saved before an identity setting existed did, where today's default differs (the goal head drew ``bc_batch``)."""


class OfflineLatents:
    """Labelled latent states of a collection (module docstring, step 1), on the world model's device.

    ``latents`` {modality: (R, *latent)} of the R encoded observations; ``rows`` (N, m) int64, each state's context
    window as rows of ``latents`` (oldest first); ``previous`` (N,) the action before its newest step (4: none, an
    episode's start), ``actions`` (N,) the action the collection took from it, ``near`` (N,) bool whether STOP there
    would succeed (:func:`~avworld.data.windows.within_reach`), ``distance`` (N,) the recorded geodesic distance to the
    source (m), ``episodes`` (N,) its episode (0 … E − 1, in the order of
    the collection's kept episodes), ``rewards`` (N,) the reward its action earned and ``episode_returns`` (E,) the sum
    of each episode's rewards; with ``expert``, ``expert`` (N,) the shortest-path follower's action there
    (:func:`~avworld.data.expert.expert_actions`), else None.
    """

    def __init__(self, world: Imagination, data: DataSplit, chunk: int = 64, progress: bool = False, expert: bool = False) -> None:
        from tqdm import tqdm

        flat = data.load()
        m, ep = world.context, flat.episodes
        fractions = tuple(data.fractions)
        keep = [scene_split(int(s), fractions) == data.split for s in ep["scene_seed"]]  # type: ignore[arg-type]
        obs, rows, previous, actions, rewards, returns = [], [], [], [], [], []
        names = flat.collection_of(np.arange(len(keep)))  # each episode's collection
        self.by_collection = dict.fromkeys(flat.collections, 0)
        """States from each collection read (``data.name``, then ``data.also``)."""
        for o, t, n, k, name in zip(ep["obs_start"], ep["step_start"], ep["length"], keep, names, strict=True):
            if not k or n < 1:
                continue
            self.by_collection[name] += int(n)
            first = sum(len(x) for x in obs)
            obs.append(np.arange(o, o + n))  # observations with a next action
            local = np.arange(n)
            rows.append(first + np.maximum(local[:, None] - np.arange(m)[::-1], 0))  # (n, m), padded with the first step
            steps = np.asarray(flat.arrays["actions"][t : t + n], np.int64)
            previous.append(np.concatenate([[NO_ACTION], steps[:-1]]))
            actions.append(steps)
            rewards.append(np.asarray(flat.arrays["rewards"][t : t + n], np.float32))
            returns.append(float(np.sum(rewards[-1], dtype=np.float64)))
        if not obs:
            raise ValueError(f"collection {data.root}/{data.name} has no episode in split {data.split!r}; pick another split")
        index = np.concatenate(obs)
        device = world.device
        paths = getattr(world, "tokenizer_paths", {})
        if flat.path is not None and all(mod in paths for mod in world.modalities):
            # the flat cache's latents of every observation, encoded once and shared with world-model training
            self.latents = {}
            for mod in world.modalities:
                z = latent_cache(flat, mod, world.tokenizers[mod], paths[mod], device)  # (n_obs, *latent) unscaled, mapped
                mean, std = world.stats[mod]
                self.latents[mod] = ((torch.from_numpy(np.asarray(z[index])) - mean) / std).to(device)
        else:
            parts: dict[str, list[torch.Tensor]] = {mod: [] for mod in world.modalities}
            for start in tqdm(range(0, len(index), chunk), desc="encode collection", unit="chunk", disable=not progress):
                sel = index[start : start + chunk]
                real = {FIELDS[mod]: torch.from_numpy(np.asarray(flat.arrays[FIELDS[mod]][sel])) for mod in world.modalities}
                for mod, z in world.encode(real).items():
                    parts[mod].append(z)
            self.latents = {mod: torch.cat(z) for mod, z in parts.items()}
        self.rows = torch.from_numpy(np.concatenate(rows)).to(device)
        self.previous = torch.from_numpy(np.concatenate(previous)).to(device)
        self.actions = torch.from_numpy(np.concatenate(actions)).to(device)
        self.near = torch.from_numpy(within_reach(flat, index)).to(device)
        self.distance = torch.from_numpy(np.asarray(flat.arrays["geodesic_distance"][index], np.float32)).to(device)
        self.episodes = np.repeat(np.arange(len(obs)), [len(x) for x in obs])
        self.rewards = torch.from_numpy(np.concatenate(rewards)).to(device)
        self.episode_returns = np.asarray(returns)
        self.expert = torch.from_numpy(np.asarray(expert_actions(flat, progress)[index])).to(device) if expert else None
        self.recipes = {name: recipe_of(meta) for name, meta in flat.collections.items()}
        """Each collection's :func:`~avworld.models.pretrained.collection_recipe` (None: its metadata predates it)."""

    def __len__(self) -> int:
        return len(self.rows)

    def states(self, idx: torch.Tensor) -> tuple[ImaginedState, torch.Tensor, torch.Tensor]:
        """States ``idx`` (B,): their :class:`ImaginedState` {modality: (B, m, *latent)}, previous actions (B,) and the
        collection's actions (B,)."""
        rows = self.rows[idx]  # (B, m)
        return ImaginedState({mod: z[rows] for mod, z in self.latents.items()}), self.previous[idx], self.actions[idx]


class PooledStates:
    """Several collections' states as one (the interface of :class:`OfflineLatents` that imagination reads): state ``i``
    is the first collection's below its length, the next one's after it, and so on."""

    def __init__(self, sources: Sequence[Any]) -> None:
        self.sources = list(sources)
        self.offsets = np.cumsum([0] + [len(d) for d in self.sources])  # (S + 1,)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def states(self, idx: torch.Tensor) -> tuple[ImaginedState, torch.Tensor, torch.Tensor]:
        """States ``idx`` (B,) in that order: :class:`ImaginedState` {modality: (B, m, *latent)}, previous actions (B,) and
        the collections' actions (B,)."""
        parts, where = [], []
        for d, start, end in zip(self.sources, self.offsets[:-1], self.offsets[1:], strict=True):
            mine = ((idx >= int(start)) & (idx < int(end))).nonzero()[:, 0]  # positions in idx
            if len(mine):
                parts.append(d.states(idx[mine] - int(start)))
                where.append(mine)
        order = torch.empty_like(idx)
        order[torch.cat(where)] = torch.arange(len(idx), device=idx.device)  # position in idx → row of the concatenation
        context = {mod: torch.cat([p[0].context[mod] for p in parts])[order] for mod in parts[0][0].context}
        return ImaginedState(context), torch.cat([p[1] for p in parts])[order], torch.cat([p[2] for p in parts])[order]


@dataclass
class Imagined:
    """B imagined trajectories of H steps: the networks' ``features`` (B, H + 1, D) of every state, ``actions``,
    ``rewards``, ``continues`` and ``spread`` (B, H): the std of the reward over the world samples of each step (0 with one)."""

    features: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    continues: torch.Tensor
    spread: torch.Tensor


@torch.no_grad()
def imagine(
    world: Any,
    net: LatentActorCritic,
    state: ImaginedState,
    previous: torch.Tensor,
    horizon: int,
    sampler_steps: int,
    generator: torch.Generator,
    termination: str = "model",
    samples: int = 1,
    uncertainty: float = 0.0,
) -> Imagined:
    """Roll the actor ``horizon`` steps in ``world`` (anything with :meth:`Imagination.step`'s signature) from ``state``,
    sampling actions and world noise from ``generator``; one batched world step per imagined step.

    With ``samples`` K > 1 each step is drawn K times (one world call on B · K rows): the reward is the samples' mean less
    ``uncertainty`` times their std, the termination probability their mean, and the trajectory goes on from the first."""
    features, actions, rewards, continues, spreads = [], [], [], [], []
    for _ in range(horizon):
        f = net.features(state.context, previous)  # (B, D)
        action = torch.multinomial(torch.softmax(net.logits(f), dim=-1), 1, generator=generator)[:, 0]  # (B,)
        many = state if samples == 1 else ImaginedState({mod: z.repeat_interleave(samples, 0) for mod, z in state.context.items()})
        step = world.step(many, action.repeat_interleave(samples), sampler_steps, generator)  # B · K rows
        drawn = step.reward.float().view(-1, samples)  # (B, K)
        spread = drawn.std(1) if samples > 1 else torch.zeros_like(drawn[:, 0])
        reward = drawn.mean(1) - uncertainty * spread
        ended = step.termination.float().view(-1, samples).mean(1)
        next_state = step.state if samples == 1 else ImaginedState({mod: z[::samples] for mod, z in step.state.context.items()})
        stop = (action != STOP).float()
        continues.append(stop if termination == "stop" else 1.0 - ended)
        features.append(f)
        actions.append(action)
        rewards.append(reward)
        spreads.append(spread)
        state, previous = next_state, action
    features.append(net.features(state.context, previous))
    stack = torch.stack
    return Imagined(stack(features, 1), stack(actions, 1), stack(rewards, 1), stack(continues, 1), stack(spreads, 1))


def clone_rows(data: Any, top: float) -> np.ndarray:
    """The states of ``data`` that behaviour cloning fits: all of them, or (``top`` < 1) those of the ⌈top · E⌉ episodes
    of highest return (ties: the earlier episode). ``data`` needs ``episodes`` (N,) and ``episode_returns`` (E,) then."""
    if top >= 1.0:
        return np.arange(len(data))
    if not hasattr(data, "episode_returns"):
        raise ValueError("imagination.bc_top < 1 ranks the collection's episodes by return; this data has no episode returns")
    returns = np.asarray(data.episode_returns)
    best = np.argsort(-returns, kind="stable")[: max(1, int(np.ceil(top * len(returns))))]
    return np.flatnonzero(np.isin(data.episodes, best))


def returns_to_go(rewards: np.ndarray, episodes: np.ndarray, discount: float) -> np.ndarray:
    """G_t = Σ_k γ^k r_{t+k} (N,) float32 to the end of each episode, for states in episode order (``episodes`` (N,): each
    episode one run of equal labels; ``rewards`` (N,) the reward of each state's action). An episode cut by the
    collection's step limit ends there too: its last states' returns miss what came after (no bootstrap).

    The episodes are padded into rows (E, L) with zero rewards after their ends and go through :func:`lambda_returns` with
    λ = 1 and zero values: R_t = r_t + γ R_{t+1}, all episodes at once."""
    n = len(rewards)
    starts = np.flatnonzero(np.r_[True, np.asarray(episodes)[1:] != np.asarray(episodes)[:-1]]) if n else np.zeros(0, np.int64)
    run = np.cumsum(np.isin(np.arange(n), starts)) - 1  # (N,) the run (episode row) of each state
    position = np.arange(n) - starts[run]  # (N,) its step within the episode
    padded = torch.zeros(len(starts), int(position.max(initial=-1)) + 1, dtype=torch.float64)
    padded[run, position] = torch.as_tensor(np.asarray(rewards), dtype=torch.float64)
    zeros = torch.zeros(padded.shape[0], padded.shape[1] + 1, dtype=torch.float64)
    out = lambda_returns(padded, zeros, torch.ones_like(padded), discount, lam=1.0)  # (E, L)
    return out[run, position].numpy().astype(np.float32)


class ImaginationTrainer:
    """Behaviour cloning, then actor-critic updates in ``world`` from the states of ``data`` (module docstring).

    ``world`` is an :class:`Imagination` (or any object with its ``step``, ``context``, ``modalities`` and
    ``latent_shapes``, e.g. a scripted world in tests); ``data`` an :class:`OfflineLatents` (or the same interface).
    """

    def __init__(
        self, config: ImaginationTrainConfig, world: Any, data: Any, goal_data: Any | None = None, start_data: Any | None = None
    ) -> None:
        self.config, self.world, self.data = config, world, data
        self.starts = data if start_data is None else PooledStates([data, start_data])
        """Where imagination starts: the cloned collection's states, and ``start_data``'s after them."""
        c = config
        shapes = {m: list(s) for m, s in world.latent_shapes().items()}
        self.net_config = ActorCriticConfig(
            tuple(world.modalities), shapes, c.steps or world.context, c.hidden, c.layers, c.stop == "goal", c.goal_threshold
        )
        torch.manual_seed(c.seed)
        device = torch.device(getattr(world, "device", "cpu"))
        self.net = LatentActorCritic(self.net_config).to(device)
        self.slow = copy.deepcopy(self.net.critic).requires_grad_(False)
        self.prior = copy.deepcopy(self.net.actor).requires_grad_(False)
        self.opt = torch.optim.Adam(
            [{"params": self.net.actor.parameters(), "lr": c.actor_lr}, {"params": self.net.critic.parameters(), "lr": c.critic_lr}]
        )
        self.cloned_heads = [self.net.actor] + ([self.net.goal] if self.net.goal is not None else [])
        self.real_returns: torch.Tensor | None = None
        if c.critic_real > 0:
            if not (hasattr(data, "rewards") and hasattr(data, "episodes")):
                raise ValueError("imagination.critic_real fits the critic to the collection's returns; this data has no rewards")
            rewards, episodes = np.asarray(torch.as_tensor(data.rewards).cpu()), np.asarray(data.episodes)
            self.real_returns = torch.from_numpy(returns_to_go(rewards, episodes, c.discount)).to(device)  # (N,)
            self.cloned_heads.append(self.net.critic)  # fitted beside the clone (its own clipping: the actor is unaffected)
        self.bc_opt = torch.optim.Adam([p for head in self.cloned_heads for p in head.parameters()], lr=c.bc_lr)
        self.scale = ReturnScale()
        self.rng = np.random.default_rng(c.seed)
        self.generator = torch.Generator(device).manual_seed(c.seed)
        self.bc_step = self.update = 0
        self.device = device
        self.labels = data.actions if c.labels == "taken" else getattr(data, "expert", None)  # (N,) what cloning fits
        if self.labels is None:
            raise ValueError("imagination.labels=expert clones the shortest-path follower's moves; this data has none "
                             "(OfflineLatents(..., expert=True))")
        self.cloned = clone_rows(data, c.bc_top)
        self.goal_sources = [data] + ([goal_data] if goal_data is not None else [])
        """The collections whose states teach the goal head (the cloned one first), drawn from as one pool."""
        self.goal_rng = np.random.default_rng([c.seed, 1])  # its own draws: the actor's batches do not depend on the pool
        if c.stop == "goal":
            if not all(hasattr(d, "near") for d in self.goal_sources):
                raise ValueError("imagination.stop=goal fits the goal head to where STOP succeeds; this data has no `near` labels")
            # the actor learns moves only: the collection's STOPs teach the goal head instead (from every state)
            self.cloned = self.cloned[np.asarray(self.labels.cpu())[self.cloned] != STOP]

    # -- one step of each phase ---------------------------------------------------------------------------------------

    def bc_batch(self) -> torch.Tensor:
        rows = self.cloned[self.rng.integers(len(self.cloned), size=self.config.bc_batch)]
        return torch.from_numpy(rows).to(self.device)

    def offline(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The networks' flat inputs (B, D) of the collection's states ``idx`` (B,), and the actions cloning fits there (B,):
        those the collection took or the expert's (``labels``)."""
        state, previous, _ = self.data.states(idx)
        return self.net.features(state.context, previous), self.labels[idx]

    def bc_loss(self, features: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Cross-entropy of the actor on the collection's ``actions`` (B,) at states of inputs ``features`` (B, D), and its
        accuracy."""
        logits = self.net.logits(features)  # (B, 4)
        return F.cross_entropy(logits, actions), float((logits.argmax(1) == actions).float().mean())

    def real_value_loss(self, features: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """½ (v(s) − G)² of the critic at states ``idx`` (B,) of inputs ``features`` (B, D) against their real
        returns-to-go (``critic_real``)."""
        assert self.real_returns is not None
        return 0.5 * ((self.net.value(features) - self.real_returns[idx]) ** 2).mean()

    def prior_logits(self, features: torch.Tensor) -> torch.Tensor:
        """The cloned actor's logits (B, 4), STOP masked as the actor's are when a goal head decides it."""
        logits = self.prior(features)
        return without_stop(logits) if self.net.goal is not None else logits

    def goal_loss(self, n: int) -> torch.Tensor:
        """Binary cross-entropy of the goal head on whether STOP succeeds at ``n`` states drawn from all states of
        :attr:`goal_sources` as they come (so the head's probability is that of the pool, not of a rebalanced sample)."""
        rows = self.goal_rng.integers(sum(len(d) for d in self.goal_sources), size=n)
        logits, near = [], []
        for d in self.goal_sources:
            mine, rows = rows[rows < len(d)], rows[rows >= len(d)] - len(d)
            idx = torch.from_numpy(mine).to(self.device)
            state, previous, _ = d.states(idx)
            logits.append(self.net.goal_logit(self.net.features(state.context, previous)))  # (b,)
            near.append(d.near[idx].float())
        return F.binary_cross_entropy_with_logits(torch.cat(logits), torch.cat(near))

    @torch.no_grad()
    def goal_stops(self, data: Any, chunk: int = 1024) -> torch.Tensor:
        """Where the goal head says STOP (its probability above ``goal_threshold``) on every state of ``data`` → (N,) bool."""
        stops = []
        for start in range(0, len(data), chunk):
            state, previous, _ = data.states(torch.arange(start, min(start + chunk, len(data)), device=self.device))
            stops.append(self.net.probs(self.net.features(state.context, previous))[:, STOP] > 0.5)
        return torch.cat(stops)

    @property
    def start_states(self) -> int:
        """States of the collection that only gives imagination start states (``start_data``); 0 without one."""
        return len(self.starts) - len(self.data)

    @property
    def goal_states(self) -> int:
        """States of the second collection that teaches the goal head (``goal_data``); 0 without one."""
        return sum(len(d) for d in self.goal_sources[1:])

    def goal_rates(self) -> dict[str, float]:
        """How the goal head decides over every state of :attr:`goal_sources`: the share of states within reach where it
        STOPs (recall) and of those out of reach where it STOPs (false STOPs)."""
        said = torch.cat([self.goal_stops(d) for d in self.goal_sources])
        near = torch.cat([d.near for d in self.goal_sources])
        return {"bc/goal_recall": float(said[near].float().mean()) if near.any() else float("nan"),
                "bc/goal_false_stops": float(said[~near].float().mean()) if (~near).any() else float("nan")}

    def clone_step(self) -> dict[str, float]:
        idx = self.bc_batch()
        features, actions = self.offline(idx)
        loss, accuracy = self.bc_loss(features, actions)
        logs = {"bc/loss": float(loss.detach()), "bc/accuracy": accuracy}
        if self.real_returns is not None:
            real = self.real_value_loss(features, idx)
            loss = loss + self.config.critic_real * real
            logs["critic/real_loss"] = float(real.detach())
        if self.net.goal is not None:
            goal = self.goal_loss(self.config.goal_batch or self.config.bc_batch)
            loss = loss + goal
            logs["bc/goal_loss"] = float(goal.detach())
        self.bc_opt.zero_grad(set_to_none=True)
        loss.backward()
        for head in self.cloned_heads:
            torch.nn.utils.clip_grad_norm_(head.parameters(), self.config.grad_clip)
        self.bc_opt.step()
        self.bc_step += 1
        if self.bc_step == self.config.bc_steps:
            self.prior.load_state_dict(self.net.actor.state_dict())
            if self.real_returns is not None:
                self.slow.load_state_dict(self.net.critic.state_dict())
            if self.net.goal is not None:
                logs |= self.goal_rates()
        return logs

    def imagination_step(self) -> dict[str, float]:
        c = self.config
        idx = torch.from_numpy(self.rng.integers(len(self.starts), size=c.batch)).to(self.device)
        state, previous, _ = self.starts.states(idx)
        samples = c.uncertainty_samples if c.uncertainty > 0 else 1
        traj = imagine(self.world, self.net, state, previous, c.horizon, c.sampler_steps, self.generator, c.termination,
                       samples, c.uncertainty)
        b, h = traj.actions.shape
        with torch.no_grad():
            slow_values = self.slow(traj.features.flatten(0, 1))[:, 0].view(b, h + 1)  # (B, H + 1)
            returns = lambda_returns(traj.rewards, slow_values, traj.continues, c.discount, c.lam)  # (B, H)
            weights = torch.cumprod(torch.cat([torch.ones_like(traj.continues[:, :1]), traj.continues[:, :-1]], 1), 1)  # (B, H)
            divisor = self.scale.update(returns)
        flat = traj.features[:, :h].flatten(0, 1)  # (B · H, D)
        logits = self.net.logits(flat)
        losses = actor_critic_losses(
            logits, traj.actions.flatten(), self.net.value(flat), returns.flatten(), slow_values[:, :h].flatten(), weights.flatten(),
            divisor, c.entropy, self.prior_logits(flat) if c.prior > 0 else None, c.prior,
        )
        critic = losses.critic
        real = torch.zeros(())
        if self.real_returns is not None:
            rows = self.bc_batch()  # cloned states, beside the imagined ones
            real = self.real_value_loss(self.offline(rows)[0], rows)
            critic = critic + c.critic_real * real
        self.opt.zero_grad(set_to_none=True)
        warming = self.update < c.critic_warmup  # the actor's gradients stay None: Adam leaves it as it is
        (critic if warming else losses.actor + critic).backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), c.grad_clip)
        self.opt.step()
        ema_update(self.slow, self.net.critic, c.slow_rate)
        self.update += 1
        discounts = c.discount ** torch.arange(h, dtype=torch.float32, device=self.device)
        imagined = (weights * traj.rewards * discounts).sum(1).mean()
        return {
            "imagination/return": float(imagined),
            "imagination/lambda_return": float(returns[:, 0].mean()),
            "imagination/return_scale": divisor,
            "imagination/reward_spread": float(traj.spread.mean()),
            "critic/loss": float(losses.critic.detach()),
            "critic/real_loss": float(real.detach()),
            "actor/loss": float(losses.actor.detach()),
            "actor/entropy": float(losses.entropy.detach()),
            "actor/prior_kl": float(losses.prior_kl.detach()),
        }

    # -- the loop, checkpoints ----------------------------------------------------------------------------------------

    def fit(self, out: Path, progress: bool = True, until: int | None = None, attach: Path | None = None) -> dict[str, float]:
        """Clone, then imagine, to the configured counts (or stop after ``until`` steps of both phases together), resuming
        from ``out/checkpoint``; saves every ``checkpoint_every`` steps and at the end. Returns the last logs."""
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        c = self.config
        self.resume(out / "checkpoint")
        total = c.bc_steps + c.updates
        stop_at = total if until is None else min(total, until)
        logs: dict[str, float] = {}
        writer = SummaryWriter(str(out / "tb"))
        with tqdm(total=total, initial=self.done, desc="imagination", unit="step", disable=not progress) as bar:
            while self.done < stop_at:
                if self.bc_step < c.bc_steps:
                    logs, step = self.clone_step(), self.bc_step
                else:
                    logs, step = self.imagination_step(), self.update
                    if self.update % c.log_every == 0 or self.update == c.updates:
                        with torch.no_grad():
                            logs["bc/loss"] = float(self.bc_loss(*self.offline(self.bc_batch()))[0])
                        bar.set_postfix(ret=f"{logs['imagination/return']:.3f}", ent=f"{logs['actor/entropy']:.2f}")
                if step % c.log_every == 0 or self.done == stop_at:
                    for k, v in logs.items():
                        writer.add_scalar(k, v, self.done)
                bar.update(1)
                if self.done % c.checkpoint_every == 0 or self.done == stop_at:
                    self.save(out / "checkpoint", attach)
        writer.close()
        if self.done == 0:
            self.save(out / "checkpoint", attach)
        return logs

    @property
    def done(self) -> int:
        return self.bc_step + self.update

    def weights(self) -> dict[str, torch.Tensor]:
        tensors = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        tensors |= {f"slow.{k}": v for k, v in self.slow.state_dict().items()}
        return tensors | {f"prior.{k}": v for k, v in self.prior.state_dict().items()}

    def save(self, path: Path, attach: Path | None = None) -> None:
        c = self.config
        opt_state, opt_tensors = optimizer_to_checkpoint(self.opt)
        bc_state, bc_tensors = optimizer_to_checkpoint(self.bc_opt)
        tensors = {f"ac.{k}": v for k, v in opt_tensors.items()} | {f"bc.{k}": v for k, v in bc_tensors.items()}
        tensors["generator"] = self.generator.get_state()
        state = {
            "bc_step": self.bc_step,
            "update": self.update,
            "return_range": self.scale.range,
            "numpy_rng": self.rng.bit_generator.state,
            "goal_rng": self.goal_rng.bit_generator.state,
            "optimizer": opt_state,
            "bc_optimizer": bc_state,
        }
        config = {"net": dataclasses.asdict(self.net_config), "train": dataclasses.asdict(c)}
        meta_world = getattr(self.world, "meta", {}) or {}
        world_data = meta_world.get("data", {})
        windows = world_data.get("windows")
        used = [(c.data, self.data)] + ([(c.goal_data, self.goal_sources[1])] if c.goal_data is not None else [])
        used += [(c.start_data, self.starts.sources[1])] if c.start_data is not None else []
        meta = {
            "usage": {"real_steps": 0, "offline_states": len(self.data), "cloned_states": len(self.cloned),
                      "goal_states": self.goal_states, "start_states": self.start_states,
                      "imagined_steps": self.update * c.batch * c.horizon},
            "collections": [
                {"root": os.path.abspath(ref.root), "name": name, "split": ref.split, "states": n,
                 "recipe": getattr(d, "recipes", {}).get(name)}
                for ref, d in used for name, n in (getattr(d, "by_collection", None) or {ref.name: len(d)}).items()
            ],
            "world_model": {"checkpoint": c.checkpoint, "windows": windows if isinstance(windows, int) else None,
                            "data": {k: world_data[k] for k in ("root", "name", "collections") if k in world_data}
                            | {"recipe": world_data.get("recipe") or provenance_recipe(meta_world.get("provenance"))},
                            "stages": stage_data(meta_world.get("stages"))},
            "bc_step": self.bc_step,
            "update": self.update,
        }
        attachments = {"world": attach} if attach is not None else {}
        save_checkpoint(path, Checkpoint(KIND, config, self.weights(), meta, {"state": state, "tensors": tensors}, attachments))

    def resume(self, path: Path) -> None:
        """Restore everything :meth:`save` wrote, if ``path`` holds a checkpoint; its identity settings must match."""
        if not path.exists() and not path.with_name(path.name + ".old").exists():
            return
        ckpt = load_checkpoint(path, KIND, training=True)
        if changed := identity_changes(ckpt.config.get("train", {}), self.config):
            raise CheckpointError(path / "config.yaml", f"resuming with other {', '.join(changed)} than the saved run; use a new out_dir")
        if ckpt.training is None:
            raise CheckpointError(path / "training.json", "no training state to resume from")
        groups: dict[str, dict[str, torch.Tensor]] = {"net": {}, "slow": {}, "prior": {}}
        for k, v in ckpt.weights.items():
            group, name = k.split(".", 1)
            groups[group][name] = v.to(self.device)
        self.net.load_state_dict(groups["net"])
        self.slow.load_state_dict(groups["slow"])
        self.prior.load_state_dict(groups["prior"])
        state, tensors = ckpt.training["state"], ckpt.training["tensors"]
        optimizer_from_checkpoint(self.opt, state["optimizer"], {k[3:]: v for k, v in tensors.items() if k.startswith("ac.")})
        optimizer_from_checkpoint(self.bc_opt, state["bc_optimizer"], {k[3:]: v for k, v in tensors.items() if k.startswith("bc.")})
        self.generator.set_state(tensors["generator"])
        self.rng.bit_generator.state = state["numpy_rng"]
        if "goal_rng" in state:  # saved since the goal head drew from its own generator
            self.goal_rng.bit_generator.state = state["goal_rng"]
        self.scale.range = state["return_range"]
        self.bc_step, self.update = int(state["bc_step"]), int(state["update"])


def identity_changes(saved: dict[str, Any], config: ImaginationTrainConfig) -> list[str]:
    """The :data:`IDENTITY` settings in which ``config`` differs from a run's ``saved`` training config (a key it lacks:
    :data:`BEFORE`, else the default)."""
    defaults = {f.name: f.default for f in dataclasses.fields(ImaginationTrainConfig)} | BEFORE
    return [k for k in IDENTITY if plain(saved.get(k, defaults[k])) != plain(getattr(config, k))]


def plain(value: Any) -> Any:
    """``value`` as a saved config holds it (dataclasses as dicts, tuples as lists), to compare with a saved run's."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def train_imagination(
    config: ImaginationTrainConfig, out: str | os.PathLike[str], progress: bool = True, until: int | None = None,
    on_world: Callable[[Imagination], None] | None = None,
) -> dict[str, Any]:
    """``avworld train agent agent=imagination``: load the world model, encode the collection, clone, imagine; the agent
    lands in ``out/checkpoint``. ``on_world`` sees the loaded world model first (e.g. to check its settings)."""
    if not config.checkpoint:
        raise ValueError("checkpoint: the world model to imagine in (checkpoint=DIR or checkpoint=pretrained)")
    path = Path(resolve_checkpoint(config.checkpoint))
    world = load_world(path, config.device)
    if on_world is not None:
        on_world(world)
    data = OfflineLatents(world, config.data, progress=progress, expert=config.labels == "expert")
    goal_data = OfflineLatents(world, config.goal_data, progress=progress) if config.goal_data is not None else None
    start_data = OfflineLatents(world, config.start_data, progress=progress) if config.start_data is not None else None
    trainer = ImaginationTrainer(config, world, data, goal_data, start_data)
    out = Path(out)
    logs = trainer.fit(out, progress, until, attach=path)
    counts = {"bc_steps": trainer.bc_step, "updates": trainer.update, "offline_states": len(data), "cloned_states": len(trainer.cloned),
              "goal_states": trainer.goal_states, "start_states": trainer.start_states}
    return {**logs, **counts}
