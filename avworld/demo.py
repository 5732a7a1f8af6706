"""``avworld demo``: the whole loop on the built-in simulator, from nothing to a report.

collect (train and test scenes) → tokenizers (video, audio) → AV-CDiT stages 1, 2, 3 →
prediction against copy-last → navigation benchmark with and without planning in
imagination (random, planner, oracle; heard and unheard sounds) → a rollout video with
sound (the planner's real episode, the world model's imagination beside it) → the HTML
report. Each step is a stage of :class:`avworld.pipeline.Pipeline` under ``demo.root``:
re-running reuses finished stages, a changed setting redoes its stage and those after
it, Ctrl-C and re-run continues, ``demo.force=true`` redoes everything. The sizes are YAML presets
(``configs/demo/``, :class:`DemoSizes`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avworld.pipeline import Pipeline, Stage
from avworld.sim.config import SimConfig


@dataclass
class DemoSizes:
    """How much of everything the demo does. The presets are YAML files a user can read and copy: ``configs/demo/default.yaml``
    (about 10 minutes on 2 CPU cores), ``quick.yaml`` (about 3) and ``gpu.yaml``, chosen by ``avworld demo demo=NAME``."""

    train_episodes: int
    train_scenes: int
    test_episodes: int
    test_scenes: int
    max_steps: int
    """Steps per collected episode."""
    tokenizer_preset: str
    tokenizer_steps: int
    tokenizer_batch_size: int
    """Items (frames or sound steps) per tokenizer training step."""
    world_model_preset: str
    world_model_steps: int
    """Per stage."""
    stop_windows: float
    """Counterfactual STOP windows per training window (:class:`avworld.train.world_model.LatentWindows`)."""
    stop_near: float
    """Share of them drawn from windows within reach of the source (:class:`~avworld.train.world_model.WorldModelJob`)."""
    batch_size: int
    """Windows per world-model training step."""
    eval_windows: int
    horizons: tuple[int, ...]
    nav_episodes: int
    nav_sounds: tuple[str, ...]
    nav_max_steps: int
    planner_horizon: int
    planner_beam: int
    video_steps: int

    def __post_init__(self) -> None:
        self.horizons, self.nav_sounds = tuple(self.horizons), tuple(self.nav_sounds)


@dataclass
class DemoConfig:
    sizes: DemoSizes
    """The sizes of the preset ``preset`` (``configs/demo/<preset>.yaml``), with the run's overrides."""
    preset: str = "default"
    root: str = "avworld-demo"
    """Where every stage keeps its work (reused by the next run); the report is ``<root>/report/index.html``."""
    force: bool = False
    device: str = "auto"
    """``auto``: CUDA when available (and then, with the ``default`` preset, the ``gpu`` one)."""
    seed: int = 0
    workers: int | None = None
    """Collection processes; None: :func:`default_workers`."""

    def __post_init__(self) -> None:
        if self.workers is None:
            self.workers = default_workers()
        if self.workers < 1:
            raise ValueError(f"demo.workers must be at least 1, got {self.workers}")

    def resolve_device(self) -> str:
        """The device of this run."""
        from avworld.models.imagination import choose_device

        return str(choose_device(self.device))


def default_workers() -> int:
    """Collection processes by default: every core but one (left to the main process), and at least two where there are
    two cores, whose main process only waits while collection runs (1 core: 1, 2: 2, 16: 15)."""
    cores = os.cpu_count() or 1
    return max(cores - 1, min(cores, 2))


@dataclass
class DemoJob:
    """``avworld demo``'s config."""

    demo: DemoConfig
    sim: SimConfig = field(default_factory=SimConfig)


def demo_preset(name: str) -> DemoSizes:
    """The sizes of ``configs/demo/<name>.yaml``."""
    from importlib.resources import files

    from omegaconf import OmegaConf

    path = files("avworld.configs") / "demo" / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"no demo preset {name!r} (configs/demo/{name}.yaml)")
    sizes = OmegaConf.merge(OmegaConf.structured(DemoSizes), OmegaConf.create(path.read_text())["sizes"])
    return OmegaConf.to_object(sizes)  # type: ignore[return-value]


def gpu_preset() -> Any:
    """The running ``avworld demo``'s config composed again with ``demo=gpu`` (its other overrides kept)."""
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig

    overrides = [o for o in HydraConfig.get().overrides.task if not o.lstrip("+~").startswith("demo=")]
    return compose("demo", overrides=[*overrides, "demo=gpu"])


