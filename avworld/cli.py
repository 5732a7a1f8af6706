"""The ``avworld`` command: one subcommand per job, each a Hydra app over ``avworld.configs`` with a typed config
(:mod:`avworld.cli_config`): an unknown key or a mistyped value is an error that names it.

    avworld demo [demo=quick|gpu] [...]      the whole loop, from nothing to an HTML report
    avworld eval [JOB] [overrides...]        JOB: navigation (default: an agent, agent=oracle|random|planner|cem eval.episodes=N),
                                             benchmark (world_model=CHECKPOINT nav.episodes=N), tokenizer (checkpoint=DIR),
                                             world_model (checkpoint=DIR baselines.joint=...)
    avworld train JOB [overrides...]         JOB: tokenizer (kind=video|audio preset=tiny|small|base data.name=...),
                                             world_model (stage=1|2|3|joint tokenizers.video=... out_dir=...),
                                             agent (agent=ppo world=real|dream checkpoint=WORLD agent_train=tiny|small|pool;
                                             agent=imagination checkpoint=WORLD data.name=...: actor-critic in imagination)
    avworld collect [overrides...]           collect trajectories into Minari shards (collect=tiny, collect.episodes=N)
    avworld precompute [overrides...]        fill scenes' acoustic caches (scene=PATH or scene_seed=N, workers=N)
    avworld viz [rollout] [overrides...]     a video with sound of an agent's episode (agent=random, seed=N, max_steps=N),
                                             with checkpoint=DIR the world model's imagination of it beside the real view
    avworld play [overrides...]              drive the agent with the keyboard in a window (world=real|dream checkpoint=DIR)
    avworld bench TARGET [--json] [...]      speed figures (TARGET: sim, data, model, dream)

Every command that runs episodes takes ``scene=PATH`` (a scene JSON, a folder of them, or ``'scene=[a.json,b.json]'``)
instead of the split's procedural scenes. Overrides are Hydra's (``sim=avw4k``, ``sim.render.width=128``, ``--cfg job``, ``-m``).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from avworld.cli_config import (
    Collect,
    JobConfigError,
    Play,
    Precompute,
    TrainAgent,
    TrainTokenizer,
    TrainWorldModel,
    Viz,
    output_dir,
    scenes_of,
    sim_config,
    typed,
)

CONFIGS = "pkg://avworld.configs"
BENCH_TARGETS = ("sim", "data", "model", "dream")
BENCH_KEYS = ("sim", "sim_bench", "data_bench", "model_bench", "dream_bench")


def demo_job(cfg: DictConfig) -> None:
    """The whole loop (see :mod:`avworld.demo`): collect → tokenizers → AV-CDiT stages → prediction → navigation → report."""
    import avworld  # noqa: F401  (registers the envs)
    from avworld.demo import DemoJob, build_pipeline, gpu_preset, write_demo_report

    job = typed(DemoJob, cfg)
    config = job.demo
    device = config.resolve_device()
    if device == "cuda" and config.preset == "default":
        config = typed(DemoJob, gpu_preset()).demo  # as `demo=gpu` (the overrides of this run kept)
    print(f"avworld demo ({config.preset} sizes, {device}): stages under {Path(config.root).resolve()}; re-running reuses finished stages")
    pipeline = build_pipeline(config, job.sim)
    results = pipeline.run(force=config.force, on_stage=lambda name, status: status == "reused" and print(f"  {name}: reused"))
    report = write_demo_report(Path(config.root), results, config.sizes)
    print(results["navigation"]["table"])
    print(f"report: {report.resolve()}")


def train_tokenizer_job(cfg: DictConfig) -> None:
    """``avworld train tokenizer kind=video|audio``: the video autoencoder or the audio codec on a collection; resumes."""
    from avworld.train.tokenizers import TokenizerJob, train_tokenizer

    job = typed(TrainTokenizer, cfg)
    kinds = {"video": "video_vae", "audio": "audio_codec"}
    if job.kind not in kinds:
        raise JobConfigError(f"kind: one of {', '.join(kinds)}, got {job.kind!r}")
    fields = {"kind": kinds[job.kind], "model": job.preset["model"], "train": job.preset["train"]}
    tokenizer = typed(TokenizerJob, OmegaConf.create(fields))
    tokenizer.data = job.data
    out = Path(job.out_dir) if job.out_dir else output_dir()
    result = train_tokenizer(tokenizer, out)
    print(" ".join(f"{k}={v:.4g}" for k, v in result.items()))
    print(f"checkpoint: {out / 'checkpoint'}")


def train_world_model_job(cfg: DictConfig) -> None:
    """``avworld train world_model stage=1|2|3|joint out_dir=DIR``: one stage of AV-CDiT; resumes."""
    import dataclasses

    from avworld.train.world_model import WorldModelJob, stage_dir, stage_steps, train_world_model

    job = typed(TrainWorldModel, cfg)
    preset = job.preset["world_model"]
    train = dict(preset["train"], steps=stage_steps(preset, job.stage))
    fields = {"model": preset["model"], "train": train, "data": dataclasses.asdict(job.data)}
    fields |= {k: getattr(job, k) for k in ("stage", "variant", "init", "stop_windows", "stop_near", "loss_weights")}
    fields["tokenizers"] = dataclasses.asdict(job.tokenizers)
    fields["flow"] = preset.get("flow", {})  # stages 2 and 3 keep the previous stage's (its config.yaml)
    world = typed(WorldModelJob, OmegaConf.create(fields))
    result = train_world_model(world, job.out_dir)
    print(" ".join(f"{k}={v:.4g}" for k, v in result.items()))
    checkpoint = stage_dir(job.out_dir, world.stage) / "checkpoint"
    read = json.loads((checkpoint / "meta.json").read_text())["data"].get("collections", [])
    print("training windows: " + ", ".join(f"{c['name']} {c['windows']:,}" for c in read))
    print(f"checkpoint: {checkpoint}")


def train_agent_job(cfg: DictConfig) -> None:
    """``avworld train agent``: PPO (``agent=ppo``) in ``world`` with the settings ``agent_train``; the agent lands in
    ``<out_dir>/checkpoint``."""
    from avworld.policies.ppo import AgentTrainConfig, train_ppo

    job = typed(TrainAgent, cfg)
    target = str(job.agent.get("_target_", ""))
    if target.endswith(".ImaginationAgent"):
        return train_imagination_job(job)
    if not target.endswith(".PPOAgent"):
        raise JobConfigError(f"agent: avworld train agent trains agent=ppo, got an agent config for {target or job.agent!r}")
    config = typed(AgentTrainConfig, OmegaConf.create({**job.agent_train, "world": job.world, "checkpoint": job.checkpoint}))
    out = Path(job.out_dir) if job.out_dir else output_dir()
    result = train_ppo(config, out)
    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items() if k != "world_model"))
    world = result["world_model"]
    if world is not None:
        print(f"world model {world['checkpoint']}: trained on {world['windows']} real transitions (its training windows)")
    print(f"agent: {out / 'checkpoint'} (avworld eval agent=ppo agent.path={out / 'checkpoint'})")


def train_imagination_job(job: TrainAgent) -> None:
    """``avworld train agent agent=imagination checkpoint=WORLD data.name=...``: behaviour cloning on the collection, then
    actor-critic in the world model's imagination (:mod:`avworld.policies.imagination_train`); no real-env steps."""
    import dataclasses

    from avworld.policies.imagination_train import ImaginationTrainConfig, train_imagination

    if not job.checkpoint:
        raise JobConfigError("checkpoint: agent=imagination trains in a world model: checkpoint=DIR (or checkpoint=pretrained)")
    fields = {**job.imagination, "checkpoint": job.checkpoint, "data": {**dataclasses.asdict(job.data), "split": "train"}}
    config = typed(ImaginationTrainConfig, OmegaConf.create(fields))
    out = Path(job.out_dir) if job.out_dir else output_dir()
    result = train_imagination(config, out)
    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items()))
    print(f"agent: {out / 'checkpoint'} (avworld eval agent=imagination agent.path={out / 'checkpoint'})")


