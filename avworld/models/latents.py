"""The latents of a collection, encoded once: the cache that world-model training and imagination training share.

The file ``<flat cache>/latents-<modality>-<weights hash>.npy`` sits beside the collection's flat arrays; the hash of the
tokenizer's ``model.safetensors`` keys it, so a retrained tokenizer gets its own file and the same tokenizer (attached to
a world model, or named directly) finds the one already built.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from avworld.models.checkpoint import replaced_atomically
from avworld.models.imagination import FIELDS, TOKENIZERS
from avworld.models.registry import encode

ENCODE_BATCH = 256


def _weights_hash(checkpoint: Path) -> str:
    h = hashlib.sha256()
    with open(checkpoint / "model.safetensors", "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


@torch.no_grad()
def latent_cache(data: Any, modality: str, tokenizer: nn.Module, checkpoint: Path, device: torch.device) -> np.ndarray:
    """Every observation of ``data`` (a :class:`~avworld.data.storage.FlatData`: its ``arrays`` and cache directory
    ``path``) encoded by ``tokenizer`` (unscaled posterior means), (n_obs, *latent) float32, memory-mapped.

    Built once into ``<flat cache>/latents-<modality>-<weights hash>.npy`` (written to a temporary file, then renamed).
    Several collections read as one (``data.parts``): each one's own cache (built where missing, and kept for every later
    job that reads it), joined.
    """
    if data.path is None:
        raise ValueError("latent_cache needs a flat collection opened from its cache directory")
    target = data.path / f"latents-{modality}-{_weights_hash(checkpoint)}.npy"
    parts = getattr(data, "parts", None)
    if parts and not target.exists():
        pieces = [latent_cache(part, modality, tokenizer, checkpoint, device) for part in parts]
        with replaced_atomically(target, suffix=".npy") as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(sum(map(len, pieces)), *pieces[0].shape[1:]))
            at = 0
            for z in pieces:
                out[at : at + len(z)] = z
                at += len(z)
            out.flush()
            del out
    if not target.exists():
        source = data.arrays[FIELDS[modality]]
        first = encode(tokenizer, TOKENIZERS[modality], torch.from_numpy(np.array(source[:1])).to(device))
        with replaced_atomically(target, suffix=".npy") as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(source), *first.shape[1:]))
            for start in range(0, len(source), ENCODE_BATCH):
                x = torch.from_numpy(np.array(source[start : start + ENCODE_BATCH])).to(device)
                out[start : start + len(x)] = encode(tokenizer, TOKENIZERS[modality], x).float().cpu().numpy()
            out.flush()
            del out
    return np.load(target, mmap_mode="r", allow_pickle=False)
