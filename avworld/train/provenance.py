"""Provenance of a trained checkpoint, for its ``meta.json`` (``meta["provenance"]``): what made it, from what, with which code.

A shipped world model (:mod:`avworld.models.pretrained`) must record the command that made it, the seeds of its data,
the code commit and the sha256 of the simulator settings of its data (:func:`avworld.models.pretrained.sim_hash`);
:func:`provenance` gathers them (and the job's config); :func:`avworld.models.pretrained.install_pretrained` refuses a
checkpoint without them.
"""

from __future__ import annotations

import datetime
import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from avworld.data.collect import CollectConfig
from avworld.data.storage import FlatData
from avworld.jsonfile import standard
from avworld.models.pretrained import recorded_seeds, sim_hash

SOURCE = Path(__file__).resolve().parents[2]
"""The source tree this module runs from (its git repository, when it is one)."""


def code_commit(repo: str | Path = SOURCE) -> tuple[str | None, bool | None]:
    """(commit hash of ``HEAD``, whether tracked files differ from it) of the git repository at ``repo``; (None, None)
    where git or the repository is missing (an installed copy). ``AVWORLD_COMMIT`` in the environment names the commit of
    a copy of the tree without its ``.git`` (e.g. sent to a GPU machine): (its value, None)."""
    if os.environ.get("AVWORLD_COMMIT"):
        return os.environ["AVWORLD_COMMIT"], None
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30)
        status = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None, None
    if head.returncode != 0 or status.returncode != 0:
        return None, None
    return head.stdout.strip(), bool(status.stdout.strip())


def collection_seeds(config: CollectConfig) -> dict[str, Any]:
    """What fixes a collection's episodes (scene seeds, starts, behaviours): its name, split, seed, scene range and the
    ``scene`` it drew from (None: procedural apartments), and the ``agent`` config of the agent behaviour where there is
    one; :func:`~avworld.models.pretrained.recorded_seeds` reads the same from its metadata."""
    keys = ("name", "split", "seed", "first_scene", "scenes", "episodes", "max_steps")
    seeds = {k: getattr(config, k) for k in keys} | {"behaviours": dict(config.behaviours), "scene": config.scene}
    return seeds | ({"agent": dict(config.agent)} if config.agent is not None else {})


def data_seeds(data: FlatData) -> dict[str, Any]:
    """The ``data_seeds`` of a job that read ``data``: ``train``, the first collection's :func:`recorded_seeds`, and
    ``also``, those of each collection read with it (``data.also``), where there are any."""
    first, *others = data.collections.values() if data.collections else [data.meta]
    return {"train": recorded_seeds(first)} | ({"also": [recorded_seeds(m) for m in others]} if others else {})


def provenance(
    data_seeds: Mapping[str, Any] | Sequence[Any],
    sim: Any,
    command: str | Sequence[str] | None = None,
    config: Mapping[str, Any] | None = None,
    repo: str | Path = SOURCE,
) -> dict[str, Any]:
    """``meta["provenance"]`` of a checkpoint trained now: ``command`` (default: this process's, ``sys.argv`` shell-quoted),
    ``data_seeds`` (JSON-able; e.g. ``{"train": collection_seeds(...)}`` per collection), ``commit`` and ``dirty``
    (:func:`code_commit`), ``sim_sha256`` (:func:`~avworld.models.pretrained.sim_hash` of ``sim``, a ``SimConfig`` or
    the dict ``meta["sim"]`` holds), ``config`` (the job's resolved settings, JSON-able, or None) and ``created`` (UTC,
    ISO 8601)."""
    if command is None:
        command = [*sys.argv[0].split(" "), *sys.argv[1:]]  # avworld's CLI names its job in argv[0]: "avworld train world_model"
    commit, dirty = code_commit(repo)
    return {
        "command": command if isinstance(command, str) else shlex.join(command),
        "data_seeds": standard(dict(data_seeds) if isinstance(data_seeds, Mapping) else list(data_seeds)),
        "commit": commit,
        "dirty": dirty,
        "sim_sha256": sim_hash(sim),
        "config": standard(dict(config)) if config is not None else None,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
