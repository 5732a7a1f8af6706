"""An actor-critic on a world model's latent states, and the formulas imagination training needs (DreamerV3, Dreamer 4).

The networks read what the imagination core holds for each world: its context window of scaled latents
{modality: (B, m, *latent)} (:class:`~avworld.models.imagination.ImaginedState`), of which the last ``steps`` steps are
flattened, and the previous action (one-hot over the 4 actions and "none" at an episode's start). No pixels are decoded.

- :class:`LatentActorCritic`: actor (categorical over the 4 actions) and critic (a scalar value), separate MLPs; with
  ``goal`` a third MLP, the goal head, says whether STOP here would succeed, and the actor chooses among the moves only;
- :func:`lambda_returns`: the bootstrapped λ-returns of imagined trajectories;
- :class:`ReturnScale`: DreamerV3's return normalisation by an EMA of the 5th-95th percentile range;
- :func:`actor_critic_losses`: the critic's regression on λ-returns and the actor's REINFORCE loss with an entropy bonus
  and an optional KL to a behaviour-cloned prior (Dreamer 4 keeps its policy near the cloned one).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from avworld.sim.backends.base import Action

ACTIONS = 4
NO_ACTION = ACTIONS
"""The "previous action" of an episode's first step (index 4 of the one-hot)."""
STOP = int(Action.STOP)
MASKED = -1e9
"""The logit of an action the actor may not take: its probability is exactly 0 in float32, and 0 · log 0 terms stay 0."""


@dataclass
class ActorCriticConfig:
    """Sizes of :class:`LatentActorCritic`: the inputs (``modalities`` with one step's latent ``shapes``, the last ``steps``
    context steps), the MLPs (``hidden`` units, ``layers`` hidden layers)."""

    modalities: tuple[str, ...] = ("video", "audio")
    shapes: dict[str, list[int]] = field(default_factory=lambda: {"video": [8, 8, 8], "audio": [16, 20]})
    steps: int = 4
    hidden: int = 256
    layers: int = 2
    goal: bool = False
    """A goal head decides STOP (:meth:`LatentActorCritic.probs`): the actor's STOP is masked, the agent STOPs exactly where
    the head's probability that STOP succeeds exceeds ``goal_threshold``."""
    goal_threshold: float = 0.5

    def __post_init__(self) -> None:
        self.modalities = tuple(self.modalities)
        self.shapes = {m: [int(n) for n in s] for m, s in dict(self.shapes).items()}
        if missing := [m for m in self.modalities if m not in self.shapes]:
            raise ValueError(f"actor-critic: no latent shape for {missing}")
        if self.steps < 1 or self.hidden < 1 or self.layers < 1:
            raise ValueError(f"actor-critic: steps, hidden and layers must be ≥ 1, got {self.steps}, {self.hidden}, {self.layers}")
        if not 0.0 < self.goal_threshold < 1.0:
            raise ValueError(f"actor-critic: goal_threshold is a probability in (0, 1), got {self.goal_threshold}")

    @property
    def inputs(self) -> int:
        """Width of the flattened input: the last ``steps`` steps of every modality, then the previous action's one-hot."""
        per_step = sum(int(torch.tensor(self.shapes[m]).prod()) for m in self.modalities)
        return self.steps * per_step + ACTIONS + 1


def mlp(inputs: int, hidden: int, layers: int, outputs: int) -> nn.Sequential:
    """LayerNorm on the input, ``layers`` hidden layers of SiLU units, a linear head."""
    parts: list[nn.Module] = [nn.LayerNorm(inputs)]
    width = inputs
    for _ in range(layers):
        parts += [nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.SiLU()]
        width = hidden
    parts.append(nn.Linear(width, outputs))
    return nn.Sequential(*parts)


class LatentActorCritic(nn.Module):
    """π(a | s) and v(s) of latent states s = (context window, previous action); see the module docstring."""

    def __init__(self, config: ActorCriticConfig) -> None:
        super().__init__()
        self.config = config
        self.actor = mlp(config.inputs, config.hidden, config.layers, ACTIONS)
        self.critic = mlp(config.inputs, config.hidden, config.layers, 1)
        self.goal = mlp(config.inputs, config.hidden, config.layers, 1) if config.goal else None
        for head in (self.actor[-1], self.critic[-1]):
            assert isinstance(head, nn.Linear)
            nn.init.zeros_(head.weight)  # uniform policy and zero value at first (DreamerV3 zero-initialises its heads)
            nn.init.zeros_(head.bias)

    def features(self, context: dict[str, Tensor], previous: Tensor) -> Tensor:
        """The flat input (B, inputs) of contexts {modality: (B, m, *latent)} and previous actions (B,) int64 (4: none)."""
        k, held = self.config.steps, context[self.config.modalities[0]].shape[1]
        if held < k:
            raise ValueError(f"the actor-critic reads {k} context steps, the state holds {held}")
        parts = [context[m][:, -k:].flatten(1).float() for m in self.config.modalities]  # (B, k · |latent|) each
        return torch.cat([*parts, F.one_hot(previous.long(), ACTIONS + 1).float()], dim=1)

    def logits(self, features: Tensor) -> Tensor:
        """Action logits (B, 4) of flat inputs (B, inputs); with a goal head STOP's is −1e9 (never sampled, zero entropy)."""
        logits = self.actor(features)
        return without_stop(logits) if self.goal is not None else logits

    def goal_logit(self, features: Tensor) -> Tensor:
        """The goal head's logit (B,) that STOP at flat inputs (B, inputs) would succeed (there must be a goal head)."""
        if self.goal is None:
            raise ValueError("this actor-critic has no goal head (ActorCriticConfig.goal)")
        return self.goal(features)[:, 0]

    def probs(self, features: Tensor) -> Tensor:
        """The acting policy (B, 4) of flat inputs: the actor's distribution, or with a goal head STOP where the head's
        probability exceeds ``goal_threshold`` (probability 1 there) and the actor's moves elsewhere."""
        probs = torch.softmax(self.logits(features).double(), dim=-1)
        if self.goal is None:
            return probs
        stop = torch.sigmoid(self.goal_logit(features).double()) > self.config.goal_threshold  # (B,)
        probs = torch.where(stop[:, None], torch.zeros_like(probs), probs)
        probs[:, STOP] = stop.double()
        return probs

    def value(self, features: Tensor) -> Tensor:
        """Values (B,) of flat inputs (B, inputs)."""
        return self.critic(features)[:, 0]


