"""The training contract: checkpoints (format, atomic saves, refusals) and exact resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from avworld.models.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from avworld.train.trainer import TrainConfig, Trainer, ema_decay


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


def trainer(out: Path, steps: int, ema: float = 0.0) -> Trainer:
    torch.manual_seed(0)
    config = TrainConfig(steps=steps, batch_size=16, lr=1e-2, warmup=3, log_every=2, sample_every=100, checkpoint_every=4, ema=ema)
    return Trainer(Regression(), Points(), config, out, lambda: ("regression", {"hidden": 16}, {"note": "toy"}))


def test_training_lowers_the_loss_and_writes_tensorboard(tmp_path: Path) -> None:
    t = trainer(tmp_path, 60)
    first = float(t.model(t.batch(0))[0].detach())
    logs = t.fit(progress=False)
    assert logs["loss"] < first / 3
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    ckpt = load_checkpoint(tmp_path / "checkpoint", "regression", training=True)
    assert ckpt.meta["step"] == 60 and ckpt.meta["note"] == "toy" and ckpt.config == {"hidden": 16}


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_resume_is_exact(tmp_path: Path, ema: float) -> None:
    straight = trainer(tmp_path / "a", 12, ema)
    straight.fit(progress=False)
    interrupted = trainer(tmp_path / "b", 12, ema)
    interrupted.fit(progress=False, until=8)  # as if killed after the checkpoint of step 8
    resumed = trainer(tmp_path / "b", 12, ema)
    assert resumed.resume() and resumed.step == 8
    resumed.fit(progress=False)
    for model in ("model", "inference_model"):
        a_sd, b_sd = getattr(straight, model).state_dict(), getattr(resumed, model).state_dict()
        for (name, a), (_, b) in zip(a_sd.items(), b_sd.items(), strict=True):
            assert torch.equal(a, b), f"{model}.{name}"
    assert torch.equal(straight.opt.state_dict()["state"][0]["exp_avg"], resumed.opt.state_dict()["state"][0]["exp_avg"])


class NoisyRegression(Regression):
    """The toy with dropout, so that its training steps draw from torch's global RNG."""

    def __init__(self) -> None:
        super().__init__()
        self.net.insert(2, nn.Dropout(0.3))


def noisy_trainer(out: Path, steps: int) -> Trainer:
    """Like a tokenizer's trainer: a random training step, and callbacks that draw random numbers too (a tokenizer's
    ``describe`` opens a DataLoader, whose iterator draws its base seed from the global RNG)."""
    torch.manual_seed(0)

    def describe() -> tuple[str, dict[str, Any], dict[str, Any]]:
        return "regression", {}, {"draw": float(torch.rand(()))}

    def on_sample(model: nn.Module, batch: dict[str, torch.Tensor], writer: Any, step: int) -> None:
        torch.randn(8)

    config = TrainConfig(steps=10, batch_size=16, lr=1e-2, warmup=2, log_every=2, sample_every=3, checkpoint_every=2)
    return Trainer(NoisyRegression(), Points(), config, out, describe, on_sample)


def test_resume_is_bit_identical_with_random_steps_and_callbacks(tmp_path: Path) -> None:
    straight = noisy_trainer(tmp_path / "a", 10)
    straight.fit(progress=False)
    for until in (4, 6, 7):  # stopped three times, once between checkpoints (as a kill would)
        noisy_trainer(tmp_path / "b", 10).fit(progress=False, until=until)
    resumed = noisy_trainer(tmp_path / "b", 10)
    resumed.fit(progress=False)
    assert resumed.step == 10
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_ema_weights_are_saved_for_inference(tmp_path: Path) -> None:
    t = trainer(tmp_path, 8, ema=0.5)
    t.fit(progress=False)
    ckpt = load_checkpoint(tmp_path / "checkpoint", "regression", training=True)
    assert ckpt.training is not None
    online, average = t.model.state_dict(), t.ema.module.state_dict()  # type: ignore[union-attr]
    for name, w in ckpt.weights.items():
        assert torch.equal(w, average[name]) and torch.equal(ckpt.training["tensors"][f"online.{name}"], online[name])
        assert not torch.equal(average[name], online[name]), name  # the average lags the online weights


