"""scripts/goal_head_rates.py: STOP rates per distance band, and where a trainer's goal head says STOP on a collection."""

import torch

from tests.conftest import load_script

goal_head_rates = load_script("goal_head_rates")


def test_band_rates_count_each_state_in_its_band() -> None:
    distance = torch.tensor([0.5, 1.0, 1.2, 1.4, 2.5, 7.0])
    stop = torch.tensor([True, False, True, False, False, True])
    rates = goal_head_rates.band_rates(stop, distance)
    assert rates == {"0-1 m": 0.5, "1-1.5 m": 0.5, "1.5-2 m": None, "2-3 m": 0.0, "3-inf m": 1.0}


def test_stops_are_the_goal_heads_decisions() -> None:
    from avworld.policies.imagination_train import ImaginationTrainer
    from tests.test_imagination_agent import NearSideData, SideWorld, side_config

    data = NearSideData(40)
    trainer = ImaginationTrainer(side_config(stop="goal", bc_steps=150), SideWorld(), data)
    for _ in range(150):
        trainer.clone_step()
    assert torch.equal(trainer.goal_stops(data, chunk=16), data.near)