def without_stop(logits: Tensor) -> Tensor:
    """Action logits (B, 4) with STOP's set to :data:`MASKED`."""
    return logits.index_fill(1, torch.tensor([STOP], device=logits.device), MASKED)


def lambda_returns(rewards: Tensor, values: Tensor, continues: Tensor, discount: float = 0.99, lam: float = 0.95) -> Tensor:
    """Bootstrapped λ-returns of imagined trajectories (DreamerV3, Hafner et al. 2023, eq. 7):

        R_t = r_t + γ c_t ((1 − λ) v_{t+1} + λ R_{t+1}),   R_H = v_H,

    r_t the reward and c_t = 1 − p(termination) of the step from state t under action a_t, v_t the value of state t.
    rewards, continues: (B, H); values: (B, H + 1), the last one the bootstrap at the horizon. Returns (B, H).
    """
    if values.shape[1] != rewards.shape[1] + 1 or continues.shape != rewards.shape:
        got = f"{tuple(rewards.shape)}, {tuple(continues.shape)}, {tuple(values.shape)}"
        raise ValueError(f"lambda_returns: rewards (B, H), continues (B, H), values (B, H + 1); got {got}")
    out = torch.empty_like(rewards)
    ahead = values[:, -1]
    for t in reversed(range(rewards.shape[1])):
        ahead = rewards[:, t] + discount * continues[:, t] * ((1.0 - lam) * values[:, t + 1] + lam * ahead)
        out[:, t] = ahead
    return out


class ReturnScale:
    """DreamerV3's return normalisation: S = EMA of Per(R, 95) − Per(R, 5) (decay 0.99); advantages are divided by max(1, S),
    so large returns are scaled down and small ones are not scaled up (sparse rewards keep their signal)."""

    def __init__(self, decay: float = 0.99, low: float = 0.05, high: float = 0.95) -> None:
        self.decay, self.low, self.high = decay, low, high
        self.range: float | None = None

    def update(self, returns: Tensor) -> float:
        """Fold in a batch of returns (any shape); returns the divisor max(1, S)."""
        flat = returns.detach().float().flatten()
        spread = float(torch.quantile(flat, self.high) - torch.quantile(flat, self.low))
        self.range = spread if self.range is None else self.decay * self.range + (1.0 - self.decay) * spread
        return self.divisor

    @property
    def divisor(self) -> float:
        return max(1.0, self.range or 0.0)


@dataclass
class Losses:
    """The terms of one imagination update (scalars) and the actor's entropy."""

    actor: Tensor
    critic: Tensor
    entropy: Tensor
    prior_kl: Tensor


def actor_critic_losses(
    logits: Tensor,
    actions: Tensor,
    values: Tensor,
    returns: Tensor,
    baseline: Tensor,
    weights: Tensor,
    divisor: float,
    entropy: float,
    prior_logits: Tensor | None = None,
    prior: float = 0.0,
) -> Losses:
    """The losses of a batch of imagined steps, all (N,) but ``logits`` / ``prior_logits`` (N, 4):

    - critic: ½ w (v_t − sg(R_t))², the critic regressing the λ-returns;
    - actor (REINFORCE, DreamerV3 eq. 11): −w [sg((R_t − v_t) / max(1, S)) log π(a_t) + η H(π)] + β KL(π ‖ π_prior),
      ``baseline`` the values v_t of the advantages (the slow critic's), η = ``entropy``, β = ``prior``.

    ``weights`` w_t = Π_{k<t} c_k discount steps after a likely episode end; every term is a weighted mean.
    """
    log_probs = F.log_softmax(logits, dim=-1)  # (N, 4)
    probs = log_probs.exp()
    total = weights.sum().clamp_min(1e-8)
    advantage = ((returns - baseline) / divisor).detach()
    chosen = log_probs.gather(1, actions.long()[:, None])[:, 0]
    ent = -(probs * log_probs).sum(dim=-1)
    kl = torch.zeros_like(ent)
    if prior_logits is not None and prior > 0.0:
        kl = (probs * (log_probs - F.log_softmax(prior_logits.detach(), dim=-1))).sum(dim=-1)
    actor = -(weights * (advantage * chosen + entropy * ent - prior * kl)).sum() / total
    critic = 0.5 * (weights * (values - returns.detach()) ** 2).sum() / total
    return Losses(actor, critic, (weights * ent).sum() / total, (weights * kl).sum() / total)


@torch.no_grad()
def ema_update(slow: nn.Module, fast: nn.Module, rate: float) -> None:
    """slow ← (1 − rate) slow + rate fast, parameter by parameter (the critic's slow target)."""
    for s, f in zip(slow.parameters(), fast.parameters(), strict=True):
        s.lerp_(f, rate)
