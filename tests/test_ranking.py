"""Action ranking (avworld/eval/ranking.py): hit rates on known rows, and on a collection with known imagined answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avworld.data.storage import flatten, open_collection
from avworld.eval.ranking import best_per_move, evaluate_ranking, hit_rate, move_sequences
from avworld.models.imagination import load_world
from avworld.policies.planner import MOVES


def test_sequences_are_first_move_major_and_the_best_is_taken_per_first_move() -> None:
    seq = move_sequences(2)
    assert seq.shape == (9, 2) and (seq[:3, 0] == MOVES[0]).all() and (seq[3:6, 0] == MOVES[1]).all()
    assert best_per_move(np.arange(9.0)[None]).tolist() == [[2.0, 5.0, 8.0]]


def test_hit_rate_counts_tied_best_moves_and_skips_full_ties() -> None:
    rows = [{"real": [0.5, 0.0, 0.0], "world": [0.0, 0.3, 0.1]}, {"real": [0.0, 0.2, 0.2], "world": [0.0, 0.1, 0.3]},
            {"real": [0.1, 0.1, 0.1], "world": [1.0, 0.0, 0.0]}]
    result = hit_rate(rows, lambda r: np.asarray(r["world"]))
    assert result["states"] == 2 and result["rate"] == 0.5 and result["chance"] == pytest.approx(0.5)


def test_ranking_on_a_collection_with_known_imagined_answers(world_checkpoint: str, collection, one_thread: None) -> None:
    world = load_world(world_checkpoint, "cpu")
    data = flatten(open_collection(collection.root, collection.name), f"{collection.root}/cache")
    fractions = (1.0, 0.0, 0.0)  # every train-range scene in "train"
    scores, rows = evaluate_ranking(world, data, "train", fractions, windows=6, sampler_steps=1, batch_size=4)
    assert scores.windows == len(rows) == 6 and 0 < scores.states <= 6
    for row in rows:  # the states were rebuilt: the simulator's distance at the recorded pose is the recorded one
        assert row["geodesic"] == pytest.approx(row["recorded_geodesic"], abs=1e-4)
        assert np.ptp(row["real"]) < 0.5  # two steps move at most 0.5 m
    answers = iter([r["real"] for r in rows])
    oracle, _ = evaluate_ranking(world, data, "train", fractions, windows=6, batch_size=4,
                                 imagine=lambda state, g: np.array([next(answers) for _ in range(len(state))]))
    worst = iter([-np.asarray(r["real"]) for r in rows])
    wrong, _ = evaluate_ranking(world, data, "train", fractions, windows=6, batch_size=4,
                                imagine=lambda state, g: np.array([next(worst) for _ in range(len(state))]))
    assert oracle.rate == 1.0 and wrong.rate == 0.0 and oracle.states == wrong.states == scores.states
    again, _ = evaluate_ranking(world, data, "train", fractions, windows=6, sampler_steps=1, batch_size=4)
    assert again == scores  # seeded: the same imagined returns
    assert torch.get_num_threads() == 1


def test_ranking_rebuilds_the_users_scenes_of_a_collection(world_checkpoint: str, tmp_path, one_thread: None) -> None:
    """A collection played on hand-made JSON scenes (``scene=``) is ranked too: its states are rebuilt in those scenes."""
    from pathlib import Path

    from avworld.data.collect import CollectConfig, collect
    from avworld.sim.config import SimConfig

    scenes = Path(__file__).resolve().parents[1] / "examples" / "scenes"
    config = CollectConfig(root=str(tmp_path), name="user", episodes=2, shard_size=2, workers=1, max_steps=12,
                           scene=[str(scenes / "corridor.json"), str(scenes / "l_room.json")])
    collect(config, SimConfig())
    data = flatten(open_collection(config.root, config.name), f"{config.root}/cache")
    assert sorted(set(data.episodes["scene_seed"].tolist())) == [-2, -1]  # the user's scenes 0 and 1
    world = load_world(world_checkpoint, "cpu")
    answers: list[list[float]] = []
    _, rows = evaluate_ranking(world, data, "test", (0.0, 0.0, 1.0), windows=4, batch_size=4,
                               imagine=lambda state, g: np.zeros((len(state), 3)))
    assert len(rows) == 4 and {r["scene_seed"] for r in rows} <= {-1, -2}
    for row in rows:
        assert row["geodesic"] == pytest.approx(row["recorded_geodesic"], abs=1e-4)
        answers.append(row["real"])
    replay = iter(answers)
    oracle, _ = evaluate_ranking(world, data, "test", (0.0, 0.0, 1.0), windows=4, batch_size=4,
                                 imagine=lambda state, g: np.array([next(replay) for _ in range(len(state))]))
    assert oracle.states > 0 and oracle.rate == 1.0
