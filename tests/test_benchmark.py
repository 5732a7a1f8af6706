"""The navigation benchmark: interval arithmetic with known answers, the table, same episodes for every agent, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from avworld.eval.benchmark import (
    AgentRun,
    comparisons,
    format_benchmark_table,
    format_comparison_table,
    mean_interval,
    paired,
    run_benchmark,
    sound_sets,
    summarize,
)
from avworld.eval.navigation import NavigationResult
from avworld.models.imagination import Imagination
from avworld.policies import OraclePolicy, RandomPolicy
from avworld.sim.config import SimConfig
from tests.test_cli import run_cli

T_975_3 = 3.182446305284263
"""Student's t quantile 0.975 with 3 degrees of freedom."""


def test_student_t_interval_with_known_answers() -> None:
    sr = mean_interval([1.0, 0.0, 1.0, 1.0])  # mean 0.75, sample std 0.5, standard error 0.25
    assert sr.mean == 0.75 and sr.n == 4
    assert sr.half_width == pytest.approx(T_975_3 * 0.25)
    assert (sr.low, sr.high) == pytest.approx((0.75 - T_975_3 * 0.25, 0.75 + T_975_3 * 0.25))
    assert mean_interval([2.0, 2.0, 2.0]).as_dict() == {"mean": 2.0, "low": 2.0, "high": 2.0, "half_width": 0.0, "n": 3}
    one = mean_interval([0.4])
    assert one.mean == 0.4 and math.isnan(one.half_width) and one.as_dict()["low"] is None
    assert mean_interval([0.0, 1.0], level=0.5).half_width == pytest.approx(0.5)  # t_{0.75, 1} = 1, s / √2 = 0.5
    with pytest.raises(ValueError, match="empty"):
        mean_interval([])
    with pytest.raises(ValueError, match="level"):
        mean_interval([1.0, 2.0], level=1.0)


EPISODES = [
    {"success": 1.0, "spl": 0.8, "sna": 0.6, "dtg": 0.5},
    {"success": 0.0, "spl": 0.0, "sna": 0.0, "dtg": 3.5},
    {"success": 1.0, "spl": 1.0, "sna": 0.9, "dtg": 0.8},
    {"success": 1.0, "spl": 0.6, "sna": 0.5, "dtg": 0.2},
]


def test_summary_and_table() -> None:
    summary = summarize(NavigationResult(EPISODES))
    assert {k: round(v.mean, 6) for k, v in summary.items()} == {"SR": 0.75, "SPL": 0.6, "SNA": 0.5, "DTG": 1.25}
    assert summary["SR"].half_width == pytest.approx(T_975_3 * 0.25)
    runs = {
        "oracle": AgentRun({}, {"heard": NavigationResult(EPISODES), "unheard": NavigationResult(EPISODES[:1])}),
        "planner": AgentRun({"world model /a": 12_000, "real env": 345}, {"heard": NavigationResult(EPISODES)}),
    }
    lines = format_benchmark_table(runs).splitlines()
    assert lines[0] == "| sounds | agent | episodes | SR | SPL | SNA | DTG (m) | real env steps |"
    assert [line.split(" | ")[:2] for line in lines[2:5]] == [["| heard", "oracle"], ["| heard", "planner"], ["| unheard", "oracle"]]
    assert lines[2].startswith("| heard | oracle | 4 | 0.750 ± 0.796 | 0.600 ± ")
    assert lines[3].endswith(" | 12,345 |")
    assert "| 1.000 ± n/a |" in lines[4]
    assert "95% Student-t" in lines[-1]


def test_paired_differences_with_known_answers() -> None:
    better = [dict(e, spl=e["spl"] + d) for e, d in zip(EPISODES, (0.1, 0.1, 0.1, 0.2), strict=True)]
    diff = paired(NavigationResult(better), NavigationResult(EPISODES))
    assert diff["SPL"].mean == pytest.approx(0.125) and diff["SR"].mean == 0.0 and diff["SR"].half_width == 0.0
    # differences 0.1, 0.1, 0.1, 0.2: sample std 0.05, so the half-width is t · 0.05 / 2; the episodes' own spread
    # (SPL 0.0 to 1.0) is gone, while the unpaired intervals of the two agents overlap almost entirely
    assert diff["SPL"].half_width == pytest.approx(T_975_3 * 0.05 / 2)
    assert diff["SPL"].low > 0 and summarize(NavigationResult(EPISODES))["SPL"].high > summarize(NavigationResult(better))["SPL"].low
    runs = {"a": AgentRun({}, {"heard": NavigationResult(better)}), "b": AgentRun({}, {"heard": NavigationResult(EPISODES)})}
    compared = comparisons(runs, [["a", "b"]])
    assert list(compared) == ["a - b"] and compared["a - b"]["heard"]["SPL"] == diff["SPL"]
    lines = format_comparison_table(compared).splitlines()
    assert lines[2].startswith("| heard | a - b | 4 | 0.000 ± 0.000 | 0.125 ± 0.080 | ")
    with pytest.raises(ValueError, match="same episodes"):
        paired(NavigationResult(EPISODES), NavigationResult(EPISODES[:2]))
    with pytest.raises(ValueError, match=r"compare: .*got \['a', 'c'\]"):
        comparisons(runs, [["a", "c"]])


