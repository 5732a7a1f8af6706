"""Shipped world models by name (``checkpoint=pretrained``): every entry point resolves one, bad ones are refused by name,
and the provenance a shipped one records (command, data seeds, commit, hash of the simulator settings)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

import avworld  # noqa: F401  (registers the envs)
from avworld.data.collect import CollectConfig
from avworld.jsonfile import dumps
from avworld.models.checkpoint import CheckpointError
from avworld.models.imagination import Imagination, load_world
from avworld.models.pretrained import (
    ROOT_VARIABLE,
    available,
    collection_recipe,
    install_pretrained,
    is_pretrained,
    pretrained_root,
    provenance_recipe,
    read_index,
    resolve_checkpoint,
    sim_hash,
)
from avworld.sim.config import SimConfig
from avworld.train.provenance import code_commit, collection_seeds, provenance

ROOT = Path(__file__).resolve().parents[1]
DESCRIPTION = "a tiny world model trained for four steps, for tests"


def with_provenance(checkpoint: str, out: Path) -> Path:
    """A copy of ``checkpoint`` whose meta.json records its provenance, as the training job of a shipped model writes it."""
    shutil.copytree(checkpoint, out)
    meta = json.loads((out / "meta.json").read_text())
    meta["provenance"] = provenance({"train": {"name": meta["data"]["name"], "seed": 0}}, meta["sim"], "avworld train world_model")
    (out / "meta.json").write_text(dumps(meta) + "\n")
    return out


@pytest.fixture(scope="module")
def shipped(world_checkpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pretrained root shipping the tiny world model as ``tiny`` (its default)."""
    root = tmp_path_factory.mktemp("pretrained")
    source = with_provenance(world_checkpoint, tmp_path_factory.mktemp("trained") / "checkpoint")
    (source / "training.json").write_text("{}\n")  # training state is not shipped
    install_pretrained(source, "tiny", DESCRIPTION, root=root)
    return root


@pytest.fixture
def root(shipped: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(ROOT_VARIABLE, str(shipped))
    return shipped


# -- names and the index ---------------------------------------------------------------------------


def test_names_resolve_to_the_shipped_folder_and_paths_stay_paths(root: Path) -> None:
    assert pretrained_root() == root and available() == {"tiny": DESCRIPTION}
    assert resolve_checkpoint("pretrained") == resolve_checkpoint("pretrained:tiny") == root / "tiny"
    assert resolve_checkpoint(Path("pretrained")) == Path("pretrained")  # a Path is a path, not a name
    assert resolve_checkpoint("./pretrained") == Path("pretrained") and resolve_checkpoint("runs/ckpt") == Path("runs/ckpt")
    assert is_pretrained("pretrained:x") and not is_pretrained("pretrained_models") and not is_pretrained(Path("pretrained"))
    index = read_index()
    assert index["default"] == "tiny" and not any(name.startswith("training") for name in index["models"]["tiny"]["sha256"])
    files = sorted(p.relative_to(root / "tiny").as_posix() for p in (root / "tiny").rglob("*") if p.is_file())
    assert files == sorted(index["models"]["tiny"]["sha256"]) and "tokenizers/video/model.safetensors" in files
    assert index["models"]["tiny"]["bytes"] == sum((root / "tiny" / f).stat().st_size for f in files)


def test_an_unknown_name_lists_the_shipped_ones(root: Path) -> None:
    with pytest.raises(CheckpointError, match=r"no pretrained world model named 'large'; available: pretrained:tiny \(a tiny world"):
        load_world("pretrained:large")
    with pytest.raises(CheckpointError, match="available: pretrained:tiny"):
        gym.make("avworld/Dream-v0", checkpoint="pretrained:../tiny")


def test_an_install_without_weights_says_it_ships_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ROOT_VARIABLE, str(tmp_path))
    for make in (lambda: load_world("pretrained"), lambda: gym.make("avworld/Dream-v0", checkpoint="pretrained")):
        with pytest.raises(CheckpointError, match="this install of avworld ships no pretrained world model"):
            make()
    (tmp_path / "index.json").write_text('{"default": null, "models": {}}\n')  # as the repository ships it before weights exist
    with pytest.raises(CheckpointError, match="ships no pretrained world model"):
        resolve_checkpoint("pretrained")


