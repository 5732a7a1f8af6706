"""The training contract: checkpoints (format, atomic saves, refusals) and exact resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from avworld.models.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from avworld.train.trainer import TrainConfig, Trainer


class Regression(nn.Module):
    """A toy trainable with the shared contract: forward(batch) -> (loss, logs)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1))

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        loss = ((self.net(batch["x"]).squeeze(-1) - batch["y"]) ** 2).mean()
        return loss, {"loss": float(loss.detach())}


class Points(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(256, 3, generator=g)
        self.y = torch.sin(self.x.sum(-1))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "y": self.y[i]}


def trainer(out: Path, steps: int) -> Trainer:
    torch.manual_seed(0)
    config = TrainConfig(steps=steps, batch_size=16, lr=1e-2, warmup=3, log_every=2, sample_every=100, checkpoint_every=4)
    return Trainer(Regression(), Points(), config, out, lambda: ("regression", {"hidden": 16}, {"note": "toy"}))


def test_training_lowers_the_loss_and_writes_tensorboard(tmp_path: Path) -> None:
    t = trainer(tmp_path, 60)
    first = float(t.model(t.batch(0))[0].detach())
    logs = t.fit(progress=False)
    assert logs["loss"] < first / 3
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    ckpt = load_checkpoint(tmp_path / "checkpoint", "regression", training=True)
    assert ckpt.meta["step"] == 60 and ckpt.meta["note"] == "toy" and ckpt.config == {"hidden": 16}


def test_resume_is_exact(tmp_path: Path) -> None:
    straight = trainer(tmp_path / "a", 12)
    straight.fit(progress=False)
    interrupted = trainer(tmp_path / "b", 12)
    interrupted.fit(progress=False, until=8)  # as if killed after the checkpoint of step 8
    resumed = trainer(tmp_path / "b", 12)
    assert resumed.resume() and resumed.step == 8
    resumed.fit(progress=False)
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert torch.equal(straight.opt.state_dict()["state"][0]["exp_avg"], resumed.opt.state_dict()["state"][0]["exp_avg"])


def test_a_crash_mid_save_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ckpt"
    save_checkpoint(path, Checkpoint("toy", {"a": 1}, {"w": torch.ones(3)}, {}))

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("avworld.models.checkpoint.save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, Checkpoint("toy", {"a": 2}, {"w": torch.zeros(3)}, {}))
    ckpt = load_checkpoint(path, "toy")
    assert ckpt.config == {"a": 1} and torch.equal(ckpt.weights["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temporary left behind


def test_bad_checkpoints_are_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ckpt"
    save_checkpoint(path, Checkpoint("toy", {"a": 1}, {"w": torch.ones(3)}, {}))
    with pytest.raises(CheckpointError, match=r"config\.yaml.*'toy' checkpoint, expected 'video_vae'"):
        load_checkpoint(path, "video_vae")
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*truncated"):
        load_checkpoint(path)
    (path / "meta.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"meta\.json"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nowhere")


def test_a_pickle_is_never_loaded(tmp_path: Path) -> None:
    """A checkpoint directory whose weights are a torch pickle is refused, not executed."""
    path = tmp_path / "ckpt"
    save_checkpoint(path, Checkpoint("toy", {}, {"w": torch.ones(1)}, {}))
    torch.save({"w": torch.ones(1)}, path / "model.safetensors")  # a pickle under the safetensors name
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load_checkpoint(path)
