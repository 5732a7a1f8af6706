"""The ``avworld`` command: one subcommand per job, each a Hydra app over ``avworld.configs``.

    avworld demo [overrides...]          the main job
    avworld eval [overrides...]          evaluate an agent (agent=oracle|random|planner|cem, eval.episodes=N),
                                         a tokenizer (tokenizer=CHECKPOINT), a world model (model=CHECKPOINT baselines.joint=...)
                                         or run the navigation benchmark (nav=benchmark world_model=CHECKPOINT nav.episodes=N)
    avworld train [overrides...]         train a tokenizer (tokenizer=video|audio preset=tiny|small|base data.name=...),
                                         the world model (model=av_cdit stage=1|2|3|joint tokenizers.video=... out_dir=...)
                                         or a PPO agent (agent=ppo world=real|dream checkpoint=WORLD agent_train=tiny|small)
    avworld collect [overrides...]       collect trajectories into Minari shards (collect=tiny, collect.episodes=N)
    avworld precompute [overrides...]    fill a scene's acoustic cache (scene=PATH or scene_seed=N, workers=N)
    avworld viz [overrides...]           a video with sound of an agent's episode (agent=random, seed=N, max_steps=N),
                                         with checkpoint=DIR the world model's imagination of it beside the real view
    avworld play [overrides...]          drive the agent with the keyboard in a window (world=real|dream checkpoint=DIR)
    avworld bench TARGET [--json] [...]  speed figures (TARGET: sim, data, model, dream)

Overrides are Hydra's (``sim=avw4k``, ``sim.render.width=128``, ``--cfg job``, ``-m``).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from avworld.sim.simulator import SimConfig

if TYPE_CHECKING:
    from avworld.train.tokenizers import DataRef

CONFIGS = "pkg://avworld.configs"
BENCH_TARGETS = ("sim", "data", "model", "dream")


def sim_config(cfg: DictConfig) -> SimConfig:
    """The typed :class:`SimConfig` of a job config; unknown or mistyped fields are refused by name."""
    merged = OmegaConf.merge(OmegaConf.structured(SimConfig), cfg.sim)
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def _output_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


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


def demo_job(cfg: DictConfig) -> None:
    """The whole loop (see :mod:`avworld.demo`): collect → tokenizers → AV-CDiT stages → prediction → navigation → report."""
    import avworld  # noqa: F401  (registers the envs)
    from avworld.demo import DemoConfig, build_pipeline, write_demo_report

    config = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(DemoConfig), cfg.demo))
    assert isinstance(config, DemoConfig)
    sizes, device = config.resolve()
    pipeline = build_pipeline(config, sim_config(cfg))
    mode = "quick" if config.quick else "default"
    print(f"avworld demo ({mode} sizes, {device}): stages under {Path(config.root).resolve()}; re-running reuses finished stages")
    results = pipeline.run(force=config.force, on_stage=lambda name, status: status == "reused" and print(f"  {name}: reused"))
    report = write_demo_report(Path(config.root), results, sizes)
    print(results["navigation"]["table"])
    print(f"report: {report.resolve()}")


def eval_job(cfg: DictConfig) -> None:
    """Evaluate ``cfg.agent`` in the real world (``navigation.json``), ``tokenizer=CHECKPOINT`` / ``model=CHECKPOINT`` on test
    scenes, or every agent of the navigation benchmark (``nav=benchmark``, ``navigation_benchmark.json``)."""
    import avworld  # noqa: F401

    if cfg.get("nav"):
        return _benchmark(cfg)
    if cfg.get("tokenizer"):
        return _eval_tokenizer(cfg)
    if cfg.get("model"):
        return _eval_model(cfg)
    result = _navigate(cfg, cfg.eval, cfg.agent, cfg.agent._target_.rsplit(".", 1)[-1])
    out = _output_dir()
    _write_json(out / "navigation.json", {"config": OmegaConf.to_container(cfg), **result})
    _report(cfg, out, "navigation")
    print(_table({"agent": result["summary"]}))
    print(f"results written to {out / 'navigation.json'}")


def _benchmark(cfg: DictConfig) -> None:
    """Agents ``nav.run`` of ``nav.agents`` on the same real episodes per sound set of ``nav.sounds`` (see avworld.eval.benchmark)."""
    from hydra.utils import instantiate
    from tqdm import tqdm

    from avworld.eval.benchmark import benchmark_json, format_benchmark_table, run_benchmark

    nav = cfg.nav
    for name in nav.run:
        if name not in nav.agents:
            raise ValueError(f"nav.run: no agent {name!r} in nav.agents ({', '.join(nav.agents)}); add one: +agent@nav.agents.{name}=FILE")
        agent = nav.agents[name]
        if "checkpoint" in agent and (OmegaConf.is_missing(agent, "checkpoint") or agent.checkpoint is None):
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
    out = _output_dir()
    _write_json(
        out / "navigation_benchmark.json",
        {"config": OmegaConf.to_container(cfg), "settings": settings, "agents": benchmark_json(runs, nav.level), "table": table},
    )
    print(table)
    print(f"results written to {out / 'navigation_benchmark.json'}")


def train_job(cfg: DictConfig) -> None:
    """Train a tokenizer (``tokenizer=video|audio``), the world model (``model=av_cdit stage=1|2|3|joint``) or an agent
    (``agent=ppo world=real|dream``); resumes."""
    from avworld.train.tokenizers import DataRef, TokenizerJob, train_tokenizer
    from avworld.train.trainer import TrainConfig

    if cfg.get("agent") is not None:
        return _train_agent(cfg)
    if cfg.model is not None:
        return _train_world_model(cfg)

    kinds = {"video": "video_vae", "audio": "audio_codec"}
    if cfg.tokenizer not in kinds:
        raise ValueError(f"tokenizer must be one of {', '.join(kinds)}, got {cfg.tokenizer!r}")
    job = OmegaConf.to_object(
        OmegaConf.merge(
            OmegaConf.structured(TokenizerJob),
            {"kind": kinds[cfg.tokenizer], "model": cfg.preset.model, "data": cfg.data, "train": cfg.preset.train},
        )
    )
    assert isinstance(job, TokenizerJob) and isinstance(job.data, DataRef) and isinstance(job.train, TrainConfig)
    out = Path(cfg.out_dir) if cfg.out_dir else _output_dir()
    result = train_tokenizer(job, out)
    print(" ".join(f"{k}={v:.4g}" for k, v in result.items()))
    print(f"checkpoint: {out / 'checkpoint'}")


def _train_world_model(cfg: DictConfig) -> None:
    from avworld.train.world_model import WorldModelJob, stage_dir, train_world_model

    if cfg.model != "av_cdit":
        raise ValueError(f"model must be av_cdit, got {cfg.model!r}")
    if not cfg.out_dir:
        raise ValueError("out_dir must be set for the world model: its stages follow one another there (out_dir=runs/wm)")
    fields = {"model": cfg.preset.world_model.model, "train": cfg.preset.world_model.train, "data": cfg.data}
    fields |= {k: cfg[k] for k in ("stage", "variant", "init", "tokenizers", "stop_windows", "stop_near")}
    job = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(WorldModelJob), fields))
    assert isinstance(job, WorldModelJob)
    result = train_world_model(job, cfg.out_dir)
    print(" ".join(f"{k}={v:.4g}" for k, v in result.items()))
    print(f"checkpoint: {stage_dir(cfg.out_dir, job.stage) / 'checkpoint'}")


def _train_agent(cfg: DictConfig) -> None:
    """PPO (``agent=ppo``) in ``cfg.world`` with the settings ``cfg.agent_train``; the agent lands in ``<out_dir>/checkpoint``."""
    from avworld.policies.ppo import AgentTrainConfig, train_ppo

    target = str(cfg.agent.get("_target_", ""))
    if not target.endswith(".PPOAgent"):
        raise ValueError(f"agent: avworld train trains agent=ppo, got an agent config for {target or cfg.agent!r}")
    fields = {"world": cfg.world, "checkpoint": cfg.checkpoint}
    config = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(AgentTrainConfig), cfg.agent_train, fields))
    assert isinstance(config, AgentTrainConfig)
    out = Path(cfg.out_dir) if cfg.out_dir else _output_dir()
    result = train_ppo(config, out)
    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items() if k != "world_model"))
    world = result["world_model"]
    if world is not None:
        print(f"world model {world['checkpoint']}: trained on {world['windows']} real transitions (its training windows)")
    print(f"agent: {out / 'checkpoint'} (avworld eval agent=ppo agent.path={out / 'checkpoint'})")


def collect_job(cfg: DictConfig) -> None:
    """Collect ``cfg.collect.episodes`` episodes into Minari shards under ``cfg.collect.root``; resumes unfinished runs."""
    import time

    from tqdm import tqdm

    from avworld.data.collect import CollectConfig, collect

    config = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(CollectConfig), cfg.collect))
    assert isinstance(config, CollectConfig)
    start, total = time.perf_counter(), [0]
    with tqdm(total=config.episodes, desc="episodes", unit="ep") as bar:

        def on_shard(episodes: int, steps: int) -> None:
            total[0] += steps
            bar.update(episodes)
            bar.set_postfix(steps_per_s=f"{total[0] / (time.perf_counter() - start):.0f}")

        result = collect(config, sim_config(cfg), on_shard=on_shard)
    print(f"{result['shards']} shards written, {result['skipped']} already done, {result['steps']} steps; in {config.root}")


def precompute_job(cfg: DictConfig) -> None:
    """Fill ``sim.acoustics.cache_dir`` with the sound paths of one scene, in ``cfg.workers`` processes."""
    from tqdm import tqdm

    from avworld.sim.loading import load_scene
    from avworld.sim.precompute import precompute
    from avworld.sim.procedural import generate_apartment

    sim = sim_config(cfg)
    if cfg.scene:
        scene = load_scene(cfg.scene, sim.agent.radius, sim.nav_cell)
    else:
        scene = generate_apartment(cfg.scene_seed, agent_radius=sim.agent.radius, episode=sim.episode)
    with tqdm(desc="positions", unit="pos") as bar:
        n = precompute(scene, sim.acoustics, sim.agent.height, sim.agent.radius, cfg.workers, on_progress=bar.update)
    print(f"{n} positions cached in {sim.acoustics.cache_dir}")


def viz_job(cfg: DictConfig) -> None:
    """``what=rollout``: one episode of ``cfg.agent`` in the real world as an MP4 with binaural sound (``cfg.out``); with
    ``checkpoint=DIR``, the world model's open-loop imagination of the same episode beside it."""
    if cfg.what != "rollout":
        raise ValueError(f"what must be 'rollout', got {cfg.what!r}")
    if cfg.audio == "imagined" and not cfg.checkpoint:
        raise ValueError("audio=imagined needs checkpoint=DIR, a world-model checkpoint")
    from hydra.utils import instantiate

    import avworld  # noqa: F401  (registers the envs)
    from avworld.eval.rollouts import imagine, load_world, run_episode, write_rollout_video

    sim = sim_config(cfg)
    rollout = run_episode(sim, instantiate(cfg.agent), cfg.split, cfg.seed, cfg.scene_seed, cfg.max_steps)
    if cfg.checkpoint:
        imagine(rollout, load_world(cfg.checkpoint, cfg.device, sim), sim, cfg.seed, cfg.sampler_steps)
    out = Path(cfg.out) if Path(cfg.out).is_absolute() else _output_dir() / cfg.out
    write_rollout_video(out, rollout, sim, cfg.fps, cfg.spectrogram_seconds, cfg.audio)
    print(f"video written to {out}")