def test_the_packages_own_index_reads_and_every_model_in_it_resolves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ROOT_VARIABLE, raising=False)
    assert pretrained_root() == ROOT / "avworld" / "pretrained"
    for name in available():  # none until the lead ships weights; then each must match its sha256 and load
        assert load_world(f"pretrained:{name}", "cpu").meta["provenance"]["sim_sha256"]


def test_package_data_ships_every_file_of_a_shipped_model(root: Path) -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["avworld"]
    for f in (root / "tiny").rglob("*"):
        relative = PurePosixPath("pretrained", f.relative_to(root).as_posix())
        assert not f.is_file() or any(relative.match(p) and len(relative.parts) == len(PurePosixPath(p).parts) for p in patterns), relative
    assert "pretrained/index.json" in patterns


# -- every entry point -----------------------------------------------------------------------------


def test_dream_env_vector_env_and_planner_load_it_by_name(root: Path, one_thread: None) -> None:
    from avworld.envs.dream_vector import DreamVectorEnv
    from avworld.policies.planner import BeamPlanner

    world = Imagination.load("pretrained")
    assert world.meta["provenance"]["command"] == "avworld train world_model"
    env = gym.make("avworld/Dream-v0", checkpoint="pretrained", sampler_steps=1)
    obs, _ = env.reset(seed=0)
    obs, reward, *_ = env.step(1)
    assert obs["rgb"].shape == tuple(world.meta["rgb_shape"]) and np.isfinite(reward)
    vector = DreamVectorEnv(2, checkpoint="pretrained:tiny", sampler_steps=1)
    obs, _ = vector.reset(seed=0)
    obs, rewards, *_ = vector.step(np.array([1, 2]))
    assert obs["audio"].shape == (2, *world.meta["audio_shape"]) and rewards.shape == (2,)
    planner = BeamPlanner("pretrained", horizon=1, beam=2)
    assert planner.world.name == str(root / "tiny")  # type: ignore[attr-defined]


def test_a_shipped_models_windows_count_once_whatever_name_reached_it(root: Path) -> None:
    from avworld.policies.planner import BeamPlanner
    from avworld.policies.worlds import REAL_ENV, world_model_source, world_source

    assert world_model_source("pretrained") == world_model_source("pretrained:tiny") == f"world model {root / 'tiny'}"
    meta = json.loads((root / "tiny" / "meta.json").read_text())
    data = meta["data"]
    source = world_source("pretrained", data)  # its collection, as its meta.json names it: by the recipe recorded there
    assert source == f"collection recipe {data['recipe']} (train scenes)"
    before = {k: v for k, v in data.items() if k != "recipe"}  # a model trained before recipes: its provenance's
    recipe = provenance_recipe(meta["provenance"])
    assert recipe not in (None, data["recipe"]) and world_source("pretrained", before) == f"collection recipe {recipe} (train scenes)"

    class ClonedInThatModel:  # an agent whose checkpoint meta names the model as it was asked for
        meta = {"usage": {"real_steps": 0}, "world_model": {"checkpoint": "pretrained", "windows": 11, "data": data}}

    planner = BeamPlanner(str(root / "tiny"), horizon=1, beam=2, proposal=ClonedInThatModel())
    assert set(planner.training_data) == {REAL_ENV, source}


def test_simulator_settings_it_was_not_trained_with_are_refused_naming_each(root: Path) -> None:
    sim = {"render": {"width": 128, "height": 96}, "agent": {"turn_deg": 10.0}}
    with pytest.raises(ValueError, match=r"sim\.render\.width: sim has 128 but the world model .*tiny was trained with 64") as err:
        gym.make("avworld/Dream-v0", checkpoint="pretrained", sim=sim)
    message = str(err.value)
    assert "sim.render.height: sim has 96 but it was trained with 64" in message and "sim.agent.turn_deg: sim has 10.0" in message
    assert "sim.acoustics" not in message  # only the differing settings are named


