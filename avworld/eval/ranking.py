"""Action ranking: how often a world model's imagined returns rank the truly best next move first (issue 26).

For a real state, each of the three moves (FORWARD, TURN_LEFT, TURN_RIGHT) is scored by the best discounted return of
the ``depth``-step move sequences that begin with it (9 sequences for depth 2). The truth is the simulator's own returns
from the recorded pose (:class:`TrueMoves`, the planners' :class:`~avworld.policies.worlds.RealWorldModel`: geodesic
progress and the step cost), the guess the world model's imagined ones from the recorded context
(:func:`imagined_moves`). A state counts as a hit when the guessed best move is one of the true best (ties included);
states where all three truly tie are left out. :func:`hit_rate` is shared with ``scripts/move_ranking.py``, which
probes the same question along an agent's real episodes.

Collections record every observation's pose and each episode's scene seed, so :func:`evaluate_ranking` measures this
on a collection's windows, without running episodes (``avworld eval world_model``, ``prediction.json`` → ``ranking``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from avworld.data.storage import FlatData
from avworld.data.windows import WindowConfig, WindowDataset
from avworld.envs.audio_nav import AudioNavEnv
from avworld.models.imagination import Imagination, ImaginedState
from avworld.policies.planner import MOVES
from avworld.policies.worlds import RealWorldModel
from avworld.sim.backends.base import Pose
from avworld.sim.config import SimConfig

DISCOUNT = 0.99
TIE = 1e-6
"""Returns within this of the best count as tied with it."""


def move_sequences(depth: int) -> np.ndarray:
    """All move sequences of ``depth`` steps, (3^depth, depth) int64, the first move major (rows 0..3^(depth−1) − 1 begin
    with FORWARD, and so on)."""
    if depth < 1:
        raise ValueError(f"depth must be ≥ 1, got {depth}")
    grids = np.meshgrid(*[MOVES] * depth, indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1).astype(np.int64)


def best_per_move(returns: np.ndarray) -> np.ndarray:
    """(B, 3^depth) returns of :func:`move_sequences` → (B, 3): each first move's best."""
    returns = np.asarray(returns)
    return returns.reshape(len(returns), len(MOVES), -1).max(axis=2)


def state_hits(rows: Sequence[dict[str, Any]], score: Callable[[dict[str, Any]], np.ndarray], truth: str = "real") -> np.ndarray:
    """Per row, whether the move ``score(row)`` (3,) ranks first is a true best one (``row[truth]`` (3,), ties within
    :data:`TIE`) → (n,) float: 1 or 0, NaN where every move is a best one (a row that cannot tell)."""
    out = np.full(len(rows), np.nan)
    for i, row in enumerate(rows):
        true = np.asarray(row[truth], np.float64)
        best = np.flatnonzero(true >= true.max() - TIE)
        if len(best) < len(true):
            out[i] = float(int(np.argmax(score(row))) in best)
    return out


def hit_rate(rows: Sequence[dict[str, Any]], score: Callable[[dict[str, Any]], np.ndarray], truth: str = "real") -> dict[str, float]:
    """How often the move ``score(row)`` (3,) ranks first is a true best one (:func:`state_hits`), over the rows whose
    true returns differ: ``rate``, ``half_width`` (95 % normal interval), ``chance`` (the rate of a random pick) and
    ``states`` (rows counted)."""
    hits = state_hits(rows, score, truth)
    counted = ~np.isnan(hits)
    if not counted.any():
        return {"rate": float("nan"), "half_width": float("nan"), "chance": float("nan"), "states": 0}
    chance = [np.mean(np.asarray(r[truth], np.float64) >= np.max(r[truth]) - TIE) for r, c in zip(rows, counted, strict=True) if c]
    h = hits[counted]
    return {"rate": float(h.mean()), "half_width": float(1.96 * h.std() / np.sqrt(len(h))), "chance": float(np.mean(chance)),
            "states": len(h)}


class TrueMoves:
    """The simulator's returns of the move sequences from a recorded state (scene seed, pose): (3,) per first move.

    One real env with the collection's simulator settings (``sim``; no sound is rendered), its scene rebuilt when the seed
    changes; the pose is set and the sequences are rolled in :class:`RealWorldModel`. ``geodesic`` after a call is the
    true distance of the recorded pose (a check that the state was rebuilt: the collection records it too). ``scene``: the
    user's scenes of a collection made with ``scene=`` (its ``meta["collect"]["scene"]``), whose scene k has seed −1 − k.
    """

    def __init__(self, sim: SimConfig, depth: int = 2, discount: float = DISCOUNT, scene: Any = None) -> None:
        self.env = AudioNavEnv(split="train", sim=sim, sensors=("rgb",), scene=scene)
        self.user_scenes = scene is not None
        self.sequences, self.discount = move_sequences(depth), discount
        self.world = RealWorldModel()
        self.scene_seed: int | None = None
        self.geodesic = float("nan")

    def __call__(self, scene_seed: int, pose: Sequence[float]) -> np.ndarray:
        if (scene_seed < 0) != self.user_scenes:
            raise ValueError(f"scene_seed {scene_seed}: " + ("a procedural scene, but the collection played the user's scenes"
                             if self.user_scenes else "the user's scene, but the collection records no scene files"))
        if scene_seed != self.scene_seed:
            options = {"scene_index": -1 - scene_seed} if scene_seed < 0 else {"scene_seed": int(scene_seed)}
            self.env.reset(seed=0, options=options)
            self.scene_seed = int(scene_seed)
        sim = self.env.sim
        assert sim is not None
        sim.set_episode(Pose(*map(float, pose)), sim.scene.sources[0].position)
        self.world.reset(self.env, None)
        self.world.observe({}, {})
        self.geodesic = float(self.world.root().geodesic[0])
        return best_per_move(self.world.rollout(self.sequences, self.discount).returns[None])[0]

    def close(self) -> None:
        self.env.close()