def play_job(cfg: DictConfig) -> None:
    """Drive the agent with the keyboard in a pygame window (``world=real|dream``, ``checkpoint=DIR`` for the imagined world)."""
    import gymnasium as gym

    import avworld  # noqa: F401
    from avworld.eval.rollouts import load_world
    from avworld.viz.play import PlaySession, run

    if cfg.world not in ("real", "dream"):
        raise ValueError(f"world must be 'real' or 'dream', got {cfg.world!r}")
    if cfg.world == "dream" and not cfg.checkpoint:
        raise ValueError("world=dream needs checkpoint=DIR, a world-model checkpoint")
    sim = sim_config(cfg)
    sensors = ("rgb", "audio", "spectrogram")
    real = gym.make("avworld/AudioNav-v0", split=cfg.split, sim=sim, sensors=sensors, render_mode="rgb_array")
    dream, context = None, 1
    if cfg.checkpoint:
        world = load_world(cfg.checkpoint, cfg.device, sim)
        dream = gym.make("avworld/Dream-v0", checkpoint=world, sim=sim, sensors=sensors, sampler_steps=cfg.sampler_steps)
        context = world.context
    options = None if cfg.scene_seed is None else {"scene_seed": int(cfg.scene_seed)}
    session = PlaySession(real, dream, context=context, seed=cfg.seed, options=options, height=cfg.height)
    if cfg.world == "dream":
        session.press("tab")
    run(session, cfg.fps, list(cfg.script), sim.acoustics.fs)
    x, y, yaw = session.pose
    print(f"real pose at the end: x={x:.3f} y={y:.3f} yaw={math.degrees(yaw):.1f}°")


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
    out = _output_dir()
    _write_json(out / "tokenizer.json", {"checkpoint": str(cfg.tokenizer), "kind": ckpt.kind, "split": cfg.data.split, "scores": scores})
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
    out = _output_dir()
    _write_json(
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


JOBS: dict[str, tuple[Callable[[DictConfig], None], str]] = {
    "demo": (demo_job, "the main job: agents in the real world, with a summary"),
    "eval": (eval_job, "evaluate an agent (SR/SPL/SNA/DTG), a tokenizer or a world model's predictions"),
    "train": (train_job, "train a model: tokenizer=video|audio, model=av_cdit stage=1|2|3|joint, or agent=ppo world=real|dream"),
    "collect": (collect_job, "collect trajectories (rgb + binaural audio) into Minari datasets"),
    "precompute": (precompute_job, "fill a scene's on-disk acoustic cache in parallel"),
    "viz": (viz_job, "a video with sound of one episode: avworld viz agent=random seed=3 [checkpoint=WORLD_MODEL]"),
    "play": (play_job, "drive the agent with the keyboard, seeing and hearing: avworld play [world=dream checkpoint=DIR]"),
}


def _run_hydra(command: str, overrides: Sequence[str]) -> None:
    import hydra

    task, _ = JOBS[command]
    sys.argv = [f"avworld {command}", *overrides]
    hydra.main(version_base=None, config_path=CONFIGS, config_name=command)(task)()


def bench(argv: Sequence[str]) -> int:
    """``avworld bench TARGET [--json] [overrides...]``."""
    from hydra import compose, initialize_config_module

    args = [a for a in argv if a != "--json"]
    as_json = "--json" in argv
    if not args or args[0] not in BENCH_TARGETS:
        print(f"usage: avworld bench {{{','.join(BENCH_TARGETS)}}} [--json] [overrides...]", file=sys.stderr)
        return 2
    target, overrides = args[0], args[1:]
    with initialize_config_module(config_module="avworld.configs", version_base=None):
        cfg = compose(config_name="bench", overrides=list(overrides))
    if target == "sim":
        from avworld.bench import sim as bench_sim

        result = bench_sim.run(sim_config(cfg), **cfg.sim_bench)
    elif target == "data":
        from avworld.bench import data as bench_data

        result = bench_data.run(sim_config(cfg), **cfg.data_bench)
    elif target == "model":
        from avworld.bench import model as bench_model

        mb = OmegaConf.to_container(cfg.model_bench)
        result = bench_model.run(**{k: tuple(v) if isinstance(v, list) else v for k, v in mb.items()})  # type: ignore[union-attr]
    elif target == "dream":
        from avworld.bench import dream as bench_dream

        db = OmegaConf.to_container(cfg.dream_bench)
        result = bench_dream.run(sim_config(cfg), **{k: tuple(v) if isinstance(v, list) else v for k, v in db.items()})  # type: ignore[union-attr]
    if as_json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>24}: {v:.3f}" if isinstance(v, float) else f"{k:>24}: {v}")
    return 0


def _usage() -> str:
    lines = ["usage: avworld COMMAND [options] [hydra overrides...]", "", "commands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, help_) in JOBS.items()]
    lines.append(f"  {'bench':<8} speed figures: avworld bench {{{','.join(BENCH_TARGETS)}}} [--json]")
    lines += [
        "",
        "Each command takes Hydra overrides, e.g. `avworld eval agent=random eval.episodes=10 sim=avw4k`;",
        "`avworld COMMAND --help` shows its config.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "bench":
        return bench(rest)
    if command not in JOBS:
        print(f"avworld: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    if command == "viz" and rest and "=" not in rest[0] and not rest[0].startswith("-"):
        rest = [f"what={rest[0]}", *rest[1:]]  # `avworld viz rollout ...` reads as `avworld viz what=rollout ...`
    _run_hydra(command, rest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