def build_pipeline(config: DemoConfig, sim: SimConfig) -> Pipeline:
    """The demo's stages under ``config.root`` for simulator settings ``sim``."""
    sizes, device = config.sizes, config.resolve_device()
    settings = {"sim": dataclasses.asdict(sim), "seed": config.seed, "device": device}
    s = sizes
    stages = [
        Stage(
            "collect", _collect(sim, "train", s.train_episodes, s.train_scenes, s.max_steps, config), {**settings, "n": s.train_episodes}
        ),
        Stage(
            "collect_test", _collect(sim, "test", s.test_episodes, s.test_scenes, s.max_steps, config), {**settings, "n": s.test_episodes}
        ),
    ]
    tokenizer = {"preset": s.tokenizer_preset, "steps": s.tokenizer_steps}
    tokenizer |= {"batch": s.tokenizer_batch_size} if s.tokenizer_batch_size != 16 else {}  # demo roots of before stay valid
    for kind, name in (("video_vae", "video_tokenizer"), ("audio_codec", "audio_tokenizer")):
        stages.append(Stage(name, _tokenizer(kind, s, device, config.seed), tokenizer, ("collect",), cost=3))
    wm = {"preset": s.world_model_preset, "steps": s.world_model_steps, "batch": s.batch_size}
    wm |= {"stop_windows": s.stop_windows} | ({"stop_near": s.stop_near} if s.stop_near else {})  # demo roots of before stay valid
    stages.append(
        Stage("world_stage1", _world_model("1", s, device, config.seed), wm, ("collect", "video_tokenizer", "audio_tokenizer"), 2)
    )
    stages.append(Stage("world_stage2", _world_model("2", s, device, config.seed), wm, ("collect", "world_stage1"), 2))
    stages.append(Stage("world_stage3", _world_model("3", s, device, config.seed), wm, ("collect", "world_stage2"), 2))
    stages += [
        Stage(
            "prediction",
            _prediction(s, device, config.seed),
            {"windows": s.eval_windows, "horizons": list(s.horizons)},
            ("collect_test", "world_stage3"),
            cost=2,
        ),
        Stage(
            "navigation",
            _navigation(sim, s, device, config.seed),
            {
                **settings,
                "episodes": s.nav_episodes,
                "sounds": list(s.nav_sounds),
                "max_steps": s.nav_max_steps,
                "horizon": s.planner_horizon,
                "beam": s.planner_beam,
            },
            ("world_stage3",),
            cost=4,
        ),
        Stage("video", _video(sim, s, device, config.seed), {**settings, "steps": s.video_steps}, ("world_stage3",)),
    ]
    return Pipeline(config.root, stages)


# -- stages ------------------------------------------------------------------------------------


