"""Which signal knows the best next move? The policy, the world model's imagined returns, or the value head.

    python scripts/move_ranking.py AGENT_CHECKPOINT WORLD_MODEL_CHECKPOINT [--episodes 20] [--split test]
        [--sounds heard] [--latent] [--samples 1] [--out ranking.json] [--against earlier.json]

An agent walks real episodes of ``split``, sampling its actions as it is evaluated: a PPO agent, or with ``--latent`` an
agent trained in imagination (``agent=imagination``; its value signals are left out: a clone's critic is untrained).
At every step the three moves (FORWARD, LEFT, RIGHT) are scored by each signal a planner can use, over the 9 two-step
move sequences from the present:

- ``policy``: log π(move | present);
- ``world_r1``, ``world``: the world model's imagined reward of the move, and its best imagined 2-step return (with
  ``--samples K``: each sequence imagined K times from K noise draws, its returns averaged: the expected return);
- ``world_value``: that return plus γ² · the agent's value of the decoded imagined observations (the beam planner's score);
- ``real_r1``, ``real``, ``real_value``: the same in the real simulator (:class:`RealWorldModel`, the perfect model).

The truth is ``real``: the moves whose best true 2-step return is the largest (geodesic progress: the shortest path's
next move, or moves tied with it). States where all three tie are left out (:func:`avworld.eval.ranking.hit_rate`, shared
with the tracked metric of ``avworld eval world_model``). Prints, per signal, how often its best move
is a true best one (with a 95 % normal interval and the chance level), and the same for the planner's choice
``log π + Q / τ`` with Q the imagined or true return, as JSON; ``--out`` keeps the per-state scores, and ``--against
FILE`` (such a file of the same walk: the same agent, split, sounds and episodes, e.g. with another world model) adds
each signal's paired difference state by state.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import avworld.envs  # noqa: F401  (registers the envs)
from avworld.eval.navigation import evaluate_navigation
from avworld.eval.ranking import best_per_move, hit_rate, move_sequences, state_hits
from avworld.models.imagination import load_world
from avworld.policies.imagination_agent import ImaginationAgent
from avworld.policies.planner import MOVES
from avworld.policies.ppo_agent import PPOAgent
from avworld.policies.worlds import ImaginedWorld, PlanningWorld, RealWorldModel
from avworld.sim.config import SimConfig

DISCOUNT = 0.99
SEQUENCES = move_sequences(2)  # (9, 2): first move major
TAUS = (0.03, 0.1, 0.3, 1.0)


class Probe:
    """Acts as ``agent`` does (sampling) and records every signal's scores of the three moves at each step."""

    def __init__(self, agent: PPOAgent, imagined: ImaginedWorld, samples: int = 1) -> None:
        self.agent, self.worlds = agent, {"world": imagined, "real": RealWorldModel()}
        self.samples = samples
        self.rows: list[dict[str, list[float]]] = []
        self.history: list[dict[str, np.ndarray]] = []

    def reset(self, env: Any, seed: int | None = None) -> None:
        self.agent.reset(env, seed)
        for world in self.worlds.values():
            world.reset(env, seed)
        self.history = []

    def act(self, observation: dict[str, np.ndarray], info: dict[str, Any]) -> int:
        self.history = [*self.history, observation][-self.agent.frame_stack :]
        probs = self.agent.action_probs(observation, history=self.history[:-1])
        self.record(probs, observation, info, values=True)
        return int(self.agent.rng.choice(len(probs), p=probs))

    def record(self, probs: np.ndarray, observation: dict[str, np.ndarray], info: dict[str, Any], values: bool) -> None:
        """One row of every signal's scores of the three moves at the present (``values``: with the agent's values)."""
        row = {"policy": np.log(np.maximum(probs[MOVES], 1e-12)).tolist()}
        for name, world in self.worlds.items():
            world.observe(observation, info)
            k = self.samples if name == "world" else 1
            rollout = world.rollout(np.repeat(SEQUENCES, k, axis=0), DISCOUNT)
            row[name] = best_per_move(expected(rollout.returns, k)[None])[0].tolist()
            if values:
                leaves = expected(rollout.returns + DISCOUNT**2 * self.values(world, rollout.state), k)
                row[f"{name}_value"] = best_per_move(leaves[None])[0].tolist()
            row[f"{name}_r1"] = expected(world.rollout(np.repeat(SEQUENCES[::3, :1], k, axis=0), DISCOUNT).returns, k).tolist()
        self.rows.append(row)

    def values(self, world: PlanningWorld, state: Any) -> np.ndarray:
        """The agent's values (B,) of the nodes' observations, stacked after the real history as the planner stacks them."""
        _, values = self.agent.evaluate_after(self.history, world.observations(state))
        return values


def expected(returns: np.ndarray, samples: int) -> np.ndarray:
    """(B · samples,) returns of each sequence repeated ``samples`` times in a row → (B,) their means."""
    return returns.reshape(-1, samples).mean(axis=1)


