"""Planning in imagination: beam search and the cross-entropy method over k-step rollouts of a world model.

At every real step a planner imagines where candidate action sequences lead k steps ahead, scores each by its
discounted predicted return plus γ^k times a value estimate of where it ends (when a proposal policy offers one), and
executes the first action of the best sequence: model-predictive control, as in the navigation experiment of the
AV-CDiT paper. :class:`BeamPlanner` grows a beam of sequences one depth at a time; :class:`CEMPlanner` refines
categorical distributions over whole sequences with the cross-entropy method, as Navigation World Models (Bar et al.,
2025) plan.

Both search a :class:`~avworld.policies.worlds.PlanningWorld`: an :class:`~avworld.policies.worlds.ImaginedWorld` (a
trained AV-CDiT; every node of a depth is imagined in one batched :meth:`Imagination.step` call) or the
:class:`~avworld.policies.worlds.RealWorldModel` (the real simulator branched: a perfect model).

A proposal policy is optional. It proposes the beam planner's candidate moves (each node is expanded by its
``candidates`` most probable; without a proposal, by ``candidates`` random ones) and its value scores the leaves of both
planners: return + γ^depth · value. Two kinds are understood, both scoring all nodes of a depth in one call:

- batched: ``action_probs(observations) -> (B, 4)`` and/or ``value(observations) -> (B,)``, observations being dicts
  {sensor: (B, ...)} like the env's, decoded from the imagined latents;
- frame-stacked, like :class:`avworld.policies.ppo_agent.PPOAgent`: ``evaluate_after(history, observations) ->
  (probs (B, 4), values (B,))``, each node stacked after the episode's last real observations (``history``:
  ``frame_stack`` − 1 of them), a node's imagined ancestors left out;
- latent, like :class:`avworld.policies.imagination_agent.ImaginationAgent` (trained in imagination):
  ``evaluate_latent(state, previous) -> (probs (B, 4), values (B,))`` of the nodes' imagined latent states and the
  actions that reached them, nothing decoded: its actor proposes the candidates and its critic values the leaves
  (return + γ^depth · v, a bootstrapped return). Only in an :class:`ImaginedWorld` whose latents are the agent's
  (``proposal.accepts(imagination)``).

STOP rule: STOP ends the real episode, a failure unless the agent is within the success distance. So STOP is tried at
every node besides the candidate moves, and a STOP node is kept only when its predicted reward reaches ``stop_reward``
(5 by default: half the success bonus of 10, i.e. the world predicts success); otherwise it is pruned, never chosen.
A kept STOP node is finished: its score is its return, with no value after it. With ``stop_rule="proposal"`` the
proposal decides STOP instead: the agent STOPs exactly when the proposal's most probable action at the real present
is STOP (with ``choice="sample"``: with the probability the proposal gives STOP), and the search only weighs moves
(the beam imagines no STOP; the CEM's sampled STOPs are pruned). That suits
a world whose reward head seldom predicts success where a policy has learnt when to stop (docs/results.md).

Keeping the proposal's prior: with ``prior`` τ > 0 the executed action is not simply the first of the best sequence but
argmax_a [Q(a) + τ · log π(a | present)], Q(a) being the best score found for sequences that begin with a and π the
proposal's probabilities at the real present: the mode of the KL-regularised improvement π'(a) ∝ π(a) · exp(Q(a) / τ) of
the proposal (as MPO and AWR improve a policy). The search may overrule the proposal only where it imagines an advantage
larger than τ times the log-odds: a model-based nudge to a policy that is already decent, which an imperfect world model
can spoil less (docs/results.md). τ = 0 plans alone; τ → ∞ is the proposal's own most probable move. With
``choice="sample"`` the action is drawn from π' instead (over the first actions the search scored, from the planner's
per-episode generator): the counterpart of a policy that samples its actions, which breaks the loops a deterministic
policy can fall into (docs/results.md: that alone is worth as much as this planner's search).

Committing to a plan: by default the search runs at every real step and only the chosen sequence's first action is
executed (model-predictive control). With ``commit`` k > 1 the planner follows the chosen sequence (the best-scored one
that begins with the chosen first action) for k real steps before it searches again, as a policy holds a heading; a
STOP the proposal decides (``stop_rule="proposal"``) still ends the plan at any step.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from avworld.models.imagination import load_world
from avworld.models.pretrained import resolve_checkpoint
from avworld.policies.worlds import STOP, ImaginedWorld, Observations, PlanningWorld, merge_sources, training_data
from avworld.sim.backends.base import Action

MOVES = np.array([Action.FORWARD, Action.TURN_LEFT, Action.TURN_RIGHT], np.int64)
"""The actions that move the agent (all but STOP)."""
NO_ACTION = 4
"""The previous action a latent proposal is given at an episode's first step."""
STOP_RULES = ("world", "proposal")
CHOICES = ("mode", "sample")
PROBABILITY_FLOOR = 1e-12
"""Proposal probabilities are floored here before their log is taken (``prior``): an impossible move is very unlikely."""


