"""The jobs of ``avworld eval``: an agent in the real world, the navigation benchmark, a tokenizer, or a world model's
imagined rollouts; each writes its JSON (and with ``report=true`` an HTML report) to the Hydra output directory.

The job is named on the command line (``avworld eval [navigation|benchmark|tokenizer|world_model] ...``); each takes
its typed config of :mod:`avworld.cli_config`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from avworld.cli_config import (
    EvalBenchmark,
    EvalMerge,
    EvalNavigation,
    EvalTokenizer,
    EvalWorldModel,
    output_dir,
    scenes_of,
    write_json,
)
from avworld.sim.config import SimConfig


def navigation_job(job: EvalNavigation) -> None:
    """``job.agent`` for ``job.eval.episodes`` real episodes (``navigation.json``; with ``report=true`` an HTML report)."""
    import dataclasses

    from hydra.utils import instantiate
    from tqdm import tqdm

    import avworld  # noqa: F401  (registers the envs)
    from avworld.eval.navigation import evaluate_navigation

    scene = scenes_of(job.scene)
    label = _agent_name(job.agent)
    env = _real_env(job.sim, job.eval.split, scene)
    policy = instantiate(job.agent)
    with tqdm(total=job.eval.episodes, desc=label, unit="ep") as bar:
        result = evaluate_navigation(env, policy, job.eval.episodes, seed=job.eval.seed, on_episode=lambda i, m: bar.update())
    env.close()
    out = output_dir()
    config = {"sim": dataclasses.asdict(job.sim), "agent": job.agent, "eval": dataclasses.asdict(job.eval), "scene": scene}
    write_json(out / "navigation.json", {"config": config, "summary": result.summary(), "episodes": result.episodes})
    if job.report:
        _report(out, "navigation", _agent_name(job.agent), lambda path: _report_video(job, path, None))
    print(_table({"agent": result.summary()}))
    print(f"results written to {out / 'navigation.json'}")


def _real_env(sim: SimConfig, split: str, scene: Any) -> Any:
    import gymnasium as gym

    return gym.make("avworld/AudioNav-v0", split=split, sim=sim, scene=scene)


def _agent_name(agent: dict[str, Any]) -> str:
    return str(agent.get("_target_", "agent")).rsplit(".", 1)[-1]


def _table(rows: dict[str, dict[str, float]]) -> str:
    cols = ("SR", "SPL", "SNA", "DTG")
    lines = [f"{'agent':<10}" + "".join(f"{c:>8}" for c in cols)]
    lines += [f"{name:<10}" + "".join(f"{s[c]:>8.3f}" for c in cols) for name, s in rows.items()]
    return "\n".join(lines)


EPISODES_RUN = "benchmark_episodes.json"
"""Every episode a benchmark has run, by agent and sound set, with the settings that define them (written after each)."""


def benchmark_job(job: EvalBenchmark) -> None:
    """Agents ``nav.run`` of ``nav.agents`` on the same real episodes per sound set of ``nav.sounds`` (see avworld.eval.benchmark).

    Every episode run is recorded in :data:`EPISODES_RUN` in the output directory: run again with the same
    ``hydra.run.dir``, an interrupted benchmark continues where it stopped, and a finished one with more ``nav.episodes``
    or more agents runs only what it lacks."""
    import dataclasses

    from hydra.utils import instantiate
    from tqdm import tqdm

    import avworld  # noqa: F401
    from avworld.eval import benchmark

    nav = job.nav
    scene = scenes_of(job.scene)
    benchmark.check_pairs(nav.compare, nav.run, "nav.compare")  # before any episode runs
    for name in nav.run:
        if name not in nav.agents:
            raise ValueError(f"nav.run: no agent {name!r} in nav.agents ({', '.join(nav.agents)}); add one: +agent@nav.agents.{name}=FILE")
        agent = nav.agents[name]
        imagined = agent.get("world") is None  # a planner given a world (e.g. RealWorldModel) needs no checkpoint
        if imagined and "checkpoint" in agent and agent["checkpoint"] in (None, "???"):
            raise ValueError(f"nav.agents.{name}.checkpoint is not set: give world_model=DIR (the planners' world model) or set it")
    out = output_dir()
    sounds, sensors = list(nav.sounds), list(nav.sensors)
    config = {"sim": dataclasses.asdict(job.sim), "nav": dataclasses.asdict(nav), "world_model": job.world_model, "scene": scene}
    identity = benchmark.episode_settings(config) | {"world_model": job.world_model}  # the planners' world model too
    mine = {n: nav.agents[n] for n in nav.run}
    saved = _episodes_run(out / EPISODES_RUN, identity, mine)  # other agents' episodes are kept in the record too
    record = {"identity": identity, "agents": saved["agents"] | mine, "done": saved["done"]}
    for name in nav.run:
        record["done"].setdefault(name, {})
    agents = {name: instantiate(nav.agents[name]) for name in nav.run}
    sets = benchmark.sound_sets(nav.sounds, scene)
    already = sum(min(len(record["done"][n].get(s, [])), nav.episodes) for n in nav.run for s in sets)
    with tqdm(total=len(agents) * len(sets) * nav.episodes, initial=already, unit="ep") as bar:

        def progress(agent: str, sound: str, i: int, metrics: dict[str, float]) -> None:
            record["done"][agent].setdefault(sound, []).append(metrics)
            write_json(out / EPISODES_RUN, record)
            bar.set_description(f"{agent} ({sound})")
            bar.update()

        runs = benchmark.run_benchmark(agents, job.sim, sounds, nav.split, nav.episodes, nav.seed, sensors, progress, scene, record["done"])
    settings: dict[str, Any] = dataclasses.asdict(nav)
    settings |= {"agents": mine, "world_model": job.world_model, "interval": "Student-t", "scene": scene}
    _write_benchmark(out, config, settings, runs, nav.compare, nav.level)


def _write_benchmark(
    out: Path, config: dict[str, Any], settings: dict[str, Any], runs: Any, compare: list[list[str]], level: float
) -> None:
    """``navigation_benchmark.json`` in ``out`` (config, settings, per-agent results, the paired ``compare``, the tables),
    and the tables on the console: what ``benchmark`` and ``merge`` both write."""
    from avworld.eval import benchmark

    table = benchmark.format_benchmark_table(runs, level)
    compared = benchmark.comparisons(runs, compare, level)
    if compared:
        table += "\n\n" + benchmark.format_comparison_table(compared, level)
    write_json(
        out / "navigation_benchmark.json",
        {"config": config, "settings": settings, "agents": benchmark.benchmark_json(runs, level),
         "paired": benchmark.comparisons_json(compared), "table": table},
    )
    print(table)
    print(f"results written to {out / 'navigation_benchmark.json'}")


def _episodes_run(path: Path, identity: dict[str, Any], agents: dict[str, Any]) -> dict[str, Any]:
    """What an earlier run in this output directory recorded at ``path``: its ``agents`` (settings) and ``done``
    ({agent: {sound set: episodes}}); empty without one. One that ran other episodes (``identity``), or one of
    ``agents`` under the same name with other settings, is refused, naming the file and each differing setting: mixing
    them would pair different things. Settings a code update added since the run began, at their defaults
    (:func:`_only_new_defaults`), are not other settings."""
    from avworld.jsonfile import dumps

    if not path.exists():
        return {"agents": {}, "done": {}}
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        saved_identity, saved_agents, done = saved["identity"], saved["agents"], saved["done"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a readable record of a benchmark's episodes ({err}); remove it to start over") from None
    mine = json.loads(dumps({"identity": identity, "agents": agents}))  # as the file holds them: lists, nulls
    for key, value in mine["identity"].items():
        if saved_identity.get(key) != value:
            raise ValueError(f"{path}: a benchmark with another {key} ran in this output directory; rerun it with its "
                             "settings, or choose another hydra.run.dir")
    for name, settings in mine["agents"].items():
        if name in done and saved_agents.get(name) != settings:
            if _only_new_defaults(saved_agents.get(name), settings):  # a newer avworld added settings, at their defaults
                saved_agents[name] = settings
                continue
            differing = "; ".join(_differences(saved_agents.get(name), settings, f"nav.agents.{name}"))
            raise ValueError(f"{path}: the benchmark in this output directory ran agent {name!r} with other settings "
                             f"({differing}); rerun it with them, or choose another hydra.run.dir")
    print(f"continuing from the episodes recorded in {path}")
    return {"agents": saved_agents, "done": done}


def _differences(saved: Any, mine: Any, where: str) -> list[str]:
    """Where two JSON values differ, by dotted key: ``"KEY: recorded A, now B"`` (``unset`` for a missing key)."""
    if isinstance(saved, dict) and isinstance(mine, dict):
        return [d for k in sorted(set(saved) | set(mine), key=str)
                for d in _differences(saved.get(k, _UNSET), mine.get(k, _UNSET), f"{where}.{k}")]
    if saved == mine:
        return []
    shown = ["unset" if v is _UNSET else json.dumps(v) for v in (saved, mine)]
    return [f"{where}: recorded {shown[0]}, now {shown[1]}"]


_UNSET = object()


def _only_new_defaults(saved: Any, mine: Any) -> bool:
    """Whether agent settings ``mine`` differ from ``saved`` only by top-level keys that ``saved`` lacks and that hold
    their default (:func:`agent_defaults`): settings a code update added since the run began, meaning what the agent
    did before it had them."""
    if not isinstance(saved, dict) or not isinstance(mine, dict) or set(saved) - set(mine):
        return False
    if any(saved[k] != mine[k] for k in saved):
        return False
    from avworld.jsonfile import dumps

    defaults = json.loads(dumps(agent_defaults(mine)))
    return all(k in defaults and defaults[k] == mine[k] for k in set(mine) - set(saved))


def agent_defaults(settings: dict[str, Any]) -> dict[str, Any]:
    """The defaults of an agent config's ``_target_``: its keyword arguments' and, for a class configured by a ``Config``
    dataclass (the planners), that dataclass's fields; {} where the target cannot be imported."""
    import dataclasses
    import inspect

    from hydra.utils import get_object

    try:
        target = get_object(str(settings.get("_target_")))
    except (ImportError, ValueError, AttributeError):  # an unknown target: no defaults to compare with
        return {}
    try:
        parameters = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        parameters = []
    defaults = {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
    config = getattr(target, "Config", None)
    if dataclasses.is_dataclass(config):  # the dataclass's defaults are what the agent uses (its keywords may default to None)
        defaults |= {f.name: f.default for f in dataclasses.fields(config) if f.default is not dataclasses.MISSING}
    return defaults


def merge_job(job: EvalMerge) -> None:
    """Benchmark files run apart (``job.inputs``) in one table, with paired comparisons ``job.compare`` where they ran
    the same episodes (see avworld.eval.merge; ``navigation_benchmark.json`` as ``avworld eval benchmark`` writes it)."""
    from avworld.eval.merge import merge_benchmarks, read_benchmark

    if not job.inputs:
        raise ValueError("inputs: name the benchmark files to merge, e.g. 'inputs=[runs/a/navigation_benchmark.json,b.json]'")
    docs = {os.path.abspath(p): read_benchmark(p) for p in job.inputs}
    runs = merge_benchmarks(docs)
    first = next(iter(docs.values()))
    settings = {"merged_from": list(docs), "level": job.level, "compare": job.compare, "interval": "Student-t",
                "agents": {name: doc.get("settings", {}).get("agents", {}).get(name) for doc in docs.values() for name in doc["agents"]}}
    config = {**first["config"], "nav": {**first["config"].get("nav", {}), "run": list(runs)}}
    _write_benchmark(output_dir(), config, settings, runs, job.compare, job.level)


def _checkpoint_dir(path: str, what: str, key: str) -> str:
    """``path`` if it is a directory (for a world model, a shipped one's name, ``pretrained[:<name>]``, becomes its folder);
    else an error naming the setting and the path (before any data is read)."""
    if what == "world-model":
        from avworld.models.pretrained import resolve_checkpoint

        path = str(resolve_checkpoint(path))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{key}: no {what} checkpoint directory at {path}")
    return path


def tokenizer_job(job: EvalTokenizer) -> None:
    """Reconstruction quality of the tokenizer ``job.checkpoint`` on ``job.data``'s split (``tokenizer.json``)."""
    from avworld.eval.tokenizers import evaluate_tokenizer
    from avworld.models.registry import FIELDS, load_model
    from avworld.train.tokenizers import frames

    model, ckpt = load_model(_checkpoint_dir(job.checkpoint, "tokenizer", "checkpoint"))
    data = job.data.load()
    key = {"rgb": "rgb_shape", "audio": "audio_shape"}[FIELDS[ckpt.kind]]
    if list(data.meta[key]) != list(ckpt.meta["data"][key]):
        raise ValueError(f"{job.checkpoint}: trained on {key} {ckpt.meta['data'][key]}, the collection has {data.meta[key]}")
    scores = evaluate_tokenizer(model, ckpt.kind, frames(data, ckpt.kind, job.data.split, job.data.fractions))
    out = output_dir()
    write_json(out / "tokenizer.json", {"checkpoint": job.checkpoint, "kind": ckpt.kind, "split": job.data.split, "scores": scores})
    if job.report:
        _report(out, "tokenizer", "", None)
    print(f"{'metric':<16}{'value':>10}")
    for k, v in scores.items():
        print(f"{k:<16}{v:>10.4f}")
    print(f"results written to {out / 'tokenizer.json'}")


MODALITIES_OF = {"video_only": ("video",), "audio_only": ("audio",)}
"""Baselines of ``avworld eval world_model`` that imagine one modality; the others imagine both."""


def _about(meta: dict[str, Any]) -> str:
    """One line on a world-model checkpoint: preset, variant, stages, steps, training time and windows (from its ``meta.json``)."""
    stages = meta.get("stages", [])
    order = "→".join(str(s["stage"]) for s in stages) or "?"
    steps = sum(int(s.get("steps", 0)) for s in stages)
    minutes = sum(float(s.get("seconds", 0.0)) for s in stages) / 60
    windows = meta.get("data", {}).get("windows")
    size = f"{windows:,} train windows" if isinstance(windows, int) else "train windows unknown"
    preset = f"{meta.get('preset', '?')} {meta.get('variant', '?')}, stage {order}"
    return f"{preset}, {steps:,} step{'s' * (steps != 1)} in {minutes:.1f} min, {size}"


def world_model_job(job: EvalWorldModel) -> None:
    """Rollouts of the world model ``job.checkpoint``, copy-last and each baseline of ``job.baselines`` on the same windows."""
    import dataclasses
    import time

    from tqdm import tqdm

    from avworld.data.windows import WindowConfig, WindowDataset
    from avworld.envs.dream_config import check_learned
    from avworld.eval.prediction import CopyLast, Predictor, Separate, WorldPredictor, check_horizons, evaluate_prediction, format_table
    from avworld.models.checkpoint import acoustics_version
    from avworld.models.imagination import choose_device, load_world

    run = job.eval_model
    paths = {"av_cdit": _checkpoint_dir(job.checkpoint, "world-model", "checkpoint")}
    paths |= {k: _checkpoint_dir(v, "world-model", f"baselines.{k}") for k, v in dataclasses.asdict(job.baselines).items() if v}
    device = choose_device(run.device)
    worlds = {name: load_world(path, device) for name, path in paths.items()}
    for world in worlds.values():
        world.ctx_noise = run.ctx_noise
    data = job.data.load()
    for name, world in worlds.items():
        path = paths[name]
        expected = MODALITIES_OF.get(name, ("video", "audio"))
        if world.modalities != expected:
            raise ValueError(f"{path}: the {name} model must imagine {expected}, this checkpoint imagines {world.modalities}")
        for key in ("rgb_shape", "audio_shape"):
            if list(world.meta[key]) != list(data.meta[key]):
                raise ValueError(f"{path}: trained on {key} {world.meta[key]}, the collection has {data.meta[key]}")
        if "audio" in world.modalities and acoustics_version(world.meta) != data.meta["acoustics_version"]:
            raise ValueError(
                f"{path}: trained on sound of acoustics_version {acoustics_version(world.meta)}, the collection "
                f"{job.data.name} has {data.meta['acoustics_version']}"
            )
        if "sim" in data.meta and "sim" in world.meta:
            reference = SimConfig.from_dict(world.meta["sim"])
            check_learned(SimConfig.from_dict(data.meta["sim"]), reference, f"the collection {job.data.name}", str(path))

    predictors: dict[str, Predictor] = {"av_cdit": WorldPredictor(worlds["av_cdit"]), "copy_last": CopyLast(device=device)}
    if {"video_only", "audio_only"} <= worlds.keys():
        predictors["separate"] = Separate(WorldPredictor(worlds["video_only"]), WorldPredictor(worlds["audio_only"]))
    else:
        predictors |= {k: WorldPredictor(worlds[k]) for k in ("video_only", "audio_only") if k in worlds}
    predictors |= {k: WorldPredictor(worlds[k]) for k in ("no_experts", "joint") if k in worlds}

    horizons = check_horizons(list(run.horizons))
    context = max(p.context for p in predictors.values())
    split = job.data.split
    windows = WindowDataset(data, WindowConfig(context=context, horizon=horizons[-1], split=split, fractions=tuple(job.data.fractions)))
    if len(windows) == 0:
        raise ValueError(
            f"no windows in split {split!r} of {job.data.name}: horizon {horizons[-1]} after {context} context steps needs episodes of "
            f"at least {context + horizons[-1] - 1} steps; lower eval_model.horizons or evaluate longer episodes"
        )
    results, seconds, fs = {}, {}, int(data.meta["sample_rate"])
    for name, predictor in predictors.items():
        start = time.perf_counter()
        with tqdm(total=min(len(windows), run.windows), desc=name, unit="window") as bar:
            results[name] = evaluate_prediction(
                predictor, windows, context, horizons, run.batch_size, run.sampler_steps, run.seed, run.windows, run.max_lag, bar.update, fs
            )
        seconds[name] = time.perf_counter() - start
    about = {name: _about(world.meta) for name, world in worlds.items()} | {"copy_last": "last context step repeated, reward 0, no end"}
    if "separate" in predictors:
        about["separate"] = f"video: {about.pop('video_only')}; audio: {about.pop('audio_only')}"
    ranking = _ranking(job, worlds, data, tuple(job.data.fractions)) if run.ranking > 0 else {}
    table = format_table(results, about, {k: r["rate"] for k, r in ranking.items()} if ranking else None)
    evaluated = results["av_cdit"].windows
    out = output_dir()
    write_json(
        out / "prediction.json",
        {
            "checkpoints": paths,
            "data": {"root": job.data.root, "name": job.data.name, **({"also": list(job.data.also)} if job.data.also else {}),
                     "split": split, "windows": len(windows), "evaluated": evaluated},
            "settings": dataclasses.asdict(run),
            "models": {name: {"about": about.get(name, ""), "seconds": seconds[name], **r.as_dict()} for name, r in results.items()},
            "ranking": ranking,
            "table": table,
        },
    )
    if job.report:
        _report(out, "prediction", _agent_name(job.agent), lambda path: _report_video(job, path, job.checkpoint))
    read = "+".join(job.data.names)
    print(f"{read}, split {split}: {evaluated} of {len(windows)} windows, context {context}, sampler steps {run.sampler_steps}")
    print(table)
    for note in dict.fromkeys(n for r in results.values() for n in r.notes):
        print(f"note: {note}")
    print(f"results written to {out / 'prediction.json'}")


def _ranking(job: EvalWorldModel, worlds: dict[str, Any], data: Any, fractions: tuple[float, float, float]) -> dict[str, dict[str, Any]]:
    """Action ranking (:mod:`avworld.eval.ranking`) of each world model that imagines both modalities, on the same windows."""
    from tqdm import tqdm

    from avworld.eval.ranking import evaluate_ranking

    run, out = job.eval_model, {}
    for name, world in worlds.items():
        if world.modalities != ("video", "audio"):
            continue
        with tqdm(total=run.ranking, desc=f"{name} ranking", unit="window") as bar:
            scores, _ = evaluate_ranking(world, data, job.data.split, fractions, run.ranking, run.ranking_depth,
                                         sampler_steps=run.sampler_steps, seed=run.seed, on_batch=bar.update)
        out["av_cdit" if name == "av_cdit" else name] = scores.as_dict()
    return out


def _report(out: Path, kind: str, agent: str, video: Any) -> None:
    """``out/report/`` (index.html + assets) of ``out/{kind}.json``, with the rollout video that ``video(path)`` writes (and
    describes, in its return value; it returns None for no video)."""
    import tempfile

    from avworld.viz.report import Section, Text, Video, navigation_sections, prediction_sections, tokenizer_sections, write_report

    result = json.loads((out / f"{kind}.json").read_text())
    if kind == "navigation":
        sections = navigation_sections(result, agent)
    elif kind == "prediction":
        from avworld.eval.prediction import COLUMNS

        sections = prediction_sections(result, {k: v[0] for k, v in COLUMNS.items()})
    else:
        sections = tokenizer_sections(result)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rollout.mp4"
        about = video(path) if video is not None else None
        if about is not None:
            sections.append(Section("Rollout", [Text(about), Video(path)]))
        index = write_report(out / "report", f"avworld eval: {kind}", sections, intro=f"Results of {out / f'{kind}.json'}.")
    print(f"report written to {index}")


def _report_video(job: EvalNavigation | EvalWorldModel, path: Path, checkpoint: str | None) -> str | None:
    """The report's rollout video of ``job.agent`` at ``path`` (with the world model ``checkpoint`` imagining beside it, in
    the simulator settings it learned); what it shows, in words. None when ``job.report_video_steps`` is 0."""
    from hydra.utils import instantiate

    from avworld.eval.rollouts import imagine, run_episode, write_rollout_video
    from avworld.models.imagination import load_world

    if job.report_video_steps <= 0:
        return None
    world, scene = None, None
    if checkpoint is not None:
        assert isinstance(job, EvalWorldModel)
        world = load_world(checkpoint, job.eval_model.device)
        world.ctx_noise = job.eval_model.ctx_noise
        sim, sampler_steps = SimConfig.from_dict(world.meta["sim"]), job.eval_model.sampler_steps
    else:
        assert isinstance(job, EvalNavigation)
        sim, scene, sampler_steps = job.sim, scenes_of(job.scene), 0
    split, seed = job.eval.split, job.eval.seed
    rollout = run_episode(sim, instantiate(job.agent), split, seed, None, job.report_video_steps, scene=scene)
    where = "one of the given scenes" if scene is not None else f"a {split} scene"
    about = f"{_agent_name(job.agent)} in {where}, seed {seed}: the real view"
    if world is not None:
        imagined = imagine(rollout, world, sim, seed, sampler_steps)
        about += f", and beside it the world model imagining the same actions from {imagined.context} real steps"
    write_rollout_video(path, rollout, sim, fps=12.0, spectrogram_seconds=3.0)
    return about + "; the map, the binaural sound (left and right ear) and the reward."
