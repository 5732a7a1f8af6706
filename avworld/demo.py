"""``avworld demo``: the whole loop on the built-in simulator, from nothing to a report.

collect (train and test scenes) → tokenizers (video, audio) → AV-CDiT stages 1, 2, 3 →
prediction against copy-last → navigation benchmark with and without planning in
imagination (random, planner, oracle; heard and unheard sounds) → a rollout video with
sound (the planner's real episode, the world models' imaginations beside it) → the HTML
report. Beside the model it trains from scratch, the demo shows the pretrained world model
avworld ships (``demo.pretrained``, :func:`shipped_world`): its prediction scores on the same
test windows and its imagination of the same episode; without one (none shipped, or trained
with other simulator settings) those parts are skipped with a note.

Each step is a stage of :class:`avworld.pipeline.Pipeline` under ``demo.root``:
re-running reuses finished stages, a changed setting redoes its stage and those after
it, Ctrl-C and re-run continues, ``demo.force=true`` redoes everything. The sizes are YAML presets
(``configs/demo/``, :class:`DemoSizes`).
"""

from __future__ import annotations

import dataclasses
import json
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
    pretrained: str | None = "pretrained"
    """The world model shown beside the one trained in the demo: a shipped one's name (``pretrained``, ``pretrained:<name>``)
    or a checkpoint directory; None: none (see :func:`shipped_world`)."""

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


PRETRAINED, OWN = "pretrained (shipped)", "trained in this demo"
"""The names of the two world models in the report's tables."""


def shipped_world(spec: str | None, sim: SimConfig) -> dict[str, Any]:
    """What the demo shows of world model ``spec`` (``demo.pretrained``) beside its own, known before anything runs:
    ``{"spec", "files": {file: sha256}, "about", "provenance"}``, or ``{"spec", "skipped": why}`` where there is none to
    show: ``spec`` None, an install that ships none, an unknown name, a missing or edited file, or a model trained with other
    simulator settings than ``sim`` (the refusal names each setting). The file hashes key the stages that use it, so
    installing other weights redoes just those."""
    from avworld.envs.dream_config import check_learned
    from avworld.models.pretrained import CHECKPOINT_FILES, available, file_sha256, is_pretrained, resolve_checkpoint

    if spec is None:
        return {"spec": None, "skipped": "demo.pretrained=null"}
    try:
        folder = resolve_checkpoint(spec)  # a shipped one's files checked against the index
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        check_learned(sim, SimConfig.from_dict(meta["sim"]), "the demo's sim", str(spec))
    except (OSError, ValueError, KeyError) as err:  # CheckpointError is a ValueError
        return {"spec": spec, "skipped": str(err) if not isinstance(err, KeyError) else f"{spec}: meta.json has no {err}"}
    files = {p.relative_to(folder).as_posix(): file_sha256(p) for p in sorted(folder.rglob("*")) if p.name in CHECKPOINT_FILES}
    provenance = meta.get("provenance") or {}
    if is_pretrained(spec):
        about = f"{PRETRAINED}: {folder.name} ({available().get(folder.name, '')})"
    else:
        about = f"checkpoint {spec}"
    if provenance:
        about += f", trained by `{provenance.get('command')}` on {_data_summary(provenance.get('data_seeds'))}"
    return {"spec": str(spec), "files": files, "about": about, "provenance": provenance}


