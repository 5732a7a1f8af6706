"""Shared tiny scenes with known answers."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

from avworld.data.collect import CollectConfig
from avworld.sim.scenes.scene import AgentStart, Door, Furniture, Scene, SoundSource, Wall


def pytest_configure(config: pytest.Config) -> None:
    """Under ``pytest -n 2`` (the README's command: one worker per core) every worker, and every command a test starts,
    computes on one thread: two workers of two threads each on two cores spin-wait on each other."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as a module (the scripts folder is not a package), for testing its functions."""
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def two_rooms() -> Scene:
    """Two 4 x 6 m rooms side by side (x in [0, 8], y in [0, 6]); one 0.9 m door at (4, 5) in the partition."""
    return Scene(
        walls=(
            Wall((0, 0), (8, 0), 0.2, "brick"),
            Wall((8, 0), (8, 6), 0.2, "brick"),
            Wall((8, 6), (0, 6), 0.2, "brick"),
            Wall((0, 6), (0, 0), 0.2, "brick"),
            Wall((4, 0), (4, 6), 0.1, "plaster"),
        ),
        doors=(Door((4, 5), 0.9),),
        furniture=(Furniture((2, 3), (1.0, 0.6, 0.8), 0.0, "wood"),),
        sources=(SoundSource((7, 1), "telephone"),),
        start=AgentStart((1, 1), 0.0),
        name="two-rooms",
    )


def box(w: float, h: float, material: str = "brick", partition: Door | bool | None = None) -> Scene:
    """A w × h room (inner faces at 0 and w, 0 and h); optionally a partition at x = w/2, with a door or closed."""
    t = 0.2
    walls = [
        Wall((-t / 2, -t / 2), (w + t / 2, -t / 2), t, material),
        Wall((w + t / 2, -t / 2), (w + t / 2, h + t / 2), t, material),
        Wall((w + t / 2, h + t / 2), (-t / 2, h + t / 2), t, material),
        Wall((-t / 2, h + t / 2), (-t / 2, -t / 2), t, material),
    ]
    doors: tuple[Door, ...] = ()
    if partition is not None and partition is not False:
        walls.append(Wall((w / 2, 0), (w / 2, h), 0.1, material))
        if isinstance(partition, Door):
            doors = (partition,)
    return Scene(tuple(walls), AgentStart((1, 1)), (SoundSource((w - 1, 1), "telephone"),), doors, floor_material="carpet")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads, and beside another busy process they spin-wait (tens of times slower)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def scene() -> Scene:
    return two_rooms()


TINY_COLLECTION = {"name": "tiny", "episodes": 4, "scenes": 2, "shard_size": 2, "workers": 2, "max_steps": 20}


@pytest.fixture(scope="session")
def collection(tmp_path_factory: pytest.TempPathFactory) -> CollectConfig:
    """A tiny collection (4 short episodes in 2 train scenes, 2 shards), collected once per test session."""
    from avworld.data.collect import collect
    from avworld.sim.config import SimConfig

    config = CollectConfig(root=str(tmp_path_factory.mktemp("datasets")), **TINY_COLLECTION)  # type: ignore[arg-type]
    result = collect(config, SimConfig())
    assert result["shards"] == 2 and result["steps"] > 0
    return config


@pytest.fixture(scope="session")
def tokenizer_checkpoints(collection: CollectConfig, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Tiny video and audio tokenizers trained for a few steps on ``collection``: {"video": dir, "audio": dir}."""
    from avworld.data.storage import DataRef
    from avworld.train.tokenizers import TokenizerJob, train_tokenizer
    from avworld.train.trainer import TrainConfig

    out = tmp_path_factory.mktemp("tokenizers")
    data = DataRef(root=collection.root, name=collection.name)
    paths = {}
    for modality, kind in (("video", "video_vae"), ("audio", "audio_codec")):
        train = TrainConfig(steps=3, batch_size=4, warmup=1, checkpoint_every=3, device="cpu")
        train_tokenizer(TokenizerJob(kind=kind, model="tiny", data=data, train=train), out / modality, progress=False)
        paths[modality] = str(out / modality / "checkpoint")
    return paths


@pytest.fixture(scope="session")
def world_checkpoint(collection: CollectConfig, tokenizer_checkpoints: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny world model (AV-CDiT ``tiny``, both modalities, ``stage=joint``) trained for a few steps: its checkpoint directory.

    Its predictions are poor; it exercises every path of imagination (load, encode, predict, decode) with the real formats.
    """
    from avworld.data.storage import DataRef
    from avworld.train.trainer import TrainConfig
    from avworld.train.world_model import TokenizerRefs, WorldModelJob, stage_dir, train_world_model

    out = tmp_path_factory.mktemp("world")
    job = WorldModelJob(
        model="tiny",
        stage="joint",
        tokenizers=TokenizerRefs(**tokenizer_checkpoints),
        data=DataRef(root=collection.root, name=collection.name),
        train=TrainConfig(steps=4, batch_size=4, warmup=1, checkpoint_every=4, device="cpu"),
    )
    train_world_model(job, out, progress=False)
    return str(stage_dir(out, "joint") / "checkpoint")