class LatentProbe(Probe):
    """:class:`Probe` for an agent trained in imagination (:class:`ImaginationAgent`): its policy reads its own latent
    context of the real observations; no value signals."""

    def act(self, observation: dict[str, np.ndarray], info: dict[str, Any]) -> int:
        agent = self.agent
        assert isinstance(agent, ImaginationAgent)
        probs = agent.evaluate_latent(agent.observe(observation), np.array([agent.previous]))[0][0]
        self.record(probs, observation, info, values=False)
        agent.previous = int(agent.rng.choice(len(probs), p=probs / probs.sum()))
        return agent.previous


def scorers(rows: list[dict[str, list[float]]]) -> dict[str, Callable[[dict[str, Any]], np.ndarray]]:
    """Each signal the rows hold, and the planner's choices log π + Q / τ, as a function of a row → (3,) move scores."""
    signals = [s for s in ("policy", "world_r1", "world", "world_value", "real_r1", "real_value") if rows and s in rows[0]]
    out: dict[str, Callable[[dict[str, Any]], np.ndarray]] = {s: lambda r, s=s: np.asarray(r[s]) for s in signals}
    for q in [q for q in ("world", "world_value", "real") if rows and q in rows[0]]:
        for tau in TAUS:
            out[f"policy + {q} / {tau}"] = lambda r, q=q, tau=tau: np.asarray(r["policy"]) + np.asarray(r[q]) / tau
    return out


def summary(rows: list[dict[str, list[float]]]) -> dict[str, Any]:
    return {name: hit_rate(rows, score) for name, score in scorers(rows).items()}


def paired(rows: list[dict[str, Any]], earlier: list[dict[str, Any]]) -> dict[str, Any]:
    """Per signal both runs hold, this run's hit rate minus ``earlier``'s on the same states (e.g. two world models probed
    along one walk: the same agent, split and sounds; a run of fewer episodes pairs with the first states of a longer
    one): ``difference`` and ``half_width`` (95 % normal interval of the per-state differences), ``states``. ValueError
    where the states are not the same (their true returns differ)."""
    n = min(len(rows), len(earlier))
    rows, earlier = rows[:n], earlier[:n]
    if not n or any(not np.allclose(a["real"], b["real"], atol=1e-6) for a, b in zip(rows, earlier, strict=True)):
        raise ValueError("--against: not the same states (their true returns differ): probe the same agent on the same split "
                         "and sounds")
    theirs = scorers(earlier)
    out: dict[str, Any] = {}
    for name, score in scorers(rows).items():
        if name in theirs:
            d = state_hits(rows, score) - state_hits(earlier, theirs[name])
            d = d[~np.isnan(d)]
            out[name] = {"difference": float(d.mean()), "half_width": float(1.96 * d.std(ddof=1) / np.sqrt(len(d))), "states": len(d)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("agent")
    parser.add_argument("world_model")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--split", default="test")
    parser.add_argument("--sounds", default="heard", choices=("heard", "unheard"))
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--amp", action="store_true", help="bf16 decoding where the CPU does it in hardware")
    parser.add_argument("--latent", action="store_true", help="AGENT is an agent trained in imagination (agent=imagination)")
    parser.add_argument("--samples", type=int, default=1, help="imagined rollouts per move sequence, their returns averaged")
    parser.add_argument("--out", default=None, help="JSON file for the per-state scores and the episodes' metrics")
    parser.add_argument("--against", default=None, help="an earlier --out file of the same walk: paired differences per signal")
    args = parser.parse_args(argv)

    earlier = None
    if args.against:  # read first: a bad file is refused before the walk, not after it
        try:
            with open(args.against) as f:
                earlier = json.load(f)["rows"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            parser.error(f"--against {args.against}: not a move_ranking --out file with per-state rows ({type(err).__name__}: {err})")
    torch.set_num_threads(1)
    world = ImaginedWorld(load_world(args.world_model, "cpu", amp=args.amp), name=args.world_model)
    if args.samples < 1:
        parser.error(f"--samples must be ≥ 1, got {args.samples}")
    probe = (LatentProbe(ImaginationAgent(args.agent), world, args.samples) if args.latent
             else Probe(PPOAgent.load(args.agent), world, args.samples))
    sim = SimConfig()
    sim = dataclasses.replace(
        sim,
        episode=dataclasses.replace(sim.episode, max_steps=args.max_steps),
        acoustics=dataclasses.replace(sim.acoustics, sounds=args.sounds),
    )
    env = gym.make("avworld/AudioNav-v0", split=args.split, sensors=("rgb", "audio"), sim=sim)
    result = evaluate_navigation(env, probe, args.episodes)
    env.close()
    report = {
        "agent": args.agent,
        "world_model": args.world_model,
        "split": args.split,
        "sounds": args.sounds,
        "episodes": args.episodes,
        "samples": args.samples,
        "success_rate": float(np.mean([e["success"] for e in result.episodes])),
        "signals": summary(probe.rows),
    }
    if earlier is not None:
        try:
            report["paired_against"] = {"file": args.against, "signals": paired(probe.rows, earlier)}
        except ValueError as err:  # the walk's own results are still printed and written
            print(f"move_ranking: {err}", file=sys.stderr)
    print(json.dumps(report, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report | {"rows": probe.rows, "episode_metrics": result.episodes}, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
