"""Open a collection's Minari dataset (or, while it is being collected, its finished shards), check it, and flatten
it into a memory-mapped cache.

A finished collection is one dataset, ``avworld/<name>-v0``; an unfinished one (or one of an older avworld) is its
finished shards ``avworld/<name>/shard-NNNNN-v0``. Either is read with Minari itself. A shard that cannot be read (truncated,
corrupted, missing) is refused with a :class:`DataError` naming its file; with
``strict=False`` (the default) it is skipped with a warning and the other shards stay
usable. Shards whose recorded settings disagree (sample rate, image or audio shape)
are refused with the reason: mixing them would silently corrupt training. Several collections read as one
(:func:`open_collections`, ``data.also``) must agree the same way and in the simulator settings their windows teach
(render, motion, sound rate, rewards).

The flat cache is one ``.npy`` file per field, concatenated over episodes
(observations have one more entry per episode than actions), opened with
``mmap_mode="r"`` so that DataLoader workers share the page cache instead of each
holding a copy. It is built in a temporary directory and renamed into place, and
its name hashes the shards it was made from, so a changed collection gets a new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from avworld.data.collect import NAMESPACE
from avworld.sim.acoustics.responses import ACOUSTICS_VERSION

CHECKED_KEYS = ("format_version", "sample_rate", "audio_shape", "rgb_shape")
STEP_FIELDS = ("actions", "rewards", "terminations", "truncations")
OBS_FIELDS = ("rgb", "audio")
INFO_FIELDS = ("pose", "geodesic_distance", "collided")


class DataError(ValueError):
    """A dataset file is unusable; the message starts with its path."""

    def __init__(self, path: str | os.PathLike[str], message: str) -> None:
        self.path = str(path)
        super().__init__(f"{path}: {message}")


@dataclass(frozen=True)
class Shard:
    path: Path  # the Minari dataset directory (…/<name>-v0, or …/<name>/shard-NNNNN-v0)
    meta: dict[str, Any]
    episodes: int
    steps: int
    collection: str = ""
    """The collection it belongs to (set by :func:`open_collection`)."""

    @property
    def storage(self) -> Any:
        """Minari's storage of this dataset (episodes, their metadata, the dataset's metadata)."""
        from minari import MinariDataset

        return MinariDataset(self.path / "data").storage


def _data_file(shard_dir: Path) -> Path:
    return shard_dir / "data" / "main_data.hdf5"


def read_shard(shard_dir: Path) -> Shard:
    """Open one shard with Minari and read its avworld metadata; DataError naming the file if it cannot."""
    import h5py
    from minari import MinariDataset

    data = _data_file(shard_dir)
    try:
        ds = MinariDataset(shard_dir / "data")
        meta = json.loads(ds.storage.metadata["avworld"])
        with h5py.File(data, "r") as f:  # Minari reads metadata from JSON; the HDF5 file must be checked itself
            steps = sum(f[f"episode_{i}"]["actions"].shape[0] for i in range(ds.total_episodes))
        if steps != ds.total_steps:
            raise ValueError(f"{steps} steps stored, {ds.total_steps} recorded")
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise DataError(data, f"cannot read this Minari shard ({type(err).__name__}: {err})") from err
    version = meta.get("acoustics_version", 1)
    if version != ACOUSTICS_VERSION:
        raise DataError(
            data,
            f"acoustics_version {version}: its sound was simulated by an older avworld, this one simulates version "
            f"{ACOUSTICS_VERSION} (avworld.sim.acoustics.responses.ACOUSTICS_VERSION); collect it again",
        )
    return Shard(shard_dir, meta, ds.total_episodes, ds.total_steps)


def open_collection(root: str | os.PathLike[str], name: str, strict: bool = False, shards_only: bool = False) -> list[Shard]:
    """Collection ``name`` under ``root``: its dataset ``avworld/<name>-v0`` alone once assembled, else (or with
    ``shards_only``) its finished shards, checked to agree with each other."""
    whole = Path(root) / NAMESPACE / f"{name}-v0"
    if whole.is_dir() and not shards_only:
        return [replace(read_shard(whole), collection=name)]
    base = Path(root) / NAMESPACE / name
    if not base.is_dir():
        raise DataError(base, "no such collection (run `avworld collect` first)")
    shards = []
    for done in sorted(base.glob("shard-*.done")):
        shard_dir = base / f"{done.stem}-v0"
        try:
            shards.append(replace(read_shard(shard_dir), collection=name))
        except DataError as err:
            if strict:
                raise
            warnings.warn(f"skipping a bad shard: {err}", RuntimeWarning, stacklevel=2)
    if not shards:
        raise DataError(base, "no readable finished shard")
    _check_agree(shards, "shards do not match")
    return shards


def open_collections(root: str | os.PathLike[str], names: Sequence[str], strict: bool = False) -> list[Shard]:
    """Collections ``names`` under ``root`` (each by :func:`open_collection`), in that order, read as one: e.g. an agent's
    own walks beside an expert collection. Refused (naming both files) where two disagree in a shard setting
    (:data:`CHECKED_KEYS`) or in the simulator settings their windows teach (render, motion, sound rate, where STOP
    succeeds: :data:`TAUGHT_EPISODE`); the scenes, sounds and episode lengths may differ."""
    if len(set(names)) != len(names):
        raise ValueError(f"data: collection names repeat in {list(names)} (data.name and data.also each name one collection once)")
    shards = [s for name in names for s in open_collection(root, name, strict)]
    _check_agree(shards, "collections read together must match", sim=True)
    return shards


TAUGHT_EPISODE = ("success_distance",)
"""Episode settings that shape what a collection's windows teach (where STOP succeeds: the rewards), beside the learned
settings of :data:`avworld.envs.dream_config.LEARNED_FIELDS`: collections read together must agree in both; episode
sampling and length (``max_steps``) may differ."""


def _check_agree(shards: list[Shard], why: str, sim: bool = False) -> None:
    ref = shards[0]
    for s in shards[1:]:
        for key in CHECKED_KEYS:
            if s.meta.get(key) != ref.meta.get(key):
                raise DataError(_data_file(s.path), f"{key} is {s.meta.get(key)} but {ref.meta.get(key)} in {_data_file(ref.path)}: {why}")
        if not sim or s.collection == ref.collection:
            continue
        from avworld.envs.dream_config import LEARNED_FIELDS

        mine, theirs = s.meta.get("sim", {}), ref.meta.get("sim", {})
        for part, name in (*LEARNED_FIELDS, *(("episode", n) for n in TAUGHT_EPISODE)):
            a, b = mine.get(part, {}).get(name), theirs.get(part, {}).get(name)
            if a != b:
                raise DataError(_data_file(s.path), f"sim.{part}.{name} is {a!r} but {b!r} in {_data_file(ref.path)}: {why}")


@dataclass
class FlatData:
    """A collection flattened: observation arrays (sum of episode lengths + 1 each) and step arrays."""

    arrays: dict[str, np.ndarray]
    episodes: dict[str, np.ndarray]  # obs_start, step_start, length, scene_seed: (E,)
    meta: dict[str, Any]
    """The first collection's metadata (the settings every collection read with it shares, :func:`open_collections`)."""
    path: Path | None = None
    """The cache directory the arrays are mapped from (derived caches, e.g. latents, live beside them)."""
    collections: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each collection's metadata by name, in the order read; ``episodes["collection"]`` (E,) indexes this order."""
    parts: list[FlatData] = field(default_factory=list)
    """Several collections read as one: each one's own flat data, in order (their arrays joined are these); else []."""

    def scene(self) -> str | None:
        """The ``scene`` its episodes were collected in (``collect.scene``; None: procedural apartments), the same for
        every collection read; a ValueError naming them where it is not (their scene seeds name rooms of different
        sources, so a job that rebuilds scenes by seed must read them apart)."""
        scenes = {name: (meta.get("collect") or {}).get("scene") for name, meta in (self.collections or {"": self.meta}).items()}
        if len({json.dumps(v, sort_keys=True) for v in scenes.values()}) > 1:  # a scene setting may be a list of files
            raise ValueError(f"the collections {', '.join(scenes)} were collected in different scenes ({scenes}); read them apart")
        return next(iter(scenes.values()))

    def collection_of(self, episodes: np.ndarray) -> list[str]:
        """The collection name of each episode index in ``episodes``."""
        names = list(self.collections)
        return [names[int(c)] for c in self.episodes["collection"][np.asarray(episodes, np.int64)]]


