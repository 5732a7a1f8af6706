"""Refuse non-finite numbers where they would otherwise flow on silently (NaN frames decode as black, NaN rewards sum to NaN)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor


class NonFiniteError(FloatingPointError):
    """A model produced NaN or infinite values; the message names the output."""


def first_non_finite(tensors: Mapping[str, Tensor]) -> str | None:
    """The name of the first floating-point tensor holding NaN or ±inf, or None when all are finite (one device sync)."""
    floats = [(name, t) for name, t in tensors.items() if t.is_floating_point() or t.is_complex()]
    if not floats:
        return None
    finite = torch.stack([torch.isfinite(t).all().to(floats[0][1].device) for _, t in floats]).cpu()
    bad = (~finite).nonzero()
    return floats[int(bad[0])][0] if len(bad) else None


def check_finite(tensors: Mapping[str, Tensor], what: str) -> None:
    """Raise :class:`NonFiniteError` naming the first of ``tensors`` (``what``: whose outputs they are) holding NaN or inf."""
    name = first_non_finite(tensors)
    if name is not None:
        raise NonFiniteError(
            f"{what}: {name!r} holds NaN or infinite values (a diverged or corrupted world model or tokenizer; use another checkpoint)"
        )
