"""Train AV-CDiT in stages: ``avworld train world_model stage=1|2|3 out_dir=DIR`` (and ``stage=joint``, the ablation).

The stages of the AV-CDiT paper (Wang et al. 2025), each starting from the previous
one's checkpoint under the same ``out_dir``:

1. ``stage1``: vision. The net runs on video alone; shared attention, the video
   expert, video input/output layers and the reward/termination heads learn.
2. ``stage2``: audio. Both modalities; shared attention and everything of video are
   frozen; the audio expert, audio input/output layers and the heads learn.
3. ``stage3``: joint fine-tuning of every parameter.

``stage=joint`` trains every parameter of both modalities from scratch
(``joint_from_scratch``). ``variant`` picks the ablations of the evaluation:
``no_experts`` (one shared feed-forward network), ``video_only`` and ``audio_only``
(the separate unimodal models, trained with ``stage=joint``).

The model learns on latents: every observation of the collection is encoded once
by the tokenizers into a memory-mapped cache beside the flat collection (keyed by
the tokenizer weights), and scaled to unit variance by the tokenizers' latent
statistics. The checkpoint stores both tokenizers inside it, so a world-model
checkpoint is all that imagination needs (:class:`avworld.models.imagination.Imagination`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from avworld.data.storage import FlatData
from avworld.data.windows import STOP, WindowConfig, WindowDataset, stop_rewards, within_reach
from avworld.models.checkpoint import CheckpointError, acoustics_version, load_checkpoint
from avworld.models.flow import FlowConfig, WorldModel, WorldModelConfig
from avworld.models.imagination import TOKENIZERS, Imagination, choose_device, tokenizer_meta
from avworld.models.latents import latent_cache
from avworld.models.pretrained import recipe_of
from avworld.models.registry import build, config_from_dict, config_to_dict, encode, load_model, preset
from avworld.train.provenance import data_seeds, provenance
from avworld.train.tokenizers import DataRef
from avworld.train.trainer import TrainConfig, Trainer

STAGES = ("1", "2", "3", "joint")
VARIANTS: dict[str, dict[str, Any]] = {
    "full": {},
    "no_experts": {"experts": False},
    "video_only": {"modalities": ("video",)},
    "audio_only": {"modalities": ("audio",)},
}
FROZEN = {"1": ("audio",), "2": ("shared", "video"), "3": (), "joint": ()}
"""Parameter groups (:meth:`AVCDiT.parameter_groups`) each stage freezes."""


LOSS_TERMS = ("video", "audio", "reward", "termination")
"""The loss terms of :class:`~avworld.models.flow.WorldModel` whose weights ``loss_weights`` sets (``FlowConfig.<term>_weight``)."""


@dataclass
class TokenizerRefs:
    video: str | None = None
    """Video autoencoder checkpoint; for stages 2 and 3, the previous stage's copy when None."""
    audio: str | None = None


