"""scripts/move_ranking.py: the hit rate of a move ranking against the true best moves, on known rows."""

import numpy as np
import pytest

from tests.conftest import load_script

move_ranking = load_script("move_ranking")


def row(real, policy, world):
    return {"real": real, "policy": policy, "world": world}


def test_hit_rate_counts_a_tied_best_move_and_skips_states_where_all_moves_tie():
    rows = [
        row([0.5, 0.0, 0.0], [-0.1, -2.0, -3.0], [0.0, 0.3, 0.1]),  # best FORWARD: policy right, world wrong
        row([0.0, 0.2, 0.2], [-0.1, -2.0, -3.0], [0.0, 0.1, 0.3]),  # LEFT and RIGHT tie: policy wrong, world right
        row([0.1, 0.1, 0.1], [-0.1, -2.0, -3.0], [0.0, 0.3, 0.1]),  # every move ties: left out
    ]
    policy = move_ranking.hit_rate(rows, lambda r: np.asarray(r["policy"]))
    world = move_ranking.hit_rate(rows, lambda r: np.asarray(r["world"]))
    assert policy["states"] == world["states"] == 2
    assert policy["rate"] == world["rate"] == 0.5
    assert policy["chance"] == pytest.approx((1 / 3 + 2 / 3) / 2)


def test_summary_weighs_the_policy_prior_against_the_returns():
    # the policy prefers LEFT by log-odds 1; the world says FORWARD is 0.2 better: tau 0.1 follows the world, tau 1 the policy
    rows = [row([0.25, 0.0, 0.0], [np.log(0.2), np.log(0.54), np.log(0.26)], [0.25, 0.05, 0.0])]
    rows[0] |= {"world_value": rows[0]["world"], "world_r1": rows[0]["world"], "real_r1": rows[0]["real"], "real_value": rows[0]["real"]}
    result = move_ranking.summary(rows)
    assert result["policy"]["rate"] == 0.0 and result["world"]["rate"] == 1.0
    assert result["policy + world / 0.1"]["rate"] == 1.0
    assert result["policy + world / 1.0"]["rate"] == 0.0


def test_summary_of_an_agent_without_a_value_leaves_the_value_signals_out():
    rows = [row([0.25, 0.0, 0.0], [np.log(0.2), np.log(0.54), np.log(0.26)], [0.25, 0.05, 0.0])]
    rows[0] |= {"world_r1": rows[0]["world"], "real_r1": rows[0]["real"]}  # what the probe of a latent agent records
    result = move_ranking.summary(rows)
    assert {"policy", "world", "world_r1", "real_r1", "policy + world / 0.1", "policy + real / 1.0"} <= set(result)
    assert not [k for k in result if "value" in k]


def test_expected_returns_average_each_sequences_own_samples():
    sequences = move_ranking.SEQUENCES[::3, :1]  # (3, 1): FORWARD, LEFT, RIGHT
    repeated = np.repeat(sequences, 2, axis=0)  # what the probe imagines: each sequence twice in a row
    returns = np.where(repeated[:, 0] == sequences[1, 0], 1.0, 0.0) + np.tile([0.0, 0.5], 3)  # LEFT's draws 1.0 and 1.5
    assert move_ranking.expected(returns, 2).tolist() == [0.25, 1.25, 0.25]
    assert move_ranking.expected(returns, 1).tolist() == returns.tolist()


def test_paired_differences_on_the_same_states_and_a_refusal_of_others():
    real = [[0.5, 0.0, 0.0], [0.0, 0.2, 0.0], [0.1, 0.1, 0.1], [0.0, 0.0, 0.3]]  # the third ties: not counted
    policy = [-0.1, -2.0, -3.0]
    before = [row(t, policy, w) for t, w in zip(real, [[0, 1, 0], [0, 1, 0], [1, 0, 0], [1, 0, 0]], strict=True)]  # hits 0, 1, -, 0
    after = [row(t, policy, w) for t, w in zip(real, [[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1]], strict=True)]  # hits 1, 1, -, 1
    result = move_ranking.paired(after, before)
    assert result["world"]["states"] == 3 and result["world"]["difference"] == pytest.approx(2 / 3)
    assert result["world"]["half_width"] == pytest.approx(1.96 * np.std([1, 0, 1], ddof=1) / np.sqrt(3))
    assert result["policy"]["difference"] == 0.0  # one policy, one walk: no difference
    assert move_ranking.paired(after[:2], before)["world"]["states"] == 2  # a shorter walk pairs with the first states
    with pytest.raises(ValueError, match="not the same states"):
        move_ranking.paired(after[1:], before)
