"""Writing a file so that it appears whole or not at all.

A crash, a full disk or Ctrl-C while writing must not leave a half-written scene, cache array, video or JSON file where a
later run would read it: every such file is written to a temporary file beside its target (same directory, so the final
rename is atomic) and renamed over the target once complete. ``avworld.models`` keeps its own copy
(:func:`avworld.models.checkpoint.replaced_atomically`), as it imports nothing else of avworld.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SHARED = 0o644
"""Permissions of a finished file: readable by everyone, like any file written with the usual umask (``mkstemp`` alone
makes it private to its owner)."""


@contextmanager
def replaced_atomically(path: str | os.PathLike[str], suffix: str = ".tmp", sync: bool = True) -> Iterator[Path]:
    """A fresh temporary path beside ``path`` for the block to write; renamed over ``path`` when the block ends without an
    error, removed when it raises. ``suffix`` ends the temporary name (``np.save`` adds ``.npy`` to a name without it);
    ``sync`` flushes the file to disk before the rename (skip it for caches that can be recomputed)."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, SHARED)
        yield tmp
        if sync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
