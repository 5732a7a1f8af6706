"""Shipped world models, loaded by name: ``checkpoint=pretrained`` (the default one) or ``checkpoint=pretrained:<name>``.

A shipped (pretrained) world model is an ordinary world-model checkpoint directory (``config.yaml``, ``model.safetensors``,
``meta.json``, ``tokenizers/video/…``, ``tokenizers/audio/…``) kept inside the package at ``avworld/pretrained/<name>/``,
so an install carries it and nothing is fetched at run time. ``avworld/pretrained/index.json`` lists them::

    {"default": "<name>",
     "models": {"<name>": {"description": "...", "bytes": 123, "sha256": {"model.safetensors": "<hex>", ...}}}}

:func:`resolve_checkpoint` turns a name into its directory (any other string or path comes back as a path, untouched),
after checking every file of it against its sha256 in the index: a truncated or edited shipped file is refused, named.
:func:`install_pretrained` copies a trained checkpoint in (without its training state) and writes its index entry; it
refuses one whose ``meta.json`` lacks the provenance (:data:`PROVENANCE_KEYS`) that ``avworld.train.provenance`` records.

The root is ``$AVWORLD_PRETRAINED_DIR`` when that is set (for tests, or shipped weights kept in another folder), else the
package's own ``avworld/pretrained``. Like the rest of ``avworld.models`` this module only knows paths and JSON.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from avworld.models.checkpoint import CheckpointError, readable_by_all, replaced_atomically

PREFIX = "pretrained"
"""``checkpoint=pretrained`` loads the default shipped world model, ``checkpoint=pretrained:<name>`` the one named."""
ROOT_VARIABLE = "AVWORLD_PRETRAINED_DIR"
"""Environment variable that moves the root of shipped world models (tests, advanced use)."""
INDEX = "index.json"
PROVENANCE_KEYS = ("command", "data_seeds", "commit", "sim_sha256")
"""What ``meta["provenance"]`` of a shipped world model must record (see ``avworld.train.provenance``)."""
CHECKPOINT_FILES = ("config.yaml", "meta.json", "model.safetensors")
"""The files of a checkpoint (and of each attached one) that are shipped: what pyproject.toml's package data lists."""
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
"""A shipped model's name: one folder name, so a name cannot reach outside the root."""


def pretrained_root() -> Path:
    """The folder of shipped world models: ``$AVWORLD_PRETRAINED_DIR`` if set, else ``avworld/pretrained`` of this install."""
    override = os.environ.get(ROOT_VARIABLE)
    return Path(override) if override else Path(__file__).resolve().parents[1] / "pretrained"


def is_pretrained(spec: Any) -> bool:
    """Whether ``spec`` names a shipped world model (the string ``pretrained`` or ``pretrained:<name>``) rather than a path.

    Only strings are names: a directory that happens to be called ``pretrained`` is still reachable as ``./pretrained``."""
    return isinstance(spec, str) and (spec == PREFIX or spec.startswith(PREFIX + ":"))


def read_index(root: Path | None = None) -> dict[str, Any]:
    """The index of shipped world models under ``root`` (:func:`pretrained_root`): ``{"default": name | None, "models":
    {name: entry}}``; an install without an index ships none. A malformed index is refused, naming it."""
    path = (root or pretrained_root()) / INDEX
    if not path.is_file():
        return {"default": None, "models": {}}
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CheckpointError(path, f"unreadable ({err})") from err
    models = index.get("models") if isinstance(index, dict) else None
    if not isinstance(models, dict) or not all(isinstance(v, dict) for v in models.values()):
        raise CheckpointError(path, 'expected {"default": name, "models": {name: {"description": ..., "sha256": {...}}}}')
    default = index.get("default")
    if default is not None and default not in models:
        raise CheckpointError(path, f"default {default!r} is not one of its models ({', '.join(models) or 'none'})")
    return {"default": default, "models": models}


def available(root: Path | None = None) -> dict[str, str]:
    """Shipped world models: name → description."""
    return {name: str(entry.get("description", "")) for name, entry in read_index(root)["models"].items()}


def _listing(models: Mapping[str, Any]) -> str:
    return "; ".join(f"pretrained:{name} ({entry.get('description', '')})" for name, entry in models.items())