def run_cli(*args: str, cwd: Path, root: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, ROOT_VARIABLE: str(root), **(env or {})}
    cwd.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "avworld.cli", *args, f"hydra.run.dir={cwd}"]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, env=environment)


def test_the_commands_take_checkpoint_pretrained(root: Path, collection: CollectConfig, tmp_path: Path) -> None:
    data = [f"data.root={collection.root}", f"data.name={collection.name}", "data.split=train"]
    settings = ["eval_model.horizons=[1]", "eval_model.windows=2", "eval_model.sampler_steps=1"]
    proc = run_cli("eval", "world_model", "checkpoint=pretrained", *data, *settings, cwd=tmp_path / "eval", root=root)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "eval" / "prediction.json").read_text())
    assert result["checkpoints"]["av_cdit"] == str(root / "tiny") and "sharpness" in result["models"]["av_cdit"]["metrics"]
    proc = run_cli("viz", "agent=random", "max_steps=3", "checkpoint=pretrained:tiny", "sampler_steps=1", cwd=tmp_path / "viz", root=root)
    assert proc.returncode == 0, proc.stderr
    headless = {"SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
    args = ("play", "world=dream", "checkpoint=pretrained", "sampler_steps=1", "script=[up,tab,left,escape]")
    proc = run_cli(*args, cwd=tmp_path / "play", root=root, env=headless)
    assert proc.returncode == 0 and "real pose at the end:" in proc.stdout, proc.stderr


# -- damaged files ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "damage"),
    [
        ("model.safetensors", "truncate"),
        ("tokenizers/audio/model.safetensors", "truncate"),
        ("meta.json", "edit"),
        ("tokenizers/video/config.yaml", "edit"),
        ("config.yaml", "delete"),
    ],
)
def test_a_truncated_edited_or_missing_shipped_file_is_refused_naming_it(shipped: Path, tmp_path: Path, target: str, damage: str) -> None:
    root = tmp_path / "root"
    shutil.copytree(shipped, root)
    path = root / "tiny" / target
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "edit":
        path.write_text(path.read_text().replace("1", "2", 1))
    else:
        path.unlink()
    why = "missing from the pretrained world model" if damage == "delete" else "differs from the shipped file .* truncated or edited"
    with pytest.raises(CheckpointError, match=f"{path}: {why}"):
        resolve_checkpoint("pretrained", root)


def test_the_checkpoint_loader_refuses_a_truncated_weights_file_of_any_checkpoint(world_checkpoint: str, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(world_checkpoint, tmp_path / "copy"))
    weights = copy / "tokenizers" / "video" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=f"{weights}: unreadable or truncated safetensors file"):
        load_world(copy)


# -- provenance ------------------------------------------------------------------------------------


def test_install_refuses_a_checkpoint_without_provenance(world_checkpoint: str, tmp_path: Path) -> None:
    assert json.loads((Path(world_checkpoint) / "meta.json").read_text())["provenance"]["sim_sha256"]  # training records it
    bare = with_provenance(world_checkpoint, tmp_path / "bare")
    meta = json.loads((bare / "meta.json").read_text())
    del meta["provenance"]["command"]
    (bare / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"meta\.json: provenance\.command: missing"):
        install_pretrained(bare, "tiny", "no provenance", root=tmp_path)
    forged = with_provenance(world_checkpoint, tmp_path / "forged")
    meta = json.loads((forged / "meta.json").read_text())
    meta["provenance"]["sim_sha256"] = sim_hash(SimConfig.from_dict({"render": {"width": 128}}))
    (forged / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="sim_sha256 is not the hash of its 'sim'"):
        install_pretrained(forged, "tiny", "forged", root=tmp_path)
    with pytest.raises(ValueError, match="folder name"):
        install_pretrained(world_checkpoint, "../up", "bad name", root=tmp_path)
    assert not (tmp_path / "tiny").exists() and available(tmp_path) == {}


@dataclasses.dataclass
class Settings:
    b: tuple[int, ...] = (1, 2)
    a: float = float("inf")
    name: str = "é"


