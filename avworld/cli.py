"""The ``avworld`` command: one subcommand per job, each a Hydra app over ``avworld.configs``.

    avworld demo [overrides...]          the whole loop, from nothing to an HTML report
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
from typing import Any

from omegaconf import DictConfig, OmegaConf

from avworld.sim.simulator import SimConfig

CONFIGS = "pkg://avworld.configs"
BENCH_TARGETS = ("sim", "data", "model", "dream")


def sim_config(cfg: DictConfig) -> SimConfig:
    """The typed :class:`SimConfig` of a job config; unknown or mistyped fields are refused by name."""
    merged = OmegaConf.merge(OmegaConf.structured(SimConfig), cfg.sim)
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def output_dir() -> Path:
    """The running Hydra job's output directory."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def write_json(path: Path, data: Any) -> None:
    """``data`` as indented JSON at ``path``, written to a temporary file and renamed into place."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


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
    """``avworld eval``: an agent, a tokenizer, a world model's predictions or the navigation benchmark (:mod:`avworld.cli_eval`)."""
    from avworld.cli_eval import eval_job as run

    run(cfg)


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
    out = Path(cfg.out_dir) if cfg.out_dir else output_dir()
    result = train_tokenizer(job, out)
    print(" ".join(f"{k}={v:.4g}" for k, v in result.items()))
    print(f"checkpoint: {out / 'checkpoint'}")


def _train_world_model(cfg: DictConfig) -> None:
    from avworld.train.world_model import WorldModelJob, stage_dir, stage_steps, train_world_model

    if cfg.model != "av_cdit":
        raise ValueError(f"model must be av_cdit, got {cfg.model!r}")
    if not cfg.out_dir:
        raise ValueError("out_dir must be set for the world model: its stages follow one another there (out_dir=runs/wm)")
    train = OmegaConf.merge(cfg.preset.world_model.train, {"steps": stage_steps(cfg.preset.world_model, str(cfg.stage))})
    fields = {"model": cfg.preset.world_model.model, "train": train, "data": cfg.data}
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
    out = Path(cfg.out_dir) if cfg.out_dir else output_dir()
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
    out = Path(cfg.out) if Path(cfg.out).is_absolute() else output_dir() / cfg.out
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


JOBS: dict[str, tuple[Callable[[DictConfig], None], str]] = {
    "demo": (demo_job, "the whole loop: collect, tokenizers, AV-CDiT, prediction, navigation in imagination, report"),
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
