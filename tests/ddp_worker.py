"""Run by ``torchrun --nproc_per_node=2`` in test_training: a few DDP steps of a tiny world model on random latents.

Writes ``initial.safetensors`` (rank 0, before training), ``rank<r>.safetensors`` (each rank's final weights) and the
checkpoint (rank 0) into the directory given as the only argument.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from avworld.models.registry import build, config_to_dict, preset
from avworld.train.trainer import TrainConfig, Trainer


class RandomWindows(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """64 fixed random one-step windows in the shapes of the tiny preset."""

    def __init__(self, video: tuple[int, ...], audio: tuple[int, ...], context: int) -> None:
        g = torch.Generator().manual_seed(0)
        n = 64
        self.items = {
            "ctx_video": torch.randn(n, context, *video, generator=g),
            "video": torch.randn(n, *video, generator=g),
            "ctx_audio": torch.randn(n, context, *audio, generator=g),
            "audio": torch.randn(n, *audio, generator=g),
            "action": torch.randint(0, 4, (n,), generator=g),
            "reward": torch.randn(n, generator=g),
            "termination": (torch.rand(n, generator=g) < 0.1).float(),
        }

    def __len__(self) -> int:
        return 64

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.items.items()}


def main(out: Path) -> None:
    config = preset("world_model", "tiny")
    torch.manual_seed(0)  # the same initial weights on both ranks (DDP also broadcasts rank 0's)
    model = build("world_model", config)
    net = config.net
    dataset = RandomWindows(net.video_latent, net.audio_latent, net.context)
    train = TrainConfig(steps=4, batch_size=8, warmup=1, checkpoint_every=2, device="cpu", ema=0.5)
    trainer = Trainer(model, dataset, train, out, lambda: ("world_model", config_to_dict(config), {}))
    if trainer.rank == 0:
        save_file({k: v.clone() for k, v in model.state_dict().items()}, str(out / "initial.safetensors"))
    torch.manual_seed(trainer.rank)  # different noise draws per rank, as in real runs
    trainer.fit(progress=False)
    save_file({k: v.clone() for k, v in model.state_dict().items()}, str(out / f"rank{trainer.rank}.safetensors"))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
