"""Collection into Minari (readable by minari itself, resumable), loading, bad data, and the window sampler."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from avworld.data.collect import CollectConfig, _collect_shard, collect, marker, plan, shards
from avworld.data.storage import DataError, flatten, open_collection
from avworld.data.windows import WindowConfig, WindowDataset, scene_split
from avworld.sim.config import SimConfig
from avworld.sim.scenes.source import scene_source


def test_minari_reads_the_collection(collection: CollectConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    import minari

    monkeypatch.setenv("MINARI_DATASETS_PATH", collection.root)
    ds = minari.load_dataset("avworld/tiny-v0")  # the whole collection, by one name
    assert ds.total_episodes == 4
    seen = []
    for ep, meta in zip(ds.iterate_episodes(), ds.storage.get_episode_metadata(range(4)), strict=True):
        n = len(ep.actions)
        assert ep.observations["rgb"].shape == (n + 1, 64, 64, 3) and ep.observations["rgb"].dtype == np.uint8
        assert ep.observations["audio"].shape == (n + 1, 2, 4000) and ep.observations["audio"].dtype == np.float32
        assert ep.infos["pose"].shape == (n + 1, 3) and ep.infos["geodesic_distance"].shape == (n + 1,)
        assert ep.terminations[-1] or ep.truncations[-1]
        assert {"scene_seed", "split", "sound", "behaviour", "success", "collisions"} <= set(meta)
        assert meta["split"] == "train" and meta["behaviour"] in collection.behaviours
        assert meta["options"] == {"scene_seed": meta["scene_seed"]}
        seen.append(int(meta["index"]))
    assert seen == [0, 1, 2, 3]
    assert not (Path(collection.root) / "avworld" / "tiny").exists()  # the shards were joined, not left to combine by hand


def test_minari_recreates_the_env_the_data_came_from(collection: CollectConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    import minari

    monkeypatch.setenv("MINARI_DATASETS_PATH", collection.root)
    ds = minari.load_dataset("avworld/tiny-v0")
    recorded = SimConfig.from_dict(json.loads(ds.storage.metadata["avworld"])["sim"])
    assert recorded.episode.max_steps == collection.max_steps == 20
    env = ds.recover_environment()
    assert env.spec is not None and env.spec.max_episode_steps == 20
    assert env.unwrapped.config == recorded and env.unwrapped.split == "train"
    assert set(env.observation_space.spaces) == set(collection.sensors)
    obs, _ = env.reset(seed=0, options={"scene_seed": 0})
    assert obs["audio"].shape == ds.observation_space["audio"].shape
    assert ds.recover_environment(eval_env=True).unwrapped.split == "test"


def test_minari_metadata_is_standard_json(collection: CollectConfig) -> None:
    def refuse(token: str) -> None:
        raise ValueError(f"non-standard JSON token {token}")

    text = (Path(collection.root) / "avworld" / "tiny-v0" / "data" / "metadata.json").read_text()
    meta = json.loads(text, parse_constant=refuse)
    assert json.loads(meta["avworld"], parse_constant=refuse)["sim"]["episode"]["max_geodesic"] is None  # no limit: null, not ∞


@pytest.fixture(scope="module")
def user_collection(tmp_path_factory: pytest.TempPathFactory) -> tuple[CollectConfig, list[Path]]:
    """Two episodes of the user's scenes (two JSON files, one episode each) with the pointgoal sensor."""
    from avworld.sim.scenes.loading import save_scene
    from tests.conftest import box, two_rooms

    folder = tmp_path_factory.mktemp("user-scenes")
    files = [folder / "rooms.json", folder / "box.json"]
    save_scene(two_rooms(), files[0])
    save_scene(box(3.0, 2.0), files[1])
    config = CollectConfig(
        root=str(folder / "datasets"), name="mine", episodes=2, shard_size=2, workers=1, max_steps=4,
        sensors=("rgb", "audio", "pointgoal"), scene=[str(f) for f in files],
    )  # fmt: skip
    assert collect(config, SimConfig())["steps"] > 0
    return config, files


