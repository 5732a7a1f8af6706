"""Caches for acoustic responses: a size-bounded in-memory LRU and a content-addressed disk store.

The disk store keeps plain NumPy arrays in ``.npz`` files named by the SHA-256 of
their key, written to a temporary file and renamed into place, so that processes
can share one directory and a crash mid-write leaves no half file behind. Files
are read with ``allow_pickle=False``; one that cannot be read is reported, removed
and recomputed, never trusted.

One directory serves every scene and setting: each group of entries (a scene with the
acoustic settings it was computed with, keyed by their digest) has its own sub-folder
``<root>/<group digest[:16]>/``, and the whole directory is capped at ``max_bytes``.
When a cache is opened, the least recently opened groups other than its own are
deleted until the directory fits; while it is open, entries that would pass the cap
are not written (they are recomputed when needed). Only folders this class made
(16 hex digits holding its ``.used`` stamp) are ever deleted.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path

import numpy as np

from avworld.files import replaced_atomically

Arrays = dict[str, np.ndarray]


class LRUCache:
    """Least-recently-used mapping bounded by the total ``nbytes`` of its values."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.hits = self.misses = 0
        self._items: OrderedDict[Hashable, tuple[object, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable, compute: Callable[[], object], size: Callable[[object], int]) -> object:
        """The value of ``key``, computed (and stored, evicting the oldest) on a miss."""
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]
        self.misses += 1
        value = compute()
        n = size(value)
        if n <= self.max_bytes:
            self._items[key] = (value, n)
            self.nbytes += n
            while self.nbytes > self.max_bytes:
                _, (_, old) = self._items.popitem(last=False)
                self.nbytes -= old
        return value


def digest(*parts: object) -> str:
    """Stable hex digest of ``repr`` of the parts (numbers, strings, tuples of them)."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()


class DiskCache:
    """Arrays stored as ``<root>/<group[:16]>/<digest[:2]>/<digest>.npz``; safe to share between processes.

    ``max_bytes`` caps the whole ``root`` (all groups), see the module docstring; None for no cap."""

    STAMP = ".used"

    def __init__(self, root: str | os.PathLike[str], group: str, max_bytes: int | None = None) -> None:
        self.root = Path(root)
        self.folder = self.root / group[:16]
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / self.STAMP).touch()
        self.max_bytes = max_bytes
        self.nbytes = self.trim() if max_bytes is not None else 0
        self._full = False

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npz"

    def groups(self) -> dict[Path, tuple[float, int]]:
        """Every group folder of ``root``: its last use (mtime of its stamp) and its size in bytes."""
        found = {}
        for entry in os.scandir(self.root):
            stamp = Path(entry.path) / self.STAMP
            if entry.is_dir(follow_symlinks=False) and _GROUP.fullmatch(entry.name) and stamp.is_file():
                size = sum(f.stat().st_size for f in Path(entry.path).rglob("*.npz"))
                found[Path(entry.path)] = (stamp.stat().st_mtime, size)
        return found

    def trim(self) -> int:
        """Delete the least recently used groups other than this one until ``root`` fits ``max_bytes``; its size after."""
        groups = self.groups()
        total = sum(size for _, size in groups.values())
        for folder, (_, size) in sorted(groups.items(), key=lambda item: item[1][0]):
            if self.max_bytes is None or total <= self.max_bytes:
                break
            if folder != self.folder:
                shutil.rmtree(folder, ignore_errors=True)
                total -= size
        return total

    def load(self, key: str) -> Arrays | None:
        """The arrays stored under ``key``, or None if absent or unreadable (then removed, with a warning)."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return {name: data[name] for name in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            warnings.warn(f"{path}: unreadable cache file ({err}); recomputing it", RuntimeWarning, stacklevel=2)
            path.unlink(missing_ok=True)
            return None

    def store(self, key: str, arrays: Arrays) -> None:
        """Write atomically: a temporary file in the same directory, then a rename. Skipped (with one warning) once the
        directory is full."""
        size = sum(a.nbytes for a in arrays.values()) + 512  # npz headers
        if self.max_bytes is not None and self.nbytes + size > self.max_bytes:
            if not self._full:
                self._full = True
                message = f"{self.root}: acoustic disk cache full ({self.max_bytes / 2**20:.0f} MB); new entries are not stored"
                warnings.warn(message, RuntimeWarning, stacklevel=2)
            return
        path = self.path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with replaced_atomically(path, sync=False) as tmp, open(tmp, "wb") as f:
                np.savez(f, **arrays)
            (self.folder / self.STAMP).touch()  # in use: the last group to be evicted
        except FileNotFoundError:  # another process evicted this group meanwhile: the entry is recomputed when needed
            return
        self.nbytes += size


_GROUP = re.compile(r"[0-9a-f]{16}")
