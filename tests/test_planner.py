"""Planning in imagination: known answers with a perfect model, the STOP rule, proposals and values, batched imagination."""

from __future__ import annotations

import copy
import dataclasses
import functools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from avworld.envs.audio_nav import AudioNavEnv
from avworld.eval.navigation import evaluate_navigation
from avworld.models.imagination import Imagination, load_world
from avworld.models.pretrained import provenance_recipe
from avworld.policies import OraclePolicy
from avworld.policies.planner import MOVES, BeamConfig, BeamPlanner, CEMConfig, CEMPlanner
from avworld.policies.worlds import (
    REAL_ENV,
    STOP,
    ImaginedWorld,
    PlanningWorld,
    RealWorldModel,
    Transition,
    collection_source,
    stage_data,
    training_data,
    world_model_source,
    world_source,
    world_training_data,
)
from avworld.sim.backends.base import Action
from avworld.sim.scenes.scene import AgentStart, SoundSource
from tests.conftest import box

PLANNERS = {
    "beam": lambda **kw: BeamPlanner(world=RealWorldModel(), horizon=6, beam=8, **kw),
    "cem": lambda **kw: CEMPlanner(world=RealWorldModel(), horizon=6, samples=128, elites=12, iterations=4, **kw),
}


def real_env(start: tuple[float, float], source: tuple[float, float], yaw: float = 0.0) -> AudioNavEnv:
    """A 6 × 4 m empty room, the agent at ``start`` facing ``yaw``, the source at ``source``; no sound (navigation only)."""
    scene = dataclasses.replace(box(6.0, 4.0), start=AgentStart(start, yaw), sources=(SoundSource(source, "telephone"),))
    return AudioNavEnv(scene=scene, sensors=("rgb",))


# The best return within 6 steps is unambiguous in each: a source 1.2 m to the left (right) is reached soonest by turning
# left (right) and walking; one 3.5 m ahead by walking; one 0.6 m behind, within the 1 m success distance, by stopping now.
CASES = {
    "source to the left": ((1.0, 1.0), (1.0, 2.2), Action.TURN_LEFT),
    "source to the right": ((1.0, 3.0), (1.0, 1.8), Action.TURN_RIGHT),
    "source ahead": ((1.0, 2.0), (4.5, 2.0), Action.FORWARD),
    "source reached": ((1.0, 2.0), (0.4, 2.0), Action.STOP),
}


@pytest.mark.parametrize("planner", PLANNERS)
@pytest.mark.parametrize("case", CASES)
def test_a_perfect_model_gives_the_oracle_action(planner: str, case: str) -> None:
    start, source, expected = CASES[case]
    env = real_env(start, source)
    obs, info = env.reset(seed=0)
    oracle, agent = OraclePolicy(), PLANNERS[planner]()
    oracle.reset(env)
    agent.reset(env, seed=0)
    assert oracle.act(obs, info) == expected
    assert agent.act(obs, info) == expected


def test_the_perfect_model_hears_the_real_future() -> None:
    sensors = ("rgb", "audio", "spectrogram")
    env, untouched = (AudioNavEnv(split="test", sensors=sensors) for _ in range(2))
    obs, info = env.reset(seed=3)
    untouched.reset(seed=3)
    world = RealWorldModel()
    world.reset(env, seed=0)
    world.observe(obs, info)
    walk = [Action.FORWARD, Action.TURN_LEFT, Action.FORWARD]
    roll = world.rollout(np.array([walk, [Action.TURN_RIGHT] * 3]))
    imagined = world.observations(roll.state)
    for action in walk:
        real, *_ = env.step(action)
        assert np.array_equal(real["audio"], untouched.step(action)[0]["audio"])  # branching changed nothing real
    for key in sensors:
        assert np.array_equal(imagined[key][0], real[key]), key  # the branch walked is the real future, sound included
    assert not np.allclose(imagined["audio"][1], real["audio"])  # the other branch hears its own
    assert imagined["spectrogram"].shape == (2, *real["spectrogram"].shape)


def test_stop_is_chosen_only_when_success_is_predicted() -> None:
    env = real_env((1.0, 1.0), (1.0, 2.2))  # 1.2 m away: STOP would fail (reward −0.01, like a turn)
    obs, info = env.reset(seed=0)
    for planner in (BeamPlanner(world=RealWorldModel(), horizon=1), CEMPlanner(world=RealWorldModel(), horizon=1, samples=16, elites=4)):
        planner.reset(env, seed=0)
        assert planner.act(obs, info) in (Action.TURN_LEFT, Action.TURN_RIGHT)
    careless = BeamPlanner(world=RealWorldModel(), horizon=1, stop_reward=-1.0)  # every STOP "succeeds": it ties the turns, found first
    careless.reset(env, seed=0)
    assert careless.act(obs, info) == Action.STOP