@dataclass
class PlannerConfig:
    """What every planner takes (``configs/agent/planner.yaml``, ``cem.yaml`` give them as keyword arguments).

    ``horizon``: imagined steps per plan; ``discount`` γ; ``stop_reward``: the predicted reward a STOP must reach to be kept
    (module docstring); ``sampler_steps``, ``device`` (None: cuda when available), ``amp``: how a ``checkpoint``'s world
    model imagines (:class:`Imagination`); ``use_value=False`` ignores the proposal's value; ``stop_rule``: who decides
    STOP, ``"world"`` or ``"proposal"``; ``prior``: the weight τ ≥ 0 of the proposal's log-probabilities in the choice of
    the executed action; ``choice``: ``"mode"`` (the best) or ``"sample"`` (drawn from π' ∝ π · exp(Q / τ); needs τ > 0);
    ``commit``: real steps each plan is followed before the next search (1: re-plan at every step, model-predictive
    control; k ≤ ``horizon``: the chosen sequence's first k actions, unless the proposal STOPs first); ``reward_samples``:
    noise draws whose imagined rewards a ``checkpoint``'s world averages at each step (:class:`ImaginedWorld`; 1: one draw).
    """

    horizon: int = 4
    discount: float = 0.99
    stop_reward: float = 5.0
    sampler_steps: int = 4
    device: str | None = None
    amp: bool = False
    use_value: bool = True
    stop_rule: str = "world"
    prior: float = 0.0
    choice: str = "mode"
    commit: int = 1
    reward_samples: int = 1

    def __post_init__(self) -> None:
        if self.stop_rule not in STOP_RULES:
            raise ValueError(f"stop_rule must be one of {', '.join(STOP_RULES)}, got {self.stop_rule!r}")
        if self.horizon < 1:
            raise ValueError(f"horizon must be ≥ 1 imagined steps, got {self.horizon}")
        if not 0.0 < self.discount <= 1.0:
            raise ValueError(f"discount must lie in (0, 1], got {self.discount}")
        if not (math.isfinite(self.prior) and self.prior >= 0.0):
            raise ValueError(f"prior must be a finite weight ≥ 0, got {self.prior}")
        if self.choice not in CHOICES:
            raise ValueError(f"choice must be one of {', '.join(CHOICES)}, got {self.choice!r}")
        if not 1 <= self.commit <= self.horizon:
            raise ValueError(f"commit must lie in [1, horizon = {self.horizon}] real steps per plan, got {self.commit}")
        if self.reward_samples < 1:
            raise ValueError(f"reward_samples must be ≥ 1, got {self.reward_samples}")
        if self.choice == "sample" and self.prior == 0.0:
            raise ValueError("choice='sample' draws from π(a) · exp(Q(a) / prior): it needs a prior > 0")


@dataclass
class BeamConfig(PlannerConfig):
    """:class:`BeamPlanner`'s settings: ``beam`` nodes kept per depth, ``candidates`` moves tried per node besides STOP."""

    beam: int = 4
    candidates: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beam < 1:
            raise ValueError(f"beam must be ≥ 1, got {self.beam}")
        if not 1 <= self.candidates <= len(MOVES):
            raise ValueError(f"candidates must be 1 to {len(MOVES)} moves per node (STOP is always tried), got {self.candidates}")


