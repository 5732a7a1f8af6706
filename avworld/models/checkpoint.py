"""Checkpoints: a directory with ``config.yaml``, ``model.safetensors`` and ``meta.json`` (DESIGN.md).

Training checkpoints add ``training.safetensors`` (optimiser tensors, RNG state) and
``training.json`` (step, optimiser hyper-parameters, schedule state), enough for an
exact resume. Nothing is ever unpickled: tensors come from safetensors, everything
else from YAML (safe loader) and JSON.

The JSON files are standard JSON (no bare ``NaN``/``Infinity`` tokens, which strict parsers reject; written with
``allow_nan=False``). In ``meta.json`` a non-finite float becomes ``null``; ``training.json`` must round-trip exactly,
so there one becomes the string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"`` and is read back as that float.

Loading refuses, naming the file and the tensor, weights that hold NaN or ±inf (a diverged run): they would
imagine NaN frames, sounds and rewards.

Writes are atomic: the checkpoint is written into a temporary sibling directory and
swapped in with renames, so a crash mid-save leaves the previous checkpoint (or, in
the instant between the two renames, ``<name>.old``, which :func:`load_checkpoint`
falls back to) and never a half-written one.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from avworld.models.checks import first_non_finite

FORMAT_VERSION = 1
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
"""How ``training.json`` spells non-finite floats (see the module docstring)."""


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message starts with the offending path."""

    def __init__(self, path: str | os.PathLike[str], message: str) -> None:
        self.path = str(path)
        super().__init__(f"{path}: {message}")


@dataclass
class Checkpoint:
    kind: str
    config: dict[str, Any]
    weights: dict[str, torch.Tensor]
    meta: dict[str, Any]
    training: dict[str, Any] | None = None
    """``{"state": {...json...}, "tensors": {name: tensor}}`` when saved by a trainer."""
    attachments: dict[str, Path] = field(default_factory=dict)
    """Checkpoints this one needs, stored inside it as sub-directories: name → directory (a world model's tokenizers,
    ``tokenizers/video`` and ``tokenizers/audio``). Saving copies each (without its training state); loading points at the copies."""


