"""Incremental, resumable pipelines of named stages (what ``avworld demo`` runs).

Each stage writes into its own directory ``<root>/<name>-<key>``, where the key hashes
the stage's config together with the keys of the stages it needs: change a setting
and that stage and everything downstream of it run again; change nothing and a re-run
reuses every finished stage. A stage is finished when its ``result.json`` exists
(written atomically, last); an interrupted stage runs again and resumes from whatever
its own job left in its directory (trainers resume from their checkpoints, collection
from its finished shards). One progress bar covers the whole pipeline, advancing by
each stage's estimated cost, so its ETA speaks for the whole run. A result's ``"note"`` (something the user must
see, e.g. a part of the run skipped and why) is printed each run, whether the stage ran or was reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avworld.jsonfile import write_atomic

StageFn = Callable[[Path, Mapping[str, dict[str, Any]]], dict[str, Any]]
"""``run(stage_dir, results_of_needed_stages) -> result`` (JSON-able; an optional ``"note"`` string is printed)."""


@dataclass
class Stage:
    name: str
    run: StageFn
    config: dict[str, Any] = field(default_factory=dict)
    """What the result depends on (JSON-able); hashed into the stage's directory name."""
    needs: tuple[str, ...] = ()
    cost: float = 1.0
    """Relative expected duration, for the progress bar's ETA."""


def _key(config: Mapping[str, Any], upstream: Sequence[str]) -> str:
    text = json.dumps({"config": config, "upstream": list(upstream)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class Pipeline:
    """Stages in dependency order under ``root``; see the module docstring."""

    def __init__(self, root: str | os.PathLike[str], stages: Sequence[Stage]) -> None:
        self.root = Path(root)
        self.stages = list(stages)
        self.keys: dict[str, str] = {}
        seen: set[str] = set()
        for stage in self.stages:
            missing = [n for n in stage.needs if n not in seen]
            if missing:
                raise ValueError(f"stage {stage.name!r} needs {missing[0]!r}, which is not an earlier stage")
            if stage.name in seen:
                raise ValueError(f"two stages are named {stage.name!r}")
            seen.add(stage.name)
            self.keys[stage.name] = _key(stage.config, [self.keys[n] for n in stage.needs])

    def stage_dir(self, name: str) -> Path:
        return self.root / f"{name}-{self.keys[name]}"

    def done(self, name: str) -> bool:
        return (self.stage_dir(name) / "result.json").exists()

    def run(
        self, force: bool = False, progress: bool = True, on_stage: Callable[[str, str], None] | None = None
    ) -> dict[str, dict[str, Any]]:
        """Run every unfinished stage (every stage, from an empty directory, with ``force``); returns each stage's result.

        ``on_stage(name, status)`` is called with "reused", "running" and "done".
        """
        from tqdm import tqdm

        results: dict[str, dict[str, Any]] = {}
        total = sum(s.cost for s in self.stages)
        with tqdm(total=total, desc="demo", unit="", bar_format="{l_bar}{bar}| {elapsed}<{remaining}", disable=not progress) as bar:
            for stage in self.stages:
                path = self.stage_dir(stage.name)
                if self.done(stage.name) and not force:
                    results[stage.name] = json.loads((path / "result.json").read_text())
                    bar.total -= stage.cost  # reused stages take no time: keep the ETA about the work left
                    bar.refresh()
                    if on_stage:
                        on_stage(stage.name, "reused")
                    _show_note(stage.name, results[stage.name])
                    continue
                if force:
                    shutil.rmtree(path, ignore_errors=True)  # redo from nothing, not from a partial run's checkpoints
                path.mkdir(parents=True, exist_ok=True)
                bar.set_description(f"demo: {stage.name}")
                if on_stage:
                    on_stage(stage.name, "running")
                start = time.perf_counter()
                result = stage.run(path, {n: results[n] for n in stage.needs})
                result = {**result, "seconds": round(time.perf_counter() - start, 1)}
                write_atomic(path / "result.json", result)
                results[stage.name] = result
                bar.update(stage.cost)
                if on_stage:
                    on_stage(stage.name, "done")
                _show_note(stage.name, result)
        return results


def _show_note(name: str, result: Mapping[str, Any]) -> None:
    """Print a stage result's note above the progress bar."""
    from tqdm import tqdm

    if result.get("note"):
        tqdm.write(f"  {name}: {result['note']}")