def collect_job(cfg: DictConfig) -> None:
    """Collect ``collect.episodes`` episodes into Minari shards under ``collect.root`` (of the user's scenes with
    ``scene=PATH``); resumes unfinished runs."""
    import dataclasses
    import time

    from tqdm import tqdm

    from avworld.data.collect import CollectConfig, collect

    job = typed(Collect, cfg)
    config = typed(CollectConfig, OmegaConf.create(job.collect))
    scene = scenes_of(job.scene)
    if scene is not None:
        config = dataclasses.replace(config, scene=scene)
    start, total = time.perf_counter(), [0]
    with tqdm(total=config.episodes, desc="episodes", unit="ep") as bar:

        def on_shard(episodes: int, steps: int) -> None:
            total[0] += steps
            bar.update(episodes)
            bar.set_postfix(steps_per_s=f"{total[0] / (time.perf_counter() - start):.0f}")

        result = collect(config, job.sim, on_shard=on_shard)
    print(f"{result['shards']} shards written, {result['skipped']} already done, {result['steps']} steps; in {config.root}")


def precompute_job(cfg: DictConfig) -> None:
    """Fill ``sim.acoustics.cache_dir`` with the sound paths of the scenes ``scene`` (or the procedural one of ``scene_seed``),
    in ``workers`` processes; the scenes are those the env plays under ``sim``."""
    from tqdm import tqdm

    from avworld.sim.acoustics.precompute import precompute
    from avworld.sim.scenes.source import scene_source

    job = typed(Precompute, cfg)
    sim, scene = job.sim, scenes_of(job.scene)
    source = scene_source(scene, sim)
    n = 0
    for one in (source.scene(i) for i in (source.ids() if scene is not None else [job.scene_seed])):
        with tqdm(desc=f"positions of {one.name or 'the scene'}", unit="pos") as bar:
            n += precompute(one, sim.acoustics, sim.agent.height, sim.agent.radius, job.workers, on_progress=bar.update)
    print(f"{n} positions cached in {sim.acoustics.cache_dir}")


