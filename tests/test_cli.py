"""Smoke runs of every command with tiny budgets, as a user types them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from avworld.cli import main


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "avworld.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("demo", "eval", "train", "collect", "precompute", "viz", "bench"):
        assert f"  {command}" in out
    assert main(["fly"]) == 2
    assert "unknown command 'fly'" in capsys.readouterr().err


def test_bench_sim_prints_one_json_object(tmp_path: Path) -> None:
    budget = ("sim_bench.steps=50", "sim_bench.render_frames=10", "sim_bench.audio_steps=20", "sim_bench.rirs=2")
    proc = run_cli("bench", "sim", "--json", *budget, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["target"] == "sim" and result["steps"] == 50
    assert result["steps_per_s"] > 0 and result["render_ms"] > 0
    assert result["resolution"] == [64, 64]
    assert result["steps_per_s_audio"] > result["steps_per_s_audio_cold"] > 0  # the second pass finds its responses cached
    assert result["rir_ms"] > 0 and result["audio_samples_per_step"] == 4000


def test_bench_rejects_unknown_targets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "moon"]) == 2
    assert "usage: avworld bench" in capsys.readouterr().err


def test_eval_with_a_preset_and_overrides(tmp_path: Path) -> None:
    proc = run_cli("eval", "agent=random", "sim=avw4k", "eval.episodes=2", f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "navigation.json").read_text())
    assert result["summary"]["episodes"] == 2
    assert result["config"]["sim"]["render"]["width"] == 128


def test_bad_config_field_is_named(tmp_path: Path) -> None:
    proc = run_cli("eval", "+sim.agent.speed=3", "eval.episodes=1", f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode != 0
    assert "speed" in proc.stderr


def test_precompute_fills_the_cache_and_resumes(tmp_path: Path) -> None:
    from avworld.sim.loading import save_scene
    from tests.conftest import box

    scene = tmp_path / "room.json"
    save_scene(box(2.4, 1.6), scene)
    cache = tmp_path / "cache"
    args = ("precompute", f"scene={scene}", "workers=2", f"sim.acoustics.cache_dir={cache}")
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    positions = int(proc.stdout.split(" positions cached")[0].split()[-1])
    files = sorted(cache.rglob("*.npz"))
    assert positions > 50 and len(files) == 2 * positions  # the source and the agent's own sounds
    files[0].unlink()  # as if killed before the last write
    stamp = {f: f.stat().st_mtime_ns for f in files[1:]}
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert files[0].exists() and all(f.stat().st_mtime_ns == t for f, t in stamp.items())  # only the missing one redone


def test_bench_data_prints_one_json_object(tmp_path: Path) -> None:
    budget = (
        "data_bench.episodes=2",
        "data_bench.max_steps=10",
        "data_bench.batches=3",
        "data_bench.batch_size=4",
        "data_bench.loader_workers=0",
    )
    proc = run_cli("bench", "data", "--json", *budget, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["target"] == "data" and result["collect_workers"] == 2
    assert result["collect_steps_per_s"] > 0 and result["windows_per_s"] > 0 and result["collect_steps"] > 0


def test_bench_model_prints_one_json_object(tmp_path: Path) -> None:
    budget = ("model_bench.presets=[tiny]", "model_bench.batches=[1,2]", "model_bench.repeats=1", "model_bench.train_batch=2")
    proc = run_cli("bench", "model", "--json", *budget, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    tiny = result["presets"]["tiny"]
    assert result["target"] == "model" and tiny["parameters"] > 0
    assert tiny["train_samples_per_s"] > 0 and tiny["imagined_steps_per_s_batch2"] > 0