def test_a_collection_plays_the_users_scenes(user_collection: tuple[CollectConfig, list[Path]], monkeypatch: pytest.MonkeyPatch) -> None:
    import minari

    from avworld.sim.scenes.loading import load_scene

    config, files = user_collection
    monkeypatch.setenv("MINARI_DATASETS_PATH", config.root)
    ds = minari.load_dataset("avworld/mine-v0")
    scenes = [load_scene(f) for f in files]
    for k, (ep, meta) in enumerate(zip(ds.iterate_episodes(), ds.storage.get_episode_metadata(range(2)), strict=True)):
        assert meta["scene_seed"] == -1 - k and meta["split"] == "user" and meta["options"] == {"scene_index": k}
        start = scenes[k].start
        np.testing.assert_allclose(ep.infos["pose"][0], [*start.position, start.yaw], atol=1e-5)  # episode k starts in scene k
    env = ds.recover_environment()
    assert env.spec is not None and env.spec.kwargs["scene"] == [str(f) for f in files]
    assert [s.name for s in env.unwrapped.scene_source.scenes] == [s.name for s in scenes]
    data = flatten(open_collection(config.root, config.name), Path(config.root) / "cache")
    assert data.episodes["scene_seed"].tolist() == [-1, -2]  # the window splits share them out by the fractions
    assert len(WindowDataset(data, WindowConfig(context=2, horizon=1, split=scene_split(-1, (0.9, 0.05, 0.05))))) > 0
    with pytest.raises(ValueError, match=r"missing\.json: cannot read scene file"):
        collect(dataclasses.replace(config, name="none", scene=str(files[0].with_name("missing.json"))), SimConfig())


def test_pointgoal_bounds_are_finite_so_minari_metadata_is_standard_json(user_collection: tuple[CollectConfig, list[Path]]) -> None:
    from avworld.envs.audio_nav import POINTGOAL_RANGE
    from avworld.sim.scenes.scene import MAX_EXTENT

    def refuse(token: str) -> None:
        raise ValueError(f"non-standard JSON token {token}")

    config, _ = user_collection
    text = (Path(config.root) / "avworld" / "mine-v0" / "data" / "metadata.json").read_text()
    meta = json.loads(text, parse_constant=refuse)  # Infinity (pointgoal's old upper bound) raises here
    assert "pointgoal" in str(meta["observation_space"])
    assert POINTGOAL_RANGE == pytest.approx(MAX_EXTENT * 2**0.5, rel=1e-6)


def test_a_finished_collection_is_not_redone(collection: CollectConfig) -> None:
    assert collect(collection, SimConfig()) == {"shards": 0, "skipped": 2, "steps": 0}


def test_the_plan_mixes_behaviours_and_is_deterministic() -> None:
    config = CollectConfig(episodes=200)
    ids = scene_source(None, SimConfig()).ids(config.split)
    first = plan(config, ids)
    assert first == plan(config, ids)
    assert [ep.scene_seed for ep in first[:17]] == [*range(16), 0]  # scene first_scene + i % scenes of the split's seeds
    counts = {b: sum(ep.behaviour == b for ep in first) for b in config.behaviours}
    assert all(abs(counts[b] / 200 - w) < 0.1 for b, w in config.behaviours.items())
    assert plan(dataclasses.replace(config, seed=1), ids) != first


def test_collection_resumes_after_being_killed(tmp_path: Path) -> None:
    root = tmp_path / "datasets"
    args = [
        sys.executable,
        "-m",
        "avworld.cli",
        "collect",
        "collect=tiny",
        "collect.workers=1",
        "collect.episodes=6",
        f"collect.root={root}",
    ]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    config = CollectConfig(root=str(root), name="tiny", episodes=6, shard_size=1, scenes=2, workers=1, max_steps=20)
    deadline = time.time() + 120
    while not marker(config, 0).exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = sorted(p.name for p in (root / "avworld" / "tiny").glob("*.done"))
    assert 1 <= len(done_before) < 6, "the run should have been killed mid-way"
    rerun = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(done_before)} already done" in rerun.stdout
    shards = open_collection(root, "tiny", strict=True)
    indices = []
    for s in shards:
        from minari import MinariDataset

        ds = MinariDataset(s.path / "data")
        indices += [int(m["index"]) for m in ds.storage.get_episode_metadata(range(ds.total_episodes))]
    assert sorted(indices) == list(range(6))  # none lost, none twice


