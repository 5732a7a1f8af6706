"""The navigation benchmark: every agent on the same real test episodes, heard and unheard sounds, with confidence intervals.

Each agent runs :func:`avworld.eval.navigation.evaluate_navigation` on the same episodes (episode ``i`` of every agent
and sound set resets with ``seed + i``: the same scene, start and source). Per agent and sound set it reports SR, SPL,
SNA and DTG as means over episodes with a two-sided Student-t confidence interval (95% by default):

    mean ± t_{n−1, (1+level)/2} · s / √n,   s the sample standard deviation (n − 1 in its denominator).

Paired comparisons (``compare``: pairs [A, B]) report A − B per metric as the mean of the per-episode differences on the
same episodes, with the same Student-t interval over those differences: pairing removes the episodes' own spread (a hard
scene is hard for both agents), so it tells agents apart with far fewer episodes than two separate intervals.

The interval is not clipped to a metric's range: one that crosses [0, 1] says the episodes are too few. With one
episode no interval exists (reported as null / "n/a").

It also reports the real env steps each agent was trained with, by source (:func:`avworld.policies.worlds.training_data`):
its own steps in the real env (PPO trained there; a PPO trained in imagination counts the real moves that built its
contexts) plus the training windows of each world model it learned or plans in (one per real transition of the world
model's training split, ``meta["data"]["windows"]``) and the states of each offline collection it was cloned from
(``meta["collections"]``), each source counted once: a world model's windows count as the train scenes of the collection
its meta names, so a planner whose proposal learned in the same world model, or an agent cloned from the collection its
world model learned from, does not count that data twice. A collection is known by its recipe
(:func:`avworld.models.pretrained.collection_recipe`: its seeds and simulator settings), so the same recipe collected again
at another path or under another name counts once too; checkpoints older than recipes name theirs by path. Random and
oracle learn nothing: 0.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
from scipy import stats

from avworld.eval.navigation import METRICS, NavigationResult, evaluate_navigation
from avworld.policies.base import Policy
from avworld.policies.worlds import training_data
from avworld.sim.config import SimConfig

SOUNDS = ("heard", "unheard", "all")
SCENE_SOUNDS = "scene"
"""The one sound label of a benchmark on user scenes: each scene names its sources' sounds, so the sets do not apply."""
EPISODE_SETTINGS = {"sim": ("sim",), "split": ("nav", "split"), "seed": ("nav", "seed"), "sensors": ("nav", "sensors"),
                    "scene": ("scene",)}
"""What defines a benchmark's episodes, by name, as paths into the ``config`` of its ``navigation_benchmark.json``: two
runs that agree on them ran the same episode ``i`` (a resumed run checks them, and so does ``avworld eval merge``)."""


def episode_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """{name: value} of :data:`EPISODE_SETTINGS` in a benchmark's ``config`` ({"sim", "nav", "scene", ...}); None where absent."""
    settings = {}
    for name, keys in EPISODE_SETTINGS.items():
        value: Any = config
        for key in keys:
            value = value.get(key) if isinstance(value, Mapping) else None
        settings[name] = value
    return settings


NAMES = {"success": "SR", "spl": "SPL", "sna": "SNA", "dtg": "DTG"}
"""Per-episode metric → the column it is reported as."""


