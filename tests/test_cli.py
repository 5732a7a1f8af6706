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
    from avworld.sim.scenes.loading import save_scene
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


def test_precompute_fills_the_user_cache_dir_not_the_current_folder(tmp_path: Path) -> None:
    import os

    from avworld.sim.scenes.loading import save_scene
    from tests.conftest import box

    scene, work, home = tmp_path / "room.json", tmp_path / "work", tmp_path / "home"
    save_scene(box(2.4, 1.6), scene)
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "XDG_CACHE_HOME"} | {"HOME": str(home)}
    cmd = [sys.executable, "-m", "avworld.cli", "precompute", f"scene={scene}", "workers=1", f"hydra.run.dir={tmp_path / 'out'}"]
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    cache = home / ".cache" / "avworld" / "acoustics"
    assert f"positions cached in {cache}" in proc.stdout and not list(work.iterdir())
    (group,) = [d for d in cache.iterdir() if d.is_dir()]  # one folder for this scene and setting
    assert len(group.name) == 16 and (group / ".used").is_file() and list(group.rglob("*.npz"))


def test_collect_takes_the_users_scene(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``avworld collect scene=PATH`` (issue 27 item 1): the episodes play the user's scene, which the dataset records."""
    import minari

    from avworld.sim.scenes.loading import save_scene
    from tests.conftest import box

    scene = tmp_path / "room.json"
    save_scene(box(3.0, 2.0), scene)
    budget = ("collect=tiny", f"collect.root={tmp_path / 'ds'}", "collect.episodes=1", "collect.workers=1", "collect.max_steps=3")
    proc = run_cli("collect", f"scene={scene}", *budget, f"hydra.run.dir={tmp_path / 'out'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "ds"))
    ds = minari.load_dataset("avworld/tiny-v0")
    (meta,) = ds.storage.get_episode_metadata([0])
    assert meta["options"] == {"scene_index": 0} and meta["split"] == "user"
    assert ds.recover_environment().spec.kwargs["scene"] == str(scene)
    proc = run_cli("collect", f"scene={tmp_path / 'nowhere.json'}", *budget, f"hydra.run.dir={tmp_path / 'out2'}", cwd=tmp_path)
    assert proc.returncode != 0 and "nowhere.json" in proc.stderr


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


def test_eval_plays_the_users_scene(tmp_path: Path) -> None:
    """`scene=` reaches the env: the oracle's one episode starts 4 m from the source of the written room, not in an apartment."""
    from avworld.sim.scenes.loading import save_scene
    from tests.conftest import box

    save_scene(box(6.0, 2.0), tmp_path / "room.json")  # start (1, 1), source (5, 1): geodesic 4 m
    proc = run_cli("eval", "agent=oracle", "eval.episodes=1", "scene=room.json", f"hydra.run.dir={tmp_path / 'out'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "out" / "navigation.json").read_text())
    (episode,) = result["episodes"]
    assert result["config"]["scene"] == "room.json" and episode["scene_seed"] is None
    assert episode["geodesic_start"] == pytest.approx(4.0, abs=0.06) and episode["success"] == 1.0


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("+scene2=room.json",), "unknown setting 'scene2'"),  # appended with +: still refused, by name
        (("eval.episodes=abc",), "eval.episodes: Value 'abc'"),
        (("world_model", "checkpoint=/nonexistent"), "no world-model checkpoint directory at /nonexistent"),
        (("model=/nonexistent",), "avworld eval world_model checkpoint=DIR"),  # the old spelling points to the new one
        (("scene=missing.json",), "scene: no such file or folder: missing.json"),
    ],
)
def test_eval_refuses_settings_by_name(tmp_path: Path, args: tuple[str, ...], named: str) -> None:
    budget = "agent=random" if args[0] == "eval.episodes=abc" else "eval.episodes=1"
    proc = run_cli("eval", *args, budget, f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode != 0 and named in proc.stderr, proc.stderr[-2000:]


def test_jobs_are_named_not_guessed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "tokenizer=video"]) == 2  # train has no default job
    assert "name the job first: avworld train {tokenizer,world_model,agent}" in capsys.readouterr().err
    assert main(["eval", "fly"]) == 2
    assert "unknown job 'fly'" in capsys.readouterr().err
    assert main(["demo", "demo.quick=true"]) == 2
    assert "avworld demo demo=quick" in capsys.readouterr().err
    assert main(["bench", "sim", "+scene=x"]) == 2
    assert "unknown setting 'scene'" in capsys.readouterr().err


def test_every_job_config_fits_its_schema() -> None:
    """Each job's YAML composes into its typed config: no key of the files is unknown to the code."""
    from hydra import compose, initialize_config_module

    import avworld.cli_config as schemas
    from avworld.cli import JOBS
    from avworld.cli_config import typed
    from avworld.demo import DemoJob

    fill = {"eval_tokenizer": ["checkpoint=x"], "eval_world_model": ["checkpoint=x"], "train_world_model": ["out_dir=x"]}
    schema = {"demo": DemoJob, "eval": schemas.EvalNavigation, "eval_benchmark": schemas.EvalBenchmark}
    schema |= {"eval_tokenizer": schemas.EvalTokenizer, "eval_world_model": schemas.EvalWorldModel, "collect": schemas.Collect}
    schema |= {"train_tokenizer": schemas.TrainTokenizer, "train_world_model": schemas.TrainWorldModel, "train_agent": schemas.TrainAgent}
    schema |= {"precompute": schemas.Precompute, "viz": schemas.Viz, "play": schemas.Play, "eval_merge": schemas.EvalMerge}
    names = {job.config for jobs in JOBS.values() for job in jobs.values()}
    assert names == set(schema)
    with initialize_config_module(config_module="avworld.configs", version_base=None):
        for name in sorted(names):
            cfg = compose(config_name=name, overrides=fill.get(name, []))
            for key in ("data", "demo", "collect"):  # ${hydra:runtime.cwd} needs a running app
                if key in cfg and "root" in cfg[key]:
                    cfg[key].root = "."
            if name == "precompute":
                cfg.sim.acoustics.cache_dir = "."
            assert isinstance(typed(schema[name], cfg), schema[name])