def viz_job(cfg: DictConfig) -> None:
    """``what=rollout``: one episode of ``agent`` in the real world as an MP4 with binaural sound (``out``); with
    ``checkpoint=DIR``, the world model's open-loop imagination of the same episode beside it."""
    job = typed(Viz, cfg)
    if job.what != "rollout":
        raise JobConfigError(f"what: must be 'rollout', got {job.what!r}")
    if job.audio == "imagined" and not job.checkpoint:
        raise JobConfigError("audio=imagined needs checkpoint=DIR, a world-model checkpoint")
    from hydra.utils import instantiate

    import avworld  # noqa: F401  (registers the envs)
    from avworld.eval.rollouts import imagine, run_episode, write_rollout_video
    from avworld.models.imagination import load_world

    sim, scene = job.sim, scenes_of(job.scene)
    rollout = run_episode(sim, instantiate(job.agent), job.split, job.seed, job.scene_seed, job.max_steps, scene=scene)
    if job.checkpoint:
        imagine(rollout, load_world(job.checkpoint, job.device), sim, job.seed, job.sampler_steps)
    out = Path(job.out) if Path(job.out).is_absolute() else output_dir() / job.out
    write_rollout_video(out, rollout, sim, job.fps, job.spectrogram_seconds, job.audio)
    print(f"video written to {out}")


def play_job(cfg: DictConfig) -> None:
    """Drive the agent with the keyboard in a pygame window (``world=real|dream``, ``checkpoint=DIR`` for the imagined world)."""
    import gymnasium as gym

    import avworld  # noqa: F401
    from avworld.models.imagination import load_world
    from avworld.viz.play import PlaySession, run

    job = typed(Play, cfg)
    if job.world not in ("real", "dream"):
        raise JobConfigError(f"world: must be 'real' or 'dream', got {job.world!r}")
    if job.world == "dream" and not job.checkpoint:
        raise JobConfigError("world=dream needs checkpoint=DIR, a world-model checkpoint")
    sim, scene = job.sim, scenes_of(job.scene)
    sensors = ("rgb", "audio", "spectrogram")
    real = gym.make("avworld/AudioNav-v0", split=job.split, sim=sim, sensors=sensors, render_mode="rgb_array", scene=scene)
    dream, context = None, 1
    if job.checkpoint:
        world = load_world(job.checkpoint, job.device)  # Dream-v0 checks sim against it
        dream = gym.make("avworld/Dream-v0", checkpoint=world, sim=sim, sensors=sensors, sampler_steps=job.sampler_steps)
        context = world.context
    options = None if job.scene_seed is None else {"scene_seed": int(job.scene_seed)}
    session = PlaySession(real, dream, context=context, seed=job.seed, options=options, height=job.height)
    if job.world == "dream":
        session.press("tab")
    run(session, job.fps, list(job.script), sim.acoustics.fs)
    x, y, yaw = session.pose
    print(f"real pose at the end: x={x:.3f} y={y:.3f} yaw={math.degrees(yaw):.1f}°")