def test_every_agent_gets_the_same_episodes() -> None:
    sim = SimConfig.from_dict({"episode": {"max_steps": 5}})
    seen: list[tuple[str, str, int]] = []
    runs = run_benchmark(
        {"random": RandomPolicy(), "oracle": OraclePolicy()},
        sim,
        episodes=2,
        seed=5,
        sensors=("rgb",),
        on_episode=lambda *a: seen.append(a[:3]),
    )
    assert seen == [(agent, s, i) for s in ("heard", "unheard") for agent in ("random", "oracle") for i in range(2)]
    scenes = {(n, s): [e["scene_seed"] for e in r.episodes] for n, run in runs.items() for s, r in run.results.items()}
    assert len(set(map(tuple, scenes.values()))) == 1 and all(r.real_steps == 0 for r in runs.values())
    starts = {n: [e["geodesic_start"] for e in run.results["heard"].episodes] for n, run in runs.items()}
    assert starts["random"] == starts["oracle"]
    with pytest.raises(ValueError, match="sounds"):
        run_benchmark({"random": RandomPolicy()}, sim, sounds=("loud",))


def test_a_resumed_benchmark_ends_as_an_uninterrupted_one() -> None:
    sim = SimConfig.from_dict({"episode": {"max_steps": 5}})
    agents = {"random": RandomPolicy()}
    whole = run_benchmark(agents, sim, episodes=3, seed=2, sensors=("rgb",))["random"].results
    seen: list[tuple[str, str, int]] = []
    done = {"random": {"heard": whole["heard"].episodes, "unheard": whole["unheard"].episodes[:1]}}
    resumed = run_benchmark(agents, sim, episodes=3, seed=2, sensors=("rgb",), on_episode=lambda *a: seen.append(a[:3]), done=done)
    assert seen == [("random", "unheard", 1), ("random", "unheard", 2)]  # only what was missing ran
    assert {s: r.episodes for s, r in resumed["random"].results.items()} == {s: r.episodes for s, r in whole.items()}


def test_a_refused_resume_names_each_differing_setting() -> None:
    from avworld.cli_eval import _differences

    saved = {"horizon": 1, "proposal": {"path": "a", "deterministic": False}}
    mine = {"horizon": 1, "proposal": {"path": "b", "deterministic": False}, "reward_samples": 1}
    assert _differences(saved, mine, "nav.agents.plan") == [
        'nav.agents.plan.proposal.path: recorded "a", now "b"',
        "nav.agents.plan.reward_samples: recorded unset, now 1",
    ]
    assert _differences(saved, dict(saved), "x") == [] and _differences(None, 2, "x") == ["x: recorded null, now 2"]


def test_a_resume_accepts_settings_a_code_update_added_at_their_defaults() -> None:
    from avworld.cli_eval import _only_new_defaults, agent_defaults
    from avworld.policies.planner import BeamConfig

    saved = {"_target_": "avworld.policies.planner.BeamPlanner", "horizon": 1, "prior": 0.3}
    assert agent_defaults(saved)["reward_samples"] == BeamConfig().reward_samples == 1  # the Config dataclass's default
    assert _only_new_defaults(saved, saved | {"reward_samples": 1})  # added since the run began, as it behaved before
    assert not _only_new_defaults(saved, saved | {"reward_samples": 4})  # a new value: other behaviour
    assert not _only_new_defaults(saved, saved | {"horizon": 2, "reward_samples": 1})  # a recorded setting changed
    assert not _only_new_defaults(saved | {"reward_samples": 1}, saved)  # a recorded setting gone
    assert not _only_new_defaults(saved, saved | {"unknown_key": 1})  # not a setting of the agent: no default known
    oracle = {"_target_": "avworld.policies.OraclePolicy"}
    assert _only_new_defaults(oracle, oracle | {"lookahead": agent_defaults(oracle)["lookahead"]})  # keyword defaults
    assert agent_defaults({"_target_": "no.such.Agent"}) == {}