def _data_summary(seeds: Any) -> str:
    """One line on the collections a world model learned from (its provenance's ``data_seeds``)."""
    if not isinstance(seeds, Mapping) or not seeds:
        return json.dumps(seeds)
    facts = ("name", "split", "episodes", "scenes", "seed")
    parts = [", ".join(f"{k} {c[k]}" for k in facts if k in c) if isinstance(c, Mapping) else str(c) for c in seeds.values()]
    return "; ".join(f"{key}: {part}" for key, part in zip(seeds, parts, strict=True))


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
    shipped = shipped_world(config.pretrained, sim)
    note = {"note": f"the pretrained world model is not shown: {shipped['skipped']}"} if "skipped" in shipped else {}
    key = {k: shipped[k] for k in ("spec", "files", "skipped") if k in shipped}  # what the stages that use it depend on
    stages.append(Stage("pretrained", lambda path, needed: {**shipped, **note}, key, cost=0))
    protocol = {"windows": s.eval_windows, "horizons": list(s.horizons)}
    stages += [
        Stage("prediction", _prediction("world_stage3", s, device, config.seed), protocol, ("collect_test", "world_stage3"), cost=2),
        Stage("pretrained_prediction", _prediction("pretrained", s, device, config.seed), protocol, ("collect_test", "pretrained"), cost=1),
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
        Stage("video", _video(sim, s, device, config.seed), {**settings, "steps": s.video_steps}, ("world_stage3", "pretrained")),
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
        from avworld.data.storage import DataRef
        from avworld.train.tokenizers import TokenizerJob, train_tokenizer

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
        from avworld.data.storage import DataRef
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


def _prediction(model: str, s: DemoSizes, device: str, seed: int) -> Any:
    """Prediction scores on the test windows of one world model: ``world_stage3`` (the demo's own, beside copy-last) or
    ``pretrained`` (nothing where it is skipped). Both read the same test collection with one protocol (windows, horizons,
    seed, sampler steps), so with the same context length they score the same windows."""

    def run(path: Path, needed: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
        from avworld.data.storage import DataRef
        from avworld.data.windows import WindowConfig, WindowDataset
        from avworld.eval.prediction import CopyLast, Predictor, WorldPredictor, evaluate_prediction, format_table
        from avworld.models.imagination import load_world

        if model == "pretrained":
            shipped = needed["pretrained"]
            if "skipped" in shipped:
                return {"skipped": shipped["skipped"]}
            world = load_world(shipped["spec"], device)
            name, about = "pretrained", {"pretrained": shipped["about"]}
        else:
            world = load_world(needed[model]["checkpoint"], device)
            name, about = "av_cdit", {"av_cdit": f"{s.world_model_preset}, stages 1→2→3, {3 * s.world_model_steps} steps"}
            about["copy_last"] = "last context step repeated"
        test = needed["collect_test"]
        data = DataRef(root=test["root"], name=test["name"]).load()
        windows = WindowDataset(data, WindowConfig(context=world.context, horizon=max(s.horizons), split="test"))
        models: dict[str, Predictor] = {name: WorldPredictor(world)} | ({"copy_last": CopyLast()} if "copy_last" in about else {})
        fs = data.meta["sample_rate"]
        scores = {
            n: evaluate_prediction(p, windows, world.context, s.horizons, max_windows=s.eval_windows, seed=seed, sample_rate=fs)
            for n, p in models.items()
        }
        return {
            "data": {"name": test["name"], "split": "test", "windows": len(windows), "evaluated": scores[name].windows},
            "settings": {"sampler_steps": 4, "horizons": list(s.horizons), "context": world.context},
            "models": {n: {"about": about[n], **r.as_dict()} for n, r in scores.items()},
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
        shipped = needed["pretrained"]
        if "skipped" not in shipped:
            imagine(rollout, load_world(shipped["spec"], device), sim, seed, 4, name="pretrained")
        imagine(rollout, load_world(checkpoint, device), sim, seed, 4, name="from scratch")
        video = path / "rollout.mp4"
        write_rollout_video(video, rollout, sim, fps=12.0, spectrogram_seconds=3.0)  # the real sound: the one the agent heard
        worlds = [w.name for w in rollout.imagined]
        return {"video": str(video), "steps": len(rollout.actions), "return": sum(rollout.rewards), "worlds": worlds}

    return run


# -- the report --------------------------------------------------------------------------------


def write_demo_report(root: Path, results: Mapping[str, dict[str, Any]], sizes: DemoSizes) -> Path:
    """``<root>/report/index.html`` from the stages' results."""
    from avworld.viz.report import Section, Table, Text, Video, prediction_sections, write_report

    collected = results["collect"]
    shipped = results.get("pretrained", {})
    intro = (
        f"The whole avworld loop on the built-in simulator: {collected['episodes']} training episodes "
        f"({collected['steps']} steps) in procedural apartments, {sizes.tokenizer_preset} tokenizers, AV-CDiT "
        f"{sizes.world_model_preset} trained in three stages ({sizes.world_model_steps} steps each), evaluated on test scenes"
        + (", beside the pretrained world model avworld ships." if "about" in shipped else ".")
    )
    nav = results["navigation"]
    rows = []
    for name, agent in nav["agents"].items():
        for sound, per in agent["sounds"].items():
            summary = per["summary"]
            rows.append([name, sound, *(summary[m]["mean"] for m in ("SR", "SPL", "SNA", "DTG")), agent["real_steps"]])
    if "pretrained" in results["video"].get("worlds", ()):
        caption = (
            "Left to right: the planner's real episode in a test scene; the pretrained world model and the one trained in this "
            "demo (from scratch) imagining it from the same first real frames and the same actions, never corrected; the map; "
            "the spectrograms of the real sound, which is the soundtrack."
        )
    else:
        caption = "The planner in a test scene (left), the world model trained in this demo imagining the same actions; the real sound."
    sections = [Section("Rollout", [Video(results["video"]["video"], caption)])]
    if shipped:
        sections.append(Section("Pretrained world model", _pretrained_blocks(shipped)))
    sections += [
        Section(
            "Navigation",
            [
                Text(f"{sizes.nav_episodes} test episodes per agent and sound set, at most {nav['max_steps']} steps each."),
                Table(["agent", "sounds", "SR", "SPL", "SNA", "DTG (m)", "real steps"], rows),
            ],
        ),
        *prediction_sections(demo_prediction(results)),
        Section("Stages", [Table(["stage", "seconds"], [[name, r.get("seconds")] for name, r in results.items()])]),
    ]
    return write_report(root / "report", "avworld demo", sections, intro)


def _pretrained_blocks(shipped: Mapping[str, Any]) -> list[Any]:
    """What the report says of the pretrained world model: what it is and where it came from, or why it is not shown."""
    from avworld.viz.report import Text

    if "skipped" in shipped:
        return [Text(f"Not shown (its prediction scores and its panel of the rollout video are skipped): {shipped['skipped']}")]
    provenance = shipped.get("provenance", {})
    facts = [f"{k} {provenance[k]}" for k in ("commit", "sim_sha256", "created") if provenance.get(k)]
    return [Text(f"{shipped['about']}."), *([Text("Recorded in its meta.json: " + "; ".join(facts) + ".")] if facts else [])]


def demo_prediction(results: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """The prediction result the report shows: the pretrained world model's scores (where they were computed) beside the
    demo's own and copy-last, under the names :data:`PRETRAINED` and :data:`OWN`."""
    own = results["prediction"]
    models = {OWN if name == "av_cdit" else name: m for name, m in own["models"].items()}
    shipped = results.get("pretrained_prediction", {})
    if "models" in shipped:
        pretrained = dict(shipped["models"]["pretrained"])
        theirs, ours = shipped["settings"].get("context"), own["settings"].get("context")
        if theirs != ours and ours is not None:
            note = f"it reads {theirs} context steps, the demo's model {ours}: its {shipped['data']['evaluated']} windows are others"
            pretrained["notes"] = [*pretrained.get("notes", []), note]
        models = {PRETRAINED: pretrained, **models}
    return {**own, "models": models}
