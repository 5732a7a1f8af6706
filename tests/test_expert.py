"""Expert labels (avworld/data/expert.py): the shortest-path follower's move at every recorded observation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from avworld.data.expert import VERSION, expert_actions
from avworld.data.storage import flatten, open_collection
from avworld.data.windows import within_reach
from avworld.envs.audio_nav import AudioNavEnv
from avworld.sim.backends.base import Action, Pose
from avworld.sim.config import SimConfig


def test_expert_labels_stop_at_the_source_and_move_along_the_geodesic(collection) -> None:
    data = flatten(open_collection(collection.root, collection.name), f"{collection.root}/cache")
    labels = expert_actions(data)
    n_obs = len(data.arrays["pose"])
    assert labels.shape == (n_obs,) and labels.dtype == np.int64 and set(np.unique(labels)) <= {0, 1, 2, 3}
    near = within_reach(data, np.arange(n_obs))
    np.testing.assert_array_equal(labels == Action.STOP, near)  # STOP exactly where the recorded distance is within reach
    # where the label is FORWARD, stepping forward from the recorded pose shortens the geodesic distance
    env = AudioNavEnv(split="train", sim=SimConfig.from_dict(data.meta["sim"]), sensors=("rgb",))
    shorter = []
    starts, seeds = data.episodes["obs_start"], data.episodes["scene_seed"]
    for i in np.flatnonzero(labels == Action.FORWARD):
        e = np.searchsorted(starts, i, side="right") - 1
        env.reset(seed=0, options={"scene_seed": int(seeds[e])})
        sim = env.sim
        assert sim is not None
        pose = Pose(*map(float, data.arrays["pose"][i]))
        sim.set_episode(pose, sim.scene.sources[0].position)
        after, _ = sim.transition(pose, Action.FORWARD)
        shorter.append(sim.geodesic_distance(after) < sim.geodesic_distance(pose))
    env.close()
    assert len(shorter) >= 5 and np.mean(shorter) > 0.9, (len(shorter), np.mean(shorter))
    # built once, beside the flat arrays, then read from there
    target = data.path / f"expert_action-v{VERSION}.npy"
    stamp = target.stat().st_mtime_ns
    np.testing.assert_array_equal(expert_actions(data), labels)
    assert target.stat().st_mtime_ns == stamp


def test_a_collection_whose_scenes_no_longer_rebuild_is_refused(collection, tmp_path) -> None:
    data = flatten(open_collection(collection.root, collection.name), f"{collection.root}/cache")
    arrays = dict(data.arrays, geodesic_distance=np.asarray(data.arrays["geodesic_distance"]) + 1.0)
    edited = dataclasses.replace(data, arrays=arrays, path=tmp_path)
    with pytest.raises(ValueError, match=r"does not rebuild.*collect it again"):
        expert_actions(edited)
    assert not list(tmp_path.glob("*expert*"))  # nothing half-written is left to be read later
    with pytest.raises(ValueError, match="cache directory"):
        expert_actions(dataclasses.replace(data, path=None))


def test_collections_of_other_scenes_read_together_are_labelled_each_in_its_own(collection, tmp_path) -> None:
    import shutil
    from pathlib import Path

    from avworld.data.collect import CollectConfig, collect
    from avworld.data.storage import DataRef

    shutil.copytree(Path(collection.root) / "avworld" / "tiny-v0", tmp_path / "avworld" / "tiny-v0")  # procedural apartments
    corridor = Path(__file__).parents[1] / "examples" / "scenes" / "corridor.json"  # and a hand-made room
    collect(CollectConfig(root=str(tmp_path), name="room", scene=str(corridor), episodes=2, scenes=1, shard_size=2, workers=1, max_steps=6),
            SimConfig())
    both = DataRef(root=str(tmp_path), name="tiny", also=["room"]).load()
    labels = expert_actions(both)
    assert len(labels) == len(both.arrays["pose"])
    np.testing.assert_array_equal(labels, np.concatenate([expert_actions(p) for p in both.parts]))
    assert both.parts[1].scene() == str(corridor) and both.parts[0].scene() is None
    with pytest.raises(ValueError, match=r"tiny, room were collected in different scenes"):
        both.scene()  # a job that rebuilds scenes by seed (the action ranking) must read them apart
