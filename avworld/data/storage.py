"""Open a collection's Minari dataset (or, while it is being collected, its finished shards), check it, and flatten
it into a memory-mapped cache.

A finished collection is one dataset, ``avworld/<name>-v0``; an unfinished one (or one of an older avworld) is its
finished shards ``avworld/<name>/shard-NNNNN-v0``. Either is read with Minari itself. A shard that cannot be read (truncated,
corrupted, missing) is refused with a :class:`DataError` naming its file; with
``strict=False`` (the default) it is skipped with a warning and the other shards stay
usable. Shards whose recorded settings disagree (sample rate, image or audio shape)
are refused with the reason: mixing them would silently corrupt training.

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
from dataclasses import dataclass
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
        return [read_shard(whole)]
    base = Path(root) / NAMESPACE / name
    if not base.is_dir():
        raise DataError(base, "no such collection (run `avworld collect` first)")
    shards = []
    for done in sorted(base.glob("shard-*.done")):
        shard_dir = base / f"{done.stem}-v0"
        try:
            shards.append(read_shard(shard_dir))
        except DataError as err:
            if strict:
                raise
            warnings.warn(f"skipping a bad shard: {err}", RuntimeWarning, stacklevel=2)
    if not shards:
        raise DataError(base, "no readable finished shard")
    ref = shards[0]
    for s in shards[1:]:
        for key in CHECKED_KEYS:
            if s.meta.get(key) != ref.meta.get(key):
                raise DataError(
                    _data_file(s.path), f"{key} is {s.meta.get(key)} but {ref.meta.get(key)} in {_data_file(ref.path)}: shards do not match"
                )
    return shards


@dataclass
class FlatData:
    """A collection flattened: observation arrays (sum of episode lengths + 1 each) and step arrays."""

    arrays: dict[str, np.ndarray]
    episodes: dict[str, np.ndarray]  # obs_start, step_start, length, scene_seed: (E,)
    meta: dict[str, Any]
    path: Path | None = None
    """The cache directory the arrays are mapped from (derived caches, e.g. latents, live beside them)."""


def _fingerprint(shards: list[Shard]) -> str:
    h = hashlib.sha256()
    for s in shards:
        st = _data_file(s.path).stat()
        h.update(f"{s.path.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def flatten(shards: list[Shard], cache_root: str | os.PathLike[str]) -> FlatData:
    """Build (once) or open the memory-mapped flat cache of ``shards`` under ``cache_root``."""
    target = Path(cache_root) / f"flat-{_fingerprint(shards)}"
    if not (target / "episodes.json").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".flat-"))
        try:
            _write_flat(shards, tmp)
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
    return FlatData(arrays, episodes, table["meta"], target)


@dataclass
class DataRef:
    """Which collection to read (``avworld collect`` output) and the train / val / test shares of its scenes."""

    root: str = "datasets"
    name: str = "audionav"
    cache: str | None = None
    """Where the flat memory-mapped cache goes; ``<root>/cache`` by default."""
    fractions: tuple[float, float, float] = (0.9, 0.05, 0.05)

    def load(self) -> FlatData:
        return flatten(open_collection(self.root, self.name), self.cache or os.path.join(self.root, "cache"))


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