def test_the_average_warms_up_and_forgets_the_starting_weights(tmp_path: Path) -> None:
    assert [round(ema_decay(0.999, 10, n), 4) for n in (0, 1, 290, 9000, 20000)] == [0.1, 0.1818, 0.97, 0.999, 0.999]
    assert ema_decay(0.999, 0, 0) == 0.999
    t = trainer(tmp_path / "warm", 6, ema=0.999)
    initial = {k: v.clone() for k, v in t.model.state_dict().items()}
    online = []
    for step in range(1, 7):
        t.fit(progress=False, until=step)
        online.append({k: v.clone() for k, v in t.model.state_dict().items()})
    for name, average in t.ema.module.state_dict().items():  # type: ignore[union-attr]
        expected = online[0][name]  # the first update copies the weights
        for n in range(1, 6):
            expected = torch.lerp(expected, online[n][name], 1.0 - ema_decay(0.999, 10, n))
        assert torch.allclose(average, expected, atol=1e-6), name
    distance = {}
    for warmup in (10, 0):  # 40 steps: the warm average follows the weights, the fixed 0.999 keeps 96 % of the start
        torch.manual_seed(0)
        config = TrainConfig(steps=40, batch_size=16, lr=1e-2, warmup=3, checkpoint_every=40, ema=0.999, ema_warmup=warmup)
        run = Trainer(Regression(), Points(), config, tmp_path / f"w{warmup}", lambda: ("regression", {"hidden": 16}, {}))
        run.fit(progress=False)
        gap = {k: float((run.ema.module.state_dict()[k] - initial[k]).norm() / (v - initial[k]).norm())  # type: ignore[union-attr]
               for k, v in run.model.state_dict().items()}
        distance[warmup] = min(gap.values()), max(gap.values())
    assert distance[10][0] > 0.7 and distance[0][1] < 0.1, distance
    with pytest.raises(ValueError, match="ema_warmup"):
        TrainConfig(ema_warmup=-1)


def test_frozen_parameters_stay_put(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Regression()
    model.net[0].requires_grad_(False)
    before = model.net[0].weight.detach().clone()
    config = TrainConfig(steps=5, batch_size=8, warmup=1, checkpoint_every=5, weight_decay=0.1)
    Trainer(model, Points(), config, tmp_path, lambda: ("regression", {}, {})).fit(progress=False)
    assert torch.equal(model.net[0].weight, before) and not torch.equal(model.net[2].weight, torch.zeros_like(model.net[2].weight))
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="frozen"):
        Trainer(model, Points(), config, tmp_path / "x", lambda: ("regression", {}, {}))