@dataclass
class WorldModelJob:
    model: str = "small"
    """Size preset of AV-CDiT (tiny, small, base, large); stages 2 and 3 take the previous stage's config instead."""
    stage: str = "1"
    variant: str = "full"
    init: str | None = None
    """Checkpoint to start from; stages 2 and 3 default to ``<out_dir>/stage<n-1>/checkpoint``."""
    tokenizers: TokenizerRefs = field(default_factory=TokenizerRefs)
    data: DataRef = field(default_factory=DataRef)
    flow: FlowConfig = field(default_factory=FlowConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    stop_windows: float = 0.1
    """Counterfactual STOP windows per real training window (:class:`LatentWindows`); 0 trains on the data alone."""
    stop_near: float = 0.0
    """Share of the STOP windows drawn from windows within reach of the source (:class:`LatentWindows`). 0.5 made the
    tiny demo model's reward head tell near from far, but its planner STOPped early more often (docs/results.md)."""
    loss_weights: dict[str, float] = field(default_factory=dict)
    """Weights of the loss terms ({video, audio, reward, termination}: w) over the model's ``flow`` settings, in any stage
    (stages 2 and 3 otherwise keep their init's): training settings, not the model's shape; e.g. ``{reward: 4}``."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.loss_weights) - set(LOSS_TERMS))
        if unknown:
            raise ValueError(f"loss_weights.{unknown[0]}: unknown loss term; known: {', '.join(LOSS_TERMS)}")
        self.stage = str(self.stage)
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")


def stage_steps(preset: Mapping[str, Any], stage: str) -> int:
    """Training steps of ``stage`` under a preset's ``world_model`` settings: ``train.steps`` when set (every stage),
    else ``stage_steps[<stage dir name>]`` (``stage1``, ``stage2``, ``stage3``, ``joint``)."""
    steps = preset.get("train", {}).get("steps")
    if steps is None:
        name = stage_dir("", str(stage)).name
        steps = (preset.get("stage_steps") or {}).get(name)
        if steps is None:
            raise ValueError(f"preset.world_model: neither train.steps nor stage_steps.{name} gives the steps of stage {stage}")
    return int(steps)


def stage_dir(out_dir: str | Path, stage: str) -> Path:
    """Where ``stage`` of a run writes: ``<out_dir>/stage<n>`` or ``<out_dir>/joint``."""
    return Path(out_dir) / ("joint" if stage == "joint" else f"stage{stage}")


# -- latents -----------------------------------------------------------------------------------


class LatentWindows(Dataset[dict[str, torch.Tensor]]):
    """One-step training windows on latents: m context steps, the action, the next step, its reward and termination.

    Item: ``ctx_<m>`` (context, *latent) and ``<m>`` (*latent) float32 per modality, scaled by (z − mean) / std;
    ``action`` int64 (); ``reward`` float32 (); ``termination`` float32 () 0/1; ``observed`` float32 () 0/1.

    ``stop_windows`` adds that many counterfactual STOP windows per real one (the first ``len(windows)`` items are the
    real ones, the rest follow): the window's context, action STOP, and what STOP would have given there, known without
    running it (:func:`avworld.data.windows.stop_rewards`): termination 1 and reward −0.01, plus 10 where the last
    context step's geodesic distance is within the success distance. Their next observation is not known: ``observed``
    is 0 and the flow loss skips their targets, so they teach only the reward and termination heads. Behaviour data
    STOPs mostly at the source; without them a model learns that STOP pays anywhere.

    Windows within reach of the source are few (a percent or so of a behaviour collection), so a share ``stop_near``
    of the STOP windows is spread evenly over those (repeating them as needed) and the rest evenly over all windows:
    the heads then see both outcomes often enough to tell them apart. With no window within reach, all are spread
    over all windows.

    :meth:`gather` builds a whole batch at once (the trainer's path), the same values as collating the items; after
    :meth:`to` a CUDA device it indexes latents and tables held on the GPU, so a training step reads no host memory.
    """

    def __init__(
        self,
        data: FlatData,
        latents: dict[str, np.ndarray],
        stats: dict[str, tuple[float, float]],
        config: WindowConfig,
        stop_windows: float = 0.0,
        success_distance: float | None = None,
        stop_near: float = 0.0,
    ) -> None:
        if config.horizon != 1:
            raise ValueError("LatentWindows trains one-step prediction: horizon must be 1")
        if stop_windows < 0:
            raise ValueError(f"stop_windows must be ≥ 0, got {stop_windows}")
        if not 0.0 <= stop_near <= 1.0:
            raise ValueError(f"stop_near must lie in [0, 1], got {stop_near}")
        self.windows = WindowDataset(data, config)
        self.data, self.latents, self.stats, self.context = data, latents, stats, config.context
        self.stops = round(stop_windows * len(self.windows))
        last = self.windows.obs_index + self.context - 1  # (W,) each window's last context observation
        reach = within_reach(data, last, success_distance)  # (W,) bool
        near = np.flatnonzero(reach)
        n_near = round(stop_near * self.stops) if len(near) else 0
        self.stops_near = n_near
        self.stop_sources = np.concatenate([_spread(n_near, near), _spread(self.stops - n_near, np.arange(len(self.windows)))])
        self.stop_rewards = stop_rewards(reach[self.stop_sources])
        self.device = torch.device("cpu")
        self._tables: dict[str, torch.Tensor] | None = None
        self._resident: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.windows) + self.stops

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        n, m = len(self.windows), self.context
        counterfactual = i >= n
        if counterfactual:
            action, reward, termination = STOP, float(self.stop_rewards[i - n]), 1.0
            i = int(self.stop_sources[i - n])
        o, t = int(self.windows.obs_index[i]), int(self.windows.step_index[i])
        a = self.data.arrays
        if not counterfactual:
            action, reward, termination = int(a["actions"][t + m - 1]), float(a["rewards"][t + m - 1]), float(a["terminations"][t + m - 1])
        item = {
            "action": torch.tensor(action),
            "reward": torch.tensor(reward, dtype=torch.float32),
            "termination": torch.tensor(termination, dtype=torch.float32),
            "observed": torch.tensor(0.0 if counterfactual else 1.0),
        }
        for name, z in self.latents.items():
            mean, std = self.stats[name]
            window = (torch.from_numpy(np.array(z[o : o + m + 1])) - mean) / std
            item[f"ctx_{name}"], item[name] = window[:m], window[m]
        return item

    def _window_tables(self) -> dict[str, torch.Tensor]:
        """Per item i of ``len(self)``: its first observation ``obs`` and its action, reward, termination, observed (CPU tensors)."""
        n, m = len(self.windows), self.context
        obs = np.concatenate([self.windows.obs_index, self.windows.obs_index[self.stop_sources]]).astype(np.int64)
        last = self.windows.step_index.astype(np.int64) + m - 1
        a = self.data.arrays
        real = {k: np.asarray(a[k])[last] for k in ("actions", "rewards", "terminations")}
        stops = len(self.stop_sources)
        return {
            "obs": torch.from_numpy(obs),
            "action": torch.from_numpy(np.concatenate([real["actions"].astype(np.int64), np.full(stops, STOP, np.int64)])),
            "reward": torch.from_numpy(np.concatenate([real["rewards"], self.stop_rewards]).astype(np.float64)).float(),
            "termination": torch.from_numpy(np.concatenate([real["terminations"].astype(np.float64), np.ones(stops)])).float(),
            "observed": torch.cat([torch.ones(n), torch.zeros(stops)]),
        }

    def to(self, device: torch.device, resident: bool | None = None) -> LatentWindows:
        """Hold the window tables on ``device`` for :meth:`gather`, and the latents too when ``resident`` (default: off the
        CPU, where they are read from the memory maps instead)."""
        self.device = torch.device(device)
        self._tables = {k: v.to(self.device) for k, v in self._window_tables().items()}
        resident = self.device.type != "cpu" if resident is None else resident
        self._resident = {k: torch.from_numpy(np.array(z)).to(self.device) for k, z in self.latents.items()} if resident else {}
        return self

    def gather(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """The batch of items ``indices``, on :attr:`device`: equal to ``default_collate([self[i] for i in indices])``."""
        if self._tables is None:
            self._tables = self._window_tables()
        tables, rows = self._tables, torch.tensor(indices, dtype=torch.int64, device=self.device)
        batch = {k: tables[k][rows] for k in ("action", "reward", "termination", "observed")}
        steps = tables["obs"][rows, None] + torch.arange(self.context + 1, device=rows.device)  # (B, m + 1)
        for name, z in self.latents.items():
            mean, std = self.stats[name]
            raw = self._resident[name][steps] if self._resident else torch.from_numpy(np.asarray(z)[steps.numpy()])
            window = (raw - mean) / std  # (B, m + 1, *latent)
            batch[f"ctx_{name}"], batch[name] = window[:, : self.context], window[:, self.context]
        return batch


def _spread(n: int, pool: np.ndarray) -> np.ndarray:
    """``n`` items of ``pool`` (k,) evenly spread over it, in order, each repeated ⌊n / k⌋ or ⌈n / k⌉ times."""
    return pool[np.arange(n) * len(pool) // max(n, 1)] if len(pool) else pool[:0]


# -- the job -----------------------------------------------------------------------------------


def _tokenizer_paths(job: WorldModelJob, init: Any) -> dict[str, Path]:
    paths = {}
    for m in ("video", "audio"):
        given = getattr(job.tokenizers, m)
        if given:
            paths[m] = Path(given)
        elif init is not None and f"tokenizers/{m}" in init.attachments:
            paths[m] = init.attachments[f"tokenizers/{m}"]
    return paths


def world_model_config(job: WorldModelJob, init: Any, tokenizers: dict[str, tuple[nn.Module, Any]]) -> WorldModelConfig:
    """The preset and variant sized to the tokenizers' latents; stages 2 and 3 keep the previous stage's config; the
    job's ``loss_weights`` over either."""
    config = _sized_config(job, init, tokenizers)
    weights = {f"{term}_weight": float(w) for term, w in job.loss_weights.items()}
    return dataclasses.replace(config, flow=dataclasses.replace(config.flow, **weights)) if weights else config


def _sized_config(job: WorldModelJob, init: Any, tokenizers: dict[str, tuple[nn.Module, Any]]) -> WorldModelConfig:
    if init is not None:
        return config_from_dict(WorldModelConfig, init.config, f"{job.init}/config.yaml")
    base = preset("world_model", job.model)
    net = dataclasses.replace(base.net, **VARIANTS[job.variant])
    shapes: dict[str, Any] = {}
    for m, (model, ckpt) in tokenizers.items():
        if m not in net.modalities:
            continue
        device = next(model.parameters()).device
        shape = ckpt.meta["data"]["rgb_shape" if m == "video" else "audio_shape"]
        probe = torch.zeros(1, *shape, dtype=torch.uint8 if m == "video" else torch.float32, device=device)
        shapes[f"{m}_latent"] = tuple(encode(model, TOKENIZERS[m], probe).shape[1:])
    return WorldModelConfig(net=dataclasses.replace(net, **shapes), flow=job.flow)


def train_world_model(job: WorldModelJob, out_dir: str | Path, progress: bool = True) -> dict[str, float]:
    """Run (or resume) one stage of ``job`` into ``stage_dir(out_dir, job.stage)/checkpoint``; returns the final logs."""
    out = stage_dir(out_dir, job.stage)
    init_path = job.init or (str(stage_dir(out_dir, str(int(job.stage) - 1)) / "checkpoint") if job.stage in ("2", "3") else None)
    init = None
    if init_path is not None:
        if not Path(init_path).exists():
            raise CheckpointError(init_path, f"stage {job.stage} starts from the previous stage's checkpoint; train that stage first")
        init = load_checkpoint(init_path, "world_model")
        job = dataclasses.replace(job, init=init_path)
    paths = _tokenizer_paths(job, init)
    tokenizers = {m: load_model(p, TOKENIZERS[m]) for m, p in paths.items()}
    config = world_model_config(job, init, tokenizers)
    modalities = config.net.modalities
    for m in modalities:
        if m not in tokenizers:
            raise ValueError(f"the {job.variant} world model needs a {m} tokenizer: set tokenizers.{m}=CHECKPOINT")
    if (job.stage == "1" and "video" not in modalities) or (job.stage == "2" and set(modalities) != {"video", "audio"}):
        raise ValueError(f"stage {job.stage} does not apply to the {modalities} model of variant {job.variant}; use stage=joint")

    data = job.data.load()
    for m in modalities:
        trained = tokenizers[m][1].meta["data"]
        key = "rgb_shape" if m == "video" else "audio_shape"
        if list(trained[key]) != list(data.meta[key]):
            raise ValueError(f"{paths[m]}: the {m} tokenizer was trained on {key} {trained[key]}, data has {data.meta[key]}")
        if m == "audio" and acoustics_version(trained) != data.meta["acoustics_version"]:
            raise ValueError(
                f"{paths[m]}: the audio tokenizer was trained on sound of acoustics_version {acoustics_version(trained)}, "
                f"data has {data.meta['acoustics_version']}; train it again on this data"
            )
    stats = {m: (float(tokenizers[m][1].meta["latent"]["mean"]), float(tokenizers[m][1].meta["latent"]["std"])) for m in modalities}
    device = choose_device(job.train.device)
    trained = ("video",) if job.stage == "1" else modalities  # stage 1 runs the net on video alone
    latents = {m: latent_cache(data, m, tokenizers[m][0].to(device), paths[m], device) for m in trained}
    windows = WindowConfig(context=config.net.context, horizon=1, split="train", fractions=job.data.fractions)
    dataset = LatentWindows(data, latents, stats, windows, job.stop_windows, stop_near=job.stop_near)
    dataset.to(device)  # on a GPU, the training windows live there: no per-step host loading
    held_out = dataclasses.replace(windows, split="val")  # the val split's scenes, for the trainer's validation passes
    val = LatentWindows(data, latents, stats, held_out, job.stop_windows, stop_near=job.stop_near).to(device)

    torch.manual_seed(job.train.seed)
    model = build("world_model", config)
    assert isinstance(model, WorldModel)
    if init is not None:
        model.load_state_dict(init.weights)
    model.modalities = trained
    groups = model.net.parameter_groups()
    params = dict(model.net.named_parameters())
    for group in FROZEN[job.stage]:
        for name in groups[group]:
            params[name].requires_grad_(False)

    history = list(init.meta.get("stages", [])) if init is not None else []
    meta = {
        "preset": init.meta["preset"] if init is not None else job.model,
        "variant": init.meta["variant"] if init is not None else job.variant,
        "stage": job.stage,
        "latent": {m: {"mean": stats[m][0], "std": stats[m][1]} for m in modalities},
        "tokenizers": {m: tokenizer_meta(tokenizers[m][1].meta) for m in modalities},
        "data": {
            "root": str(job.data.root),
            "name": job.data.name,
            "windows": len(dataset.windows),
            "stop_windows": dataset.stops,
            "stop_windows_near": dataset.stops_near,
            "recipe": recipe_of(data.meta),
            "collections": [
                {"name": name, "windows": n, "recipe": recipe_of(data.collections[name])}
                for name, n in dataset.windows.by_collection().items()
            ],
        },
        **{k: data.meta[k] for k in ("sample_rate", "rgb_shape", "audio_shape", "sim", "acoustics_version")},
        "provenance": provenance(data_seeds(data), data.meta["sim"], config=dataclasses.asdict(job)),
    }
    tokenizer_modules = {m: tokenizers[m][0] for m in modalities}

    def describe() -> tuple[str, dict[str, Any], dict[str, Any]]:
        stage = {
            "stage": job.stage,
            "steps": trainer.step,
            "seconds": round(trainer.seconds, 1),
            "frozen": list(FROZEN[job.stage]),
            "command": meta["provenance"]["command"],
            "data": {k: meta["data"][k] for k in ("root", "name", "windows", "recipe", "collections")},
        }
        stages = [*history, stage]
        return "world_model", config_to_dict(config), meta | {"stages": stages}

    def on_sample(model: nn.Module, batch: dict[str, torch.Tensor], writer: Any, step: int) -> None:
        assert isinstance(model, WorldModel)
        world = Imagination(model, tokenizer_modules, meta, batch["action"].device)
        context = {m: batch[f"ctx_{m}"][:4] for m in model.modalities}
        imagined = world.decode(world.predict(context, batch["action"][:4], generator=torch.Generator(device=world.device).manual_seed(0)))
        real = world.decode({m: batch[m][:4] for m in model.modalities})
        if "rgb" in imagined:
            writer.add_images("samples/real_top_imagined_bottom", torch.cat([real["rgb"], imagined["rgb"]]).permute(0, 3, 1, 2), step)
        if "audio" in imagined:
            for name, wave in (("real", real["audio"]), ("imagined", imagined["audio"])):
                for ear, side in enumerate(("left", "right")):
                    writer.add_audio(f"samples/{name}_{side}", wave[0, ear : ear + 1].clamp(-1, 1).cpu(), step, int(meta["sample_rate"]))

    def quality(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One imagined step of the observed windows, decoded, against the decoded real next step: ``imagined_psnr`` (dB,
        frames) and ``imagined_audio_l1`` (waveform); {} for a batch of counterfactual STOP windows only."""
        assert isinstance(model, WorldModel)
        rows = batch["observed"] > 0
        if not bool(rows.any()):
            return {}
        world = Imagination(model, tokenizer_modules, meta, batch["action"].device)
        context = {m: batch[f"ctx_{m}"][rows] for m in model.modalities}
        generator = torch.Generator(device=world.device).manual_seed(0)
        imagined = world.decode(world.predict(context, batch["action"][rows], generator=generator))
        real = world.decode({m: batch[m][rows] for m in model.modalities})
        out = {}
        if "rgb" in imagined:
            mse = ((imagined["rgb"].float() - real["rgb"].float()) / 255.0).pow(2).flatten(1).mean(1)  # (n,)
            out["imagined_psnr"] = float((-10.0 * torch.log10(mse.clamp_min(1e-10))).mean())
        if "audio" in imagined:
            out["imagined_audio_l1"] = float((imagined["audio"] - real["audio"]).abs().mean())
        return out

    attachments = {f"tokenizers/{m}": paths[m] for m in modalities}
    trainer = Trainer(model, dataset, job.train, out, describe, on_sample, attachments, val_dataset=val, quality=quality)
    return trainer.fit(progress=progress)