@dataclass
class CEMConfig(PlannerConfig):
    """:class:`CEMPlanner`'s settings: ``samples`` sequences per round, the ``elites`` best refitted to, ``iterations``
    rounds, ``smoothing`` of the old distributions in each refit."""

    horizon: int = 6
    samples: int = 64
    elites: int = 8
    iterations: int = 3
    smoothing: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.elites <= self.samples:
            raise ValueError(f"elites must lie in [1, samples={self.samples}], got {self.elites}")
        if self.iterations < 1:
            raise ValueError(f"iterations must be ≥ 1, got {self.iterations}")
        if not 0.0 <= self.smoothing < 1.0:
            raise ValueError(f"smoothing must lie in [0, 1), got {self.smoothing}")


class Planner(ABC):
    """What both planners share: the world, the optional proposal policy and the per-step plumbing of :class:`Policy`.

    Give either ``checkpoint`` (a world-model directory, loaded as an :class:`ImaginedWorld` on ``config.device`` with
    ``config.sampler_steps``) or ``world`` (any :class:`PlanningWorld`, e.g. :class:`RealWorldModel`). The settings come
    as ``config`` (the planner's :data:`Config`) or as its fields by keyword, as the Hydra configs give them.
    """

    Config: ClassVar[type[PlannerConfig]] = PlannerConfig

    def __init__(
        self,
        checkpoint: str | os.PathLike[str] | None = None,
        *,
        world: PlanningWorld | None = None,
        proposal: Any = None,
        config: PlannerConfig | None = None,
        **settings: Any,
    ) -> None:
        if config is not None and settings:
            raise ValueError(f"give config or its fields, not both (got config and {', '.join(sorted(settings))})")
        config = config if config is not None else self.Config(**settings)
        if not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} takes a {self.Config.__name__}, got {type(config).__name__}")
        if (checkpoint is None) == (world is None):
            raise ValueError(f"checkpoint: give a world-model checkpoint directory or a world, exactly one (got {checkpoint!r}, {world!r})")
        if world is None:
            checkpoint = resolve_checkpoint(checkpoint)  # type: ignore[arg-type]  # a shipped one's name (pretrained[:<name>]) → its folder
            imagination = load_world(checkpoint, config.device, config.amp)
            world = ImaginedWorld(imagination, config.sampler_steps, str(checkpoint), config.reward_samples)
        elif config.reward_samples != 1:
            raise ValueError(
                "reward_samples applies to the world a checkpoint gives; a world passed in keeps its own (ImaginedWorld(reward_samples=…))"
            )
        self.config = config
        self.world = world
        self.proposal = proposal
        self.stacked = callable(getattr(proposal, "evaluate_after", None))
        self.latent = callable(getattr(proposal, "evaluate_latent", None))
        if self.latent:
            if not isinstance(world, ImaginedWorld):
                raise ValueError("a latent proposal (an agent trained in imagination) scores imagined latents: plan in an ImaginedWorld")
            if why := proposal.accepts(world.imagination):
                raise ValueError(f"the proposal cannot read this world model's latents: {why}")
        self.has_probs = self.latent or self.stacked or callable(getattr(proposal, "action_probs", None))
        self.has_value = config.use_value and (self.latent or self.stacked or callable(getattr(proposal, "value", None)))
        self.last_action = NO_ACTION
        """The action executed last this episode (a latent proposal's previous action at the root)."""
        if config.stop_rule == "proposal" and not self.has_probs:
            raise ValueError("stop_rule='proposal' needs a proposal policy with action probabilities")
        if config.prior > 0.0 and not self.has_probs:
            raise ValueError(
                f"prior={config.prior} weighs the proposal's log-probabilities: it needs a proposal policy with action probabilities"
            )
        self.prior, self.choice, self.stop_rule = config.prior, config.choice, config.stop_rule
        self.horizon, self.discount = config.horizon, config.discount
        self.stop_reward = math.inf if config.stop_rule == "proposal" else config.stop_reward  # ∞: every imagined STOP is pruned
        self.rng = np.random.default_rng()
        self.observation: Observations = {}
        self.history: deque[Observations] = deque(maxlen=max(1, int(getattr(proposal, "frame_stack", 1))))
        """The episode's last real observations, the newest last (for a frame-stacked proposal)."""
        self._root_probs: np.ndarray | None = None
        self.planned: deque[int] = deque()
        """The rest of the plan being followed (``commit`` > 1), next action first."""

    @property
    def training_data(self) -> dict[str, int]:
        """Real transitions behind this agent, by source: its world model's and its proposal's (shared sources once)."""
        return merge_sources(training_data(self.proposal), self.world.training_data)

    def reset(self, env: Any, seed: int | None = None) -> None:
        self.world.reset(env, seed)
        if self.proposal is not None:
            self.proposal.reset(env, seed)
        self.rng = np.random.default_rng(seed)
        self.history.clear()
        self.planned.clear()
        self.last_action = NO_ACTION

    def act(self, observation: dict[str, np.ndarray], info: dict[str, Any]) -> int:
        self.world.observe(observation, info)
        self.observation = {k: np.asarray(v)[None] for k, v in observation.items()}  # (1, ...)
        self.history.append(observation)
        self._root_probs = None
        if self.stop_rule == "proposal" and self.proposal_stops():
            self.planned.clear()
            self.last_action = STOP
            return STOP
        if not self.planned:
            self.planned.extend(int(a) for a in self.plan()[: self.config.commit])
        self.last_action = self.planned.popleft()
        return self.last_action

    def proposal_stops(self) -> bool:
        """Under ``stop_rule="proposal"``: whether the proposal STOPs now, the way the planner chooses: STOP is its most
        probable action (``choice="mode"``) or is drawn with its probability (``choice="sample"``)."""
        probs = self.root_probs()[0]
        if self.choice == "sample":
            return bool(self.rng.random() < probs[STOP])
        return int(np.argmax(probs)) == STOP

    def root_probs(self) -> np.ndarray:
        """The proposal's action probabilities (1, 4) at the real present, computed once per step."""
        if self._root_probs is None and self.latent:
            self._root_probs = np.asarray(self.proposal.evaluate_latent(self.world.root(), np.array([self.last_action]))[0], np.float64)
        if self._root_probs is None:
            self._root_probs = self.judge(self.observation, root=True, values=False)[0]
            assert self._root_probs is not None
        return self._root_probs

    @abstractmethod
    def plan(self) -> np.ndarray:
        """The chosen action sequence (d,) int64 from the world's root, d ≥ 1: its first action is executed now, the next
        ``commit`` − 1 after it."""

    def choose(self, firsts: np.ndarray, scores: np.ndarray) -> int:
        """The action to execute, given the first actions (n,) int and scores (n,) of the sequences the search found: the
        first action of the best (ties: the earliest), or with ``prior`` τ > 0 the best by score + τ · log π(first), or
        (``choice="sample"``) one drawn with probability ∝ π(a) · exp(Q(a) / τ), Q(a) the best score of first action a."""
        if self.prior == 0.0:
            return int(firsts[np.argmax(scores)])
        logits = scores / self.prior + np.log(np.maximum(self.root_probs()[0][firsts], PROBABILITY_FLOOR))
        if self.choice == "mode":
            return int(firsts[np.argmax(logits)])
        best = np.full(len(Action), -np.inf)
        np.maximum.at(best, firsts, logits)  # each first action's best sequence
        weights = np.exp(best - best.max())
        return int(self.rng.choice(len(Action), p=weights / weights.sum()))

    def sequence(self, sequences: list[np.ndarray], scores: np.ndarray) -> np.ndarray:
        """The chosen sequence among ``sequences`` (n, each (d_i,) int64) with ``scores`` (n,): the best-scored one that
        begins with the action :meth:`choose` picks (ties: the earliest)."""
        first = self.choose(np.array([q[0] for q in sequences]), scores)
        starts = np.array([q[0] == first for q in sequences])
        return sequences[int(np.argmax(np.where(starts, scores, -np.inf)))]

    def judge_nodes(
        self, state: Any, last: np.ndarray, probs: bool = True, values: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """:meth:`judge` of imagined nodes ``state`` reached by the actions ``last`` (B,): a latent proposal scores their
        latent states directly; any other proposal their decoded observations."""
        if not self.latent:
            return self.judge(self.world.observations(state), probs=probs, values=values)
        p, v = self.proposal.evaluate_latent(state, last)
        p = np.asarray(p, np.float64) if probs and self.has_probs else None
        return p, (np.asarray(v, np.float64) if values and self.has_value else None)

    def judge(
        self, observations: Observations, root: bool = False, probs: bool = True, values: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The proposal's action probabilities (B, 4) and values (B,) of nodes' observations {sensor: (B, ...)}, in one
        call; None for what is not asked (``probs``, ``values``), not offered or not used. ``root``: the observations are
        the real present's, not imagined ones (for a frame-stacked proposal, the present is not stacked twice)."""
        n = len(next(iter(observations.values())))
        want_probs, want_values = probs and self.has_probs, values and self.has_value
        p: Any = None
        v: Any = None
        if self.stacked and (want_probs or want_values):
            before = list(self.history)[:-1] if root else list(self.history)
            p, v = self.proposal.evaluate_after(before, observations)
        elif not self.stacked:
            p = self.proposal.action_probs(observations) if want_probs else None
            v = self.proposal.value(observations) if want_values else None
        p = np.asarray(p, np.float64).reshape(n, -1) if want_probs else None
        v = np.asarray(v, np.float64).reshape(n) if want_values else None
        return p, v


def failed_stops(sequences: np.ndarray, rewards: np.ndarray, stop_reward: float) -> np.ndarray:
    """(B,) bool: sequences (B, k) whose first STOP has a reward (B, k) below ``stop_reward`` (predicted to fail)."""
    is_stop = sequences == STOP
    first = is_stop.argmax(axis=1)
    return is_stop.any(axis=1) & (rewards[np.arange(len(sequences)), first] < stop_reward)


class BeamPlanner(Planner):
    """Beam search in imagination: k depths, ``beam`` nodes kept per depth, the first action of the best sequence executed.

    Each kept node is expanded by STOP and ``candidates`` moves (all three by default; fewer: the proposal's most probable,
    or random ones without a proposal); all children of a depth are imagined in one batched world step. A child's score
    is its discounted return plus γ^depth · value(its observation) when the proposal has a value; the best ``beam`` live
    children go on. STOP children follow the module's STOP rule; kept ones finish with their return. The executed action
    is the first of the best finished or final sequence (ties: the earliest found, STOP first; with ``prior``, of the best
    by score + τ · log π(its first action)). Imagined rows per depth:
    at most ``beam`` × (1 + ``candidates``) (× ``candidates`` with ``stop_rule="proposal"``); imagined nodes are decoded
    only for the proposal.
    """

    Config = BeamConfig

    def __init__(self, checkpoint: str | os.PathLike[str] | None = None, **kwargs: Any) -> None:
        super().__init__(checkpoint, **kwargs)
        assert isinstance(self.config, BeamConfig)
        self.beam, self.candidates = self.config.beam, self.config.candidates
        self.proposes = self.has_probs and self.candidates < len(MOVES)
        """Whether the proposal picks the candidates."""

    def expand(self, probs: np.ndarray | None, n: int) -> np.ndarray:
        """Actions to try at n nodes: STOP (unless the proposal decides it: imagined STOPs would all be pruned), then the
        candidate moves (by ``probs`` (n, 4) if given): (n, 1 + candidates) or (n, candidates)."""
        c = self.candidates
        if c == len(MOVES):
            moves = np.broadcast_to(MOVES, (n, c))
        elif probs is not None:
            moves = MOVES[np.argsort(-probs[:, MOVES], axis=1, kind="stable")[:, :c]]
        else:
            moves = MOVES[np.argsort(self.rng.random((n, len(MOVES))), axis=1)[:, :c]]
        if self.stop_rule == "proposal":
            return np.array(moves)
        return np.concatenate([np.full((n, 1), STOP), moves], axis=1)

    def plan(self) -> np.ndarray:
        world = self.world
        state = world.root()
        sequences = np.zeros((1, 0), np.int64)  # (n, depth)
        returns = np.zeros(1)
        probs = self.root_probs() if self.proposes else None
        finished: list[tuple[np.ndarray, np.ndarray]] = []  # (sequences, scores) of kept STOP nodes
        for depth in range(self.horizon):
            tried = self.expand(probs, len(returns))  # (n, 1 + c)
            parent = np.repeat(np.arange(len(returns)), tried.shape[1])
            actions = tried.ravel()
            step = world.step(world.take(state, parent), actions)
            sequences = np.concatenate([sequences[parent], actions[:, None]], axis=1)
            returns = returns[parent] + self.discount**depth * step.reward
            stop = actions == STOP
            failed = stop & (step.reward < self.stop_reward)
            ended = step.terminal | stop
            done = ended & ~failed
            finished.append((sequences[done], returns[done]))
            live = np.flatnonzero(~ended)
            sequences, returns, state = sequences[live], returns[live], world.take(step.state, live)
            probs, values, more = None, None, self.proposes and depth + 1 < self.horizon
            if self.has_value or more:
                probs, values = self.judge_nodes(state, sequences[:, -1], probs=more)
            scores = returns if values is None else returns + self.discount ** (depth + 1) * values
            keep = np.argsort(-scores, kind="stable")[: self.beam]
            sequences, returns, scores, state = sequences[keep], returns[keep], scores[keep], world.take(state, keep)
            probs = None if probs is None else probs[keep]
        found = [*finished, (sequences, scores)]
        return self.sequence([q for qs, _ in found for q in qs], np.concatenate([s for _, s in found]))


class CEMPlanner(Planner):
    """Cross-entropy method over action sequences in imagination (Navigation World Models' planner, discrete actions).

    Keeps one categorical distribution over the 4 actions per step (k × 4, uniform at first). Each of ``iterations``
    rounds samples ``samples`` sequences, rolls them all in the world (one batched step per depth), scores them like
    :class:`BeamPlanner` (return + γ^k · value of non-terminal ends; sequences whose first STOP is predicted to fail score
    −∞) and refits the distributions to the frequencies of the ``elites`` best, mixed with ``smoothing`` of the old ones.
    The first action of the best sequence seen is executed (with ``prior``, the best by score + τ · log π of the first
    action over all finite-scored sequences seen; with none scored finite, the most probable first move).
    """

    Config = CEMConfig

    def __init__(self, checkpoint: str | os.PathLike[str] | None = None, **kwargs: Any) -> None:
        super().__init__(checkpoint, **kwargs)
        c = self.config
        assert isinstance(c, CEMConfig)
        self.samples, self.elites, self.iterations, self.smoothing = c.samples, c.elites, c.iterations, c.smoothing

    def sample(self, probs: np.ndarray) -> np.ndarray:
        """``samples`` sequences (N, k) int64, step t drawn from the categorical ``probs[t]`` (k, 4)."""
        u = self.rng.random((self.samples, len(probs), 1))  # (N, k, 1)
        return (u > np.cumsum(probs, axis=1)[None, :, :-1]).sum(axis=2).astype(np.int64)

    def plan(self) -> np.ndarray:
        k, a = self.horizon, len(Action)
        probs = np.full((k, a), 1.0 / a)
        found: list[tuple[np.ndarray, np.ndarray]] = []  # (sequences, scores) of each round's finite-scored sequences
        for _ in range(self.iterations):
            sequences = self.sample(probs)
            roll = self.world.rollout(sequences, self.discount)
            scores = roll.returns
            if self.has_value:
                values = self.judge_nodes(roll.state, sequences[:, -1], probs=False)[1]
                assert values is not None
                scores = scores + np.where(roll.terminal, 0.0, self.discount**k * values)
            scores[failed_stops(sequences, roll.rewards, self.stop_reward)] = -np.inf
            finite = np.isfinite(scores)
            order = np.argsort(-scores, kind="stable")[: self.elites]
            elites = order[finite[order]]
            if elites.size == 0:
                continue
            found.append((sequences[finite], scores[finite]))
            frequencies = (sequences[elites][:, :, None] == np.arange(a)).mean(axis=0)  # (k, 4)
            probs = self.smoothing * probs + (1.0 - self.smoothing) * frequencies
        if not found:
            return np.array([MOVES[np.argmax(probs[0, MOVES])]])
        return self.sequence([q for qs, _ in found for q in qs], np.concatenate([s for _, s in found]))