def test_user_scenes_name_their_sounds_so_they_run_once() -> None:
    sim = SimConfig.from_dict({"episode": {"max_steps": 3}})
    scene = Path(__file__).parents[1] / "examples" / "scenes" / "corridor.json"
    seen: list[tuple[object, ...]] = []
    runs = run_benchmark({"random": RandomPolicy()}, sim, episodes=2, sensors=("rgb",), on_episode=lambda *a: seen.append(a), scene=scene)
    assert list(runs["random"].results) == ["scene"] and [s for _, s, _, _ in seen] == ["scene", "scene"]
    assert sound_sets(["heard", "unheard"]) == ["heard", "unheard"] and sound_sets(["heard"], scene=scene) == ["scene"]
    with pytest.raises(ValueError, match="sounds"):
        sound_sets(["loud"], scene=scene)


def test_avworld_eval_nav_writes_the_benchmark(world_checkpoint: str, tmp_path: Path) -> None:
    tiny = (
        "nav.episodes=2",
        "sim.episode.max_steps=3",
        "nav.run=[random,oracle,planner,cem]",
        "nav.agents.planner.horizon=2",
        "nav.agents.planner.sampler_steps=1",
        "nav.agents.cem.horizon=2",
        "nav.agents.cem.samples=8",
        "nav.agents.cem.elites=2",
        "nav.agents.cem.iterations=1",
        "nav.agents.cem.sampler_steps=1",
        "nav.compare=[[planner,random],[cem,planner]]",
    )
    proc = run_cli("eval", "benchmark", f"world_model={world_checkpoint}", *tiny, f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "navigation_benchmark.json").read_text())
    agents = result["agents"]
    assert list(agents) == ["random", "oracle", "planner", "cem"]
    windows = Imagination.load(world_checkpoint).meta["data"]["windows"]
    assert {k: a["real_steps"] for k, a in agents.items()} == {"random": 0, "oracle": 0, "planner": windows, "cem": windows}
    for agent in agents.values():
        assert set(agent["sounds"]) == {"heard", "unheard"}
        heard = agent["sounds"]["heard"]
        assert heard["summary"]["SR"]["n"] == 2 and len(heard["episodes"]) == 2
    assert result["settings"]["agents"]["planner"]["checkpoint"] == world_checkpoint
    # header rule + 4 agents × 2 sound sets, then header, rule and 2 pairs × 2 sound sets of the paired table
    assert result["table"] in proc.stdout and result["table"].count("\n| ") == 9 + 6
    recorded = json.loads((tmp_path / "benchmark_episodes.json").read_text())["done"]
    assert {n: {s: r["episodes"] for s, r in a["sounds"].items()} for n, a in agents.items()} == recorded  # every episode run
    spl = [e["spl"] for e in agents["planner"]["sounds"]["unheard"]["episodes"]]
    spl_random = [e["spl"] for e in agents["random"]["sounds"]["unheard"]["episodes"]]
    assert result["paired"]["planner - random"]["unheard"]["SPL"]["mean"] == pytest.approx((sum(spl) - sum(spl_random)) / 2)
    assert set(result["paired"]) == {"planner - random", "cem - planner"}
    # rerun in the same directory with one episode more: only the third episodes run, the first two are those recorded
    more = ("nav.run=[random,oracle]", "nav.episodes=3", "sim.episode.max_steps=3", f"world_model={world_checkpoint}")
    proc = run_cli("eval", "benchmark", *more, f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "continuing from the episodes recorded in" in proc.stdout
    extended = json.loads((tmp_path / "navigation_benchmark.json").read_text())["agents"]
    assert extended["random"]["sounds"]["heard"]["episodes"][:2] == agents["random"]["sounds"]["heard"]["episodes"]
    assert len(extended["oracle"]["sounds"]["unheard"]["episodes"]) == 3
    assert set(json.loads((tmp_path / "benchmark_episodes.json").read_text())["done"]) == {"random", "oracle", "planner", "cem"}
    proc = run_cli("eval", "benchmark", *more, "nav.seed=1", f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode != 0 and "benchmark_episodes.json: a benchmark with another seed ran in this output directory" in proc.stderr
    proc = run_cli("eval", "benchmark", *more, "nav.agents.oracle.lookahead=2.0", f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode != 0
    assert "ran agent 'oracle' with other settings (nav.agents.oracle.lookahead: recorded 1.5, now 2.0)" in proc.stderr

    bad = f"hydra.run.dir={tmp_path / 'bad'}"
    proc = run_cli("eval", "benchmark", "nav.run=[random]", "nav.compare=[[random,oracle]]", bad, cwd=tmp_path)
    assert proc.returncode != 0 and "nav.compare" in proc.stderr and "oracle" in proc.stderr
    proc = run_cli("eval", "benchmark", "nav.run=[random,planner]", f"hydra.run.dir={tmp_path / 'bad'}", cwd=tmp_path)
    assert proc.returncode != 0 and "world_model=DIR" in proc.stderr
    proc = run_cli("eval", "benchmark", "nav.run=[ppo]", f"hydra.run.dir={tmp_path / 'bad'}", cwd=tmp_path)
    assert proc.returncode != 0 and "+agent@nav.agents.ppo=FILE" in proc.stderr
    perfect = ("nav.agents.planner.checkpoint=null", "+nav.agents.planner.world={_target_: avworld.policies.worlds.RealWorldModel}")
    tiny = ("nav.run=[planner]", "nav.episodes=1", "sim.episode.max_steps=3", "nav.agents.planner.horizon=1")
    proc = run_cli("eval", "benchmark", *tiny, *perfect, f"hydra.run.dir={tmp_path / 'perfect'}", cwd=tmp_path)  # no world_model needed
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "perfect" / "navigation_benchmark.json").read_text())["agents"]["planner"]["real_steps"] == 0


# -- speed benchmarks: synchronised GPU timing, FLOPs and MFU -------------------------------------


def test_timed_calls_wait_for_the_gpu_at_both_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from avworld.bench import model as bench_model

    events: list[str] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: events.append("sync"))
    bench_model.time_call(lambda: events.append("call"), repeats=3, device=torch.device("cuda"), warmup=2)
    assert events == ["call", "call", "sync", "call", "call", "call", "sync"]  # warm-up, sync, timed calls, sync
    events.clear()
    bench_model.time_call(lambda: events.append("call"), repeats=2, device=torch.device("cpu"))
    assert events == ["call"] * 3  # nothing to wait for on the CPU