def _fingerprint(shards: list[Shard]) -> str:
    h = hashlib.sha256()
    if len({s.collection for s in shards}) > 1:  # collections read together: their names too (unfinished ones' shards share names)
        h.update(("+".join(dict.fromkeys(s.collection for s in shards)) + ";").encode())
    for s in shards:
        st = _data_file(s.path).stat()
        h.update(f"{s.path.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def flatten(shards: list[Shard], cache_root: str | os.PathLike[str]) -> FlatData:
    """Build (once) or open the memory-mapped flat cache of ``shards`` under ``cache_root``.

    Shards of several collections (:func:`open_collections`): each collection is flattened alone first (its own cache,
    shared with every job that reads it alone or with others; caches derived from it, e.g. latents, too), then their
    arrays are joined into the cache of the whole (:attr:`FlatData.parts` holds the parts)."""
    groups: dict[str, list[Shard]] = {}
    for s in shards:
        groups.setdefault(s.collection, []).append(s)
    parts = [flatten(group, cache_root) for group in groups.values()] if len(groups) > 1 else []
    target = Path(cache_root) / f"flat-{_fingerprint(shards)}"
    if not (target / "episodes.json").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".flat-"))
        try:
            _join_flat(parts, tmp) if parts else _write_flat(shards, tmp)
            if target.exists():  # another process won the race: keep theirs
                shutil.rmtree(tmp)
            else:
                tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    table = json.loads((target / "episodes.json").read_text())
    arrays = {f: np.load(target / f"{f}.npy", mmap_mode="r", allow_pickle=False) for f in (*OBS_FIELDS, *INFO_FIELDS, *STEP_FIELDS)}
    episodes = {k: np.asarray(v, np.int64) for k, v in table["episodes"].items()}
    collections = {name: group[0].meta for name, group in groups.items()}
    counts = [sum(s.episodes for s in group) for group in groups.values()]
    episodes["collection"] = np.repeat(np.arange(len(groups)), counts).astype(np.int64)
    return FlatData(arrays, episodes, table["meta"], target, collections, parts)


