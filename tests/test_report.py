"""Rollout videos of real and imagined worlds, and HTML reports that open in a browser with nothing run that should not."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from avworld.data.collect import CollectConfig
from avworld.viz.plots import horizon_plot
from avworld.viz.report import (
    Image,
    Section,
    Table,
    Text,
    Video,
    navigation_sections,
    prediction_sections,
    tokenizer_sections,
    write_report,
)
from avworld.viz.video import probe, write_video

CHROMIUM = Path("/usr/bin/chromium")
EVIL = "<script>alert(1)</script>"
FRAMES_PER_STEP = 3  # viz's 12 fps over 0.25 s steps
STEP_TIME = 0.25


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "avworld.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def rollout_video(world_checkpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``avworld viz`` of a random agent's episode with the tiny world model imagining it, imagined sound: the MP4."""
    out = tmp_path_factory.mktemp("viz")
    run_cli(
        "viz", "rollout", "agent=random", "max_steps=6", f"checkpoint={world_checkpoint}", "audio=imagined", f"hydra.run.dir={out}", cwd=out
    )
    return out / "rollout.mp4"


@pytest.fixture(scope="module")
def prediction_report(world_checkpoint: str, collection: CollectConfig, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``avworld eval world_model checkpoint=... report=true`` on the tiny collection: the report folder."""
    out = tmp_path_factory.mktemp("eval")
    run_cli(
        "eval",
        "world_model",
        f"checkpoint={world_checkpoint}",
        f"data.root={collection.root}",
        f"data.name={collection.name}",
        "data.split=train",
        "eval_model.horizons=[1,2]",
        "eval_model.windows=2",
        "eval_model.sampler_steps=1",
        "report=true",
        "report_video_steps=6",
        f"hydra.run.dir={out}",
        cwd=out,
    )
    return out / "report"


def prediction_result(model: str = "av_cdit") -> dict:
    """A ``prediction.json``-like dict: two models, two horizons, an AV metric at the last horizon only."""
    metrics = {"psnr": {"1": 20.0, "4": 15.5}, "termination_f1": {"1": None, "4": 0.5}, "av_lag_error": {"4": 1.0}}
    return {
        "data": {"name": "tiny", "split": "test", "windows": 8, "evaluated": 8},
        "settings": {"sampler_steps": 2},
        "models": {
            model: {"about": f"scene {EVIL}", "windows": 8, "seconds": 1.5, "metrics": metrics, "notes": [f"note {EVIL}"]},
            "copy_last": {"about": "baseline", "windows": 8, "seconds": 0.1, "metrics": metrics},
        },
    }


def evil_report(out: Path, video: Path) -> Path:
    """A report whose every kind of string holds a script tag: title, sections, cells, config values, captions."""
    navigation = {
        "summary": {"SR": 0.5, "SPL": 0.25, "SNA": 0.2, "DTG": 1.5, "episodes": 2},
        "episodes": [{"scene_seed": 7, "success": 1.0, "spl": 0.5, "dtg": 0.8}, {"scene_seed": EVIL, "success": 0.0}],
        "config": {"scene": EVIL, "agent": {"_target_": "avworld.policies.RandomPolicy"}},
    }
    sections = [
        *prediction_sections(prediction_result(EVIL), {"psnr": "PSNR↑"}),
        *navigation_sections(navigation, agent=EVIL),
        *tokenizer_sections({"kind": "video_vae", "checkpoint": EVIL, "split": "test", "scores": {EVIL: 30.0}}),
        Section(EVIL, [Text(EVIL), Text(EVIL, pre=True), Table([EVIL], [[EVIL]], caption=EVIL), Video(video, caption=EVIL)]),
    ]
    return write_report(out, EVIL, sections, intro=EVIL)


def test_rollout_video_has_the_real_and_imagined_views_and_binaural_sound(rollout_video: Path) -> None:
    info = probe(rollout_video)
    video, audio = info["video"], info["audio"]
    assert video["codec"] == "h264" and video["frames"] % FRAMES_PER_STEP == 0
    steps = video["frames"] // FRAMES_PER_STEP  # the start and 1..6 steps
    assert 2 <= steps <= 7
    assert (video["height"], video["width"]) == (276, 4 * 256)  # real, imagined, map, spectrograms
    assert video["duration"] == pytest.approx(steps * STEP_TIME, abs=0.01)
    assert audio["codec"] == "aac" and audio["channels"] == 2 and audio["sample_rate"] == 16000
    assert audio["duration"] == pytest.approx(steps * STEP_TIME, abs=0.1)


def test_report_escapes_every_string_and_loads_nothing_from_outside(tmp_path: Path, rollout_video: Path) -> None:
    index = evil_report(tmp_path / "report", rollout_video)
    page = index.read_text()
    assert EVIL not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "http://" not in page and "https://" not in page and 'src="/' not in page
    assets = sorted(p.name for p in (tmp_path / "report" / "assets").iterdir())
    assert any(name.endswith(".mp4") for name in assets) and any(name.endswith(".png") for name in assets)
    assert all(f'"assets/{name}"' in page for name in assets)


def test_prediction_sections_give_a_table_per_metric_and_plots_where_there_is_a_curve() -> None:
    _, by_horizon, notes = prediction_sections(prediction_result(), {"psnr": "PSNR↑"})
    assert [type(b) for b in by_horizon.blocks] == [Table, Image, Table, Table]  # psnr + its plot; F1 has one value; AV sync
    psnr = by_horizon.blocks[0]
    assert isinstance(psnr, Table) and psnr.caption == "PSNR↑" and list(psnr.columns) == ["model", "h=1", "h=4"]
    assert psnr.rows[0] == ["av_cdit", 20.0, 15.5]
    plot = by_horizon.blocks[1]
    assert isinstance(plot, Image) and isinstance(plot.source, bytes) and plot.source.startswith(b"\x89PNG")
    assert isinstance(notes.blocks[0], Text) and EVIL in notes.blocks[0].body  # escaped when written, not before


def test_bad_report_inputs_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^rows: row 0 has 1 cells, the table 2 columns"):
        Table(["a", "b"], [[1]])
    with pytest.raises(ValueError, match=r"^sections: results: item 1: no such file"):
        write_report(tmp_path, "t", [Section("results", [Video(tmp_path / "missing.mp4")])])
    with pytest.raises(ValueError, match=r"^sections: results: item 1: expected a \.mp4, \.webm file"):
        write_report(tmp_path, "t", [Section("results", [Video(tmp_path / "clip.avi")])])
    with pytest.raises(ValueError, match=r"^values:"):
        horizon_plot({}, "psnr")
    with pytest.raises(ValueError, match=r"^result:"):
        prediction_sections({"models": {}})


def test_eval_report_true_writes_tables_plots_and_the_rollout_video(prediction_report: Path, tmp_path: Path) -> None:
    page = (prediction_report / "index.html").read_text()
    assert "PSNR↑" in page and "av_cdit" in page and "copy_last" in page and page.count("<video") == 1
    assets = sorted(p.name for p in (prediction_report / "assets").iterdir())
    assert "01-psnr-against-the-horizon.png" in assets and assets[-1].endswith("-rollout.mp4")
    assert probe(prediction_report / "assets" / assets[-1])["video"]["width"] == 4 * 256  # the imagined view beside the real one

    proc = run_cli(
        "eval",
        "agent=random",
        "eval.episodes=1",
        "sim.episode.max_steps=4",
        "report=true",
        "report_video_steps=3",
        f"hydra.run.dir={tmp_path}",
        cwd=tmp_path,
    )
    assert f"report written to {tmp_path / 'report' / 'index.html'}" in proc.stdout
    result = json.loads((tmp_path / "navigation.json").read_text())
    page = (tmp_path / "report" / "index.html").read_text()
    assert "RandomPolicy" in page and f"{result['summary']['DTG']:.4g}" in page and page.count("<video") == 1


def test_reports_open_in_headless_chromium(prediction_report: Path, rollout_video: Path, tmp_path: Path) -> None:
    missing = [what for what, ok in (("playwright", importlib.util.find_spec("playwright")), (str(CHROMIUM), CHROMIUM.exists())) if not ok]
    if missing:
        pytest.skip(f"needs {' and '.join(missing)} (.ci/run installs them: pip install playwright; apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    pages = [prediction_report / "index.html", evil_report(tmp_path / "evil", rollout_video)]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            for index in pages:
                page = browser.new_page()
                errors: list[str] = []
                page.on("console", lambda m, errors=errors: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
                page.on("dialog", lambda d, errors=errors: errors.append(f"dialog: {d.message}"))
                page.goto(index.as_uri())
                assert page.locator("table.metrics").count() >= 2
                durations = page.evaluate(
                    """() => Promise.all([...document.querySelectorAll("video")].map(v => v.readyState >= 1 ? v.duration :
                        new Promise(done => { v.addEventListener("loadedmetadata", () => done(v.duration));
                                              v.addEventListener("error", () => done(-1), true);
                                              setTimeout(() => done(0), 10000); })))"""
                )
                assert durations and all(d > 0 for d in durations), durations
                if index.parent.name == "evil":
                    assert page.get_by_text(EVIL, exact=True).count() >= 3  # shown as text, never run
                assert errors == [], errors
                page.close()
        finally:
            browser.close()


def test_a_report_without_assets_creates_its_folder(tmp_path: Path) -> None:
    index = write_report(tmp_path / "new" / "report", "t", [Section("results", [Text("no picture here")])])
    assert index == tmp_path / "new" / "report" / "index.html" and "no picture here" in index.read_text()
    assert not (tmp_path / "new" / "report" / "assets").exists()


def test_eval_report_without_a_video_or_for_a_tokenizer_is_written(
    tokenizer_checkpoints: dict[str, str], collection: CollectConfig, tmp_path: Path
) -> None:
    nav = tmp_path / "nav"
    args = ("agent=random", "eval.episodes=1", "sim.episode.max_steps=3", "report=true", "report_video_steps=0")
    proc = run_cli("eval", *args, f"hydra.run.dir={nav}", cwd=tmp_path)
    page = (nav / "report" / "index.html").read_text()
    assert f"report written to {nav / 'report' / 'index.html'}" in proc.stdout and "<video" not in page
    tok = tmp_path / "tok"
    data = (f"data.root={collection.root}", f"data.name={collection.name}", "data.split=train")
    proc = run_cli(
        "eval", "tokenizer", f"checkpoint={tokenizer_checkpoints['audio']}", *data, "report=true", f"hydra.run.dir={tok}", cwd=tmp_path
    )
    page = (tok / "report" / "index.html").read_text()
    assert f"report written to {tok / 'report' / 'index.html'}" in proc.stdout and ">Tokenizer</h2>" in page


def test_a_video_shows_its_first_frame_as_poster(tmp_path: Path) -> None:
    frames = np.zeros((6, 32, 48, 3), np.uint8)
    frames[0] = (200, 40, 40)  # only the first frame is red
    video = tmp_path / "clip.mp4"
    write_video(video, frames, fps=12.0)
    page = write_report(tmp_path / "report", "t", [Section("Rollout", [Video(video, caption="rollout")])]).read_text()
    assert '<video controls preload="metadata" poster="assets/01-rollout-poster.png">' in page
    poster = imread(tmp_path / "report" / "assets" / "01-rollout-poster.png")  # float RGB(A) in [0, 1]
    assert poster.shape[:2] == (32, 48)
    assert np.abs(poster[..., :3] * 255 - (200, 40, 40)).mean() < 12  # H.264's colour loss, not a black box
    with pytest.raises(ValueError, match=r"^sections: Rollout: item 1: cannot read a frame of"):
        (tmp_path / "broken.mp4").write_bytes(b"not a video")
        write_report(tmp_path / "r2", "t", [Section("Rollout", [Video(tmp_path / "broken.mp4")])])


def test_av_lag_notes_of_several_models_become_one_that_says_what_is_counted() -> None:
    result = prediction_result()
    result["models"]["av_cdit"]["notes"] = ["av_lag_error: over 5 of 8 windows; the others have constant motion or loudness (no lag)"]
    result["models"]["copy_last"]["notes"] = ["av_lag_error: None, every window has constant motion or loudness (no lag)", "shared"]
    result["models"]["av_cdit"]["notes"].append("shared")
    result["models"]["copy_last"]["notes"].append("only the baseline")
    *_, notes = prediction_sections(result)
    bodies = [b.body for b in notes.blocks if isinstance(b, Text)]
    lag = [b for b in bodies if "av_lag_error" in b]
    assert len(lag) == 1 and "over the windows where motion and loudness vary in both rollouts" in lag[0]
    assert "av_cdit 5 of 8 windows; copy_last 0 of 8 windows (None)" in lag[0]
    assert "shared" in bodies and "copy_last: only the baseline" in bodies


def test_demo_report_has_one_navigation_table(tmp_path: Path) -> None:
    from avworld.demo import demo_preset, write_demo_report

    video = tmp_path / "rollout.mp4"
    write_video(video, np.zeros((3, 16, 16, 3), np.uint8), fps=12.0)
    summary = {m: {"mean": 0.5} for m in ("SR", "SPL", "SNA", "DTG")}
    results = {
        "collect": {"episodes": 2, "steps": 40},
        "navigation": {
            "agents": {"planner": {"sounds": {"heard": {"summary": summary}}, "real_steps": 12}},
            "max_steps": 6,
            "table": "| agent | SR |\n| --- | --- |\n| planner | 0.5 |",
        },
        "video": {"video": str(video)},
        "prediction": prediction_result(),
    }
    page = write_demo_report(tmp_path, results, demo_preset("quick")).read_text()
    navigation = page.split(">Navigation</h2>")[1].split("</section>")[0]
    assert navigation.count("<table") == 1 and "| agent |" not in page
