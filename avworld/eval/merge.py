"""Benchmarks run apart, joined into one table with paired comparisons (``avworld eval merge``).

A navigation benchmark of 100 episodes per sound set takes an agent about 20 minutes on 2 CPU cores, so a new agent is
often benchmarked alone and compared with one measured in an earlier run. That comparison is paired only if both ran
the same episodes. Two ``navigation_benchmark.json`` files ran the same episode ``i`` when they share what defines the
episodes (:data:`~avworld.eval.benchmark.EPISODE_SETTINGS`: the simulator settings, the split, the seed, the sensors and
the user scenes), and this is checked again episode by episode: episode ``i`` of every agent has the same
``scene_seed`` and start distance ``geodesic_start`` (:data:`EPISODE_KEYS`). A file that differs in either is refused,
naming it and what differs.

An agent named in several files must carry the same episodes in each (a rerun that reproduced it): it is kept once, and
one that did not reproduce is refused, since which of the two to pair with would be a choice the table hides.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from avworld.eval.benchmark import EPISODE_SETTINGS, AgentRun, episode_settings
from avworld.eval.navigation import METRICS, NavigationResult

EPISODE_KEYS = ("scene_seed", "geodesic_start")
"""What identifies an episode in a benchmark file: the same at every index means the same scene, start and source."""


def read_benchmark(path: str | Path) -> dict[str, Any]:
    """The ``navigation_benchmark.json`` at ``path``, checked for the fields a merge reads; errors name the file."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such benchmark file (avworld eval benchmark writes navigation_benchmark.json)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a JSON benchmark file ({err})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("agents"), dict) or not isinstance(doc.get("config"), dict):
        raise ValueError(f"{path}: not a navigation benchmark (no 'config' and 'agents' objects)")
    for name, agent in doc["agents"].items():
        sounds = agent.get("sounds") if isinstance(agent, dict) else None
        if not isinstance(sounds, dict) or not sounds:
            raise ValueError(f"{path}: agents.{name} has no 'sounds'")
        for sound, run in sounds.items():
            episodes = run.get("episodes") if isinstance(run, dict) else None
            if not isinstance(episodes, list) or not episodes:
                raise ValueError(f"{path}: agents.{name}.sounds.{sound} has no episodes")
            for i, episode in enumerate(episodes):
                fields = episode if isinstance(episode, dict) else {}
                missing = [k for k in (*METRICS, *EPISODE_KEYS) if not isinstance(fields.get(k), (int, float))]
                if missing:
                    raise ValueError(f"{path}: agents.{name}.sounds.{sound}.episodes[{i}] lacks {', '.join(missing)}")
    return doc


def merge_benchmarks(docs: Mapping[str, Mapping[str, Any]]) -> dict[str, AgentRun]:
    """{agent: :class:`AgentRun`} of the benchmark files ``docs`` ({path: :func:`read_benchmark`}), in file then run
    order, after checking that they ran the same episodes (see the module docstring)."""
    if not docs:
        raise ValueError("merge needs at least one benchmark file")
    first, first_doc = next(iter(docs.items()))
    defined = episode_settings(first_doc["config"])
    for path, doc in docs.items():
        for name, value in episode_settings(doc["config"]).items():
            if value != defined[name]:
                where = ".".join(EPISODE_SETTINGS[name])
                raise ValueError(f"{path}: config.{where} differs from {first}'s: they did not run the same episodes")
    runs: dict[str, AgentRun] = {}
    origin: dict[str, str] = {}
    for path, doc in docs.items():
        for name, agent in doc["agents"].items():
            results = {sound: NavigationResult(list(r["episodes"])) for sound, r in agent["sounds"].items()}
            run = AgentRun(dict(agent.get("training_data", {})), results)
            if name in runs:
                if {s: r.episodes for s, r in runs[name].results.items()} != {s: r.episodes for s, r in run.results.items()}:
                    raise ValueError(f"{path}: agent {name!r} is also in {origin[name]} with other episodes: rename one of them")
                continue
            runs[name], origin[name] = run, path
    _check_same_episodes(runs, origin)
    return runs


def _check_same_episodes(runs: Mapping[str, AgentRun], origin: Mapping[str, str]) -> None:
    """Episode ``i`` of every agent and sound set has the same :data:`EPISODE_KEYS` (up to float rounding)."""
    reference: dict[tuple[str, int], tuple[str, dict[str, float]]] = {}
    for name, run in runs.items():
        for sound, result in run.results.items():
            for i, episode in enumerate(result.episodes):
                seen = reference.setdefault((sound, i), (name, episode))
                other, known = seen
                if any(not math.isclose(episode[k], known[k], rel_tol=1e-9, abs_tol=1e-9) for k in EPISODE_KEYS):
                    raise ValueError(
                        f"{origin[name]}: agent {name!r}'s {sound} episode {i} is not {other!r}'s in {origin[other]} "
                        f"(scene_seed, geodesic_start {episode['scene_seed']}, {episode['geodesic_start']:.4f} against "
                        f"{known['scene_seed']}, {known['geodesic_start']:.4f}): not the same episodes"
                    )
