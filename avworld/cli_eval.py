"""The ``avworld eval`` command: an agent in the real world, a tokenizer, a world model's imagined rollouts, or the
navigation benchmark; each writes its JSON (and with ``report=true`` an HTML report) to the Hydra output directory.

:func:`eval_job` picks the evaluation from the config: ``nav=benchmark`` (:func:`benchmark_job`), ``tokenizer=CHECKPOINT``,
``model=CHECKPOINT`` (with ``baselines.*``), or else ``agent=...`` in ``cfg.sim``'s world.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from avworld.cli import output_dir, sim_config, write_json
from avworld.sim.simulator import SimConfig

if TYPE_CHECKING:
    from avworld.train.tokenizers import DataRef


def eval_job(cfg: DictConfig) -> None:
    """Evaluate ``cfg.agent`` in the real world (``navigation.json``), ``tokenizer=CHECKPOINT`` / ``model=CHECKPOINT`` on test
    scenes, or every agent of the navigation benchmark (``nav=benchmark``, ``navigation_benchmark.json``)."""
    import avworld  # noqa: F401

    if cfg.get("nav"):
        return benchmark_job(cfg)
    if cfg.get("tokenizer"):
        return _eval_tokenizer(cfg)
    if cfg.get("model"):
        return _eval_model(cfg)
    result = _navigate(cfg, cfg.eval, cfg.agent, cfg.agent._target_.rsplit(".", 1)[-1])
    out = output_dir()
    write_json(out / "navigation.json", {"config": OmegaConf.to_container(cfg), **result})
    _report(cfg, out, "navigation")
    print(_table({"agent": result["summary"]}))
    print(f"results written to {out / 'navigation.json'}")


def _navigate(cfg: DictConfig, run: DictConfig, agent_cfg: DictConfig, label: str) -> dict[str, Any]:
    """Run ``agent_cfg`` for ``run.episodes`` episodes of ``run.split`` in the world of ``cfg.sim``."""
    import gymnasium as gym
    from hydra.utils import instantiate
    from tqdm import tqdm

    from avworld.eval.navigation import evaluate_navigation

    env = gym.make("avworld/AudioNav-v0", split=run.split, sim=sim_config(cfg))
    policy = instantiate(agent_cfg)
    with tqdm(total=run.episodes, desc=label, unit="ep") as bar:
        result = evaluate_navigation(env, policy, run.episodes, seed=run.seed, on_episode=lambda i, m: bar.update())
    env.close()
    return {"summary": result.summary(), "episodes": result.episodes}


def _table(rows: dict[str, dict[str, float]]) -> str:
    cols = ("SR", "SPL", "SNA", "DTG")
    lines = [f"{'agent':<10}" + "".join(f"{c:>8}" for c in cols)]
    lines += [f"{name:<10}" + "".join(f"{s[c]:>8.3f}" for c in cols) for name, s in rows.items()]
    return "\n".join(lines)


def benchmark_job(cfg: DictConfig) -> None:
    """Agents ``nav.run`` of ``nav.agents`` on the same real episodes per sound set of ``nav.sounds`` (see avworld.eval.benchmark)."""
    from hydra.utils import instantiate
    from tqdm import tqdm

    from avworld.eval.benchmark import benchmark_json, format_benchmark_table, run_benchmark

    nav = cfg.nav
    for name in nav.run:
        if name not in nav.agents:
            raise ValueError(f"nav.run: no agent {name!r} in nav.agents ({', '.join(nav.agents)}); add one: +agent@nav.agents.{name}=FILE")
        agent = nav.agents[name]
        imagined = agent.get("world") is None  # a planner given a world (e.g. RealWorldModel) needs no checkpoint
        if imagined and "checkpoint" in agent and (OmegaConf.is_missing(agent, "checkpoint") or agent.checkpoint is None):
            raise ValueError(f"nav.agents.{name}.checkpoint is not set: give world_model=DIR (the planners' world model) or set it")
    agents = {name: instantiate(nav.agents[name]) for name in nav.run}
    with tqdm(total=len(agents) * len(nav.sounds) * nav.episodes, unit="ep") as bar:

        def progress(agent: str, sounds: str, i: int) -> None:
            bar.set_description(f"{agent} ({sounds})")
            bar.update()

        runs = run_benchmark(agents, sim_config(cfg), list(nav.sounds), nav.split, nav.episodes, nav.seed, list(nav.sensors), progress)
    table = format_benchmark_table(runs, nav.level)
    settings: dict[str, Any] = OmegaConf.to_container(nav, resolve=True)  # type: ignore[assignment]
    settings |= {"agents": {n: settings["agents"][n] for n in nav.run}, "world_model": cfg.world_model, "interval": "Student-t"}
    out = output_dir()
    write_json(
        out / "navigation_benchmark.json",
        {"config": OmegaConf.to_container(cfg), "settings": settings, "agents": benchmark_json(runs, nav.level), "table": table},
    )
    print(table)
    print(f"results written to {out / 'navigation_benchmark.json'}")


def _data_ref(cfg: DictConfig) -> DataRef:
    """The collection of ``cfg.data`` (its ``split`` aside)."""
    from avworld.train.tokenizers import DataRef

    fields = {k: v for k, v in OmegaConf.to_container(cfg.data).items() if k != "split"}  # type: ignore[union-attr]
    data_ref = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(DataRef), fields))
    assert isinstance(data_ref, DataRef)
    return data_ref


def _eval_tokenizer(cfg: DictConfig) -> None:
    from avworld.eval.tokenizers import evaluate_tokenizer
    from avworld.models.registry import FIELDS, load_model
    from avworld.train.tokenizers import frames

    model, ckpt = load_model(cfg.tokenizer)
    data_ref = _data_ref(cfg)
    data = data_ref.load()
    key = {"rgb": "rgb_shape", "audio": "audio_shape"}[FIELDS[ckpt.kind]]
    if list(data.meta[key]) != list(ckpt.meta["data"][key]):
        raise ValueError(f"{cfg.tokenizer}: trained on {key} {ckpt.meta['data'][key]}, the collection has {data.meta[key]}")
    scores = evaluate_tokenizer(model, ckpt.kind, frames(data, ckpt.kind, cfg.data.split, data_ref.fractions))
    out = output_dir()
    write_json(out / "tokenizer.json", {"checkpoint": str(cfg.tokenizer), "kind": ckpt.kind, "split": cfg.data.split, "scores": scores})
    _report(cfg, out, "tokenizer")
    print(f"{'metric':<16}{'value':>10}")
    for k, v in scores.items():
        print(f"{k:<16}{v:>10.4f}")
    print(f"results written to {out / 'tokenizer.json'}")


MODALITIES_OF = {"video_only": ("video",), "audio_only": ("audio",)}
"""Baselines of ``avworld eval model=...`` that imagine one modality; the others imagine both."""


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


def _eval_model(cfg: DictConfig) -> None:
    """Rollouts of the world model ``cfg.model``, copy-last and each baseline of ``cfg.baselines`` on the same windows."""
    import time

    import torch
    from tqdm import tqdm

    from avworld.data.windows import WindowConfig, WindowDataset
    from avworld.eval.prediction import CopyLast, Predictor, Separate, WorldPredictor, check_horizons, evaluate_prediction, format_table
    from avworld.models.imagination import Imagination

    run = cfg.eval_model
    device = run.device or ("cuda" if torch.cuda.is_available() else "cpu")
    data_ref = _data_ref(cfg)
    data = data_ref.load()
    paths = {"av_cdit": str(cfg.model)} | {k: str(v) for k, v in cfg.baselines.items() if v}
    worlds = {}
    for name, path in paths.items():
        world = Imagination.load(path, device)
        expected = MODALITIES_OF.get(name, ("video", "audio"))
        if world.modalities != expected:
            raise ValueError(f"{path}: the {name} model must imagine {expected}, this checkpoint imagines {world.modalities}")
        for key in ("rgb_shape", "audio_shape"):
            if list(world.meta[key]) != list(data.meta[key]):
                raise ValueError(f"{path}: trained on {key} {world.meta[key]}, the collection has {data.meta[key]}")
        worlds[name] = world

    predictors: dict[str, Predictor] = {"av_cdit": WorldPredictor(worlds["av_cdit"]), "copy_last": CopyLast(device=device)}
    if {"video_only", "audio_only"} <= worlds.keys():
        predictors["separate"] = Separate(WorldPredictor(worlds["video_only"]), WorldPredictor(worlds["audio_only"]))
    else:
        predictors |= {k: WorldPredictor(worlds[k]) for k in ("video_only", "audio_only") if k in worlds}
    predictors |= {k: WorldPredictor(worlds[k]) for k in ("no_experts", "joint") if k in worlds}

    horizons = check_horizons(list(run.horizons))
    context = max(p.context for p in predictors.values())
    split = cfg.data.split
    windows = WindowDataset(data, WindowConfig(context=context, horizon=horizons[-1], split=split, fractions=tuple(data_ref.fractions)))
    if len(windows) == 0:
        raise ValueError(
            f"no windows in split {split!r} of {data_ref.name}: horizon {horizons[-1]} after {context} context steps needs episodes of "
            f"at least {context + horizons[-1] - 1} steps; lower eval_model.horizons or evaluate longer episodes"
        )
    results, seconds = {}, {}
    for name, predictor in predictors.items():
        start = time.perf_counter()
        with tqdm(total=min(len(windows), run.windows), desc=name, unit="window") as bar:
            results[name] = evaluate_prediction(
                predictor, windows, context, horizons, run.batch_size, run.sampler_steps, run.seed, run.windows, run.max_lag, bar.update
            )
        seconds[name] = time.perf_counter() - start
    about = {name: _about(world.meta) for name, world in worlds.items()} | {"copy_last": "last context step repeated, reward 0, no end"}
    if "separate" in predictors:
        about["separate"] = f"video: {about.pop('video_only')}; audio: {about.pop('audio_only')}"
    table = format_table(results, about)
    evaluated = results["av_cdit"].windows
    out = output_dir()
    write_json(
        out / "prediction.json",
        {
            "checkpoints": paths,
            "data": {"root": data_ref.root, "name": data_ref.name, "split": split, "windows": len(windows), "evaluated": evaluated},
            "settings": OmegaConf.to_container(run),
            "models": {name: {"about": about.get(name, ""), "seconds": seconds[name], **r.as_dict()} for name, r in results.items()},
            "table": table,
        },
    )
    _report(cfg, out, "prediction")
    print(f"{data_ref.name}, split {split}: {evaluated} of {len(windows)} windows, context {context}, sampler steps {run.sampler_steps}")
    print(table)
    for note in dict.fromkeys(n for r in results.values() for n in r.notes):
        print(f"note: {note}")
    print(f"results written to {out / 'prediction.json'}")


def _report(cfg: DictConfig, out: Path, kind: str) -> None:
    """With ``report=true``: ``out/report/`` (index.html + assets) of ``out/{kind}.json``, with a rollout video of
    ``cfg.agent`` (``report_video_steps`` steps at most, 0 for none) and, for a world model, its imagination beside it."""
    import tempfile

    from avworld.viz.report import Section, Text, Video, navigation_sections, prediction_sections, tokenizer_sections, write_report

    if not cfg.get("report"):
        return
    result = json.loads((out / f"{kind}.json").read_text())
    if kind == "navigation":
        sections = navigation_sections(result, cfg.agent._target_.rsplit(".", 1)[-1])
    elif kind == "prediction":
        from avworld.eval.prediction import COLUMNS

        sections = prediction_sections(result, {k: v[0] for k, v in COLUMNS.items()})
    else:
        sections = tokenizer_sections(result)
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "rollout.mp4"
        if kind != "tokenizer" and cfg.get("report_video_steps", 0) > 0:
            about = _report_video(cfg, video, with_model=kind == "prediction")
            sections.append(Section("Rollout", [Text(about), Video(video)]))
        index = write_report(out / "report", f"avworld eval: {kind}", sections, intro=f"Results of {out / f'{kind}.json'}.")
    print(f"report written to {index}")


def _report_video(cfg: DictConfig, path: Path, with_model: bool) -> str:
    """The report's rollout video of ``cfg.agent`` at ``path`` (with ``cfg.model`` imagining beside it, in the simulator
    settings it learned, if ``with_model``); what it shows, in words."""
    from hydra.utils import instantiate

    from avworld.eval.rollouts import imagine, load_world, run_episode, write_rollout_video

    sim, world = sim_config(cfg), None
    if with_model:
        world = load_world(cfg.model, cfg.eval_model.device)
        sim = SimConfig.from_dict(world.meta["sim"])
    rollout = run_episode(sim, instantiate(cfg.agent), cfg.eval.split, cfg.eval.seed, None, int(cfg.report_video_steps))
    about = f"{cfg.agent._target_.rsplit('.', 1)[-1]} in a {cfg.eval.split} scene, seed {cfg.eval.seed}: the real view"
    if world is not None:
        imagine(rollout, world, sim, cfg.eval.seed, cfg.eval_model.sampler_steps)
        about += f", and beside it the world model imagining the same actions from {rollout.context} real steps"
    write_rollout_video(path, rollout, sim, fps=12.0, spectrogram_seconds=3.0)
    return about + "; the map, the binaural sound (left and right ear) and the reward."
