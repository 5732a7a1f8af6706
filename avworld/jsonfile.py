"""Standard JSON for every file avworld writes: strict parsers (jq, JavaScript, ``json.loads(..., parse_constant=...)``) read it.

Python's ``json`` writes NaN and ±infinity as the bare tokens ``NaN`` and ``Infinity``, which are not JSON. Here a
non-finite float becomes ``null`` and the text is produced with ``allow_nan=False``, so such a token can never be
written. A reader that needs the value back knows what the field means (an unbounded ``sim.episode.max_geodesic``
reads ``null`` as ∞, see :meth:`avworld.sim.config.SimConfig.from_dict`). ``avworld.models`` has its own copy of
:func:`standard` for checkpoints' ``meta.json``, as it imports nothing else of avworld.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from avworld.files import replaced_atomically


def standard(data: Any) -> Any:
    """``data`` with every non-finite float (NaN, ±inf) in it replaced by None; tuples become lists."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: standard(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [standard(v) for v in data]
    return data


def dumps(data: Any, indent: int | None = 2) -> str:
    """``data`` as standard JSON text (see the module docstring)."""
    return json.dumps(standard(data), indent=indent, allow_nan=False)


def write_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """``data`` as indented standard JSON at ``path``: written to a temporary file beside it, synced, then renamed into place."""
    text = dumps(data) + "\n"  # fails before a file is touched
    with replaced_atomically(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
