"""Training in imagination (policies/actor_critic.py, imagination_train.py, imagination_agent.py): λ-returns by hand, learning
on a scripted world whose best action is known, exact resume, and the trained agent in the real env."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import avworld  # noqa: F401  (registers the envs)
from avworld.data.storage import DataSplit
from avworld.eval.navigation import evaluate_navigation
from avworld.models.imagination import ImaginedState, ImaginedStep
from avworld.policies.actor_critic import NO_ACTION, ReturnScale, lambda_returns
from avworld.policies.imagination_agent import ImaginationAgent
from avworld.policies.imagination_train import (
    ImaginationTrainConfig,
    ImaginationTrainer,
    PooledStates,
    identity_changes,
    imagine,
    returns_to_go,
    train_imagination,
)
from avworld.policies.worlds import REAL_ENV, collection_source, training_data
from avworld.sim.backends.base import Action


def test_lambda_returns_match_a_hand_computation() -> None:
    r = torch.tensor([[1.0, 0.0, 2.0]])
    v = torch.tensor([[0.5, 1.0, -1.0, 3.0]])
    c = torch.tensor([[1.0, 0.5, 1.0]])
    g, lam = 0.9, 0.8
    r2 = 2.0 + g * 1.0 * 3.0  # R_2 = r_2 + γ c_2 v_3 (λ-mix of v_3 and R_3 = v_3)
    r1 = 0.0 + g * 0.5 * ((1 - lam) * -1.0 + lam * r2)
    r0 = 1.0 + g * 1.0 * ((1 - lam) * 1.0 + lam * r1)
    assert torch.allclose(lambda_returns(r, v, c, g, lam), torch.tensor([[r0, r1, r2]]))
    assert torch.allclose(lambda_returns(r, v, c, g, 0.0), r + g * c * v[:, 1:])  # λ = 0: one-step TD targets
    with pytest.raises(ValueError, match="H \\+ 1"):
        lambda_returns(r, v[:, :3], c)


def test_the_return_scale_shrinks_large_spreads_only() -> None:
    scale = ReturnScale(decay=0.0)
    assert scale.update(torch.linspace(0, 0.5, 101)) == 1.0  # a spread under 1 is not scaled up
    assert scale.update(torch.linspace(0, 100, 101)) == pytest.approx(90.0)  # Per 95 − Per 5


class SideWorld:
    """A scripted world model: the latent (1, 1, 2) one-hot says on which side the goal is; turning to it earns +1, any
    other action −0.1; every step draws a new side; episodes never end (termination probability 0)."""

    modalities = ("video",)
    context = 2
    device = torch.device("cpu")

    def latent_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"video": (1, 1, 2)}

    def step(self, state: ImaginedState, actions: torch.Tensor, steps: int, generator: torch.Generator) -> ImaginedStep:
        side = state.latest["video"][:, 0, 0, 1].round().long()  # (B,) 0: left, 1: right
        right = torch.where(side == 1, Action.TURN_RIGHT, Action.TURN_LEFT)
        reward = torch.where(actions == right, 1.0, -0.1)
        new = torch.randint(0, 2, (len(actions),), generator=generator)
        latest = {"video": torch.nn.functional.one_hot(new, 2).float().view(-1, 1, 1, 2)}
        return ImaginedStep(state.push(latest), latest, reward, torch.zeros(len(actions)))


class SideData:
    """Offline states of :class:`SideWorld`: sides at random, the collection's actions uniformly random."""

    def __init__(self, n: int = 64) -> None:
        g = torch.Generator().manual_seed(0)
        sides = torch.randint(0, 2, (n, 2), generator=g)
        self.video = torch.nn.functional.one_hot(sides, 2).float().view(n, 2, 1, 1, 2)
        self.actions = torch.randint(0, 4, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.actions)

    def states(self, idx: torch.Tensor) -> tuple[ImaginedState, torch.Tensor, torch.Tensor]:
        return ImaginedState({"video": self.video[idx]}), torch.full((len(idx),), NO_ACTION), self.actions[idx]