def test_peak_and_mfu_of_the_model_bench() -> None:
    import torch

    from avworld.bench import model as bench_model
    from avworld.models.av_cdit import AV_CDIT_PRESETS, forward_flops

    assert bench_model.chip_peak(torch.device("cpu"), "bf16") is None
    assert bench_model.chip_peak(torch.device("cpu"), "bf16", given=2.5) == 2.5
    assert bench_model.PEAK_TFLOPS["H200"]["bf16"] == 989.0
    result = bench_model.run(
        presets=("tiny",), train_batch=2, batches=(1, 3), repeats=1, precisions=("fp32", "bf16"), peak_tflops=1.0, device="cpu"
    )
    tiny = result["presets"]["tiny"]
    flops = forward_flops(AV_CDIT_PRESETS["tiny"])
    assert tiny["flops_per_sample"] == {
        "train_step": 3 * (flops["context"] + flops["target"]),
        "imagined_step": flops["context"] + 4 * flops["target"],
    }
    for suffix in ("", "_bf16"):
        assert tiny[f"train_mfu{suffix}"] == pytest.approx(
            tiny[f"train_samples_per_s{suffix}"] * tiny["flops_per_sample"]["train_step"] / 1e12
        )
        for b in (1, 3):
            rate, ms = tiny[f"imagined_steps_per_s_batch{b}{suffix}"], tiny[f"imagined_step_ms_batch{b}{suffix}"]
            assert rate == pytest.approx(b / (ms / 1e3))
            assert tiny[f"imagined_mfu_batch{b}{suffix}"] == pytest.approx(rate * tiny["flops_per_sample"]["imagined_step"] / 1e12)
    assert result["peak_tflops"] == {"fp32": 1.0, "bf16": 1.0} and result["device"] == "cpu"
    assert bench_model.run(presets=("tiny",), train_batch=2, batches=(), repeats=1, device="cpu")["presets"]["tiny"]["train_mfu"] is None
    with pytest.raises(ValueError, match="precision"):
        bench_model.run(presets=("tiny",), train_batch=2, batches=(), repeats=1, precisions=("fp16",), device="cpu")