def resolve_checkpoint(spec: str | os.PathLike[str], root: Path | None = None, verify: bool = True) -> Path:
    """The checkpoint directory ``spec`` stands for: a shipped world model's (``pretrained``, ``pretrained:<name>``; its files
    checked against the index unless ``verify`` is False), or ``spec`` itself as a path. Refused, with
    :class:`CheckpointError`: a name when this install ships none (saying so), an unknown name (listing the shipped ones), a
    missing, truncated or edited file (named)."""
    if not is_pretrained(spec):
        return Path(spec)
    assert isinstance(spec, str)
    root = root or pretrained_root()
    index = read_index(root)
    models = index["models"]
    where = root / INDEX
    if not models:
        raise CheckpointError(
            where,
            "this install of avworld ships no pretrained world model, so checkpoint=pretrained has nothing to load; "
            "give checkpoint=DIR, a world-model checkpoint directory you trained (avworld train world_model ...)",
        )
    name = spec.partition(":")[2] or index["default"]
    if name is None:
        raise CheckpointError(where, f"no default pretrained world model; name one: {_listing(models)}")
    if name not in models:
        raise CheckpointError(where, f"no pretrained world model named {name!r}; available: {_listing(models)}")
    if not NAME.fullmatch(name):
        raise CheckpointError(where, f"{name!r} is not a folder name")
    folder = root / name
    if not folder.is_dir():
        raise CheckpointError(folder, f"the pretrained world model {name!r} is listed in {INDEX} but its folder is missing")
    if not verify:
        return folder
    digests = models[name].get("sha256")
    if not isinstance(digests, dict) or "model.safetensors" not in digests:
        raise CheckpointError(where, f"models.{name}.sha256: expected {{file: sha256}} of every file of the checkpoint")
    for relative, digest in digests.items():
        path = folder / relative
        if not path.is_file():
            raise CheckpointError(path, f"missing from the pretrained world model {name!r} (listed in {INDEX}); reinstall avworld")
        found = file_sha256(path)
        if found != digest:
            raise CheckpointError(
                path,
                f"differs from the shipped file (sha256 {found[:12]}…, {INDEX} says {str(digest)[:12]}…): truncated or edited; "
                "reinstall avworld",
            )
    return folder


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _canonical(data: Any) -> Any:
    """JSON-able ``data`` with non-finite floats as None and tuples as lists (as ``meta.json`` stores settings)."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, Mapping):
        return {str(k): _canonical(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_canonical(v) for v in data]
    return data


def sim_hash(settings: Any) -> str:
    """Hex sha256 of the canonical JSON (keys sorted, no spaces, non-finite floats as null) of simulator settings: a
    dataclass (``SimConfig``, through :func:`dataclasses.asdict`) or the mapping ``meta["sim"]`` holds; both give one hash."""
    if dataclasses.is_dataclass(settings) and not isinstance(settings, type):
        settings = dataclasses.asdict(settings)
    text = json.dumps(_canonical(settings), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def recorded_seeds(meta: Mapping[str, Any]) -> dict[str, Any]:
    """What fixed a collection's episodes, read from its metadata (``collect``: the CollectConfig it was made with): the
    keys of :func:`avworld.train.provenance.collection_seeds` and the ``scene`` it drew from (None: procedural apartments),
    and the ``agent`` config of the agent behaviour where there was one."""
    collect = meta.get("collect") or {}
    keys = ("name", "split", "seed", "first_scene", "scenes", "episodes", "max_steps", "behaviours", "scene")
    return {k: collect[k] for k in keys if k in collect} | ({"agent": collect["agent"]} if collect.get("agent") is not None else {})


def collection_recipe(seeds: Mapping[str, Any], sim_sha256: str) -> str:
    """A collection's identity by how it was made rather than where it lies: the first 16 hex digits of the sha256 of its
    seeds (:func:`recorded_seeds`) less its name, and of its simulator settings' hash. One ``avworld collect`` recipe run
    twice, at two paths or under two names, gives one recipe (the collector is deterministic in these)."""
    text = json.dumps(_canonical({k: v for k, v in seeds.items() if k != "name"} | {"sim_sha256": sim_sha256}), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def recipe_of(meta: Mapping[str, Any]) -> str | None:
    """:func:`collection_recipe` of a collection from its metadata (``collect`` and ``sim``); None where either is missing."""
    if not isinstance(meta.get("collect"), Mapping) or not isinstance(meta.get("sim"), Mapping):
        return None
    return collection_recipe(recorded_seeds(meta), sim_hash(meta["sim"]))


def provenance_recipe(record: Any) -> str | None:
    """:func:`collection_recipe` of the train collection a checkpoint's ``meta["provenance"]`` names (its
    ``data_seeds["train"]`` and ``sim_sha256``); None where it names none."""
    if not isinstance(record, Mapping):
        return None
    seeds, sim = (record.get("data_seeds") or {}), record.get("sim_sha256")
    train = seeds.get("train") if isinstance(seeds, Mapping) else None
    return collection_recipe(train, sim) if isinstance(train, Mapping) and isinstance(sim, str) else None


def _not_shipped(folder: str, names: list[str]) -> set[str]:
    """``shutil.copytree``'s ignore: every file but :data:`CHECKPOINT_FILES`, hidden entries and ``.old`` folders."""
    junk = {n for n in names if n.startswith(".") or n.endswith(".old")}
    return junk | {n for n in names if (Path(folder) / n).is_file() and n not in CHECKPOINT_FILES}