class MixedSideData(SideData):
    """:class:`SideData` in episodes of 8 states: the even episodes turn to the goal (return +8), the odd ones away (−0.8)."""

    def __init__(self, n: int = 64) -> None:
        super().__init__(n)
        side = self.video[:, -1, 0, 0, 1].round().long()
        self.episodes = np.arange(n) // 8
        good = torch.from_numpy(self.episodes % 2 == 0)
        toward = torch.where(side == 1, Action.TURN_RIGHT, Action.TURN_LEFT)
        away = torch.where(side == 1, Action.TURN_LEFT, Action.TURN_RIGHT)
        self.actions = torch.where(good, toward, away)
        self.episode_returns = np.where(np.arange(n // 8) % 2 == 0, 8.0, -0.8)


def test_cloning_the_best_episodes_copies_the_good_behaviour_only(one_thread: None) -> None:
    data = MixedSideData()
    best_half = ImaginationTrainer(side_config(bc_top=0.5, bc_steps=150, updates=0), SideWorld(), data)
    assert sorted(set(data.episodes[best_half.cloned])) == [0, 2, 4, 6]
    assert len(ImaginationTrainer(side_config(bc_top=0.1), SideWorld(), data).cloned) == 8  # ⌈0.1 · 8⌉ = 1 episode
    everything = ImaginationTrainer(side_config(bc_steps=150, updates=0), SideWorld(), data)
    assert len(everything.cloned) == len(data)
    ctx = SideData(32).states(torch.arange(32))[0]
    best = torch.where(ctx.latest["video"][:, 0, 0, 1].round().long() == 1, Action.TURN_RIGHT, Action.TURN_LEFT)
    accuracy = {}
    for name, trainer in (("best", best_half), ("all", everything)):
        for _ in range(150):
            trainer.clone_step()
        with torch.no_grad():
            logits = trainer.net.logits(trainer.net.features(ctx.context, torch.full((32,), NO_ACTION)))
        accuracy[name] = float((logits.argmax(1) == best).float().mean())
    assert accuracy["best"] > 0.95 and accuracy["all"] < 0.8, accuracy  # half the data says the opposite
    with pytest.raises(ValueError, match="episode returns"):
        ImaginationTrainer(side_config(bc_top=0.5), SideWorld(), SideData())
    with pytest.raises(ValueError, match="bc_top"):
        side_config(bc_top=0.0)


class ExpertSideData(SideData):
    """:class:`SideData` whose collection moved at random, with the expert's move (turn to the goal) beside it."""

    def __init__(self, n: int = 64) -> None:
        super().__init__(n)
        side = self.video[:, -1, 0, 0, 1].round().long()
        self.expert = torch.where(side == 1, Action.TURN_RIGHT, Action.TURN_LEFT)


def test_cloning_the_experts_labels_learns_what_the_random_moves_hide(one_thread: None) -> None:
    data = ExpertSideData()
    ctx = SideData(32).states(torch.arange(32))[0]
    best = torch.where(ctx.latest["video"][:, 0, 0, 1].round().long() == 1, Action.TURN_RIGHT, Action.TURN_LEFT)
    accuracy = {}
    for labels in ("taken", "expert"):
        trainer = ImaginationTrainer(side_config(labels=labels, bc_steps=150, updates=0), SideWorld(), data)
        for _ in range(150):
            trainer.clone_step()
        with torch.no_grad():
            logits = trainer.net.logits(trainer.net.features(ctx.context, torch.full((32,), NO_ACTION)))
        accuracy[labels] = float((logits.argmax(1) == best).float().mean())
    assert accuracy["expert"] > 0.95 and accuracy["taken"] < 0.8, accuracy
    with pytest.raises(ValueError, match="labels=expert"):
        ImaginationTrainer(side_config(labels="expert"), SideWorld(), SideData())
    with pytest.raises(ValueError, match=r"imagination\.labels"):
        side_config(labels="oracle")


def side_config(**kw: object) -> ImaginationTrainConfig:
    base = dict(checkpoint="side", batch=32, horizon=5, hidden=32, layers=1, bc_steps=4, bc_batch=16, updates=60,
                actor_lr=3e-3, critic_lr=3e-3, checkpoint_every=1000, log_every=10, seed=3)
    return ImaginationTrainConfig(**(base | kw))  # type: ignore[arg-type]


def test_imagination_training_learns_the_known_best_action(tmp_path: Path, one_thread: None) -> None:
    trainer = ImaginationTrainer(side_config(), SideWorld(), SideData())
    trainer.fit(tmp_path, progress=False, until=4)  # cloning random actions: about uniform
    before = trainer.imagination_step()["imagination/return"]
    logs = trainer.fit(tmp_path, progress=False)
    assert trainer.update == 60 and before < 1.5
    assert logs["imagination/return"] > 2.5, logs  # 5 steps of +1 with γ = 0.99 would be 4.9; uniform play ≈ 0.86
    ctx = SideData(4).states(torch.arange(4))[0]
    side = ctx.latest["video"][:, 0, 0, 1].round().long()
    probs = torch.softmax(trainer.net.logits(trainer.net.features(ctx.context, torch.full((4,), NO_ACTION))), -1)
    best = torch.where(side == 1, Action.TURN_RIGHT, Action.TURN_LEFT)
    assert (probs.argmax(1) == best).all() and (probs.gather(1, best[:, None]) > 0.6).all()
    assert (tmp_path / "tb").is_dir() and (tmp_path / "checkpoint" / "model.safetensors").is_file()


def test_the_critic_warms_up_while_the_actor_stays_the_clone(tmp_path: Path, one_thread: None) -> None:
    trainer = ImaginationTrainer(side_config(updates=6, critic_warmup=5), SideWorld(), SideData())
    trainer.fit(tmp_path, progress=False, until=4)  # cloned
    clone = {k: v.clone() for k, v in trainer.net.actor.state_dict().items()}
    critic = {k: v.clone() for k, v in trainer.net.critic.state_dict().items()}
    for _ in range(5):
        trainer.imagination_step()
    assert all(torch.equal(v, clone[k]) for k, v in trainer.net.actor.state_dict().items())
    assert not all(torch.equal(v, critic[k]) for k, v in trainer.net.critic.state_dict().items())
    trainer.imagination_step()  # the sixth update moves the actor too
    assert not all(torch.equal(v, clone[k]) for k, v in trainer.net.actor.state_dict().items())
    with pytest.raises(ValueError, match="critic_warmup"):
        side_config(critic_warmup=-1)


def test_a_resumed_run_ends_with_identical_weights(tmp_path: Path, one_thread: None) -> None:
    config = side_config(updates=6, bc_steps=3, checkpoint_every=2)
    whole = ImaginationTrainer(config, SideWorld(), SideData())
    whole.fit(tmp_path / "whole", progress=False)
    ImaginationTrainer(config, SideWorld(), SideData()).fit(tmp_path / "split", progress=False, until=5)  # stops mid-imagination
    resumed = ImaginationTrainer(config, SideWorld(), SideData())
    resumed.fit(tmp_path / "split", progress=False)
    assert resumed.update == 6 and resumed.bc_step == 3
    a, b = whole.weights(), resumed.weights()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    data = MixedSideData()  # episodes with returns (for bc_top) and the expert's labels: every setting below can start
    data.expert = ExpertSideData().expert
    for other in (dict(hidden=16), dict(labels="expert"), dict(bc_top=0.5)):
        with pytest.raises(ValueError, match=f"other {next(iter(other))} than the saved run"):
            ImaginationTrainer(dataclasses.replace(config, **other), SideWorld(), data).fit(tmp_path / "split", progress=False)


class GambleWorld(SideWorld):
    """:class:`SideWorld` where FORWARD is a gamble: +3.5 or −0.5 on a coin flip of the world's noise (mean 1.5, std 2),
    more on average than the sure +1 of turning to the goal, and what a model that was never shown it might imagine."""

    def step(self, state: ImaginedState, actions: torch.Tensor, steps: int, generator: torch.Generator) -> ImaginedStep:
        step = super().step(state, actions, steps, generator)
        coin = torch.randint(0, 2, (len(actions),), generator=generator).float()
        return dataclasses.replace(step, reward=torch.where(actions == Action.FORWARD, 4.0 * coin - 0.5, step.reward))


def test_a_pessimistic_reward_subtracts_the_spread_of_the_world_samples(tmp_path: Path, one_thread: None) -> None:
    data = SideData()
    state, previous, _ = data.states(torch.arange(len(data)))
    net = ImaginationTrainer(side_config(), GambleWorld(), data).net
    traj = imagine(GambleWorld(), net, state, previous, 4, 1, torch.Generator().manual_seed(0), samples=16, uncertainty=1.0)
    gamble = traj.actions == Action.FORWARD
    assert gamble.any() and (~gamble).any()
    assert torch.all(traj.spread[~gamble] == 0) and traj.spread[gamble].mean() > 1.5  # 16 fair coins: std ≈ 2
    kept = traj.rewards[~gamble]  # the scripted sure rewards have no spread: kept (to float rounding of their mean)
    assert torch.all(((kept - 1.0).abs() < 1e-6) | ((kept + 0.1).abs() < 1e-6))
    assert torch.all(traj.rewards[gamble] < 1.5)  # mean − std of a ±2 coin: below the gamble's mean
    # trained with it, the actor prefers the sure turn; without it, the gamble
    chosen = {}
    for lam in (0.0, 1.0):
        trainer = ImaginationTrainer(side_config(uncertainty=lam, updates=80), GambleWorld(), data)
        trainer.fit(tmp_path / str(lam), progress=False)
        with torch.no_grad():
            probs = trainer.net.probs(trainer.net.features(state.context, previous))  # (N, 4)
        chosen[lam] = float(probs[:, Action.FORWARD].mean())
    assert chosen[0.0] > 0.6 and chosen[1.0] < 0.2, chosen
    with pytest.raises(ValueError, match="uncertainty"):
        side_config(uncertainty=-1.0)
    with pytest.raises(ValueError, match="uncertainty_samples"):
        side_config(uncertainty=0.5, uncertainty_samples=1)


class NearSideData(SideData):
    """:class:`SideData` where STOP succeeds exactly when the goal is on the right (``near``), and the collection's
    STOPs (a quarter of its random actions) fall anywhere."""

    def __init__(self, n: int = 64) -> None:
        super().__init__(n)
        self.near = self.video[:, -1, 0, 0, 1].round().bool()


def test_a_goal_head_decides_stop_and_the_actor_only_moves(tmp_path: Path, one_thread: None) -> None:
    data = NearSideData()
    trainer = ImaginationTrainer(side_config(stop="goal", bc_steps=150, updates=2), SideWorld(), data)
    moved = data.actions != Action.STOP
    assert len(trainer.cloned) == int(moved.sum()) < len(data)  # the collection's STOPs teach the goal head, not the actor
    logs = {}
    for _ in range(150):
        logs = trainer.clone_step()
    assert logs["bc/goal_recall"] > 0.95 and logs["bc/goal_false_stops"] < 0.05, logs
    ctx = NearSideData(32)
    state = ctx.states(torch.arange(32))[0]
    probs = trainer.net.probs(trainer.net.features(state.context, torch.full((32,), NO_ACTION)))  # (32, 4)
    assert torch.equal(probs[:, Action.STOP], ctx.near.double())  # STOP for sure exactly where it succeeds
    assert torch.allclose(probs.sum(1), torch.ones(32, dtype=torch.float64))
    traj = imagine(SideWorld(), trainer.net, state, torch.full((32,), NO_ACTION), 6, 1, torch.Generator().manual_seed(0))
    assert (traj.actions != Action.STOP).all()  # imagination samples moves only
    trainer.imagination_step()
    trainer.save(tmp_path / "checkpoint")
    with pytest.raises(ValueError, match="near"):
        ImaginationTrainer(side_config(stop="goal"), SideWorld(), SideData())
    with pytest.raises(ValueError, match=r"imagination\.stop"):
        side_config(stop="never")


class FarSideData(NearSideData):
    """:class:`NearSideData` that never came within reach: its goal is always on the left, where STOP fails."""

    def __init__(self, n: int = 64) -> None:
        super().__init__(n)
        self.video[:, -1] = torch.tensor([1.0, 0.0])
        self.near = self.video[:, -1, 0, 0, 1].round().bool()
        assert not self.near.any()


def test_a_second_collection_teaches_the_goal_head_what_the_first_lacks(tmp_path: Path, one_thread: None) -> None:
    config = side_config(stop="goal", bc_steps=150, updates=0)
    alone = ImaginationTrainer(config, SideWorld(), FarSideData())
    lingered = dataclasses.replace(config, goal_data=DataSplit(root="elsewhere", name="linger", split="train"))
    helped = ImaginationTrainer(lingered, SideWorld(), FarSideData(), NearSideData(256))
    for _ in range(150):
        alone.clone_step()
        logs = helped.clone_step()
    assert logs["bc/goal_recall"] > 0.95 and logs["bc/goal_false_stops"] < 0.05, logs  # over both collections' states
    a, b = alone.net.actor.state_dict(), helped.net.actor.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # the goal head's own draws leave the actor's batches as they were
    ctx = NearSideData(32)
    state = ctx.states(torch.arange(32))[0]
    previous = torch.full((32,), NO_ACTION)
    stops = {name: t.net.probs(t.net.features(state.context, previous))[:, Action.STOP]
             for name, t in (("alone", alone), ("helped", helped))}
    assert stops["alone"].sum() == 0 and torch.equal(stops["helped"], ctx.near.double())
    helped.save(tmp_path / "checkpoint")
    with pytest.raises(ValueError, match="other goal_data than the saved run"):
        ImaginationTrainer(config, SideWorld(), FarSideData()).resume(tmp_path / "checkpoint")
    with pytest.raises(ValueError, match=r"needs imagination\.stop=goal"):
        side_config(goal_data={"root": "elsewhere", "name": "linger"})


class StickySideWorld(SideWorld):
    """:class:`SideWorld` whose goal stays on the side it started on: where imagination starts is all it ever sees."""

    def step(self, state: ImaginedState, actions: torch.Tensor, steps: int, generator: torch.Generator) -> ImaginedStep:
        moved = super().step(state, actions, steps, generator)
        latest = state.latest
        return ImaginedStep(state.push(latest), latest, moved.reward, moved.termination)


class RightSideData(SideData):
    """:class:`SideData` whose goal is on the right at its newest step."""

    def __init__(self, n: int = 64) -> None:
        super().__init__(n)
        self.video[:, -1] = torch.tensor([0.0, 1.0])


def test_pooled_states_keep_the_order_asked_for() -> None:
    first, second = FarSideData(5), RightSideData(7)
    pool = PooledStates([first, second])
    idx = torch.tensor([6, 0, 11, 4, 5, 6])
    state, previous, actions = pool.states(idx)
    for k, i in enumerate(idx.tolist()):
        source, j = (first, i) if i < 5 else (second, i - 5)
        assert torch.equal(state.context["video"][k], source.video[j]) and actions[k] == source.actions[j]
    assert len(pool) == 12 and len(previous) == 6


def test_start_states_of_another_collection_reach_what_cloning_never_saw(tmp_path: Path, one_thread: None) -> None:
    config = side_config(updates=60)
    alone = ImaginationTrainer(config, StickySideWorld(), FarSideData())  # its goal is always on the left
    started = dataclasses.replace(config, start_data=DataSplit(root="elsewhere", name="starts", split="train"))
    helped = ImaginationTrainer(started, StickySideWorld(), FarSideData(), start_data=RightSideData(64))
    alone.fit(tmp_path / "alone", progress=False)
    helped.fit(tmp_path / "helped", progress=False)
    right = RightSideData(16)
    state = right.states(torch.arange(16))[0]
    previous = torch.full((16,), NO_ACTION)
    turns = {name: torch.softmax(t.net.logits(t.net.features(state.context, previous)), -1)[:, Action.TURN_RIGHT]
             for name, t in (("alone", alone), ("helped", helped))}
    assert (turns["helped"] > 0.6).all() and (turns["alone"] < 0.5).all(), turns
    meta = json.loads((tmp_path / "helped" / "checkpoint" / "meta.json").read_text())
    assert meta["usage"]["start_states"] == 64 and meta["usage"]["offline_states"] == 64
    assert [(c["name"], c["states"]) for c in meta["collections"]][1:] == [("starts", 64)]  # real data the agent used
    clone = ImaginationTrainer(dataclasses.replace(config, updates=0), StickySideWorld(), FarSideData())
    clone.fit(tmp_path / "clone", progress=False)
    later = ImaginationTrainer(started, StickySideWorld(), FarSideData(), start_data=RightSideData(64))
    later.resume(tmp_path / "clone" / "checkpoint")  # a clone resumes into imagination from other starts
    assert later.bc_step == config.bc_steps and later.update == 0


class CountedSideData(NearSideData):
    """:class:`NearSideData` that records how many states each :meth:`states` call asked for."""

    def __init__(self, n: int = 64) -> None:
        super().__init__(n)
        self.asked: list[int] = []

    def states(self, idx: torch.Tensor) -> tuple[ImaginedState, torch.Tensor, torch.Tensor]:
        self.asked.append(len(idx))
        return super().states(idx)


def test_the_goal_head_draws_its_own_batch_from_both_collections(one_thread: None) -> None:
    first, second = CountedSideData(64), CountedSideData(192)
    config = side_config(stop="goal", bc_steps=5, updates=0, bc_batch=8, goal_batch=100,
                         goal_data={"root": "elsewhere", "name": "linger", "split": "train"})
    trainer = ImaginationTrainer(config, SideWorld(), first, second)
    first.asked.clear()
    trainer.clone_step()
    assert first.asked[0] == 8  # the actor's batch, from the cloned collection only
    drawn = first.asked[1] + second.asked[0]
    assert drawn == 100 and 0 < first.asked[1] < 50 < second.asked[0]  # the goal head's, pooled (a quarter from the first)
    with pytest.raises(ValueError, match="goal_batch"):
        side_config(goal_batch=0)


def test_a_run_saved_before_a_setting_existed_did_what_it_then_did() -> None:
    saved = dataclasses.asdict(side_config(stop="goal"))
    assert identity_changes(saved, side_config(stop="goal")) == []
    for key in ("goal_batch", "goal_data", "labels"):
        del saved[key]
    assert identity_changes(saved, side_config(stop="goal", goal_batch=None)) == []  # it drew bc_batch for the goal head
    assert identity_changes(saved, side_config(stop="goal")) == ["goal_batch"]  # today's 256 is another agent
    assert identity_changes(saved, side_config(stop="goal", goal_batch=None, labels="expert")) == ["labels"]


def test_trained_in_a_tiny_world_model_it_acts_in_the_real_env(world_checkpoint: str, collection, tmp_path: Path, one_thread: None) -> None:
    config = ImaginationTrainConfig(
        checkpoint=world_checkpoint, data=DataSplit(root=collection.root, name=collection.name, split="train"),
        hidden=16, layers=1, batch=2, horizon=2, updates=2, bc_steps=2, bc_batch=4, sampler_steps=1, checkpoint_every=10, bc_top=0.5,
        stop="goal", goal_data=DataSplit(root=collection.root, name=collection.name, split="train"),
    )
    result = train_imagination(config, tmp_path, progress=False)
    assert result["updates"] == 2 and result["bc_steps"] == 2 and 0 < result["cloned_states"] < result["offline_states"]
    assert result["goal_states"] == result["offline_states"]
    agent = ImaginationAgent(tmp_path / "checkpoint")
    assert agent.meta["usage"]["real_steps"] == 0
    # the world model learnt from the same collection's train scenes as the agent: its transitions count once, all of them
    windows = agent.world.meta["data"]["windows"]
    assert 0 < windows < result["offline_states"]  # a window needs a full context; a cloned state pads it
    recipe = agent.meta["collections"][0]["recipe"]
    assert recipe == agent.world.meta["data"]["recipe"] == agent.meta["world_model"]["data"]["recipe"] and len(recipe) == 16
    source = collection_source(collection.root, collection.name, recipe=recipe)
    assert training_data(agent) == {REAL_ENV: 0, source: result["offline_states"]}
    assert agent.sim is not None
    sim = dataclasses.replace(agent.sim, episode=dataclasses.replace(agent.sim.episode, max_steps=4))
    env = gym.make("avworld/AudioNav-v0", split="test", sensors=("rgb", "audio"), sim=sim)
    result_nav = evaluate_navigation(env, agent, episodes=1)
    assert len(result_nav.episodes) == 1 and agent.state is not None
    assert agent.state.context["video"].shape[1] == agent.world.context
    probs, values = agent.evaluate_latent(agent.state, np.array([agent.previous]))
    assert probs.shape == (1, 4) and np.isclose(probs.sum(), 1.0) and values.shape == (1,)
    assert agent.net_config.goal and probs[0, Action.STOP] in (0.0, 1.0)  # the goal head decides STOP
    eager = ImaginationAgent(tmp_path / "checkpoint", goal_threshold=1e-6)  # STOPs wherever the head sees any chance
    assert eager.evaluate_latent(agent.state, np.array([agent.previous]))[0][0, Action.STOP] == 1.0


def test_the_offline_latents_come_from_the_collections_latent_cache(world_checkpoint: str, collection, one_thread: None) -> None:
    from avworld.models.imagination import load_world
    from avworld.policies.imagination_train import OfflineLatents

    world = load_world(world_checkpoint, device="cpu")
    data = DataSplit(root=collection.root, name=collection.name, split="train")
    folder = data.load().path
    assert folder is not None
    for old in folder.glob("latents-*.npy"):  # (the world model's training built them: start without)
        old.unlink()
    cached = OfflineLatents(world, data)
    files = sorted(p.name for p in folder.glob("latents-*.npy"))
    assert [f.split("-")[1] for f in files] == ["audio", "video"]  # built by the first use, beside the flat arrays
    world.tokenizer_paths = {}  # no cache key: encoded chunk by chunk, as for a world of unknown tokenizers
    direct = OfflineLatents(world, data)
    assert cached.latents.keys() == direct.latents.keys()
    for mod, z in cached.latents.items():
        assert z.shape == direct.latents[mod].shape and z.dtype == torch.float32
        assert torch.allclose(z, direct.latents[mod], atol=1e-4), mod  # the same encoder, batched differently
    assert torch.equal(cached.rows, direct.rows) and torch.equal(cached.actions, direct.actions)


def test_the_commands_train_and_evaluate_it(world_checkpoint: str, collection, tmp_path: Path) -> None:
    import subprocess
    import sys

    out = tmp_path / "agent"
    settings = ["imagination.hidden=8", "imagination.layers=1", "imagination.batch=2", "imagination.horizon=2", "imagination.bc_steps=1",
                "imagination.bc_batch=4", "imagination.sampler_steps=1"]
    base = [sys.executable, "-m", "avworld.cli", "train", "agent", "agent=imagination", f"checkpoint={world_checkpoint}",
            f"data.root={collection.root}", f"data.name={collection.name}", f"out_dir={out}", f"hydra.run.dir={tmp_path}", *settings]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*base, "imagination.updates=2"], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "updates=2" in proc.stdout and list((out / "tb").iterdir())
    agent = ImaginationAgent(out / "checkpoint")
    assert agent.meta["update"] == 2 and agent.meta["bc_step"] == 1
    with pytest.raises(ValueError, match="goal head"):
        ImaginationAgent(out / "checkpoint", goal_threshold=0.3)  # trained with stop=actor
    evaluate = [sys.executable, "-m", "avworld.cli", "eval", "agent=imagination", f"agent.path={out / 'checkpoint'}", "eval.episodes=1",
                "sim.episode.max_steps=3", f"hydra.run.dir={tmp_path / 'eval'}"]
    proc = subprocess.run(evaluate, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "eval" / "navigation.json").is_file()


def test_real_returns_to_go_are_discounted_within_each_episode() -> None:
    rewards = np.array([1.0, 0.0, 2.0, 5.0, -1.0])
    episodes = np.array([0, 0, 0, 1, 1])
    g = returns_to_go(rewards, episodes, 0.5)
    assert np.allclose(g, [1.0 + 0.5 * 0.0 + 0.25 * 2.0, 0.0 + 0.5 * 2.0, 2.0, 5.0 - 0.5, -1.0])


class RewardedSideData(SideData):
    """:class:`SideData` as one-step episodes whose reward is 1 when the goal is on the right, 0 on the left: the real
    return-to-go of a state is its side."""

    def __init__(self, n: int = 64) -> None:
        super().__init__(n)
        self.episodes = np.arange(n)
        self.rewards = self.video[:, -1, 0, 0, 1].clone()
        self.episode_returns = self.rewards.numpy().astype(np.float64)


def test_a_critic_fitted_to_real_returns_values_the_states_that_earned_them(one_thread: None) -> None:
    data = RewardedSideData()
    grounded = ImaginationTrainer(side_config(bc_steps=200, critic_real=1.0, bc_lr=3e-3), SideWorld(), data)
    plain = ImaginationTrainer(side_config(bc_steps=200, bc_lr=3e-3), SideWorld(), data)
    for _ in range(200):
        logs = grounded.clone_step()
        plain.clone_step()
    ctx = SideData(32).states(torch.arange(32))[0]
    right = ctx.latest["video"][:, 0, 0, 1]
    with torch.no_grad():
        features = grounded.net.features(ctx.context, torch.full((32,), NO_ACTION))
        values, slow = grounded.net.value(features), grounded.slow(features)[:, 0]
    assert (values - right).abs().max() < 0.2, values  # the value says the side: the return it earned
    assert torch.equal(slow, values)  # the slow critic starts from the fitted one
    assert logs["critic/real_loss"] < 0.01
    # the clone is the same as without the critic loss (paired comparisons stay paired)
    assert all(torch.equal(v, plain.net.actor.state_dict()[k]) for k, v in grounded.net.actor.state_dict().items())
    update = grounded.imagination_step()
    assert update["critic/real_loss"] > 0.0
    with pytest.raises(ValueError, match="no rewards"):
        ImaginationTrainer(side_config(critic_real=1.0), SideWorld(), SideData())
    with pytest.raises(ValueError, match="critic_real"):
        side_config(critic_real=-1.0)


def test_offline_states_of_collections_read_together_count_each(
    world_checkpoint: str, collection, tmp_path: Path, one_thread: None
) -> None:
    import shutil

    from avworld.models.imagination import load_world
    from avworld.policies.imagination_train import OfflineLatents

    for name in ("tiny", "again"):  # one collection under two names, read together (data.also)
        shutil.copytree(Path(collection.root) / "avworld" / "tiny-v0", tmp_path / "avworld" / f"{name}-v0")
    world = load_world(world_checkpoint, device="cpu")
    alone = OfflineLatents(world, DataSplit(root=collection.root, name=collection.name, split="train"))
    both = OfflineLatents(world, DataSplit(root=str(tmp_path), name="tiny", also=["again"], split="train"))
    assert alone.by_collection == {"tiny": len(alone)} and both.by_collection == {"tiny": len(alone), "again": len(alone)}
    assert len(both) == 2 * len(alone) and both.recipes["again"] == both.recipes["tiny"] == alone.recipes["tiny"] is not None
    assert torch.equal(both.actions, torch.cat([alone.actions, alone.actions]))
