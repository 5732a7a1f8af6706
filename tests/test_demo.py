"""``avworld demo`` end to end at toy sizes: every stage runs, the report has every section, an interrupted run resumes, the
pretrained world model is shown beside the demo's own (or skipped with a note when none is shipped)."""

from __future__ import annotations

import dataclasses
import html
import os
import subprocess
import sys
from pathlib import Path

import pytest

from avworld.demo import OWN, PRETRAINED, DemoConfig, DemoSizes, build_pipeline, demo_preset, shipped_world, write_demo_report
from avworld.models.pretrained import ROOT_VARIABLE, install_pretrained
from avworld.sim.config import SimConfig
from avworld.viz.panels import PanelConfig
from avworld.viz.video import probe
from tests.test_pretrained import with_provenance

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
SECTIONS = ("Rollout", "Pretrained world model", "Navigation", "Models", "Metrics by horizon", "Stages")
STAGES = 12
NOT_SHOWN = "the pretrained world model is not shown: "


def test_demo_cli_writes_the_report_with_every_section_and_says_no_pretrained_model_is_shipped(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "avworld.cli", "demo", f"demo.root={tmp_path / 'demo'}", f"hydra.run.dir={tmp_path / 'out'}"]
    cmd += ["demo.device=cpu", "demo.workers=1"] + [f"demo.sizes.{k}={v}".replace(" ", "").replace("'", "") for k, v in TOY.items()]
    (tmp_path / "none").mkdir()  # an install that ships no pretrained world model
    env = {**os.environ, "OMP_NUM_THREADS": "1", ROOT_VARIABLE: str(tmp_path / "none")}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    report = tmp_path / "demo" / "report" / "index.html"
    assert f"report: {report}" in done.stdout
    assert f"pretrained: {NOT_SHOWN}" in done.stdout and "ships no pretrained world model" in done.stdout
    page = report.read_text()
    for title in SECTIONS:
        assert f">{title}</h2>" in page, title
    assert "ships no pretrained world model" in page.split(">Pretrained world model</h2>")[1].split("</section>")[0]
    videos = list((tmp_path / "demo" / "report" / "assets").glob("*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 0
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)  # everything reused, the note shown again
    assert again.returncode == 0 and again.stdout.count(": reused") == STAGES, again.stdout
    assert f"pretrained: {NOT_SHOWN}" in again.stdout


def test_interrupted_demo_resumes_from_the_unfinished_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import avworld.eval.prediction as prediction

    sizes = DemoSizes(**{**dataclasses.asdict(demo_preset("quick")), **TOY})
    config = DemoConfig(sizes, root=str(tmp_path), device="cpu", workers=1, pretrained=None)
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


def test_the_pretrained_world_model_is_shown_beside_the_demos_own_and_redone_alone_when_it_changes(
    world_checkpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shipped = tmp_path / "shipped"
    install_pretrained(with_provenance(world_checkpoint, tmp_path / "trained"), "toy", "a toy world model, for tests", root=shipped)
    monkeypatch.setenv(ROOT_VARIABLE, str(shipped))
    sizes = DemoSizes(**{**dataclasses.asdict(demo_preset("quick")), **TOY})
    config = DemoConfig(sizes, root=str(tmp_path / "demo"), device="cpu", workers=1)
    results = build_pipeline(config, SimConfig()).run(progress=False)
    assert results["pretrained"]["spec"] == "pretrained" and "note" not in results["pretrained"]
    about = results["pretrained"]["about"]
    assert about.startswith(f"{PRETRAINED}: toy (a toy world model, for tests), trained by `avworld train world_model` on train: name tiny")
    page = write_demo_report(tmp_path / "demo", results, sizes).read_text()
    models = page.split(">Models</h2>")[1].split("</section>")[0]
    assert f"<td>{PRETRAINED}</td><td>{html.escape(about)}</td>" in models and f"<td>{OWN}</td>" in models
    metrics = page.split(">Metrics by horizon</h2>")[1].split("</section>")[0]
    tables = metrics.split("<table")[1:]
    assert len(tables) > 5 and "<caption>psnr</caption>" in tables[0] and "h=1" in tables[0] and "h=2" in tables[0]
    for table in tables:  # every metric table: both models beside copy-last
        assert all(f"<td>{name}</td>" in table for name in (PRETRAINED, OWN, "copy_last")), table
    pretrained = results["pretrained_prediction"]["models"]["pretrained"]
    assert pretrained["windows"] == results["prediction"]["models"]["av_cdit"]["windows"] > 0  # the same test windows
    assert pretrained["metrics"]["psnr"] != results["prediction"]["models"]["av_cdit"]["metrics"]["psnr"]  # another model
    h = PanelConfig().height  # every panel is square at this height: real | pretrained | from scratch | map | spectrograms
    assert results["video"]["worlds"] == ["pretrained", "from scratch"]
    assert probe(results["video"]["video"])["video"]["width"] == 5 * h and probe(results["video"]["video"])["audio"]["channels"] == 2

    monkeypatch.setenv(ROOT_VARIABLE, str(tmp_path / "none"))  # no shipped model now: only what showed it is redone
    capsys.readouterr()
    statuses: dict[str, str] = {}
    results = build_pipeline(config, SimConfig()).run(progress=False, on_stage=lambda n, s: statuses.update({n: s}))
    redone = {n for n, s in statuses.items() if s == "done"}
    assert redone == {"pretrained", "pretrained_prediction", "video"} and len(statuses) == STAGES
    assert f"pretrained: {NOT_SHOWN}" in capsys.readouterr().out
    assert "skipped" in results["pretrained_prediction"] and results["video"]["worlds"] == ["from scratch"]
    assert probe(results["video"]["video"])["video"]["width"] == 4 * h
    page = write_demo_report(tmp_path / "demo", results, sizes).read_text()
    assert "ships no pretrained world model" in page and f"<td>{PRETRAINED}</td>" not in page and f"<td>{OWN}</td>" in page


def test_a_pretrained_model_of_other_simulator_settings_or_none_is_skipped_naming_why(
    world_checkpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_pretrained(with_provenance(world_checkpoint, tmp_path / "trained"), "toy", "a toy world model", root=tmp_path / "shipped")
    monkeypatch.setenv(ROOT_VARIABLE, str(tmp_path / "shipped"))
    assert "files" in shipped_world("pretrained:toy", SimConfig()) and "skipped" not in shipped_world("pretrained", SimConfig())
    sim = SimConfig()
    other = shipped_world("pretrained", dataclasses.replace(sim, agent=dataclasses.replace(sim.agent, turn_deg=10.0)))
    assert "sim.agent.turn_deg: the demo's sim has 10.0 but the world model pretrained was trained with 15.0" in other["skipped"]
    assert "no pretrained world model named 'big'; available: pretrained:toy" in shipped_world("pretrained:big", SimConfig())["skipped"]
    assert shipped_world(None, SimConfig()) == {"spec": None, "skipped": "demo.pretrained=null"}