@torch.no_grad()
def imagined_moves(
    world: Imagination, state: ImaginedState, depth: int = 2, discount: float = DISCOUNT, sampler_steps: int = 4,
    generator: torch.Generator | None = None,
) -> np.ndarray:
    """The world model's returns of the move sequences from B states {modality: (B, m, *latent)}: (B, 3), each first
    move's best. All B · 3^depth branches are imagined together, one batched step per depth."""
    sequences = torch.from_numpy(move_sequences(depth)).to(world.device)  # (S, depth)
    b, s = len(state), len(sequences)
    branches = state.take(torch.arange(b, device=world.device).repeat_interleave(s))  # (B · S) worlds
    actions = sequences.repeat(b, 1)  # (B · S, depth)
    returns = torch.zeros(b * s, dtype=torch.float64, device=world.device)
    for t in range(depth):
        step = world.step(branches, actions[:, t], sampler_steps, generator)
        returns += discount**t * step.reward.double()
        branches = step.state
    return best_per_move(returns.view(b, s).cpu().numpy())


@dataclass
class RankingScores:
    """The hit rate of the imagined best move (:func:`hit_rate`'s fields) over ``windows`` windows, at ``depth``."""

    rate: float
    half_width: float
    chance: float
    states: int
    windows: int
    depth: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_ranking(
    world: Imagination,
    data: FlatData,
    split: str,
    fractions: tuple[float, float, float],
    windows: int = 64,
    depth: int = 2,
    discount: float = DISCOUNT,
    sampler_steps: int = 4,
    seed: int = 0,
    batch_size: int = 8,
    imagine: Callable[[ImaginedState, torch.Generator], np.ndarray] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[RankingScores, list[dict[str, Any]]]:
    """Action ranking of ``world`` on up to ``windows`` evenly spaced windows of ``split`` (their last context step is the
    state ranked): the scores and the per-state rows (``real``, ``world`` (3,) each, ``scene_seed``, ``pose``).

    ``imagine(state, generator) -> (B, 3)`` replaces :func:`imagined_moves` (tests give known answers). The truth uses the
    collection's simulator settings (``data.meta["sim"]``)."""
    m = world.context
    dataset = WindowDataset(data, WindowConfig(context=m, horizon=1, split=split, fractions=fractions))
    if len(dataset) == 0:
        raise ValueError(f"no windows of {m} steps in split {split!r}: nothing to rank")
    picks = np.unique(np.linspace(0, len(dataset) - 1, min(windows, len(dataset))).round().astype(int))
    starts = np.asarray(data.episodes["obs_start"])
    truth = TrueMoves(SimConfig.from_dict(data.meta["sim"]), depth, discount, data.scene())
    generator = torch.Generator(world.device).manual_seed(seed)
    guess = imagine or (lambda state, g: imagined_moves(world, state, depth, discount, sampler_steps, g))
    rows: list[dict[str, Any]] = []
    try:
        for k in range(0, len(picks), batch_size):
            batch = picks[k : k + batch_size]
            items = [dataset[int(i)] for i in batch]
            state = world.start([{f: item[f][:m] for f in ("rgb", "audio")} for item in items])
            imagined = guess(state, generator)
            for i, item, row in zip(batch, items, imagined, strict=True):
                last = int(dataset.obs_index[i]) + m - 1
                scene_seed = int(data.episodes["scene_seed"][np.searchsorted(starts, last, side="right") - 1])
                pose = item["pose"][m - 1].tolist()
                rows.append({"real": truth(scene_seed, pose).tolist(), "world": np.asarray(row).tolist(), "scene_seed": scene_seed,
                             "pose": pose, "geodesic": truth.geodesic, "recorded_geodesic": float(data.arrays["geodesic_distance"][last])})
            if on_batch is not None:
                on_batch(len(batch))
    finally:
        truth.close()
    scores = hit_rate(rows, lambda r: np.asarray(r["world"]))
    return RankingScores(scores["rate"], scores["half_width"], scores["chance"], int(scores["states"]), len(rows), depth), rows