def _cast_weights(path: Path, dtype: str) -> None:
    """Rewrite the safetensors file ``path`` with its floating-point tensors in ``dtype`` (others as they are)."""
    import torch
    from safetensors.torch import load_file, save_file

    target = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(dtype)
    if target is None:
        raise ValueError(f"weights_dtype: {dtype!r} is not bfloat16 or float16")
    tensors = load_file(path)
    save_file({k: v.to(target) if v.is_floating_point() else v for k, v in tensors.items()}, path)


def install_pretrained(
    checkpoint: str | os.PathLike[str],
    name: str,
    description: str,
    default: bool = False,
    root: Path | None = None,
    weights_dtype: str | None = None,
) -> Path:
    """Ship the world-model checkpoint directory ``checkpoint`` as ``pretrained:<name>``: copy its :data:`CHECKPOINT_FILES`
    and those of its attached tokenizers (no training state) to ``<root>/<name>/`` (replacing one of that name), record
    every file's sha256 and the size in the index, and make it the default when ``default`` or when there is none.
    ``weights_dtype`` ("bfloat16", "float16"): store every floating-point weight in that type (half the bytes; loading
    casts them back to the model's float32).
    Refused, naming the file: a checkpoint that is not a world model, or whose ``meta.json`` lacks a provenance key of
    :data:`PROVENANCE_KEYS` or records a ``sim_sha256`` that is not the hash of its ``sim``. Returns the installed directory."""
    source, root = Path(checkpoint), root or pretrained_root()
    if not NAME.fullmatch(name):
        raise ValueError(f"name: {name!r} must be a folder name (letters, digits, '_', '.', '-')")
    meta_file = source / "meta.json"
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CheckpointError(meta_file, f"unreadable ({err})") from err
    if meta.get("kind") != "world_model":
        raise CheckpointError(meta_file, f"a {meta.get('kind')!r} checkpoint; only world models are shipped by name")
    provenance = meta.get("provenance") or {}
    missing = [k for k in PROVENANCE_KEYS if k not in provenance]
    if missing:
        raise CheckpointError(meta_file, f"provenance.{missing[0]}: missing (a shipped world model records {', '.join(PROVENANCE_KEYS)})")
    if "sim" not in meta or provenance["sim_sha256"] != sim_hash(meta["sim"]):
        raise CheckpointError(meta_file, "provenance.sim_sha256 is not the hash of its 'sim' settings")
    root.mkdir(parents=True, exist_ok=True)
    index = read_index(root)
    target = root / name
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}.tmp-"))
    try:
        copy = tmp / name
        shutil.copytree(source, copy, ignore=_not_shipped)
        if weights_dtype is not None:
            for weights in copy.rglob("model.safetensors"):
                _cast_weights(weights, weights_dtype)
        files = sorted(p for p in copy.rglob("*") if p.is_file())
        digests = {p.relative_to(copy).as_posix(): file_sha256(p) for p in files}
        readable_by_all(copy)
        shutil.rmtree(target, ignore_errors=True)
        copy.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    entry = {"description": description, "bytes": sum(p.stat().st_size for p in target.rglob("*") if p.is_file()), "sha256": digests}
    index["models"][name] = entry
    if default or index["default"] is None:
        index["default"] = name
    text = json.dumps(index, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    with replaced_atomically(root / INDEX) as tmp_index:
        tmp_index.write_text(text, encoding="utf-8")
    return target
