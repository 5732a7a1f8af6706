"""The demo's pipeline: stages run once, re-runs reuse them, config changes rerun downstream, interruption resumes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from avworld.pipeline import Pipeline, Stage


class Recorder:
    """Stage functions that log their calls; ``fail_at`` raises KeyboardInterrupt in that stage once, after a partial write."""

    def __init__(self, fail_at: str | None = None) -> None:
        self.calls: list[str] = []
        self.fail_at = fail_at

    def stage(self, name: str) -> Any:
        def run(path: Path, needed: dict[str, dict[str, Any]]) -> dict[str, Any]:
            self.calls.append(name)
            partial = path / "partial.txt"
            resumed = partial.exists()
            partial.write_text("half done")
            if name == self.fail_at:
                self.fail_at = None
                raise KeyboardInterrupt
            return {"value": sum(r["value"] for r in needed.values()) + 1, "resumed": resumed}

        return run


def stages(rec: Recorder, lr: float = 1e-3) -> list[Stage]:
    return [
        Stage("collect", rec.stage("collect"), {"episodes": 4}),
        Stage("train", rec.stage("train"), {"lr": lr}, needs=("collect",), cost=5),
        Stage("report", rec.stage("report"), {}, needs=("train",)),
    ]


def test_runs_once_then_reuses(tmp_path: Path) -> None:
    rec = Recorder()
    results = Pipeline(tmp_path, stages(rec)).run(progress=False)
    assert rec.calls == ["collect", "train", "report"] and results["report"]["value"] == 3
    assert json.loads((Pipeline(tmp_path, stages(rec)).stage_dir("train") / "result.json").read_text())["value"] == 2
    statuses: list[tuple[str, str]] = []
    again = Pipeline(tmp_path, stages(rec)).run(progress=False, on_stage=lambda n, s: statuses.append((n, s)))
    assert rec.calls == ["collect", "train", "report"] and again["report"]["value"] == 3
    assert statuses == [("collect", "reused"), ("train", "reused"), ("report", "reused")]


def test_a_changed_setting_reruns_its_stage_and_downstream(tmp_path: Path) -> None:
    Pipeline(tmp_path, stages(Recorder())).run(progress=False)
    rec = Recorder()
    Pipeline(tmp_path, stages(rec, lr=3e-4)).run(progress=False)
    assert rec.calls == ["train", "report"]


def test_force_redoes_every_stage_from_scratch(tmp_path: Path) -> None:
    Pipeline(tmp_path, stages(Recorder())).run(progress=False)
    rec = Recorder()
    results = Pipeline(tmp_path, stages(rec)).run(force=True, progress=False)
    assert rec.calls == ["collect", "train", "report"] and not results["train"]["resumed"]


def test_interruption_resumes_at_the_unfinished_stage(tmp_path: Path) -> None:
    rec = Recorder(fail_at="train")
    with pytest.raises(KeyboardInterrupt):
        Pipeline(tmp_path, stages(rec)).run(progress=False)
    assert rec.calls == ["collect", "train"]
    results = Pipeline(tmp_path, stages(rec)).run(progress=False)
    assert rec.calls == ["collect", "train", "train", "report"]
    assert results["train"]["resumed"]  # the stage found its partial work in its directory


def test_bad_order_is_refused(tmp_path: Path) -> None:
    rec = Recorder()
    with pytest.raises(ValueError, match="needs 'train'"):
        Pipeline(tmp_path, [Stage("report", rec.stage("report"), needs=("train",)), Stage("train", rec.stage("train"))])


def strict_json(text: str) -> Any:
    """``json.loads`` that refuses the non-standard tokens NaN, Infinity and -Infinity, as jq and JavaScript do."""

    def refuse(token: str) -> None:
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def test_results_are_standard_json(tmp_path: Path) -> None:
    """A stage's non-finite numbers (an identical frame's PSNR, an undefined score) are written as null."""
    stage = Stage("eval", lambda path, needed: {"psnr": float("inf"), "scores": [float("nan"), 1.5], "low": -float("inf")})
    Pipeline(tmp_path, [stage]).run(progress=False)
    (result,) = tmp_path.glob("eval-*/result.json")
    data = strict_json(result.read_text())
    assert data["psnr"] is None and data["scores"] == [None, 1.5] and data["low"] is None
