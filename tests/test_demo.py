"""``avworld demo`` end to end at toy sizes: every stage runs, the report has every section, an interrupted run resumes."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from avworld.demo import DemoConfig, DemoSizes, build_pipeline, demo_preset, write_demo_report
from avworld.sim.config import SimConfig

TOY = {
    "train_episodes": 6,
    "train_scenes": 3,
    "test_episodes": 4,
    "test_scenes": 2,
    "max_steps": 20,
    "tokenizer_steps": 3,
    "world_model_steps": 3,
    "batch_size": 4,
    "eval_windows": 4,
    "horizons": [1, 2],
    "nav_episodes": 1,
    "nav_sounds": ["heard"],
    "nav_max_steps": 6,
    "planner_horizon": 1,
    "planner_beam": 2,
    "video_steps": 6,
}
SECTIONS = ("Rollout", "Navigation", "Models", "Metrics by horizon", "Stages")


def test_demo_cli_writes_the_report_with_every_section(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "avworld.cli", "demo", f"demo.root={tmp_path / 'demo'}", f"hydra.run.dir={tmp_path / 'out'}"]
    cmd += ["demo.device=cpu", "demo.workers=1"] + [f"demo.sizes.{k}={v}".replace(" ", "").replace("'", "") for k, v in TOY.items()]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    report = tmp_path / "demo" / "report" / "index.html"
    assert f"report: {report}" in done.stdout
    page = report.read_text()
    for title in SECTIONS:
        assert f">{title}</h2>" in page, title
    videos = list((tmp_path / "demo" / "report" / "assets").glob("*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 0
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)  # everything reused
    assert again.returncode == 0 and again.stdout.count(": reused") == 10, again.stdout


def test_interrupted_demo_resumes_from_the_unfinished_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import avworld.eval.prediction as prediction

    sizes = DemoSizes(**{**dataclasses.asdict(demo_preset("quick")), **TOY})
    config = DemoConfig(sizes, root=str(tmp_path), device="cpu", workers=1)
    real = prediction.evaluate_prediction

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(prediction, "evaluate_prediction", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_pipeline(config, SimConfig()).run(progress=False)
    monkeypatch.setattr(prediction, "evaluate_prediction", real)
    statuses: dict[str, str] = {}
    results = build_pipeline(config, SimConfig()).run(progress=False, on_stage=lambda n, s: statuses.update({n: s}))
    assert all(statuses[n] == "reused" for n in ("collect", "video_tokenizer", "world_stage3"))
    assert all(statuses[n] == "done" for n in ("prediction", "navigation", "video"))
    assert write_demo_report(tmp_path, results, sizes).exists()


def test_demo_presets_are_yaml_files_with_every_size() -> None:
    default, quick, gpu = demo_preset("default"), demo_preset("quick"), demo_preset("gpu")
    assert quick.train_episodes < default.train_episodes and quick.nav_sounds == ("heard",)
    assert gpu.world_model_preset == "small" and default.world_model_preset == "tiny"
    with pytest.raises(ValueError, match="no demo preset 'huge'"):
        demo_preset("huge")
