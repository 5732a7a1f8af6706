"""One training loop for everything trainable: any module with ``forward(batch) -> (loss, logs)``.

Batches are drawn by index from a map-style dataset with a generator seeded by
(seed, step), so the batch of step k is the same whether the run went straight
through or resumed at k: together with the saved weights, optimiser, schedule and
step, resuming is exact. Progress goes to a tqdm bar and to TensorBoard under
``out_dir/tb``; the checkpoint lives at ``out_dir/checkpoint`` (atomic saves).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, default_collate

from avworld.models.checkpoint import Checkpoint, load_checkpoint, optimizer_from_checkpoint, optimizer_to_checkpoint, save_checkpoint


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
    """``auto`` picks CUDA when available."""

    def __post_init__(self) -> None:
        for key in ("steps", "batch_size", "log_every", "sample_every", "checkpoint_every"):
            if getattr(self, key) < 1:
                raise ValueError(f"train.{key} must be at least 1, got {getattr(self, key)}")
        if not self.lr > 0:
            raise ValueError(f"train.lr must be positive, got {self.lr}")


def pick_device(name: str) -> torch.device:
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else "cpu" if name == "auto" else name)


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to 10 % of the peak."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.1 + 0.45 * (1 + math.cos(math.pi * min(progress, 1.0)))


class Trainer:
    """Fits ``model`` on ``dataset``; ``describe()`` gives the checkpoint's kind, config and meta."""

    def __init__(
        self,
        model: nn.Module,
        dataset: Dataset[dict[str, torch.Tensor]],
        config: TrainConfig,
        out_dir: str | Path,
        describe: Callable[[], tuple[str, dict[str, Any], dict[str, Any]]],
        on_sample: Callable[[nn.Module, dict[str, torch.Tensor], Any, int], None] | None = None,
    ) -> None:
        self.config, self.dataset, self.describe, self.on_sample = config, dataset, describe, on_sample
        self.out_dir = Path(out_dir)
        self.device = pick_device(config.device)
        self.model = model.to(self.device)
        self.opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: lr_factor(s, config.warmup, config.steps))
        self.step = 0
        if len(dataset) == 0:  # type: ignore[arg-type]
            raise ValueError("training dataset is empty (no episodes in this split?)")

    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / "checkpoint"

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        """The batch of ``step``: indices drawn with a generator seeded by (seed, step)."""
        g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + step)
        idx = torch.randint(len(self.dataset), (self.config.batch_size,), generator=g).tolist()  # type: ignore[arg-type]
        items = default_collate([self.dataset[i] for i in idx])
        return {k: v.to(self.device) for k, v in items.items()}

    def resume(self) -> bool:
        """Continue from ``out_dir/checkpoint`` if it holds a training state; returns whether it did."""
        if not (self.checkpoint_dir / "training.json").exists():
            return False
        ckpt = load_checkpoint(self.checkpoint_dir, training=True)
        assert ckpt.training is not None
        self.model.load_state_dict(ckpt.weights)
        state = ckpt.training["state"]
        optimizer_from_checkpoint(self.opt, state["optimizer"], ckpt.training["tensors"])
        self.sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(ckpt.training["tensors"]["rng.torch"])
        self.step = int(state["step"])
        return True

    def save(self) -> None:
        kind, config, meta = self.describe()
        opt_state, tensors = optimizer_to_checkpoint(self.opt)
        tensors["rng.torch"] = torch.get_rng_state()
        training = {"state": {"step": self.step, "optimizer": opt_state, "scheduler": self.sched.state_dict()}, "tensors": tensors}
        save_checkpoint(self.checkpoint_dir, Checkpoint(kind, config, dict(self.model.state_dict()), {**meta, "step": self.step}, training))

    def fit(self, progress: bool = True, until: int | None = None) -> dict[str, float]:
        """Train to ``config.steps`` (or stop early at ``until``), resuming if possible; returns the last logs and throughput."""
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        c = self.config
        self.resume()
        writer = SummaryWriter(str(self.out_dir / "tb"))
        logs: dict[str, float] = {}
        start, first = time.perf_counter(), self.step
        self.model.train()
        with tqdm(total=c.steps, initial=self.step, desc="train", unit="step", disable=not progress) as bar:
            while self.step < min(c.steps, until if until is not None else c.steps):
                batch = self.batch(self.step)
                loss, logs = self.model(batch)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
                self.opt.step()
                self.sched.step()
                self.step += 1
                bar.update(1)
                if self.step % c.log_every == 0 or self.step == c.steps:
                    bar.set_postfix(loss=f"{logs['loss']:.4f}")
                    for k, v in logs.items():
                        writer.add_scalar(f"train/{k}", v, self.step)
                    writer.add_scalar("train/grad_norm", float(grad_norm), self.step)
                    writer.add_scalar("train/lr", self.sched.get_last_lr()[0], self.step)
                if self.on_sample is not None and (self.step % c.sample_every == 0 or self.step == c.steps):
                    self.model.eval()
                    with torch.no_grad():
                        self.on_sample(self.model, batch, writer, self.step)
                    self.model.train()
                if self.step % c.checkpoint_every == 0 or self.step == c.steps:
                    self.save()
        writer.close()
        elapsed = time.perf_counter() - start
        return {
            **logs,
            "steps": float(self.step),
            "seconds": elapsed,
            "samples_per_s": (self.step - first) * c.batch_size / max(elapsed, 1e-9),
        }
