"""Caches for acoustic responses: a size-bounded in-memory LRU and a content-addressed disk store.

The disk store keeps plain NumPy arrays in ``.npz`` files named by the SHA-256 of
their key, written to a temporary file and renamed into place, so that processes
can share one directory and a crash mid-write leaves no half file behind. Files
are read with ``allow_pickle=False``; one that cannot be read is reported, removed
and recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path

import numpy as np

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
    """Arrays stored as ``<root>/<digest[:2]>/<digest>.npz``; safe to share between processes."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

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
        """Write atomically: a temporary file in the same directory, then a rename."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