def _eval(name: str) -> Callable[[DictConfig], None]:
    """The ``avworld eval`` job ``name`` of :mod:`avworld.cli_eval` over its typed config."""

    def task(cfg: DictConfig) -> None:
        import avworld.cli_config as schemas
        import avworld.cli_eval as jobs

        schema = {"navigation": schemas.EvalNavigation, "benchmark": schemas.EvalBenchmark, "merge": schemas.EvalMerge}.get(name)
        schema = schema or {"tokenizer": schemas.EvalTokenizer, "world_model": schemas.EvalWorldModel}[name]
        getattr(jobs, f"{name}_job")(typed(schema, cfg))

    return task


@dataclass(frozen=True)
class Job:
    """One job of a command: its function over the composed config, its config file and a line of help."""

    run: Callable[[DictConfig], None]
    config: str
    help: str


JOBS: dict[str, dict[str, Job]] = {
    "demo": {"demo": Job(demo_job, "demo", "the whole loop: collect, tokenizers, AV-CDiT, prediction, navigation in imagination, report")},
    "eval": {
        "navigation": Job(_eval("navigation"), "eval", "an agent in the real world: SR/SPL/SNA/DTG (agent=oracle eval.episodes=N)"),
        "benchmark": Job(_eval("benchmark"), "eval_benchmark", "every agent on the same episodes, heard and unheard sounds"),
        "merge": Job(_eval("merge"), "eval_merge", "benchmark files run apart in one table, paired where the episodes agree"),
        "tokenizer": Job(_eval("tokenizer"), "eval_tokenizer", "a tokenizer checkpoint on a collection (checkpoint=DIR)"),
        "world_model": Job(_eval("world_model"), "eval_world_model", "a world model's imagined rollouts vs copy-last (checkpoint=DIR)"),
    },
    "train": {
        "tokenizer": Job(train_tokenizer_job, "train_tokenizer", "the video autoencoder or the audio codec (kind=video|audio)"),
        "world_model": Job(train_world_model_job, "train_world_model", "one AV-CDiT stage (stage=1|2|3|joint out_dir=DIR)"),
        "agent": Job(
            train_agent_job, "train_agent", "PPO in the real world or in imagination (world=real|dream); agent=imagination checkpoint=WORLD"
        ),
    },
    "collect": {"collect": Job(collect_job, "collect", "collect trajectories (rgb + binaural audio) into Minari datasets")},
    "precompute": {"precompute": Job(precompute_job, "precompute", "fill scenes' on-disk acoustic caches in parallel")},
    "viz": {"rollout": Job(viz_job, "viz", "a video with sound of one episode: avworld viz agent=random seed=3 [checkpoint=WORLD_MODEL]")},
    "play": {"play": Job(play_job, "play", "drive the agent with the keyboard, seeing and hearing (world=real|dream checkpoint=DIR)")},
}
DEFAULT_JOBS = {"demo": "demo", "eval": "navigation", "collect": "collect", "precompute": "precompute", "viz": "rollout", "play": "play"}
"""The job a command runs when none is named; ``train`` has none: its job is always named."""
MOVED = {
    ("eval", "tokenizer"): "avworld eval tokenizer checkpoint=DIR ...",
    ("eval", "model"): "avworld eval world_model checkpoint=DIR ...",
    ("eval", "nav"): "avworld eval benchmark ...",
    ("eval", "world_model"): "avworld eval benchmark world_model=DIR ...",
    ("demo", "demo.quick"): "avworld demo demo=quick",
}
"""Keys that chose a job (or a preset) before the job was named: an error pointing to the new spelling."""