def test_ddp_two_processes_agree(tmp_path: Path) -> None:
    """torchrun with 2 CPU processes (gloo): the run completes, rank 0 saves, and both ranks end with the same weights."""
    import subprocess
    import sys

    from safetensors.torch import load_file

    worker = Path(__file__).with_name("ddp_worker.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(worker), str(tmp_path)]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(2)]
    assert ranks[0].keys() == ranks[1].keys()
    for name in ranks[0]:
        assert torch.equal(ranks[0][name], ranks[1][name]), name
    ckpt = load_checkpoint(tmp_path / "checkpoint", "world_model", training=True)
    assert ckpt.meta["step"] == 4 and {"rng.torch.0", "rng.torch.1"} <= set(ckpt.training["tensors"])  # type: ignore[index]
    initial = load_file(str(tmp_path / "initial.safetensors"))
    assert any(not torch.equal(initial[k], ranks[0][k]) for k in initial)


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


class RecordsAutocast(Regression):
    """Regression that notes whether each training forward ran under CPU bf16 autocast."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[bool] = []

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        self.seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return super().forward(batch)


@pytest.mark.parametrize("amp", [True, False])
def test_bf16_autocast_on_cpu_follows_cpu_amp_and_the_hardware(tmp_path: Path, amp: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    import avworld.train.trainer as trainer_module

    for native in (True, False):
        monkeypatch.setattr(trainer_module, "cpu_has_bf16", lambda native=native: native)
        model = RecordsAutocast()
        config = TrainConfig(steps=3, batch_size=8, log_every=1, sample_every=100, checkpoint_every=100, cpu_amp=amp, device="cpu")
        Trainer(model, Points(), config, tmp_path / f"{amp}-{native}", lambda: ("regression", {}, {})).fit(progress=False)
        assert model.seen == [amp and native] * 3


def test_cpu_bf16_detection_reads_the_cpu_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import builtins

    from avworld.train.trainer import cpu_has_bf16

    real_open, cpuinfo = builtins.open, tmp_path / "cpuinfo"
    monkeypatch.setattr(builtins, "open", lambda path, *a, **k: real_open(cpuinfo if path == "/proc/cpuinfo" else path, *a, **k))
    for flags, expected in (("fpu sse avx512f amx_bf16 amx_tile", True), ("fpu sse avx2", False), (None, False)):
        cpuinfo.write_text("processor\t: 0\n" + (f"flags\t\t: {flags}\n" if flags else ""))
        assert cpu_has_bf16() is expected
    monkeypatch.setattr(builtins, "open", lambda path, *a, **k: (_ for _ in ()).throw(OSError("no such file")))
    assert cpu_has_bf16() is False


def test_checkpoint_json_is_standard_and_training_state_round_trips(tmp_path: Path) -> None:
    import json
    import math

    def refuse(token: str) -> None:
        raise ValueError(f"non-standard JSON token {token}")

    meta = {"sim": {"episode": {"max_geodesic": math.inf}}, "scores": [math.nan, 2.0]}
    state = {"step": 3, "best": math.inf, "worst": -math.inf, "lost": math.nan}
    save_checkpoint(tmp_path / "ckpt", Checkpoint("toy", {}, {"w": torch.ones(1)}, meta, {"state": state, "tensors": {}}))
    stored = json.loads((tmp_path / "ckpt" / "meta.json").read_text(), parse_constant=refuse)
    assert stored["sim"]["episode"]["max_geodesic"] is None and stored["scores"] == [None, 2.0]
    json.loads((tmp_path / "ckpt" / "training.json").read_text(), parse_constant=refuse)
    back = load_checkpoint(tmp_path / "ckpt", training=True).training
    assert back is not None and back["state"]["best"] == math.inf and back["state"]["worst"] == -math.inf
    assert math.isnan(back["state"]["lost"]) and back["state"]["step"] == 3


def test_non_finite_weights_are_refused_naming_the_file_and_tensor(tmp_path: Path) -> None:
    weights = {"ok": torch.ones(2), "encoder.w": torch.tensor([1.0, float("nan")])}
    save_checkpoint(tmp_path / "ckpt", Checkpoint("toy", {}, weights, {}))
    with pytest.raises(CheckpointError, match=r"ckpt/model\.safetensors: tensor 'encoder\.w' holds NaN or infinite values"):
        load_checkpoint(tmp_path / "ckpt")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("config.yaml", "latent_channels: 8", "latent_channels: abc"), r"config\.yaml: .*latent_channels: expected an int, got 'abc'"),
        (("config.yaml", "ild_weight: 1.0", "ild_weight: .nan"), r"config\.yaml: .*ild_weight: expected a finite float, got nan"),
        (("config.yaml", "- 256\n", "- x\n"), r"config\.yaml: .*stft_sizes\[0\]: expected an int, got 'x'"),
        (("meta.json", '"std": 0.5', '"std": "abc"'), r"meta\.json: latent\.std: expected a positive finite number, got 'abc'"),
        (("meta.json", '"std": 0.5', '"std": 0'), r"meta\.json: latent\.std: expected a positive finite number, got 0"),
        (("meta.json", '"mean": 0.1', '"mean": null'), r"meta\.json: latent\.mean: expected a finite number, got None"),
    ],
)
def test_bad_config_and_meta_fields_are_refused_naming_the_file_and_field(tmp_path: Path, edit: tuple[str, str, str], message: str) -> None:
    from avworld.models.registry import build, config_to_dict, load_model, preset

    config = config_to_dict(preset("audio_codec", "tiny"))
    path = tmp_path / "codec"
    meta = {"latent": {"mean": 0.1, "std": 0.5}}
    save_checkpoint(path, Checkpoint("audio_codec", config, build("audio_codec", config).state_dict(), meta))
    load_model(path, "audio_codec")
    name, old, new = edit
    text = (path / name).read_text()
    assert old in text
    (path / name).write_text(text.replace(old, new, 1))
    with pytest.raises(CheckpointError, match=message):
        load_model(path, "audio_codec")


def _events(folder: Path) -> Any:
    """TensorBoard's own reader over the event files of ``folder`` (every scalar and audio clip kept)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "audio": 0, "images": 0})
    events.Reload()
    return events


class Held(Points):
    """Held-out points: another draw of the same function."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(40, 3, generator=g)
        self.y = torch.sin(self.x.sum(-1))


def test_validation_is_logged_every_val_every_steps_and_never_changes_training(tmp_path: Path) -> None:
    """Issue 27 item 6: held-out loss every ``val_every`` steps (and at the end) under ``val/``, the mean over the fixed
    validation items; the training run (weights, RNG streams) is the same with or without it."""

    def run(out: Path, val: bool) -> Trainer:
        torch.manual_seed(0)
        config = TrainConfig(steps=10, batch_size=16, lr=1e-2, warmup=2, log_every=5, sample_every=100, checkpoint_every=10, val_every=4)
        t = Trainer(NoisyRegression(), Points(), config, out, lambda: ("regression", {}, {}), val_dataset=Held() if val else None)
        t.fit(progress=False)
        return t

    with_val, without = run(tmp_path / "a", True), run(tmp_path / "b", False)
    for (name, a), (_, b) in zip(with_val.model.state_dict().items(), without.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    events = _events(tmp_path / "a" / "tb")
    val = events.Scalars("val/loss")
    assert [e.step for e in val] == [4, 8, 10]
    model = with_val.inference_model.eval()
    held = Held()
    with torch.no_grad():  # the last pass: the mean loss of the (deterministic in eval mode) model over all 40 held-out items
        want = float(((model.net(held.x).squeeze(-1) - held.y) ** 2).mean())
    assert val[-1].value == pytest.approx(want, rel=1e-5)
    assert "val/loss" not in _events(tmp_path / "b" / "tb").Tags()["scalars"]
    with pytest.raises(ValueError, match="val_every"):
        TrainConfig(val_every=-1)
    with pytest.warns(UserWarning, match="no validation items"):
        empty = torch.utils.data.Subset(Points(), [])
        Trainer(Regression(), Points(), TrainConfig(), tmp_path / "c", lambda: ("r", {}, {}), val_dataset=empty)


def _holding_out_one_scene(collection: Any) -> tuple[float, float, float]:
    """Fractions under which the tiny collection's first scene is a training scene and its second a validation one."""
    import zlib

    from avworld.data.windows import scene_split
    from avworld.sim.scenes.procedural import SPLITS

    u = sorted(zlib.crc32(f"scene-{s}".encode()) / 2**32 for s in SPLITS["train"][: collection.scenes])
    train = (u[0] + u[1]) / 2
    fractions = (train, 1.0 - train, 0.0)
    assert sorted(scene_split(s, fractions) for s in SPLITS["train"][:2]) == ["train", "val"]
    return fractions


@pytest.mark.usefixtures("one_thread")
def test_world_model_logs_validation_and_both_ears(collection: Any, tokenizer_checkpoints: dict[str, str], tmp_path: Path) -> None:
    """A tiny joint stage with one of the collection's two scenes held out: its event file holds the validation scalars
    (loss terms and the imagined step's quality) and the audio of both ears, real and imagined."""
    from avworld.data.storage import DataRef
    from avworld.train.world_model import TokenizerRefs, WorldModelJob, stage_dir, train_world_model

    data = DataRef(root=collection.root, name=collection.name, fractions=_holding_out_one_scene(collection))
    train = TrainConfig(steps=2, batch_size=4, warmup=1, sample_every=2, checkpoint_every=2, val_every=1, val_size=8, device="cpu")
    job = WorldModelJob(model="tiny", stage="joint", tokenizers=TokenizerRefs(**tokenizer_checkpoints), data=data, train=train)
    train_world_model(job, tmp_path, progress=False)
    events = _events(stage_dir(tmp_path, "joint") / "tb")
    scalars, audio = set(events.Tags()["scalars"]), set(events.Tags()["audio"])
    for name in ("loss", "video_mse", "audio_mse", "reward_mse", "termination_bce", "imagined_psnr", "imagined_audio_l1"):
        assert f"val/{name}" in scalars, name
        assert [e.step for e in events.Scalars(f"val/{name}")] == [1, 2], name
    assert np.isfinite([e.value for e in events.Scalars("val/imagined_psnr")]).all()
    assert {"samples/real_left", "samples/real_right", "samples/imagined_left", "samples/imagined_right"} <= audio
    left, right = (events.Audio(f"samples/imagined_{side}")[-1].encoded_audio_string for side in ("left", "right"))
    assert left != right  # two ears, not one logged twice


@pytest.mark.usefixtures("one_thread")
def test_tokenizer_logs_validation_quality(collection: Any, tmp_path: Path) -> None:
    from avworld.data.storage import DataRef
    from avworld.train.tokenizers import TokenizerJob, train_tokenizer

    data = DataRef(root=collection.root, name=collection.name, fractions=_holding_out_one_scene(collection))
    train = TrainConfig(steps=2, batch_size=4, warmup=1, checkpoint_every=2, val_every=2, val_size=8, device="cpu")
    train_tokenizer(TokenizerJob(kind="video_vae", model="tiny", data=data, train=train), tmp_path, progress=False)
    events = _events(tmp_path / "tb")
    assert [e.step for e in events.Scalars("val/psnr")] == [2] and [e.step for e in events.Scalars("val/loss")] == [2]


class Read:
    """A log value that records the step whose forward made it each time the trainer reads it as a number (reading a
    device tensor waits for the device)."""

    def __init__(self, value: torch.Tensor, step: int, reads: list[int]) -> None:
        self.value, self.step, self.reads = value, step, reads

    def __float__(self) -> float:
        self.reads.append(self.step)
        return float(self.value)


class LazyLogs(Regression):
    """The toy returning its log as a :class:`Read`; keeps each step's loss as it computed it."""

    def __init__(self) -> None:
        super().__init__()
        self.losses: list[float] = []
        self.reads: list[int] = []

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        loss = ((self.net(batch["x"]).squeeze(-1) - batch["y"]) ** 2).mean()
        self.losses.append(float(loss.detach()))
        return loss, {"loss": Read(loss.detach(), len(self.losses), self.reads)}


def test_logs_are_read_only_on_logged_steps_and_logged_as_computed(tmp_path: Path) -> None:
    """The steps between logged ones never read the model's logs (no wait for the device); the logged values are those
    the model computed at the logged steps, and ``fit`` returns the last step's as numbers."""
    torch.manual_seed(0)
    model = LazyLogs()
    config = TrainConfig(steps=10, batch_size=16, lr=1e-2, warmup=2, log_every=3, sample_every=100, checkpoint_every=100, val_every=0)
    logs = Trainer(model, Points(), config, tmp_path, lambda: ("regression", {}, {})).fit(progress=False)
    assert model.reads == [3, 6, 9, 10, 10]  # the logged steps, then the returned logs
    logged = _events(tmp_path / "tb").Scalars("train/loss")
    assert [e.step for e in logged] == [3, 6, 9, 10]
    assert [e.value for e in logged] == [float(np.float32(model.losses[e.step - 1])) for e in logged]
    assert logs["loss"] == model.losses[-1] and isinstance(logs["loss"], float)


class FailingBackward(torch.autograd.Function):
    """Identity whose backward pass raises, as a compiled backward that fails to compile does at its first call."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("backward failed to compile")


@pytest.mark.parametrize("fails", [None, "forward", "backward"])
def test_a_failing_compile_falls_back_to_eager_from_the_step_it_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fails: Any) -> None:
    """``train.compile``: a compile that fails at the first forward or backward pass warns, retakes that step eagerly from
    the same random state and trains eagerly from then on, so the run equals an eager one bit for bit (dropout included)."""
    calls: list[str] = []

    def fake_compile(fn: Any, mode: str | None = None) -> Any:
        def call(batch: dict[str, torch.Tensor]) -> Any:
            calls.append("compiled")
            if fails == "forward":
                raise RuntimeError("forward failed to compile")
            loss, logs = fn(batch)
            return (FailingBackward.apply(loss) if fails == "backward" else loss), logs

        return call

    def run(out: Path, compile: bool) -> Trainer:
        torch.manual_seed(0)
        config = TrainConfig(steps=6, batch_size=16, lr=1e-2, warmup=2, log_every=2, sample_every=100, checkpoint_every=6, compile=compile)
        t = Trainer(NoisyRegression(), Points(), config, out, lambda: ("regression", {}, {}))
        t.fit(progress=False)
        return t

    eager = run(tmp_path / "eager", False)
    monkeypatch.setattr(torch, "compile", fake_compile)
    if fails is None:
        t = run(tmp_path / "compiled", True)
    else:
        with pytest.warns(UserWarning, match="eager"):
            t = run(tmp_path / "compiled", True)
    assert (t.train_model is t.eager_model) == (fails == "backward")  # a failed forward falls back inside ``compiled``
    assert calls == ["compiled"] * (6 if fails is None else 1)
    for (name, a), (_, b) in zip(eager.model.state_dict().items(), t.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
