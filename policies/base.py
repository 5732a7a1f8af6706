"""The interface every avworld agent offers to evaluation."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class Policy(Protocol):
    """An agent acting in one env: ``reset`` at each episode start, then ``act`` every step."""

    def reset(self, env: Any, seed: int | None = None) -> None: ...

    def act(self, observation: dict[str, np.ndarray], info: dict[str, Any]) -> int: ...