def _collect(sim: SimConfig, split: str, episodes: int, scenes: int, max_steps: int, config: DemoConfig) -> Any:
    def run(path: Path, needed: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
        from avworld.data.collect import CollectConfig, collect
        from avworld.data.storage import open_collection

        collection = CollectConfig(
            root=str(path), name=split, episodes=episodes, scenes=scenes, split=split, max_steps=max_steps,
            shard_size=max(1, episodes // 4), workers=config.workers, seed=config.seed,
        )  # fmt: skip
        collect(collection, sim)  # skips the shards an interrupted run finished
        steps = sum(shard.steps for shard in open_collection(path, split, strict=True))
        return {"root": str(path), "name": split, "steps": steps, "episodes": episodes}

    return run


def _tokenizer(kind: str, s: DemoSizes, device: str, seed: int) -> Any:
    def run(path: Path, needed: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
        from avworld.train.tokenizers import DataRef, TokenizerJob, train_tokenizer

        data = DataRef(root=needed["collect"]["root"], name=needed["collect"]["name"])
        steps = s.tokenizer_steps
        train = _schedule(steps, s.tokenizer_batch_size, seed, device)
        logs = train_tokenizer(TokenizerJob(kind=kind, model=s.tokenizer_preset, data=data, train=train), path, progress=False)
        return {"checkpoint": str(path / "checkpoint"), "loss": logs.get("loss")}

    return run


def _schedule(steps: int, batch_size: int, seed: int, device: str, ema: float = 0.0) -> Any:
    """A training schedule of ``steps`` steps: warm-up a tenth of it (≤ 100), four checkpoints, twenty log points."""
    from avworld.train.trainer import TrainConfig

    return TrainConfig(
        steps=steps, batch_size=batch_size, lr=1e-3, warmup=min(100, steps // 10 + 1), checkpoint_every=max(1, steps // 4),
        sample_every=steps, log_every=max(1, steps // 20), seed=seed, device=device, ema=ema,
    )  # fmt: skip


def _world_model(stage: str, s: DemoSizes, device: str, seed: int) -> Any:
    def run(path: Path, needed: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
        from avworld.train.tokenizers import DataRef
        from avworld.train.world_model import TokenizerRefs, WorldModelJob, stage_dir, train_world_model

        tokenizers = TokenizerRefs()
        init = None
        if stage == "1":
            tokenizers = TokenizerRefs(needed["video_tokenizer"]["checkpoint"], needed["audio_tokenizer"]["checkpoint"])
        else:
            init = needed[f"world_stage{int(stage) - 1}"]["checkpoint"]
        steps = s.world_model_steps
        train = _schedule(steps, s.batch_size, seed, device, ema=0.99)
        data = DataRef(root=needed["collect"]["root"], name=needed["collect"]["name"])
        job = WorldModelJob(
            model=s.world_model_preset,
            stage=stage,
            init=init,
            tokenizers=tokenizers,
            data=data,
            train=train,
            stop_windows=s.stop_windows,
            stop_near=s.stop_near,
        )
        logs = train_world_model(job, path, progress=False)
        return {"checkpoint": str(stage_dir(path, stage) / "checkpoint"), "loss": logs.get("loss")}

    return run


def _prediction(s: DemoSizes, device: str, seed: int) -> Any:
    def run(path: Path, needed: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
        from avworld.data.windows import WindowConfig, WindowDataset
        from avworld.eval.prediction import CopyLast, WorldPredictor, evaluate_prediction, format_table
        from avworld.models.imagination import Imagination
        from avworld.train.tokenizers import DataRef

        world = Imagination.load(needed["world_stage3"]["checkpoint"], device)
        test = needed["collect_test"]
        data = DataRef(root=test["root"], name=test["name"]).load()
        windows = WindowDataset(data, WindowConfig(context=world.context, horizon=max(s.horizons), split="test"))
        models = {"av_cdit": WorldPredictor(world), "copy_last": CopyLast()}
        fs = data.meta["sample_rate"]
        scores = {
            name: evaluate_prediction(p, windows, world.context, s.horizons, max_windows=s.eval_windows, seed=seed, sample_rate=fs)
            for name, p in models.items()
        }
        about = {
            "av_cdit": f"{s.world_model_preset}, stages 1→2→3, {3 * s.world_model_steps} steps",
            "copy_last": "last context step repeated",
        }
        return {
            "data": {"name": test["name"], "split": "test", "windows": len(windows), "evaluated": scores["av_cdit"].windows},
            "settings": {"sampler_steps": 4, "horizons": list(s.horizons)},
            "models": {name: {"about": about[name], **r.as_dict()} for name, r in scores.items()},
            "table": format_table(scores, about),
        }

    return run


def _planner(checkpoint: str, s: DemoSizes, device: str) -> Any:
    from avworld.policies.planner import BeamPlanner

    return BeamPlanner(checkpoint, horizon=s.planner_horizon, beam=s.planner_beam, device=device)


def _navigation(sim: SimConfig, s: DemoSizes, device: str, seed: int) -> Any:
    def run(path: Path, needed: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
        from avworld.eval.benchmark import benchmark_json, format_benchmark_table, run_benchmark
        from avworld.policies import OraclePolicy, RandomPolicy

        short = dataclasses.replace(sim, episode=dataclasses.replace(sim.episode, max_steps=s.nav_max_steps))
        agents = {"random": RandomPolicy(), "planner": _planner(needed["world_stage3"]["checkpoint"], s, device), "oracle": OraclePolicy()}
        runs = run_benchmark(agents, short, s.nav_sounds, "test", s.nav_episodes, seed)
        return {"agents": benchmark_json(runs), "table": format_benchmark_table(runs), "max_steps": s.nav_max_steps}

    return run


def _video(sim: SimConfig, s: DemoSizes, device: str, seed: int) -> Any:
    def run(path: Path, needed: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
        from avworld.eval.rollouts import imagine, run_episode, write_rollout_video
        from avworld.models.imagination import load_world

        checkpoint = needed["world_stage3"]["checkpoint"]
        rollout = run_episode(sim, _planner(checkpoint, s, device), "test", seed, None, s.video_steps, progress=False)
        imagine(rollout, load_world(checkpoint, device), sim, seed, 4)
        video = path / "rollout.mp4"
        write_rollout_video(video, rollout, sim, fps=12.0, spectrogram_seconds=3.0)
        return {"video": str(video), "steps": len(rollout.actions), "return": sum(rollout.rewards)}

    return run


# -- the report --------------------------------------------------------------------------------


def write_demo_report(root: Path, results: Mapping[str, dict[str, Any]], sizes: DemoSizes) -> Path:
    """``<root>/report/index.html`` from the stages' results."""
    from avworld.viz.report import Section, Table, Text, Video, prediction_sections, write_report

    collected = results["collect"]
    intro = (
        f"The whole avworld loop on the built-in simulator: {collected['episodes']} training episodes "
        f"({collected['steps']} steps) in procedural apartments, {sizes.tokenizer_preset} tokenizers, AV-CDiT "
        f"{sizes.world_model_preset} trained in three stages ({sizes.world_model_steps} steps each), evaluated on test scenes."
    )
    nav = results["navigation"]
    rows = []
    for name, agent in nav["agents"].items():
        for sound, per in agent["sounds"].items():
            summary = per["summary"]
            rows.append([name, sound, *(summary[m]["mean"] for m in ("SR", "SPL", "SNA", "DTG")), agent["real_steps"]])
    sections = [
        Section(
            "Rollout", [Video(results["video"]["video"], "the planner in a test scene (left), the world model imagining the same actions")]
        ),
        Section(
            "Navigation",
            [
                Text(f"{sizes.nav_episodes} test episodes per agent and sound set, at most {nav['max_steps']} steps each."),
                Table(["agent", "sounds", "SR", "SPL", "SNA", "DTG (m)", "real steps"], rows),
            ],
        ),
        *prediction_sections(results["prediction"]),
        Section("Stages", [Table(["stage", "seconds"], [[name, r.get("seconds")] for name, r in results.items()])]),
    ]
    return write_report(root / "report", "avworld demo", sections, intro)