@contextmanager
def replaced_atomically(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` for the block to write (readable by all, like the files beside it), renamed over
    ``path`` when the block ends without an error, removed when it raises: :func:`avworld.files.replaced_atomically`
    without the sync, for the caches and index files of this package (which imports nothing else of avworld)."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o644)
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def readable_by_all(folder: Path) -> None:
    """Permissions of ``folder`` and everything in it as the usual umask gives: directories 0755, files 0644 (``mkdtemp``
    and ``mkstemp`` make them private to their owner; a checkpoint is shared like any other output)."""
    os.chmod(folder, 0o755)
    for f in folder.rglob("*"):
        os.chmod(f, 0o755 if f.is_dir() else 0o644)


def save_checkpoint(path: str | os.PathLike[str], ckpt: Checkpoint) -> None:
    """Write ``ckpt`` to directory ``path`` atomically (see the module docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        (tmp / "config.yaml").write_text(yaml.safe_dump({"kind": ckpt.kind, **ckpt.config}, sort_keys=False))
        save_file({k: v.detach().cpu().contiguous() for k, v in ckpt.weights.items()}, str(tmp / "model.safetensors"))
        for name, source in ckpt.attachments.items():
            shutil.copytree(source, tmp / name, ignore=shutil.ignore_patterns("training.*"))
        meta = {"format_version": FORMAT_VERSION, "kind": ckpt.kind, "torch": torch.__version__, **ckpt.meta}
        if ckpt.attachments:
            meta["attachments"] = sorted(ckpt.attachments)
        (tmp / "meta.json").write_text(json.dumps(_standard(meta, lambda x: None), indent=2, allow_nan=False) + "\n")
        if ckpt.training is not None:
            save_file({k: v.detach().cpu().contiguous() for k, v in ckpt.training["tensors"].items()}, str(tmp / "training.safetensors"))
            state = _standard(ckpt.training["state"], lambda x: "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity"))
            (tmp / "training.json").write_text(json.dumps(state, allow_nan=False) + "\n")
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        readable_by_all(tmp)
        old = path.with_name(path.name + ".old")
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_checkpoint(path: str | os.PathLike[str], kind: str | None = None, training: bool = False) -> Checkpoint:
    """Read a checkpoint directory; ``kind`` (if given) must match. Raises :class:`CheckpointError` naming the file."""
    path = Path(path)
    if not path.exists() and path.with_name(path.name + ".old").exists():
        path = path.with_name(path.name + ".old")  # a save was interrupted between its two renames
    if not path.is_dir():
        raise CheckpointError(path, "no such checkpoint directory")
    meta = _json(path / "meta.json")
    config = _yaml(path / "config.yaml")
    found = config.pop("kind", None)
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(path / "meta.json", f"format_version {meta.get('format_version')!r}, expected {FORMAT_VERSION}")
    if kind is not None and found != kind:
        raise CheckpointError(path / "config.yaml", f"a {found!r} checkpoint, expected {kind!r}")
    weights = _tensors(path / "model.safetensors")
    state = None
    if training and (path / "training.json").exists():
        state = {"state": _restore(_json(path / "training.json")), "tensors": _tensors(path / "training.safetensors")}
    attachments = {}
    for name in meta.get("attachments", []):
        if not (path / name / "meta.json").is_file():
            raise CheckpointError(path / name, "attached checkpoint missing (listed in meta.json)")
        attachments[name] = path / name
    return Checkpoint(str(found), config, weights, meta, state, attachments)


def _json(f: Path) -> dict[str, Any]:
    try:
        data = json.loads(f.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f, f"unreadable ({err})") from err
    if not isinstance(data, dict):
        raise CheckpointError(f, "expected a JSON object")
    return data


def _yaml(f: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(f.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise CheckpointError(f, f"unreadable ({err})") from err
    if not isinstance(data, dict):
        raise CheckpointError(f, "expected a YAML mapping")
    return data


def _tensors(f: Path) -> dict[str, torch.Tensor]:
    try:
        tensors = load_file(str(f))
    except (OSError, SafetensorError, ValueError) as err:
        raise CheckpointError(f, f"unreadable or truncated safetensors file ({err})") from err
    bad = first_non_finite(tensors)
    if bad is not None:
        raise CheckpointError(f, f"tensor {bad!r} holds NaN or infinite values (a diverged or corrupted training run)")
    return tensors


def _standard(data: Any, non_finite: Any) -> Any:
    """JSON-able ``data`` with each non-finite float ``x`` replaced by ``non_finite(x)`` (tuples become lists).

    (:mod:`avworld.jsonfile` does the same for the rest of avworld; ``avworld.models`` imports nothing else of it.)"""
    if isinstance(data, float) and not math.isfinite(data):
        return non_finite(data)
    if isinstance(data, dict):
        return {k: _standard(v, non_finite) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_standard(v, non_finite) for v in data]
    return data


def _restore(data: Any) -> Any:
    """Inverse of the ``training.json`` spelling of non-finite floats."""
    if isinstance(data, str) and data in NON_FINITE:
        return NON_FINITE[data]
    if isinstance(data, dict):
        return {k: _restore(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_restore(v) for v in data]
    return data


def acoustics_version(meta: dict[str, Any]) -> int:
    """The version of the simulated sound a checkpoint learned from (``meta["acoustics_version"]``); checkpoints written
    before avworld recorded it learned version 1."""
    return int(meta.get("acoustics_version", 1))


def check_latent(stats: Any, f: Path, field: str) -> tuple[float, float]:
    """``(mean, std)`` of latent statistics ``{"mean", "std"}`` found at ``field`` of ``meta.json`` ``f``; refused, naming the
    field, unless the mean is a finite number and the std a positive finite one (latents are divided by it)."""
    if not isinstance(stats, dict):
        raise CheckpointError(f, f"{field}: expected {{'mean': number, 'std': number}}, got {stats!r}")
    values = []
    for key in ("mean", "std"):
        if key not in stats:
            raise CheckpointError(f, f"{field}.{key}: missing")
        value = stats[key]
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and (key == "mean" or value > 0)
        if not ok:
            raise CheckpointError(f, f"{field}.{key}: expected a {'finite' if key == 'mean' else 'positive finite'} number, got {value!r}")
        values.append(float(value))
    return values[0], values[1]


def optimizer_to_checkpoint(opt: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Split an optimiser's state dict into JSON-able state and named tensors (for safetensors)."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    state: dict[str, dict[str, Any]] = {}
    for idx, entries in sd["state"].items():
        state[str(idx)] = {}
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{name}"] = value
            else:
                state[str(idx)][name] = value
    return {"param_groups": sd["param_groups"], "state": state}, tensors


def optimizer_from_checkpoint(opt: torch.optim.Optimizer, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Inverse of :func:`optimizer_to_checkpoint`."""
    entries: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in state["state"].items()}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            entries.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": entries, "param_groups": state["param_groups"]})