@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` values and its confidence interval [low, high] (NaN when n < 2)."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def as_dict(self) -> dict[str, float | int | None]:
        """JSON-ready: NaN bounds become None."""
        bounds = {k: None if math.isnan(v) else v for k, v in (("low", self.low), ("high", self.high), ("half_width", self.half_width))}
        return {"mean": self.mean, **bounds, "n": self.n}


def mean_interval(values: Sequence[float], level: float = 0.95) -> Interval:
    """The mean of ``values`` and its two-sided Student-t interval at ``level`` (see the module docstring)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    n = len(values)
    if n == 0:
        raise ValueError("values is empty: no mean without episodes")
    mean = math.fsum(values) / n
    if n < 2:
        return Interval(mean, math.nan, math.nan, n)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf((1.0 + level) / 2.0, n - 1)) * std / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def summarize(result: NavigationResult, level: float = 0.95) -> dict[str, Interval]:
    """{SR, SPL, SNA, DTG: :class:`Interval`} over the episodes of ``result``."""
    return {NAMES[m]: mean_interval([e[m] for e in result.episodes], level) for m in METRICS}


def paired(a: NavigationResult, b: NavigationResult, level: float = 0.95) -> dict[str, Interval]:
    """{SR, SPL, SNA, DTG: :class:`Interval` of A − B} over the per-episode differences; both ran the same episodes."""
    if len(a.episodes) != len(b.episodes):
        raise ValueError(f"paired differences need the same episodes, got {len(a.episodes)} and {len(b.episodes)}")
    return {NAMES[m]: mean_interval([x[m] - y[m] for x, y in zip(a.episodes, b.episodes, strict=True)], level) for m in METRICS}


@dataclass
class AgentRun:
    """One agent's benchmark: the real transitions it was trained with, by source, and its episodes per sound set."""

    training_data: dict[str, int]
    results: dict[str, NavigationResult]

    @property
    def real_steps(self) -> int:
        """Real env steps behind the agent: the sum over its training data's sources."""
        return sum(self.training_data.values())


def sound_sets(sounds: Sequence[str], scene: Any = None) -> list[str]:
    """The sound sets a benchmark runs: ``sounds`` (checked), or ``["scene"]`` for user scenes, whose JSON names each
    source's sound (running them once per set would repeat the same episodes)."""
    unknown = [s for s in sounds if s not in SOUNDS]
    if unknown or not sounds:
        raise ValueError(f"sounds must be a non-empty list of {', '.join(SOUNDS)}, got {list(sounds)}")
    return [SCENE_SOUNDS] if scene is not None else list(sounds)


def run_benchmark(
    agents: Mapping[str, Policy],
    sim: SimConfig,
    sounds: Sequence[str] = ("heard", "unheard"),
    split: str = "test",
    episodes: int = 50,
    seed: int = 0,
    sensors: Sequence[str] = ("rgb", "audio"),
    on_episode: Callable[[str, str, int, dict[str, float]], None] | None = None,
    scene: Any = None,
    done: Mapping[str, Mapping[str, Sequence[dict[str, float]]]] | None = None,
) -> dict[str, AgentRun]:
    """Run every agent for ``episodes`` episodes of ``split`` per sound set of ``sounds``; {agent name: :class:`AgentRun`}.

    One real env per sound set (``sim`` with ``acoustics.sounds`` set) serves every agent, so its acoustic caches are
    shared; ``on_episode(agent, sounds, i, metrics)`` is called after each episode run. ``scene`` (the env's argument: a
    JSON file, a folder or a list of them) plays the user's scenes instead of ``split``'s procedural ones; those name
    every source's sound, so they are run once, as the sound set ``"scene"`` (:func:`sound_sets`), whatever ``sounds``
    says. ``done`` {agent: {sounds: episode metrics}}: episodes already run (an interrupted benchmark resumed), after
    which each agent and sound set continues (:func:`~avworld.eval.navigation.evaluate_navigation`); a sound set whose
    episodes are all done makes no env.
    """
    if not agents:
        raise ValueError("agents is empty: nothing to benchmark")
    runs = {name: AgentRun(training_data(policy), {}) for name, policy in agents.items()}
    done = done or {}
    for sound in sound_sets(sounds, scene):
        config = sim if sound == SCENE_SOUNDS else dataclasses.replace(sim, acoustics=dataclasses.replace(sim.acoustics, sounds=sound))
        finished = {name: list(done.get(name, {}).get(sound, []))[:episodes] for name in agents}
        if all(len(f) == episodes for f in finished.values()):
            for name in agents:
                runs[name].results[sound] = NavigationResult(finished[name])
            continue
        env = gym.make("avworld/AudioNav-v0", split=split, sensors=tuple(sensors), sim=config, scene=scene)
        for name, policy in agents.items():

            def progress(i: int, metrics: dict[str, float], name: str = name, sound: str = sound) -> None:
                if on_episode is not None:
                    on_episode(name, sound, i, metrics)

            runs[name].results[sound] = evaluate_navigation(env, policy, episodes, seed, progress, finished[name])
        env.close()
    return runs


def benchmark_json(runs: Mapping[str, AgentRun], level: float = 0.95) -> dict[str, Any]:
    """JSON-ready results: per agent its ``real_steps`` (and by source, ``training_data``) and per sound set the ``summary``
    intervals and the ``episodes``."""
    return {
        name: {
            "real_steps": run.real_steps,
            "training_data": run.training_data,
            "sounds": {
                sound: {"summary": {k: v.as_dict() for k, v in summarize(result, level).items()}, "episodes": result.episodes}
                for sound, result in run.results.items()
            },
        }
        for name, run in runs.items()
    }


def check_pairs(pairs: Sequence[Sequence[str]], agents: Sequence[str], field: str = "compare") -> None:
    """Refuse a pair of ``pairs`` (the setting ``field``) that does not name two of ``agents``; the CLI asks before any
    episode runs."""
    for pair in pairs:
        if len(pair) != 2 or any(name not in agents for name in pair):
            raise ValueError(f"{field}: each pair names two benchmarked agents ({', '.join(agents)}), got {list(pair)}")


def comparisons_json(compared: Mapping[str, Mapping[str, Mapping[str, Interval]]]) -> dict[str, Any]:
    """JSON-ready :func:`comparisons`: {"A - B": {sound: {metric: interval dict}}}."""
    return {pair: {s: {k: v.as_dict() for k, v in cells.items()} for s, cells in by_sound.items()} for pair, by_sound in compared.items()}


def comparisons(
    runs: Mapping[str, AgentRun], pairs: Sequence[Sequence[str]], level: float = 0.95
) -> dict[str, dict[str, dict[str, Interval]]]:
    """{"A - B": {sound: :func:`paired` intervals}} for each pair [A, B] of ``pairs``, on every sound set both ran."""
    check_pairs(pairs, list(runs))
    out: dict[str, dict[str, dict[str, Interval]]] = {}
    for pair in pairs:
        a, b = runs[pair[0]], runs[pair[1]]
        out[f"{pair[0]} - {pair[1]}"] = {s: paired(a.results[s], b.results[s], level) for s in a.results if s in b.results}
    return out


def format_comparison_table(compared: Mapping[str, Mapping[str, Mapping[str, Interval]]], level: float = 0.95) -> str:
    """A markdown table of :func:`comparisons`: one row per pair and sound set; the differences as mean ± half-width."""
    lines = [
        "| sounds | difference | episodes | ΔSR | ΔSPL | ΔSNA | ΔDTG (m) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    sounds = dict.fromkeys(s for by_sound in compared.values() for s in by_sound)
    for sound in sounds:
        for name, by_sound in compared.items():
            if sound in by_sound:
                cells = by_sound[sound]
                lines.append(f"| {sound} | {name} | {cells['SR'].n} | " + " | ".join(_cell(cells[NAMES[m]]) for m in METRICS) + " |")
    lines.append("")
    lines.append(f"Paired: means of the per-episode differences ± half-width of their {level:.0%} Student-t interval.")
    return "\n".join(lines)


def _cell(interval: Interval) -> str:
    width = "n/a" if math.isnan(interval.half_width) else f"{interval.half_width:.3f}"
    return f"{interval.mean:.3f} ± {width}"


def format_benchmark_table(runs: Mapping[str, AgentRun], level: float = 0.95) -> str:
    """A markdown table: one row per sound set and agent (agents grouped by sound set, in run order); SR, SPL, SNA, DTG (m)
    as mean ± half-width of the interval; real env steps."""
    lines = [
        "| sounds | agent | episodes | SR | SPL | SNA | DTG (m) | real env steps |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    sounds = dict.fromkeys(s for run in runs.values() for s in run.results)
    for sound in sounds:
        for name, run in runs.items():
            if sound not in run.results:
                continue
            result = run.results[sound]
            summary = summarize(result, level)
            cells = " | ".join(_cell(summary[NAMES[m]]) for m in METRICS)
            lines.append(f"| {sound} | {name} | {len(result.episodes)} | {cells} | {run.real_steps:,} |")
    lines.append("")
    lines.append(f"Means over episodes ± half-width of the {level:.0%} Student-t confidence interval.")
    return "\n".join(lines)
