"""Files written whole or not at all: ``avworld.files.replaced_atomically`` and the copy ``avworld.models`` keeps."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import pytest

from avworld import files
from avworld.models import checkpoint

HELPERS = [files.replaced_atomically, checkpoint.replaced_atomically]


@pytest.mark.parametrize("replaced_atomically", HELPERS)
def test_a_finished_block_replaces_the_file(replaced_atomically, tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    target.write_text("old")
    with replaced_atomically(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_text("new")
        assert target.read_text() == "old"  # nothing seen before the block ends
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # readable by all, unlike mkstemp's private default
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


@pytest.mark.parametrize("replaced_atomically", HELPERS)
def test_a_failing_block_keeps_the_old_file_and_leaves_no_temp(replaced_atomically, tmp_path: Path) -> None:
    target = tmp_path / "a.npy"
    np.save(target, np.arange(3))
    with pytest.raises(KeyboardInterrupt), replaced_atomically(target, suffix=".npy") as tmp:
        np.save(tmp, np.arange(5))  # written whole, then interrupted before the block ends
        raise KeyboardInterrupt
    np.testing.assert_array_equal(np.load(target), np.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["a.npy"]


@pytest.mark.parametrize("replaced_atomically", HELPERS)
def test_the_suffix_keeps_numpy_from_renaming(replaced_atomically, tmp_path: Path) -> None:
    with replaced_atomically(tmp_path / "x.npy", suffix=".npy") as tmp:
        np.save(tmp, np.ones(2))  # np.save appends .npy to a name without it: the rename would then miss the file
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), np.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["x.npy"]


def test_a_saved_checkpoint_is_readable_by_all(tmp_path: Path) -> None:
    import torch

    weights = {"w": torch.ones(2)}
    training = {"state": {"step": 1}, "tensors": {"m": torch.zeros(2)}}
    checkpoint.save_checkpoint(tmp_path / "ckpt", checkpoint.Checkpoint("toy", {"size": 2}, weights, {}, training))
    saved = [tmp_path / "ckpt", *(tmp_path / "ckpt").rglob("*")]
    modes = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in saved}
    assert modes["ckpt"] == 0o755 and len(modes) == 6, modes  # mkdtemp alone makes the folder private (0700)
    assert all(mode == 0o644 for name, mode in modes.items() if name != "ckpt"), modes
    loaded = checkpoint.load_checkpoint(tmp_path / "ckpt", "toy", training=True)
    assert torch.equal(loaded.weights["w"], weights["w"]) and loaded.training is not None
