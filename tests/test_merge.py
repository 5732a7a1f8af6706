"""avworld eval merge: benchmarks run apart in one table, paired only where they ran the same episodes."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from avworld.eval.benchmark import benchmark_json, comparisons, run_benchmark
from avworld.eval.merge import merge_benchmarks, read_benchmark
from avworld.policies import OraclePolicy, RandomPolicy
from avworld.sim.config import SimConfig
from tests.test_cli import run_cli


def benchmark_file(tmp_path: Path, name: str, policy: Any, seed: int = 0) -> Path:
    """A benchmark file of one agent as `avworld eval benchmark` writes it: 3 short episodes per sound set from ``seed``."""
    sim = SimConfig.from_dict({"episode": {"max_steps": 4}})
    runs = run_benchmark({name: policy}, sim, episodes=3, seed=seed, sensors=("rgb",))
    nav = {"split": "test", "seed": seed, "sensors": ["rgb"], "run": [name]}
    config = {"sim": {"episode": {"max_steps": 4}}, "nav": nav, "scene": None}
    path = tmp_path / f"{name}_{seed}.json"
    path.write_text(json.dumps({"config": config, "settings": {"agents": {name: {"kind": name}}}, "agents": benchmark_json(runs)}))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("merge")
    return {
        "random": benchmark_file(tmp, "random", RandomPolicy()),
        "oracle": benchmark_file(tmp, "oracle", OraclePolicy()),
        "oracle_seed1": benchmark_file(tmp, "oracle", OraclePolicy(), seed=1),
    }


def test_runs_apart_pair_as_if_run_together(files: dict[str, Path]) -> None:
    runs = merge_benchmarks({str(p): read_benchmark(p) for p in (files["random"], files["oracle"])})
    assert list(runs) == ["random", "oracle"] and set(runs["oracle"].results) == {"heard", "unheard"}
    spl = comparisons(runs, [["oracle", "random"]])["oracle - random"]["heard"]["SPL"]
    oracle, rand = (json.loads(files[n].read_text())["agents"][n]["sounds"]["heard"]["episodes"] for n in ("oracle", "random"))
    assert spl.n == 3 and spl.mean == pytest.approx(sum(a["spl"] - b["spl"] for a, b in zip(oracle, rand, strict=True)) / 3)
    again = merge_benchmarks({str(p): read_benchmark(p) for p in (files["random"], files["oracle"], files["oracle"])})
    assert list(again) == ["random", "oracle"]  # the same agent with the same episodes is kept once


def test_other_episodes_are_refused(files: dict[str, Path], tmp_path: Path) -> None:
    docs = {str(p): read_benchmark(p) for p in (files["random"], files["oracle_seed1"])}
    with pytest.raises(ValueError, match=r"oracle_1\.json: config\.nav\.seed differs"):
        merge_benchmarks(docs)
    # the settings agree but an episode does not: caught episode by episode
    doc = copy.deepcopy(read_benchmark(files["oracle"]))
    doc["agents"]["oracle"]["sounds"]["unheard"]["episodes"][2]["scene_seed"] += 1
    with pytest.raises(ValueError, match="unheard episode 2 is not 'random'"):
        merge_benchmarks({str(files["random"]): read_benchmark(files["random"]), "edited.json": doc})
    # one agent name, other results
    doc = copy.deepcopy(read_benchmark(files["oracle"]))
    doc["agents"]["oracle"]["sounds"]["heard"]["episodes"][0]["spl"] = 0.123
    with pytest.raises(ValueError, match=r"'oracle' is also in .*oracle_0\.json with other episodes"):
        merge_benchmarks({str(files["oracle"]): read_benchmark(files["oracle"]), "edited.json": doc})


def test_malformed_files_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json: not a JSON benchmark file"):
        read_benchmark(bad)
    bad.write_text(json.dumps({"config": {}, "agents": {"a": {"sounds": {"heard": {"episodes": [{"success": 1.0}]}}}}}))
    with pytest.raises(ValueError, match=r"bad\.json: agents.a.sounds.heard.episodes\[0\] lacks spl, sna, dtg, scene_seed"):
        read_benchmark(bad)
    with pytest.raises(FileNotFoundError, match=r"missing\.json: no such benchmark file"):
        read_benchmark(tmp_path / "missing.json")


def test_avworld_eval_merge_writes_one_table(files: dict[str, Path], tmp_path: Path) -> None:
    inputs = f"inputs=[{files['random']},{files['oracle']}]"
    proc = run_cli("eval", "merge", inputs, "compare=[[oracle,random]]", f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    merged = json.loads((tmp_path / "navigation_benchmark.json").read_text())
    assert list(merged["agents"]) == ["random", "oracle"] and merged["config"]["nav"]["run"] == ["random", "oracle"]
    assert merged["settings"]["merged_from"] == [str(files["random"]), str(files["oracle"])]
    assert merged["settings"]["agents"] == {"random": {"kind": "random"}, "oracle": {"kind": "oracle"}}
    assert set(merged["paired"]["oracle - random"]) == {"heard", "unheard"} and "| heard | oracle - random | 3 |" in merged["table"]
    # a merged file merges again, with the same pairs
    again = tmp_path / "again"
    inputs = f"inputs=[{tmp_path / 'navigation_benchmark.json'}]"
    proc = run_cli("eval", "merge", inputs, "compare=[[oracle,random]]", f"hydra.run.dir={again}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((again / "navigation_benchmark.json").read_text())["paired"] == merged["paired"]
    proc = run_cli("eval", "merge", f"hydra.run.dir={tmp_path / 'none'}", cwd=tmp_path)
    assert proc.returncode != 0 and "inputs" in proc.stderr