def _run_hydra(command: str, job: Job, overrides: Sequence[str]) -> None:
    """Run ``job`` as a Hydra app; ``sys.argv[0]`` becomes the command as typed (``avworld train world_model``), for the
    records that quote it (a checkpoint's provenance)."""
    import hydra

    sys.argv = [f"avworld {command}", *overrides]
    hydra.main(version_base=None, config_path=CONFIGS, config_name=job.config)(job.run)()


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
    unknown = sorted(set(cfg) - set(BENCH_KEYS))
    if unknown:
        print(f"avworld bench: unknown setting {unknown[0]!r}; known: {', '.join(BENCH_KEYS)}", file=sys.stderr)
        return 2
    sim = sim_config(cfg)
    if target == "sim":
        from avworld.bench import sim as bench_sim

        result = bench_sim.run(sim, **cfg.sim_bench)
    elif target == "data":
        from avworld.bench import data as bench_data

        result = bench_data.run(sim, **cfg.data_bench)
    elif target == "model":
        from avworld.bench import model as bench_model

        mb = OmegaConf.to_container(cfg.model_bench)
        result = bench_model.run(**{k: tuple(v) if isinstance(v, list) else v for k, v in mb.items()})  # type: ignore[union-attr]
    elif target == "dream":
        from avworld.bench import dream as bench_dream

        db = OmegaConf.to_container(cfg.dream_bench)
        result = bench_dream.run(sim, **{k: tuple(v) if isinstance(v, list) else v for k, v in db.items()})  # type: ignore[union-attr]
    if as_json:
        from avworld.jsonfile import dumps

        print(dumps(result, indent=None))
    else:
        for k, v in result.items():
            print(f"{k:>24}: {v:.3f}" if isinstance(v, float) else f"{k:>24}: {v}")
    return 0


def _usage() -> str:
    lines = ["usage: avworld COMMAND [JOB] [hydra overrides...]", "", "commands:"]
    for command, jobs in JOBS.items():
        if len(jobs) == 1:
            lines.append(f"  {command:<12} {next(iter(jobs.values())).help}")
            continue
        lines.append(f"  {command:<12} JOB: " + ("one of" if command not in DEFAULT_JOBS else f"default {DEFAULT_JOBS[command]}"))
        lines += [f"    {name:<14} {job.help}" for name, job in jobs.items()]
    lines.append(f"  {'bench':<12} speed figures: avworld bench {{{','.join(BENCH_TARGETS)}}} [--json]")
    lines += [
        "",
        "Each command takes Hydra overrides, e.g. `avworld eval agent=random eval.episodes=10 sim=avw4k`; every command that",
        "runs episodes takes scene=PATH (a scene JSON, a folder of them or a list). `avworld COMMAND [JOB] --cfg job` shows its config.",
    ]
    return "\n".join(lines)


def _moved(command: str, overrides: Sequence[str]) -> str | None:
    """The new spelling of an override that chose a job before jobs were named, if any."""
    for override in overrides:
        key = override.lstrip("+~").split("=", 1)[0]
        if "=" in override and (command, key) in MOVED:
            return f"avworld {command}: {key}= no longer chooses what to run; now: {MOVED[command, key]}"
    return None


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
    jobs = JOBS[command]
    named = rest[0] if rest and "=" not in rest[0] and not rest[0].startswith("-") else None
    if named is not None and named not in jobs:
        print(f"avworld {command}: unknown job {named!r}; jobs: {', '.join(jobs)}", file=sys.stderr)
        return 2
    name = named or DEFAULT_JOBS.get(command)
    if name is None:
        print(f"avworld {command}: name the job first: avworld {command} {{{','.join(jobs)}}} [overrides...]", file=sys.stderr)
        return 2
    overrides = rest[1:] if named else rest
    hint = _moved(command, overrides) if named is None else None
    if hint:
        print(hint, file=sys.stderr)
        return 2
    _run_hydra(f"{command} {name}" if named else command, jobs[name], overrides)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