def _write_concatenated(path: Path, arrays: list[np.ndarray], chunk: int = 4096) -> None:
    """``arrays`` (memory-mapped; one dtype and trailing shape) joined along axis 0 into the ``.npy`` file ``path``,
    ``chunk`` rows at a time (bounded memory)."""
    first = arrays[0]
    out = np.lib.format.open_memmap(path, mode="w+", dtype=first.dtype, shape=(sum(len(a) for a in arrays), *first.shape[1:]))
    at = 0
    for a in arrays:
        for start in range(0, len(a), chunk):
            rows = a[start : start + chunk]
            out[at + start : at + start + len(rows)] = rows
        at += len(a)
    out.flush()
    del out


def _join_flat(parts: list[FlatData], out: Path) -> None:
    """The flat cache of several collections from theirs (:func:`flatten`): arrays concatenated, episode starts shifted."""
    for f in (*OBS_FIELDS, *INFO_FIELDS, *STEP_FIELDS):
        _write_concatenated(out / f"{f}.npy", [p.arrays[f] for p in parts])
    shifted: dict[str, list[int]] = {"obs_start": [], "step_start": [], "length": [], "scene_seed": []}
    n_obs = n_steps = 0
    for p in parts:
        ep = p.episodes
        shifted["obs_start"] += (ep["obs_start"] + n_obs).tolist()
        shifted["step_start"] += (ep["step_start"] + n_steps).tolist()
        shifted["length"] += ep["length"].tolist()
        shifted["scene_seed"] += ep["scene_seed"].tolist()
        n_obs, n_steps = n_obs + len(p.arrays["rgb"]), n_steps + len(p.arrays["actions"])
    (out / "episodes.json").write_text(json.dumps({"episodes": shifted, "meta": parts[0].meta}))