class ChainWorld(PlanningWorld):
    """A known-answer world: a position on a line; FORWARD +1, TURN_LEFT −1, TURN_RIGHT stays; −0.01 per step, +10 for
    STOP at ``goal``. Observations: ``position`` (B,)."""

    def __init__(self, goal: int) -> None:
        self.goal = goal

    def reset(self, env: Any, seed: int | None) -> None:
        pass

    def observe(self, observation: dict[str, np.ndarray], info: dict[str, Any]) -> None:
        self.start = int(observation["position"])

    def root(self) -> np.ndarray:
        return np.array([self.start])

    def take(self, state: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return state[rows]

    def step(self, state: np.ndarray, actions: np.ndarray) -> Transition:
        moved = state + (actions == Action.FORWARD) - (actions == Action.TURN_LEFT)
        stop = actions == STOP
        return Transition(moved, -0.01 + 10.0 * (stop & (moved == self.goal)), stop)

    def observations(self, state: np.ndarray) -> dict[str, np.ndarray]:
        return {"position": state}


class Proposal:
    """A proposal policy: fixed action probabilities and value −|goal − position|; records the batch sizes it scores."""

    def __init__(self, probs: list[float], goal: int = -3) -> None:
        self.probs, self.goal, self.batches = np.array(probs), goal, []

    def reset(self, env: Any, seed: int | None = None) -> None:
        pass

    def action_probs(self, observations: dict[str, np.ndarray]) -> np.ndarray:
        self.batches.append(len(observations["position"]))
        return np.tile(self.probs, (len(observations["position"]), 1))

    def value(self, observations: dict[str, np.ndarray]) -> np.ndarray:
        return -np.abs(self.goal - observations["position"]).astype(float)


def _act(planner: BeamPlanner | CEMPlanner, position: int = 0) -> int:
    planner.reset(None, seed=0)
    return planner.act({"position": np.array(position)}, {})


def test_the_proposal_decides_stop_under_its_stop_rule() -> None:
    stopper = Proposal([0.7, 0.1, 0.1, 0.1], goal=3)
    assert _act(BeamPlanner(world=ChainWorld(goal=0), horizon=2, proposal=stopper, stop_rule="proposal")) == Action.STOP
    assert stopper.batches == [1]  # STOP decided at the root: no search
    walker = Proposal([0.4, 0.6, 0.0, 0.0], goal=0)  # prefers FORWARD; the world would pay +10 for STOP here (goal = 0)
    assert _act(BeamPlanner(world=ChainWorld(goal=0), horizon=2, proposal=walker)) == Action.STOP
    for planner in (BeamPlanner, CEMPlanner):
        assert _act(planner(world=ChainWorld(goal=0), horizon=2, proposal=walker, stop_rule="proposal")) != Action.STOP
    chooser = Proposal([0.1, 0.5, 0.4, 0.0], goal=0)
    _act(BeamPlanner(world=ChainWorld(goal=0), horizon=1, candidates=2, proposal=chooser, stop_rule="proposal"))
    assert chooser.batches == [1]  # the root judged once, for the STOP decision and the candidates both
    stepped: list[np.ndarray] = []

    class Recording(ChainWorld):
        def step(self, state: np.ndarray, actions: np.ndarray) -> Transition:
            stepped.append(np.asarray(actions))
            return super().step(state, actions)

    _act(BeamPlanner(world=Recording(goal=0), horizon=2, beam=2, candidates=2, proposal=chooser, stop_rule="proposal"))
    assert len(stepped) == 2 and not any((a == Action.STOP).any() for a in stepped)  # imagined STOPs would be pruned: none imagined
    assert [len(a) for a in stepped] == [2, 4]
    with pytest.raises(ValueError, match="stop_rule"):
        BeamPlanner(world=ChainWorld(goal=0), stop_rule="proposal")  # no proposal
    with pytest.raises(ValueError, match="stop_rule"):
        BeamPlanner(world=ChainWorld(goal=0), proposal=walker, stop_rule="never")


def test_values_score_the_leaves_and_proposals_pick_the_candidates() -> None:
    assert _act(BeamPlanner(world=ChainWorld(goal=-3), horizon=1)) == Action.FORWARD  # all moves cost −0.01: the first wins
    uniform = [0.25] * 4
    assert _act(BeamPlanner(world=ChainWorld(goal=-3), horizon=1, proposal=Proposal(uniform))) == Action.TURN_LEFT  # toward the goal
    assert _act(BeamPlanner(world=ChainWorld(goal=-3), horizon=1, proposal=Proposal(uniform), use_value=False)) == Action.FORWARD
    assert _act(CEMPlanner(world=ChainWorld(goal=-3), horizon=2, proposal=Proposal(uniform))) == Action.TURN_LEFT
    assert _act(BeamPlanner(world=ChainWorld(goal=-3), horizon=3), position=-2) == Action.TURN_LEFT  # one step, then STOP: +10
    right = Proposal([0.1, 0.3, 0.2, 0.4], goal=3)  # moves by preference: TURN_RIGHT, FORWARD, TURN_LEFT; the goal ahead
    assert _act(BeamPlanner(world=ChainWorld(goal=3), horizon=2, candidates=1, proposal=right)) == Action.TURN_RIGHT  # its only move
    assert _act(BeamPlanner(world=ChainWorld(goal=3), horizon=2, candidates=2, proposal=right)) == Action.FORWARD  # valued higher
    assert right.batches == [1, 1, 1, 2]  # per plan: the root, then the live nodes of depth 1 (1, then 2 moves tried)


def test_the_prior_lets_the_search_overrule_the_proposal_only_by_a_large_enough_advantage() -> None:
    # At 0 with the goal at −3 the search values TURN_LEFT (to −1: −2.01) one above TURN_RIGHT (stays: −3.01); the
    # proposal prefers TURN_RIGHT by log(0.9 / 0.08) = 2.42 nats, so the search wins below τ = 1 / 2.42 ≈ 0.41.
    stubborn = [0.01, 0.01, 0.08, 0.9]
    for planner in (BeamPlanner, CEMPlanner):
        make = functools.partial(planner, world=ChainWorld(goal=-3), horizon=1)
        assert _act(make(proposal=Proposal(stubborn))) == Action.TURN_LEFT  # τ = 0: the plan alone
        assert _act(make(proposal=Proposal(stubborn), prior=0.3)) == Action.TURN_LEFT
        assert _act(make(proposal=Proposal(stubborn), prior=0.5)) == Action.TURN_RIGHT
        assert _act(make(proposal=Proposal(stubborn), prior=100.0)) == Action.TURN_RIGHT  # τ → ∞: the proposal's move
    with pytest.raises(ValueError, match="prior"):
        BeamPlanner(world=ChainWorld(goal=0), prior=0.5)  # no proposal to weigh
    with pytest.raises(ValueError, match="prior"):
        BeamPlanner(world=ChainWorld(goal=0), proposal=Proposal(stubborn), prior=-1.0)


def test_sampling_draws_from_the_improved_policy() -> None:
    probs = np.array([0.01, 0.01, 0.08, 0.9])
    q = np.array([-np.inf, -4.01, -2.01, -3.01])  # one step from 0, goal −3: FORWARD to 1, TURN_LEFT to −1, TURN_RIGHT stays
    for tau in (0.3, 1.0):
        improved = probs * np.exp((q - q.max()) / tau)
        improved /= improved.sum()
        planner = BeamPlanner(world=ChainWorld(goal=-3), horizon=1, proposal=Proposal(probs.tolist()), prior=tau, choice="sample")
        draws = [_act(planner) for _ in range(2)]
        assert draws[0] == draws[1]  # the same episode seed, the same draw
        planner.reset(None, seed=0)
        counts = np.bincount([planner.act({"position": np.array(0)}, {}) for _ in range(600)], minlength=4) / 600
        assert np.abs(counts - improved).max() < 0.06, (tau, counts, improved)  # 3 σ of a frequency near 0.5 over 600 draws
    walker = Proposal([0.3, 0.7, 0.0, 0.0])
    stopper = BeamPlanner(world=ChainWorld(goal=0), horizon=1, proposal=walker, prior=1.0, choice="sample", stop_rule="proposal")
    stopper.reset(None, seed=0)
    stops = np.mean([stopper.act({"position": np.array(0)}, {}) == STOP for _ in range(600)])
    assert abs(stops - 0.3) < 0.06  # the proposal's STOP is drawn with its probability, as a sampling policy would
    with pytest.raises(ValueError, match="prior"):
        BeamPlanner(world=ChainWorld(goal=0), proposal=Proposal(probs.tolist()), choice="sample")
    with pytest.raises(ValueError, match="choice"):
        BeamPlanner(world=ChainWorld(goal=0), proposal=Proposal(probs.tolist()), prior=1.0, choice="best")


def test_a_committed_plan_is_followed_before_the_next_search() -> None:
    """From position 0 with the goal at 2, the best 3-step plan is FORWARD, FORWARD, STOP. Shown position 0 at every step,
    a planner that searches again each step walks FORWARD for ever; one committed to 3 steps follows its plan to the STOP."""

    def walk(planner: BeamPlanner | CEMPlanner, steps: int) -> tuple[list[int], int]:
        searches = []
        search = planner.plan
        planner.plan = lambda: searches.append(1) or search()  # type: ignore[method-assign]
        planner.reset(None, seed=0)
        return [planner.act({"position": np.array(0)}, {}) for _ in range(steps)], len(searches)

    forward, stop = int(Action.FORWARD), STOP
    assert walk(BeamPlanner(world=ChainWorld(goal=2), horizon=3, beam=64), 3) == ([forward] * 3, 3)
    assert walk(BeamPlanner(world=ChainWorld(goal=2), horizon=3, beam=64, commit=3), 4) == ([forward, forward, stop, forward], 2)
    assert walk(BeamPlanner(world=ChainWorld(goal=2), horizon=3, beam=64, commit=2), 2) == ([forward, forward], 1)
    assert walk(CEMPlanner(world=ChainWorld(goal=1), horizon=2, commit=2), 2) == ([forward, stop], 1)
    with pytest.raises(ValueError, match=r"commit must lie in \[1, horizon = 2\]"):
        BeamPlanner(world=ChainWorld(goal=0), horizon=2, commit=3)


class StackedProposal:
    """A frame-stacked proposal like PPOAgent (``evaluate_after``), 2 frames: prefers TURN_RIGHT, then TURN_LEFT;
    value −|goal − newest position|; records the stacked positions of each call."""

    frame_stack = 2

    def __init__(self, goal: int) -> None:
        self.goal, self.calls = goal, []

    def reset(self, env: Any, seed: int | None = None) -> None:
        pass

    def stack(self, observations: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        positions = [int(o["position"]) for o in observations][-2:]
        return {"position": np.array([positions[:1] * (2 - len(positions)) + positions])}  # (1, 2), padded with the oldest

    def evaluate_after(self, history: list[dict[str, np.ndarray]], nodes: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        x = np.concatenate([self.stack([*history, {"position": p}])["position"] for p in nodes["position"]])
        self.calls.append(x.tolist())
        return np.tile([0.1, 0.2, 0.3, 0.4], (len(x), 1)), -np.abs(self.goal - x[:, -1]).astype(float)


def test_frame_stacked_proposals_see_the_real_history() -> None:
    proposal = StackedProposal(goal=2)
    planner = BeamPlanner(world=ChainWorld(goal=2), horizon=1, candidates=2, proposal=proposal)
    planner.reset(None, seed=0)
    assert planner.act({"position": np.array(0)}, {}) == Action.TURN_RIGHT  # stays at 0 (value −2) rather than −1 (−3)
    assert planner.act({"position": np.array(1)}, {}) == Action.TURN_RIGHT
    # Per plan: the root (candidates), then the depth-1 nodes TURN_RIGHT and TURN_LEFT (values), each after the real history.
    assert proposal.calls == [[[0, 0]], [[0, 0], [0, -1]], [[0, 1]], [[1, 1], [1, 0]]]


def _count_predict_batches(imagination: Imagination) -> list[int]:
    """Wrap ``imagination.predict`` to record the batch size of each call; the list it fills."""
    batches: list[int] = []
    predict = imagination.predict

    def counted(context: dict[str, torch.Tensor], action: torch.Tensor, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        batches.append(len(action))
        return predict(context, action, *args, **kwargs)

    imagination.predict = counted  # type: ignore[method-assign]
    return batches


def test_imagined_planning_runs_real_episodes_one_predict_call_per_depth(world_checkpoint: str, one_thread: None) -> None:
    env = AudioNavEnv(split="test", sim={"episode": {"max_steps": 3}})
    beam = BeamPlanner(world_checkpoint, horizon=3, beam=2, sampler_steps=1, device="cpu")
    cem = CEMPlanner(world_checkpoint, horizon=2, samples=8, elites=2, iterations=2, sampler_steps=1, device="cpu")
    for planner, calls_per_step in ((beam, [4, 8, 8]), (cem, [8] * 4)):
        world = planner.world
        assert isinstance(world, ImaginedWorld)
        batches = _count_predict_batches(world.imagination)
        result = evaluate_navigation(env, planner, episodes=2, seed=0)
        assert len(result.episodes) == 2 and all(e["num_actions"] == 3 for e in result.episodes)
        assert batches == calls_per_step * 6  # 2 episodes × 3 real steps, each planned with one batched call per depth


class TrainedProposal:
    """A stand-in for a PPO agent: its checkpoint's ``meta`` says what it learned from."""

    def __init__(self, real_steps: int, world_model: str, windows: int, data: dict[str, Any] | None = None) -> None:
        world = {"checkpoint": world_model, "windows": windows} | ({"data": data} if data is not None else {})
        self.meta = {"usage": {"real_steps": real_steps}, "world_model": world}

    def reset(self, env: Any, seed: int | None = None) -> None:
        pass


def test_training_data_counts_each_source_once(world_checkpoint: str) -> None:
    data = Imagination.load(world_checkpoint).meta["data"]
    windows = data["windows"]
    ours = world_source(world_checkpoint, data)  # the collection it was trained on, named in its meta.json
    assert data["recipe"] == provenance_recipe(Imagination.load(world_checkpoint).meta["provenance"]) and len(data["recipe"]) == 16
    assert ours == collection_source("/moved", "renamed", recipe=data["recipe"]) and ours.endswith("(train scenes)")
    assert BeamPlanner(world_checkpoint, device="cpu").training_data == {ours: windows} and windows > 0
    same = TrainedProposal(7, world_checkpoint, windows, data)  # trained in the planner's own world model
    assert BeamPlanner(world_checkpoint, device="cpu", proposal=same).training_data == {ours: windows, REAL_ENV: 7}
    other = TrainedProposal(7, "elsewhere", 50)
    assert CEMPlanner(world_checkpoint, device="cpu", proposal=other).training_data == {
        ours: windows,
        REAL_ENV: 7,
        world_model_source("elsewhere"): 50,
    }
    cloned = TrainedProposal(0, world_checkpoint, windows, data)  # cloned from its own collection and from another one
    cloned.meta["collections"] = [{"root": "/data", "name": "other", "split": "train", "states": 30},
                                  {"root": data["root"], "name": data["name"], "split": "train", "states": windows + 5}]
    assert BeamPlanner(world_checkpoint, device="cpu", proposal=cloned).training_data == {
        ours: windows + 5,  # the world model's windows and the clone's states of the same scenes: once, all of them
        REAL_ENV: 0,
        collection_source("/data", "other"): 30,
    }
    moved = TrainedProposal(0, world_checkpoint, windows, data)  # cloned from the same recipe collected elsewhere
    moved.meta["collections"] = [{"root": "/copy", "name": "again", "split": "train", "states": windows + 9, "recipe": data["recipe"]}]
    assert BeamPlanner(world_checkpoint, device="cpu", proposal=moved).training_data == {ours: windows + 9, REAL_ENV: 0}
    old = TrainedProposal(0, world_checkpoint, windows)  # a meta from before agents recorded their world's collection
    assert training_data(old) == {REAL_ENV: 0, world_model_source(world_checkpoint): windows}
    assert BeamPlanner(world=RealWorldModel()).training_data == {} == training_data(OraclePolicy())


def test_a_world_model_counts_the_collections_of_all_its_stages(world_checkpoint: str) -> None:
    meta = copy.deepcopy(Imagination.load(world_checkpoint).meta)
    data = meta["data"]
    assert meta["stages"][-1]["data"] == {k: data[k] for k in ("root", "name", "windows", "recipe", "collections")}
    assert data["collections"] == [{"name": data["name"], "windows": data["windows"], "recipe": data["recipe"]}]
    ours = world_source(world_checkpoint, data)
    assert world_training_data(world_checkpoint, meta) == {ours: data["windows"]}
    earlier = {"root": "/pre", "name": "pretrain", "windows": 40, "recipe": "0123456789abcdef"}
    meta["stages"][:0] = [{"stage": "1", "command": "a stage from before stages recorded their data"}, {"stage": "1", "data": earlier}]
    sources = world_training_data(world_checkpoint, meta)
    assert sources == {ours: data["windows"], collection_source("/elsewhere", "pre", recipe=earlier["recipe"]): 40}
    cloned = TrainedProposal(0, world_checkpoint, data["windows"], data)  # an agent trained in that world model records it
    cloned.meta["world_model"]["stages"] = stage_data(meta["stages"])
    assert training_data(cloned) == {REAL_ENV: 0} | sources


def test_a_world_model_counts_each_collection_it_read_together(world_checkpoint: str) -> None:
    meta = copy.deepcopy(Imagination.load(world_checkpoint).meta)
    data = meta["data"]
    ours = world_source(world_checkpoint, data)
    walks = {"name": "walks", "windows": 25, "recipe": "fedcba9876543210"}  # read beside it (data.also=[walks])
    data["collections"] = [{"name": data["name"], "windows": data["windows"], "recipe": data["recipe"]}, walks]
    data["windows"] += 25
    theirs = collection_source(data["root"], "walks", recipe=walks["recipe"])
    assert world_training_data(world_checkpoint, meta) == {ours: data["windows"] - 25, theirs: 25}
    meta["stages"][-1]["data"] = {k: data[k] for k in ("root", "name", "windows", "recipe", "collections")}
    assert world_training_data(world_checkpoint, meta) == {ours: data["windows"] - 25, theirs: 25}
    cloned = TrainedProposal(0, world_checkpoint, data["windows"], {k: data[k] for k in ("root", "name", "recipe", "collections")})
    cloned.meta["world_model"]["stages"] = stage_data(meta["stages"])
    cloned.meta["collections"] = [{"root": "/copy", "name": "walks2", "split": "train", "states": 40, "recipe": walks["recipe"]}]
    assert training_data(cloned) == {REAL_ENV: 0, ours: data["windows"] - 25, theirs: 40}  # the walks once, at the clone's 40


def test_imagined_planning_is_reproducible(world_checkpoint: str, one_thread: None) -> None:
    env = AudioNavEnv(split="test", sim={"episode": {"max_steps": 4}})
    runs = [evaluate_navigation(env, BeamPlanner(world_checkpoint, horizon=2, sampler_steps=1), episodes=1, seed=3).episodes for _ in "ab"]
    assert runs[0] == runs[1]


def test_bf16_decoding_where_the_hardware_does_it(world_checkpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import avworld.models.precision as precision

    plain = Imagination.load(world_checkpoint)
    real = {"rgb": torch.zeros(1, *plain.meta["rgb_shape"], dtype=torch.uint8), "audio": torch.zeros(1, *plain.meta["audio_shape"])}
    latents = {m: z.repeat(3, *[1] * (z.dim() - 1)) + torch.randn(3, *z.shape[1:], generator=torch.Generator().manual_seed(0))
               for m, z in plain.encode(real).items()}  # (3, *latent)
    for native in (True, False):
        monkeypatch.setattr(precision, "cpu_has_bf16", lambda native=native: native)
        fast = BeamPlanner(world_checkpoint, device="cpu", amp=True).world.imagination  # type: ignore[attr-defined]
        assert fast.amp is native and not Imagination.load(world_checkpoint, amp=False).amp
        a, b = plain.decode(latents), fast.decode(latents)
        assert b["rgb"].dtype == torch.uint8 and b["audio"].dtype == torch.float32 and a["rgb"].shape == b["rgb"].shape
        levels = (a["rgb"].int() - b["rgb"].int()).abs()
        assert levels.max() <= 8 and levels.float().mean() < 1.0  # bf16 keeps ~3 significant digits
        assert torch.allclose(a["audio"], b["audio"], atol=0.05 * float(a["audio"].abs().max()) + 1e-4)
        same = torch.equal(a["rgb"], b["rgb"]) and torch.equal(a["audio"], b["audio"])
        assert same is not native  # float32 where bf16 would be emulated; bf16 really ran where it was on


@pytest.mark.parametrize(("name", "cls"), [("planner", BeamPlanner), ("cem", CEMPlanner)])
def test_planners_take_one_config_dataclass_which_the_hydra_configs_fill(name: str, cls: type) -> None:
    import yaml

    settings = yaml.safe_load((Path(__file__).parents[1] / "configs" / "agent" / f"{name}.yaml").read_text())
    for key in ("_target_", "checkpoint", "proposal"):
        del settings[key]
    planner = cls(world=RealWorldModel(), **settings)
    assert planner.config == cls.Config(**settings) and planner.horizon == settings["horizon"]
    assert cls(world=RealWorldModel(), config=cls.Config(**settings)).config == planner.config
    with pytest.raises(ValueError, match="not both"):
        cls(world=RealWorldModel(), config=cls.Config(), horizon=2)
    other = CEMConfig() if cls is BeamPlanner else BeamConfig()
    with pytest.raises(TypeError, match=cls.Config.__name__):
        cls(world=RealWorldModel(), config=other)


def test_bad_arguments_are_named(world_checkpoint: str) -> None:
    with pytest.raises(ValueError, match="checkpoint"):
        BeamPlanner()
    with pytest.raises(ValueError, match="checkpoint"):
        BeamPlanner(world_checkpoint, world=RealWorldModel())
    for kwargs, name in (
        ({"horizon": 0}, "horizon"),
        ({"beam": 0}, "beam"),
        ({"candidates": 4}, "candidates"),
        ({"discount": 0}, "discount"),
    ):
        with pytest.raises(ValueError, match=name):
            BeamPlanner(world=RealWorldModel(), **kwargs)
    with pytest.raises(ValueError, match="elites"):
        CEMPlanner(world=RealWorldModel(), samples=4, elites=5)
    with pytest.raises(TypeError, match="real env"):
        BeamPlanner(world=RealWorldModel()).reset(object())
    world = ImaginedWorld(load_world(world_checkpoint, "cpu"), name=world_checkpoint)
    with pytest.raises(ValueError, match="turn_deg"):
        world.reset(AudioNavEnv(split="test", sim={"agent": {"turn_deg": 10.0}}), seed=0)
    with pytest.raises(ValueError, match="shape"):
        world.observe({"rgb": np.zeros((32, 32, 3), np.uint8), "audio": np.zeros((2, 4000), np.float32)}, {})
    assert set(MOVES) == {Action.FORWARD, Action.TURN_LEFT, Action.TURN_RIGHT}


def test_a_ppo_agent_proposes_and_values_in_imagination(world_checkpoint: str, tmp_path: Path, one_thread: None) -> None:
    from avworld.policies.ppo import AgentTrainConfig, PPOConfig, train_ppo
    from avworld.policies.ppo_agent import PPOAgent

    ppo = PPOConfig(n_steps=8, batch_size=8, n_epochs=1)
    train_ppo(AgentTrainConfig(steps=16, n_envs=2, frame_stack=2, ppo=ppo, checkpoint_every=16, device="cpu"), tmp_path, progress=False)
    agent = PPOAgent(tmp_path / "checkpoint")
    planner = BeamPlanner(world_checkpoint, horizon=2, beam=2, candidates=2, sampler_steps=1, device="cpu", proposal=agent)
    calls = []
    evaluate = agent.evaluate
    agent.evaluate = lambda stacked: calls.append(len(stacked["rgb"])) or evaluate(stacked)  # type: ignore[method-assign]
    result = evaluate_navigation(AudioNavEnv(split="test", sim={"episode": {"max_steps": 2}}), planner, episodes=1, seed=0)
    assert result.episodes[0]["num_actions"] == 2
    assert calls == [1, 2, 4] * 2  # per real step, one call each: the root, the children of depth 1 (2 moves) and 2 (2 nodes × 2)
    assert planner.training_data[REAL_ENV] == 16 and len(planner.training_data) == 2


class LatentChain:
    """:class:`ChainWorld` as an imagination core: the position is a (1, 1, 1) latent, read from the red channel of a 1×1
    frame; context 1; the termination head never fires (STOP ends the episode, as ImaginedWorld rules)."""

    modalities = ("video",)
    context = 1
    device = torch.device("cpu")
    meta = {"rgb_shape": [1, 1, 3], "audio_shape": [2, 4]}

    def __init__(self, goal: int) -> None:
        self.goal = goal

    def observe(self, state: Any, observation: dict[str, torch.Tensor]) -> Any:
        from avworld.models.imagination import ImaginedState

        return ImaginedState({"video": observation["rgb"][:, None, :1, :1, :1].float()})  # (B, 1, 1, 1, 1)

    def step(self, state: Any, actions: torch.Tensor, steps: int, generator: torch.Generator) -> Any:
        from avworld.models.imagination import ImaginedStep

        pos = state.latest["video"][:, 0, 0, 0]
        moved = pos + (actions == Action.FORWARD).float() - (actions == Action.TURN_LEFT).float()
        reward = -0.01 + 10.0 * ((actions == STOP) & (moved == self.goal)).float()
        latest = {"video": moved.view(-1, 1, 1, 1)}
        return ImaginedStep(state.push(latest), latest, reward, torch.zeros(len(actions)))


class LatentProposal:
    """A latent proposal like ImaginationAgent: fixed probabilities, value −|goal − position|; records the previous actions."""

    def __init__(self, probs: list[float], goal: int) -> None:
        self.probs, self.goal, self.previous = np.array(probs), goal, []

    def reset(self, env: Any, seed: int | None = None) -> None:
        pass

    def accepts(self, world: Any) -> str | None:
        return None if isinstance(world, LatentChain) else "not a chain"

    def evaluate_latent(self, state: Any, previous: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.previous.append(np.asarray(previous).tolist())
        pos = state.latest["video"][:, 0, 0, 0].numpy()
        return np.tile(self.probs, (len(pos), 1)), -np.abs(self.goal - pos)


def _latent_act(planner: BeamPlanner | CEMPlanner, position: int = 0) -> int:
    planner.reset(None, seed=0)
    return planner.act({"rgb": np.full((1, 1, 3), position, np.uint8)}, {})


def test_an_imagination_agent_proposes_and_values_in_the_latent_space() -> None:
    def world(goal: int) -> ImaginedWorld:
        return ImaginedWorld(LatentChain(goal))  # type: ignore[arg-type]

    uniform = [0.25] * 4
    assert _latent_act(BeamPlanner(world=world(3), horizon=1)) == Action.FORWARD  # all moves cost −0.01: the first wins
    proposal = LatentProposal(uniform, goal=2)
    planner = BeamPlanner(world=world(2), horizon=1, proposal=proposal)
    assert _latent_act(planner, position=4) == Action.TURN_LEFT  # the critic's value at the leaves: toward the goal
    assert proposal.previous == [[int(Action.FORWARD), int(Action.TURN_LEFT), int(Action.TURN_RIGHT)]]  # leaves, by their last action
    assert planner.act({"rgb": np.full((1, 1, 3), 3, np.uint8)}, {}) == Action.TURN_LEFT
    assert _latent_act(BeamPlanner(world=world(2), horizon=1, proposal=proposal, use_value=False), position=4) == Action.FORWARD
    assert _latent_act(CEMPlanner(world=world(2), horizon=2, proposal=LatentProposal(uniform, goal=2)), position=4) == Action.TURN_LEFT
    right = LatentProposal([0.1, 0.3, 0.2, 0.4], goal=9)  # its actor prefers TURN_RIGHT, then FORWARD
    assert _latent_act(BeamPlanner(world=world(9), horizon=2, candidates=1, proposal=right)) == Action.TURN_RIGHT
    assert _latent_act(BeamPlanner(world=world(9), horizon=2, candidates=2, proposal=right)) == Action.FORWARD
    assert right.previous[0] == [4]  # the root: no action yet this episode
    with pytest.raises(ValueError, match="ImaginedWorld"):
        BeamPlanner(world=ChainWorld(goal=0), proposal=proposal)
    stranger = LatentProposal(uniform, goal=0)
    stranger.accepts = lambda world: "another world model's latents"  # type: ignore[method-assign]
    with pytest.raises(ValueError, match="another world model"):
        BeamPlanner(world=world(0), proposal=stranger)


class NoisyChain(LatentChain):
    """:class:`LatentChain` whose imagined reward is drawn: FORWARD earns 0.3 on average, a turn 0, each with noise of
    standard deviation 1 from the world's generator; ``rows`` records the batch size of every imagined step."""

    def __init__(self) -> None:
        super().__init__(goal=99)
        self.rows: list[int] = []

    def step(self, state: Any, actions: torch.Tensor, steps: int, generator: torch.Generator) -> Any:
        step = super().step(state, actions, steps, generator)
        self.rows.append(len(actions))
        noise = torch.randn(len(actions), generator=generator)
        step.reward = 0.3 * (actions == Action.FORWARD).float() + noise
        return step


def test_reward_samples_average_each_nodes_imagined_draws_and_go_on_from_one() -> None:
    chain = NoisyChain()
    world = ImaginedWorld(chain, reward_samples=4)  # type: ignore[arg-type]
    world.reset(None, seed=0)
    world.observe({"rgb": np.full((1, 1, 3), 5, np.uint8)}, {})
    step = world.step(world.take(world.root(), np.zeros(3, np.int64)), np.array(MOVES))
    assert chain.rows == [12] and step.reward.shape == (3,) and len(step.state) == 3  # 3 nodes × 4 draws, 3 nodes on
    assert step.state.latest["video"].flatten().tolist() == [6.0, 4.0, 5.0]  # FORWARD, LEFT, RIGHT from position 5
    generator = torch.Generator().manual_seed(int(np.random.default_rng(0).integers(2**62)))  # the world's, as reset seeds it
    draws = 0.3 * (np.repeat(MOVES, 4) == Action.FORWARD) + torch.randn(12, generator=generator).numpy()
    np.testing.assert_allclose(step.reward, draws.reshape(3, 4).mean(axis=1), rtol=1e-6)

    def forward_share(samples: int) -> float:  # how often the one-step planner finds FORWARD's 0.3 under noise 1
        planner = BeamPlanner(world=ImaginedWorld(NoisyChain(), reward_samples=samples), horizon=1)  # type: ignore[arg-type]
        found = 0
        for seed in range(40):
            planner.reset(None, seed=seed)
            found += planner.act({"rgb": np.full((1, 1, 3), 0, np.uint8)}, {}) == Action.FORWARD
        return found / 40

    assert forward_share(1) < 0.7 and forward_share(400) >= 0.95  # noise 1 / √400 = 0.05 ≪ 0.3: the expectation shows
    with pytest.raises(ValueError, match="reward_samples"):
        ImaginedWorld(chain, reward_samples=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="a world passed in keeps its own"):
        BeamPlanner(world=world, horizon=1, reward_samples=2)
    with pytest.raises(ValueError, match="reward_samples must be ≥ 1"):
        BeamConfig(reward_samples=0)