def test_windows_feed_a_dataloader(collection: CollectConfig, tmp_path: Path) -> None:
    data = flatten(open_collection(collection.root, "tiny"), tmp_path)
    ds = WindowDataset(data, WindowConfig(context=3, horizon=2, fractions=(1.0, 0.0, 0.0)))
    assert len(ds) == sum(max(n + 1 - 5 + 1, 0) for n in data.episodes["length"])
    batch = next(iter(DataLoader(ds, batch_size=4, num_workers=2, shuffle=True, generator=torch.Generator().manual_seed(0))))
    assert batch["rgb"].shape == (4, 5, 64, 64, 3) and batch["rgb"].dtype == torch.uint8
    assert batch["audio"].shape == (4, 5, 2, 4000) and batch["audio"].dtype == torch.float32
    assert batch["actions"].shape == (4, 4) and batch["rewards"].shape == (4, 4) and batch["terminations"].dtype == torch.bool
    again = next(iter(DataLoader(ds, batch_size=4, num_workers=2, shuffle=True, generator=torch.Generator().manual_seed(0))))
    assert torch.equal(batch["audio"], again["audio"])  # deterministic given the seed


def test_window_contents_line_up_with_the_episode(collection: CollectConfig, tmp_path: Path) -> None:
    data = flatten(open_collection(collection.root, "tiny"), tmp_path)
    ds = WindowDataset(data, WindowConfig(context=2, horizon=1, fractions=(1.0, 0.0, 0.0)))
    first_len = int(data.episodes["length"][0])
    last_of_first = first_len + 1 - 3  # the last window of episode 0 ends on its final observation
    w = ds[last_of_first]
    assert bool(w["terminations"][-1] or w["truncations"][-1])
    np.testing.assert_array_equal(w["pose"].numpy(), np.asarray(data.arrays["pose"][first_len - 2 : first_len + 1]))
    assert not bool(ds[last_of_first + 1]["terminations"][0] or ds[last_of_first + 1]["truncations"][0])  # next episode starts fresh


def test_splits_never_share_a_scene() -> None:
    seeds = range(5000)
    assigned = {s: scene_split(s, (0.8, 0.1, 0.1)) for s in seeds}
    shares = {k: sum(v == k for v in assigned.values()) / len(seeds) for k in ("train", "val", "test")}
    assert abs(shares["train"] - 0.8) < 0.03 and abs(shares["val"] - 0.1) < 0.03
    assert all(scene_split(s, (0.8, 0.1, 0.1)) == assigned[s] for s in range(0, 5000, 97))  # a function of the seed


def test_ddp_ranks_get_distinct_slices(collection: CollectConfig, tmp_path: Path) -> None:
    data = flatten(open_collection(collection.root, "tiny"), tmp_path)
    ds = WindowDataset(data, WindowConfig(context=2, horizon=1, fractions=(1.0, 0.0, 0.0)))
    ranks = [list(DistributedSampler(ds, num_replicas=2, rank=r, shuffle=True, seed=3, drop_last=True)) for r in (0, 1)]
    assert not set(ranks[0]) & set(ranks[1]) and len(ranks[0]) == len(ranks[1]) == len(ds) // 2


@pytest.fixture(scope="module")
def unfinished(tmp_path_factory: pytest.TempPathFactory) -> CollectConfig:
    """A collection still in shards (two of one episode each, not yet joined)."""
    config = CollectConfig(root=str(tmp_path_factory.mktemp("shards")), name="tiny", episodes=3, scenes=2, shard_size=1, max_steps=8)
    sim = SimConfig.from_dict({"episode": {"max_steps": 8}})
    for k, episodes in list(shards(config, scene_source(None, sim).ids(config.split)))[:2]:
        _collect_shard(config, sim, k, episodes)
    return config