def test_sim_hash_is_the_sha256_of_the_canonical_json_of_the_settings() -> None:
    expected = hashlib.sha256('{"a":null,"b":[1,2],"name":"é"}'.encode()).hexdigest()
    assert sim_hash(Settings()) == sim_hash({"name": "é", "b": [1, 2], "a": None}) == expected
    sim = SimConfig()
    stored = json.loads(dumps(dataclasses.asdict(sim)))  # as meta["sim"] holds it (non-finite floats as null)
    assert sim_hash(sim) == sim_hash(stored) == sim_hash(SimConfig.from_dict(stored))
    assert sim_hash(SimConfig.from_dict({"render": {"width": 128}})) != sim_hash(sim)
    assert len(sim_hash(sim)) == 64


def test_provenance_records_the_command_seeds_commit_and_sim_hash(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()

    git("init", "-q")
    (repo / "code.py").write_text("x = 1\n")
    git("add", "code.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    seeds = {"train": collection_seeds(CollectConfig(name="big", seed=7, scenes=64, episodes=512))}
    record = provenance(seeds, SimConfig(), ["avworld", "train", "world_model", "out_dir=runs/a b"], config={"steps": 3}, repo=repo)
    assert record["command"] == "avworld train world_model 'out_dir=runs/a b'"
    assert record["data_seeds"]["train"] | {} == {
        "name": "big", "split": "train", "seed": 7, "first_scene": 0, "scenes": 64, "episodes": 512, "max_steps": 200,
        "behaviours": {"toward": 0.5, "away": 0.2, "explore": 0.3}, "scene": None,
    }  # fmt: skip
    assert record["commit"] == git("rev-parse", "HEAD") and record["dirty"] is False
    assert record["sim_sha256"] == sim_hash(SimConfig()) and record["config"] == {"steps": 3} and record["created"].endswith("+00:00")
    (repo / "code.py").write_text("x = 2\n")
    assert code_commit(repo) == (record["commit"], True)
    assert code_commit(tmp_path / "elsewhere") == (None, None)
    json.loads(dumps(record))  # standard JSON, for meta.json


def test_a_collection_is_known_by_its_recipe_not_its_path_or_name() -> None:
    def recipe(sim: SimConfig | None = None, **settings: Any) -> str:
        return collection_recipe(collection_seeds(CollectConfig(**({"name": "big"} | settings))), sim_hash(sim or SimConfig()))

    assert recipe() == recipe(name="again") and len(recipe()) == 16  # one recipe collected twice, under two names
    assert len({recipe(), recipe(seed=1), recipe(episodes=9), recipe(behaviours={"toward": 1.0}), recipe(split="val")}) == 5
    assert recipe(SimConfig.from_dict({"agent": {"turn_deg": 10.0}})) != recipe()
    record = provenance({"train": collection_seeds(CollectConfig(name="big"))}, SimConfig(), "avworld train world_model")
    assert provenance_recipe(record) == recipe() and provenance_recipe({"data_seeds": {}}) is None and provenance_recipe(None) is None


def test_weights_can_ship_in_bfloat16(world_checkpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Half the bytes on disk; the model loads in float32 and imagines what the float32 weights imagine, to bf16's precision."""
    source = with_provenance(world_checkpoint, tmp_path / "trained")
    full = install_pretrained(source, "full", "float32", root=tmp_path / "a")
    half = install_pretrained(source, "half", "bfloat16", root=tmp_path / "b", weights_dtype="bfloat16")
    for weights in ("model.safetensors", "tokenizers/video/model.safetensors"):
        assert (half / weights).stat().st_size < 0.6 * (full / weights).stat().st_size
    worlds = {}
    for name, where in (("full", tmp_path / "a"), ("half", tmp_path / "b")):
        monkeypatch.setenv(ROOT_VARIABLE, str(where))
        worlds[name] = load_world(f"pretrained:{name}", "cpu")
    a, b = (dict(w.model.named_parameters()) for w in (worlds["full"], worlds["half"]))
    for key, value in a.items():
        assert b[key].dtype == torch.float32
        torch.testing.assert_close(b[key], value.to(torch.bfloat16).float())
    with pytest.raises(ValueError, match="weights_dtype"):
        install_pretrained(source, "bad", "int8", root=tmp_path / "c", weights_dtype="int8")
