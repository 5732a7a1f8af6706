"""One training loop for everything trainable: any module with ``forward(batch) -> (loss, logs)``.

``logs`` are detached 0-d tensors (or numbers): the loop reads them as numbers only on the steps it logs, so the steps
between never wait for the device.

Batches are drawn by index from a map-style dataset with a generator seeded by
(seed, step), so the batch of step k is the same whether the run went straight
through or resumed at k: together with the saved weights, optimiser, schedule and
step, resuming is exact. The random streams of training (dropout, noise draws) are
saved with each checkpoint (torch's CPU generator, and the device's on CUDA) and
the callbacks (``describe``, ``on_sample``) run on a forked copy of them, so what a
callback draws (a DataLoader's base seed, a sampler's noise) never shifts the steps
after it: a resumed run ends bit-identical to an uninterrupted one. Progress goes to a tqdm bar and to TensorBoard under
``out_dir/tb``; the checkpoint lives at ``out_dir/checkpoint`` (atomic saves).

Every ``val_every`` steps the inference weights are scored on a held-out dataset (the collection's validation scenes):
the mean of the model's own logs (its loss terms and quality measures, e.g. the video autoencoder's PSNR) and of an
optional ``quality(model, batch)`` callback over a fixed, evenly spaced subset of ``val_size`` items, logged as
``val/<name>``. Its random draws (noise levels, noise) are seeded alike every pass, so the curve moves only with the
weights, and happen on a forked RNG, so validation never changes training.

Only parameters with ``requires_grad`` are optimised (staged training freezes the
rest before building the trainer). With ``ema > 0`` the checkpoint's weights are the
exponential moving average (``torch.optim.swa_utils.AveragedModel``) and the online
weights travel in its training state. Its decay warms up (:func:`ema_decay`): a fixed
0.999 kept 74 % of a run's initial weights after 300 steps, so a short stage saved
mostly its starting point.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the model is wrapped in
``DistributedDataParallel`` (NCCL on CUDA, gloo on CPU): every rank draws the same
global batch of the step and takes its own slice of it, so a distributed run sees
the batches of a single-process run; rank 0 alone logs and saves.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, default_collate

from avworld.models.checkpoint import Checkpoint, load_checkpoint, optimizer_from_checkpoint, optimizer_to_checkpoint, save_checkpoint
from avworld.models.imagination import choose_device
from avworld.models.precision import compiled, cpu_has_bf16


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 16
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup: int = 50
    grad_clip: float = 1.0
    log_every: int = 25
    sample_every: int = 250
    checkpoint_every: int = 250
    seed: int = 0
    device: str = "auto"
    """``auto`` picks CUDA when available (under torchrun, the rank's local GPU)."""
    ema: float = 0.0
    """Decay of the exponential moving average of the weights saved for inference; 0 saves the online weights."""
    ema_warmup: int = 10
    """The average's decay after n updates is min(ema, (1 + n) / (ema_warmup + n)) (:func:`ema_decay`); 0: ``ema`` from
    the first update."""
    amp: bool = True
    """bf16 autocast on CUDA."""
    cpu_amp: bool = False
    """bf16 autocast on CPUs with native bf16 arithmetic (AMX or AVX512-BF16; see :func:`cpu_has_bf16`). It pays for
    wide convolutions (the small tokenizers: 1.4-1.5x) and costs for narrow ones (the tiny presets: up to 1.8x slower)."""
    compile: bool = False
    """``torch.compile`` the model for the training steps. If compiling fails, at the first forward or backward pass, the run
    warns and trains eagerly from that step on (the step itself is retaken eagerly from the same random state)."""
    val_every: int = 250
    """Steps between validation passes (``val/*`` in TensorBoard, and at the last step); 0 turns them off."""
    val_size: int = 64
    """Held-out items each validation pass scores: the same evenly spaced subset of the validation split every time."""

    def __post_init__(self) -> None:
        for key in ("steps", "batch_size", "log_every", "sample_every", "checkpoint_every", "val_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"train.{key} must be at least 1, got {getattr(self, key)}")
        if self.val_every < 0:
            raise ValueError(f"train.val_every must be ≥ 0 (0: no validation), got {self.val_every}")
        if not self.lr > 0:
            raise ValueError(f"train.lr must be positive, got {self.lr}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"train.ema must lie in [0, 1), got {self.ema}")
        if self.ema_warmup < 0:
            raise ValueError(f"train.ema_warmup must be ≥ 0 (0: no warm-up), got {self.ema_warmup}")


def ema_decay(ema: float, warmup: int, updates: int) -> float:
    """The moving average's decay at its update ``updates`` (0-based): min(ema, (1 + n) / (warmup + n)), as TensorFlow's
    ``ExponentialMovingAverage`` with ``num_updates`` (warmup 10). Early updates weigh the new weights heavily, so the
    average forgets the run's starting point within a few percent of the run: after n updates at this decay the initial
    weights keep a share of about warmup / n rather than ema^n (0.74 after 300 updates of 0.999)."""
    return ema if warmup == 0 else min(ema, (1.0 + updates) / (warmup + updates))


class WarmEMA:
    """``multi_avg_fn`` of :class:`~torch.optim.swa_utils.AveragedModel` with the decay :func:`ema_decay` at ``updates``,
    which the trainer sets before each update (its step: a Python int, where ``n_averaged`` would cost a device sync)."""

    def __init__(self, ema: float, warmup: int) -> None:
        self.ema, self.warmup, self.updates = ema, warmup, 0

    def __call__(self, averaged: list[torch.Tensor], current: list[torch.Tensor], _: Any) -> None:
        weight = 1.0 - ema_decay(self.ema, self.warmup, self.updates)
        if torch.is_floating_point(averaged[0]) or torch.is_complex(averaged[0]):
            torch._foreach_lerp_(averaged, current, weight)
        else:  # integer buffers (counters)
            for a, c in zip(averaged, current, strict=True):
                a.copy_((a * (1.0 - weight) + c * weight).to(a.dtype))


def distributed() -> tuple[int, int]:
    """(rank, world size), starting the process group the first time when run under torchrun; (0, 1) otherwise."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to 10 % of the peak."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.1 + 0.45 * (1 + math.cos(math.pi * min(progress, 1.0)))


class Trainer:
    """Fits ``model`` on ``dataset``; ``describe()`` gives the checkpoint's kind, config and meta.

    ``val_dataset`` (held-out items, same format) is scored every ``val_every`` steps, with ``quality(model, batch)``'s
    extra measures {name: mean over the batch} beside the model's logs; None (or an empty one, with a warning) skips it.
    """

    def __init__(
        self,
        model: nn.Module,
        dataset: Dataset[dict[str, torch.Tensor]],
        config: TrainConfig,
        out_dir: str | Path,
        describe: Callable[[], tuple[str, dict[str, Any], dict[str, Any]]],
        on_sample: Callable[[nn.Module, dict[str, torch.Tensor], Any, int], None] | None = None,
        attachments: dict[str, Path] | None = None,
        val_dataset: Dataset[dict[str, torch.Tensor]] | None = None,
        quality: Callable[[nn.Module, dict[str, torch.Tensor]], dict[str, float]] | None = None,
    ) -> None:
        from torch.optim.swa_utils import AveragedModel

        self.config, self.dataset, self.describe, self.on_sample = config, dataset, describe, on_sample
        if val_dataset is not None and len(val_dataset) == 0:  # type: ignore[arg-type]
            warnings.warn("no validation items (no scene of the collection falls in the val split): val/* is not logged", stacklevel=2)
            val_dataset = None
        self.val_dataset, self.quality = val_dataset, quality
        self.attachments = attachments or {}
        """Checkpoints stored inside each save (see :class:`Checkpoint`)."""
        self.out_dir = Path(out_dir)
        self.rank, self.world = distributed()
        if config.batch_size % self.world:
            raise ValueError(f"train.batch_size {config.batch_size} must be a multiple of the {self.world} processes")
        self.device = choose_device(config.device)
        self.model = model.to(self.device)
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("nothing to train: every parameter is frozen")
        fused = {"fused": True} if self.device.type == "cuda" else {}  # one kernel for the whole update on the GPU
        self.opt = torch.optim.AdamW(self.params, lr=config.lr, weight_decay=config.weight_decay, **fused)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: lr_factor(s, config.warmup, config.steps))
        self.ema_fn = WarmEMA(config.ema, config.ema_warmup)
        self.ema = AveragedModel(model, multi_avg_fn=self.ema_fn, use_buffers=True) if config.ema > 0 else None
        self.step = 0
        self.seconds = 0.0
        """Wall-clock seconds of training so far, over every resumed run (saved as ``meta.json``'s ``train_seconds``)."""
        self._clock = time.perf_counter()
        if len(dataset) == 0:  # type: ignore[arg-type]
            raise ValueError("training dataset is empty (no episodes in this split?)")
        self.train_model: nn.Module = self.model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.model, device_ids=ids)
        self._amp = self._autocast()
        self.eager_model = self.train_model
        """The model the training steps call without ``torch.compile``: what a failed compile falls back to."""
        self._compile_pending = config.compile
        """Whether the next step is the first with the compiled model (see :meth:`_first_compiled_step`)."""
        if config.compile:
            self.train_model = compiled(self.train_model, what="the training step")  # type: ignore[assignment]

    @property
    def inference_model(self) -> nn.Module:
        """The weights a checkpoint holds: the moving average when ``ema`` > 0, else the online model."""
        return self.ema.module if self.ema is not None else self.model

    def _forked_rng(self) -> Any:
        """A context in which callbacks may draw random numbers without moving the training streams."""
        return torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else [])

    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / "checkpoint"

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        """The batch of ``step``: indices drawn with a generator seeded by (seed, step)."""
        g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + step)
        idx = torch.randint(len(self.dataset), (self.config.batch_size,), generator=g).tolist()  # type: ignore[arg-type]
        return self._items(self.dataset, idx[self.rank :: self.world])

    def _items(self, dataset: Dataset[dict[str, torch.Tensor]], idx: list[int]) -> dict[str, torch.Tensor]:
        """Items ``idx`` of ``dataset`` as one batch on the device."""
        gather = getattr(dataset, "gather", None)  # a whole batch at once (from device memory, for LatentWindows on a GPU)
        items = gather(idx) if gather else default_collate([dataset[i] for i in idx])
        return {k: v.to(self.device) for k, v in items.items()}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean logs (and ``quality`` measures) of the inference weights over the fixed validation items; {} without any.

        Each measure is averaged over the items of the batches that report it (``quality`` may skip a batch)."""
        if self.val_dataset is None:
            return {}
        c, n = self.config, len(self.val_dataset)  # type: ignore[arg-type]
        k = min(c.val_size, n)
        rows = sorted({round(i * (n - 1) / max(k - 1, 1)) for i in range(k)})  # k items evenly spaced over the n
        model = self.inference_model
        model.eval()
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        with self._forked_rng():
            torch.manual_seed(c.seed)  # the same draws every pass
            for start in range(0, len(rows), c.batch_size):
                idx = rows[start : start + c.batch_size]
                batch = self._items(self.val_dataset, idx)
                with self._autocast():
                    _, logs = model(batch)
                if self.quality is not None:
                    logs = {**logs, **self.quality(model, batch)}
                for k, v in logs.items():
                    sums[k] = sums.get(k, 0.0) + float(v) * len(idx)
                    counts[k] = counts.get(k, 0) + len(idx)
        self.model.train()
        return {k: sums[k] / counts[k] for k in sums}

    def _autocast(self) -> Any:
        """bf16 autocast where the config asks for it and the device does it (see ``amp``, ``cpu_amp``)."""
        c = self.config
        on = c.amp if self.device.type == "cuda" else c.cpu_amp and self.device.type == "cpu" and cpu_has_bf16()
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=on)

    def resume(self) -> bool:
        """Continue from ``out_dir/checkpoint`` if it holds a training state; returns whether it did."""
        if not (self.checkpoint_dir / "training.json").exists():
            return False
        ckpt = load_checkpoint(self.checkpoint_dir, training=True)
        assert ckpt.training is not None
        tensors = ckpt.training["tensors"]
        if self.ema is not None:
            self.ema.module.load_state_dict(ckpt.weights)
            self.ema.n_averaged.fill_(int(tensors["ema.n_averaged"]))
            self.model.load_state_dict({k[len("online.") :]: v for k, v in tensors.items() if k.startswith("online.")})
        else:
            self.model.load_state_dict(ckpt.weights)
        state = ckpt.training["state"]
        optimizer_from_checkpoint(self.opt, state["optimizer"], tensors)
        self.sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(tensors[f"rng.torch.{self.rank}"] if f"rng.torch.{self.rank}" in tensors else tensors["rng.torch"])
        cuda_rng = tensors.get(f"rng.cuda.{self.rank}", tensors.get("rng.cuda"))
        if cuda_rng is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(cuda_rng, self.device)
        self.step = int(state["step"])
        self.seconds = float(state.get("seconds", 0.0))
        return True

    def save(self) -> None:
        """Write the checkpoint (rank 0; the other ranks wait for it)."""
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        states = [rng]
        if self.world > 1:
            import torch.distributed as dist

            states = [{} for _ in range(self.world)]
            dist.all_gather_object(states, rng)
        now = time.perf_counter()
        self.seconds, self._clock = self.seconds + now - self._clock, now
        if self.rank == 0:
            with self._forked_rng():
                kind, config, meta = self.describe()
            opt_state, tensors = optimizer_to_checkpoint(self.opt)
            if self.world > 1:
                tensors |= {f"rng.{name}.{r}": t.clone() for r, s in enumerate(states) for name, t in s.items()}
            else:
                tensors |= {f"rng.{name}": t for name, t in rng.items()}
            if self.ema is not None:
                tensors |= {f"online.{k}": v for k, v in self.model.state_dict().items()}
                tensors["ema.n_averaged"] = self.ema.n_averaged.detach().cpu()
            state = {"step": self.step, "seconds": self.seconds, "optimizer": opt_state, "scheduler": self.sched.state_dict()}
            weights = dict(self.inference_model.state_dict())
            meta = {**meta, "step": self.step, "train_seconds": round(self.seconds, 1)}
            training = {"state": state, "tensors": tensors}
            save_checkpoint(self.checkpoint_dir, Checkpoint(kind, config, weights, meta, training, self.attachments))
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def _step(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Forward and backward passes of one training step (the gradients left for the update); returns the model's logs
        as it gave them (detached tensors, read as numbers only when logged, or numbers)."""
        with self._amp:
            loss, logs = self.train_model(batch)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        return logs

    def _first_compiled_step(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        """:meth:`_step` with the compiled model, guarded: ``torch.compile`` compiles the backward pass at its first call,
        after :func:`compiled`'s guard around the forward one. If the step raises, it is retaken eagerly from the random state
        it started from, and the rest of the run trains eagerly (with a warning); an error of the eager step is the model's
        own and raises."""
        cuda = self.device.type == "cuda"
        rng = torch.get_rng_state(), torch.cuda.get_rng_state(self.device) if cuda else None
        self._compile_pending = False
        try:
            return self._step(batch)
        except Exception as error:
            warnings.warn(f"the compiled training step failed ({type(error).__name__}: {error}); training eagerly", stacklevel=3)
            torch.set_rng_state(rng[0])
            if rng[1] is not None:
                torch.cuda.set_rng_state(rng[1], self.device)
            self.train_model = self.eager_model
            return self._step(batch)

    def fit(self, progress: bool = True, until: int | None = None) -> dict[str, float]:
        """Train to ``config.steps`` (or stop early at ``until``), resuming if possible; returns the last logs and throughput."""
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        c = self.config
        self.resume()
        self._clock = time.perf_counter()
        lead = self.rank == 0
        writer = SummaryWriter(str(self.out_dir / "tb")) if lead else None
        logs: dict[str, Any] = {}
        start, first = time.perf_counter(), self.step
        self.model.train()
        with tqdm(total=c.steps, initial=self.step, desc="train", unit="step", disable=not (progress and lead)) as bar:
            while self.step < min(c.steps, until if until is not None else c.steps):
                batch = self.batch(self.step)
                logs = self._first_compiled_step(batch) if self._compile_pending else self._step(batch)
                grad_norm = torch.nn.utils.clip_grad_norm_(self.params, c.grad_clip)
                self.opt.step()
                self.sched.step()
                if self.ema is not None:
                    self.ema_fn.updates = self.step
                    self.ema.update_parameters(self.model)
                self.step += 1
                bar.update(1)
                if writer is not None and (self.step % c.log_every == 0 or self.step == c.steps):
                    values = {k: float(v) for k, v in logs.items()}  # the one wait for the device between logged steps
                    bar.set_postfix(loss=f"{values['loss']:.4f}")
                    for k, v in values.items():
                        writer.add_scalar(f"train/{k}", v, self.step)
                    writer.add_scalar("train/grad_norm", float(grad_norm), self.step)
                    writer.add_scalar("train/lr", self.sched.get_last_lr()[0], self.step)
                if writer is not None and self.on_sample is not None and (self.step % c.sample_every == 0 or self.step == c.steps):
                    model = self.inference_model
                    model.eval()
                    with torch.no_grad(), self._forked_rng():
                        self.on_sample(model, batch, writer, self.step)
                    self.model.train()
                if writer is not None and c.val_every and (self.step % c.val_every == 0 or self.step == c.steps):
                    for k, v in self.validate().items():
                        writer.add_scalar(f"val/{k}", v, self.step)
                if self.step % c.checkpoint_every == 0 or self.step == c.steps:
                    self.save()
        if writer is not None:
            writer.close()
        elapsed = time.perf_counter() - start
        return {
            **{k: float(v) for k, v in logs.items()},
            "steps": float(self.step),
            "seconds": elapsed,
            "samples_per_s": (self.step - first) * c.batch_size / max(elapsed, 1e-9),
        }