def test_a_corrupted_shard_is_named_and_skipped(unfinished: CollectConfig, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(unfinished.root, root)
    bad = root / "avworld" / "tiny" / "shard-00001-v0" / "data" / "main_data.hdf5"
    bad.write_bytes(bad.read_bytes()[:2000])  # truncated
    with pytest.warns(RuntimeWarning, match="shard-00001-v0"):
        shards_read = open_collection(root, "tiny")
    assert [s.path.name for s in shards_read] == ["shard-00000-v0"]
    assert flatten(shards_read, tmp_path / "cache").episodes["length"].size == 1  # the rest stays usable
    with pytest.raises(DataError, match=r"shard-00001-v0.*main_data\.hdf5"):
        open_collection(root, "tiny", strict=True)


def test_a_corrupted_collection_is_named(collection: CollectConfig, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(collection.root, root)
    bad = root / "avworld" / "tiny-v0" / "data" / "main_data.hdf5"
    bad.write_bytes(bad.read_bytes()[:2000])
    with pytest.raises(DataError, match=r"tiny-v0.*main_data\.hdf5"):
        open_collection(root, "tiny")


def test_mismatched_shards_are_refused_with_the_reason(unfinished: CollectConfig, tmp_path: Path) -> None:
    import shutil

    from minari import MinariDataset

    root = tmp_path / "copy"
    shutil.copytree(unfinished.root, root)
    ds = MinariDataset(root / "avworld" / "tiny" / "shard-00001-v0" / "data")
    meta = json.loads(ds.storage.metadata["avworld"])
    ds.storage.update_metadata({"avworld": json.dumps({**meta, "sample_rate": 8000})})
    with pytest.raises(DataError, match="sample_rate is 8000 but 16000"):
        open_collection(root, "tiny")


def _children(pid: int) -> list[int]:
    return [int(c) for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads worker processes from Linux's /proc")
def test_workers_exit_with_their_killed_parent_and_a_rerun_has_every_episode_once(tmp_path: Path) -> None:
    config = CollectConfig(root=str(tmp_path / "ds"), name="kill", episodes=6, scenes=2, shard_size=1, workers=2, max_steps=15)
    script = (
        "from avworld.data.collect import CollectConfig, collect; from avworld.sim.backends.builtin import SimConfig; "
        f"collect(CollectConfig(**{dataclasses.asdict(config)!r}), SimConfig())"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not marker(config, 0).exists() and time.time() < deadline and parent.poll() is None:
        time.sleep(0.05)
    workers = _children(parent.pid)
    assert len(workers) == 2 and parent.poll() is None, "the run should be mid-way, with its two workers"
    parent.send_signal(signal.SIGKILL)  # the main process alone, as timeout or an OOM killer does
    parent.wait()
    deadline = time.time() + 5
    while any(_alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(_alive(w) for w in workers), "orphaned workers kept running"
    done_before = len(list((tmp_path / "ds" / "avworld" / "kill").glob("*.done")))
    assert done_before < 6
    result = collect(dataclasses.replace(config, workers=2), SimConfig())
    assert result["skipped"] == done_before and result["shards"] == 6 - done_before
    [whole] = open_collection(config.root, "kill", strict=True)
    assert [int(m["index"]) for m in whole.storage.get_episode_metadata(range(whole.episodes))] == list(range(6))
    assert not list((tmp_path / "ds" / "avworld").glob(".staging-*"))


def test_bad_collect_config_is_refused_by_field() -> None:
    with pytest.raises(ValueError, match=r"collect\.behaviours"):
        CollectConfig(behaviours={"sideways": 1.0})
    with pytest.raises(ValueError, match=r"collect\.episodes"):
        CollectConfig(episodes=0)
    with pytest.raises(ValueError, match=r"collect\.agent and collect\.behaviours\.agent go together"):
        CollectConfig(behaviours={"agent": 1.0})  # no agent to walk them
    with pytest.raises(ValueError, match=r"collect\.agent and collect\.behaviours\.agent go together"):
        CollectConfig(agent={"_target_": "avworld.policies.OraclePolicy"})  # an agent that no episode would use
    with pytest.raises(ValueError, match=r"collect\.agent: an agent config with a _target_"):
        CollectConfig(behaviours={"agent": 1.0}, agent={"path": "run/checkpoint"})


def test_an_agent_walks_the_episodes_of_the_agent_behaviour(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from avworld.cli_config import typed
    from avworld.envs.audio_nav import AudioNavEnv
    from avworld.models.pretrained import recipe_of
    from avworld.policies import OraclePolicy
    from avworld.train.provenance import collection_seeds

    oracle = {"_target_": "avworld.policies.OraclePolicy", "lookahead": 1.5}
    # as `avworld collect collect=agent +agent@collect.agent=oracle` gives it: the mix is agent alone, not the default's plus it
    config = typed(CollectConfig, OmegaConf.create({"behaviours": {"agent": 1.0}, "agent": oracle}))
    assert config.behaviours == {"agent": 1.0}
    config = dataclasses.replace(config, root=str(tmp_path), name="walks", episodes=2, scenes=2, shard_size=1, workers=1, max_steps=12)
    collect(config, SimConfig())
    [data] = open_collection(config.root, "walks", strict=True)
    metas = list(data.storage.get_episode_metadata(range(data.episodes)))
    assert [m["behaviour"] for m in metas] == ["agent", "agent"]
    sim = dataclasses.replace(SimConfig(), episode=dataclasses.replace(SimConfig().episode, max_steps=12))
    env, agent = AudioNavEnv(split="train", sensors=config.sensors, sim=sim), OraclePolicy()
    for ep, episode in zip(plan(config, scene_source(None, sim).ids("train")), data.storage.get_episodes(range(2)), strict=True):
        obs, info = env.reset(seed=ep.seed, options=ep.options)
        agent.reset(env, seed=ep.seed)
        taken = []
        for _ in episode["actions"]:  # the oracle's own walk, replayed: the recorded actions are its
            taken.append(agent.act(obs, info))
            obs, _, _, _, info = env.step(taken[-1])
        assert taken == episode["actions"].tolist()
    # the agent is part of the collection's identity: another agent makes another recipe
    meta = json.loads(data.storage.metadata["avworld"])
    assert meta["collect"]["agent"] == oracle and collection_seeds(config)["agent"] == oracle
    other = meta | {"collect": meta["collect"] | {"agent": oracle | {"lookahead": 2.0}}}
    assert recipe_of(meta) != recipe_of(other)


def test_collections_read_together_are_one_dataset_of_both(tmp_path: Path) -> None:
    from avworld.data.storage import DataRef
    from avworld.train.provenance import data_seeds

    base = CollectConfig(root=str(tmp_path), name="a", episodes=2, scenes=2, shard_size=2, workers=1, max_steps=8)
    collect(base, SimConfig())
    collect(dataclasses.replace(base, name="b", seed=1, max_steps=6), SimConfig())  # episode lengths may differ
    alone = {n: DataRef(root=base.root, name=n).load() for n in "ab"}
    both = DataRef(root=base.root, name="a", also=["b"]).load()
    assert list(both.collections) == ["a", "b"] and both.episodes["collection"].tolist() == [0, 0, 1, 1]
    assert both.collection_of(np.array([3, 0])) == ["b", "a"] and both.path not in (alone["a"].path, alone["b"].path)
    assert [p.path for p in both.parts] == [alone["a"].path, alone["b"].path] and alone["a"].parts == []  # joined from theirs
    for field in ("rgb", "audio", "actions", "rewards", "geodesic_distance"):
        assert np.array_equal(both.arrays[field], np.concatenate([alone[n].arrays[field] for n in "ab"]))
    every = WindowConfig(context=2, horizon=1, fractions=(1.0, 0.0, 0.0))
    counts = {n: len(WindowDataset(alone[n], every)) for n in "ab"}
    assert WindowDataset(both, every).by_collection() == counts and min(counts.values()) > 0
    assert WindowDataset(alone["b"], every).by_collection() == {"b": counts["b"]}
    seeds = data_seeds(both)
    assert (seeds["train"]["name"], seeds["train"]["seed"], [s["name"] for s in seeds["also"]]) == ("a", 0, ["b"])
    assert set(data_seeds(alone["a"])) == {"train"}
    # refused, naming the setting and both files: windows that teach other rewards; a collection named twice
    sim = SimConfig()
    collect(dataclasses.replace(base, name="c"), dataclasses.replace(sim, episode=dataclasses.replace(sim.episode, success_distance=0.5)))
    with pytest.raises(DataError, match=r"c-v0.*sim\.episode\.success_distance is 0\.5 but 1\.0 in .*a-v0.*must match"):
        DataRef(root=base.root, name="a", also=["c"]).load()
    with pytest.raises(ValueError, match="repeat"):
        DataRef(root=base.root, name="a", also=["b", "a"]).load()