@dataclass
class DataRef:
    """Which collection to read (``avworld collect`` output) and the train / val / test shares of its scenes."""

    root: str = "datasets"
    name: str = "audionav"
    also: list[str] = field(default_factory=list)
    """Further collections under ``root`` read with ``name`` as one (:func:`open_collections`), e.g. an agent's own walks
    beside the expert data: ``'data.also=[walks]'``."""
    cache: str | None = None
    """Where the flat memory-mapped cache goes; ``<root>/cache`` by default."""
    fractions: tuple[float, float, float] = (0.9, 0.05, 0.05)

    @property
    def names(self) -> list[str]:
        """The collections read: ``name``, then ``also``."""
        return [self.name, *self.also]

    def load(self) -> FlatData:
        shards = open_collections(self.root, self.names) if self.also else open_collection(self.root, self.name)
        return flatten(shards, self.cache or os.path.join(self.root, "cache"))


@dataclass
class DataSplit(DataRef):
    """A collection and the split of its scenes that a job reads."""

    split: str = "test"


def _write_flat(shards: list[Shard], out: Path) -> None:
    from minari import MinariDataset

    lengths, seeds = [], []
    for s in shards:  # sizes from the episodes' metadata: the arrays themselves are read once, below
        storage = MinariDataset(s.path / "data").storage
        for m in storage.get_episode_metadata(range(s.episodes)):
            lengths.append(int(m["total_steps"]))
            seeds.append(int(m["scene_seed"]))
    n_obs, n_steps = sum(lengths) + len(lengths), sum(lengths)
    meta = shards[0].meta
    shapes = {
        "rgb": ((n_obs, *meta["rgb_shape"]), np.uint8),
        "audio": ((n_obs, *meta["audio_shape"]), np.float32),
        "pose": ((n_obs, 3), np.float32),
        "geodesic_distance": ((n_obs,), np.float32),
        "collided": ((n_obs,), bool),
        "actions": ((n_steps,), np.int64),
        "rewards": ((n_steps,), np.float32),
        "terminations": ((n_steps,), bool),
        "truncations": ((n_steps,), bool),
    }
    arrays = {f: np.lib.format.open_memmap(out / f"{f}.npy", mode="w+", dtype=dt, shape=shape) for f, (shape, dt) in shapes.items()}
    o = t = 0
    for s in shards:
        for ep in MinariDataset(s.path / "data").iterate_episodes():
            n = len(ep.actions)
            for f in OBS_FIELDS:
                arrays[f][o : o + n + 1] = ep.observations[f]
            for f in INFO_FIELDS:
                arrays[f][o : o + n + 1] = ep.infos[f]
            for f in STEP_FIELDS:
                arrays[f][t : t + n] = getattr(ep, f)
            o, t = o + n + 1, t + n
    for a in arrays.values():
        a.flush()
    lengths_a = np.asarray(lengths)
    episodes = {
        "obs_start": (np.cumsum(lengths_a + 1) - (lengths_a + 1)).tolist(),
        "step_start": (np.cumsum(lengths_a) - lengths_a).tolist(),
        "length": lengths,
        "scene_seed": seeds,
    }
    (out / "episodes.json").write_text(json.dumps({"episodes": episodes, "meta": meta}))
