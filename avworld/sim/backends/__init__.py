"""Simulator backends: what does the physics and the rendering of a scene behind the env.

:mod:`~avworld.sim.backends.base` holds what every backend shares (actions, pose, the episode's sound, the
shortest-path follower); :mod:`~avworld.sim.backends.builtin` is avworld's own simulator and
:mod:`~avworld.sim.backends.habitat` runs habitat-sim's scanned scenes. :func:`make_simulator` picks one.
"""

from __future__ import annotations

from avworld.sim.backends.base import SimulatorBackend
from avworld.sim.backends.builtin import BuiltinSimulator
from avworld.sim.backends.habitat import HabitatSimulator
from avworld.sim.config import SimConfig
from avworld.sim.scenes.scene import Scene


def make_simulator(scene: Scene | None, config: SimConfig) -> SimulatorBackend:
    """The simulator backend ``config.backend`` names.

    ``builtin`` simulates ``scene``; ``habitat`` simulates the scanned scene of
    ``sim.habitat.scene`` with habitat-sim (imported only then), so ``scene`` must be None.
    """
    if config.backend == "habitat":
        if scene is not None:
            raise ValueError("sim.backend=habitat simulates the scene of sim.habitat.scene; pass no avworld scene")
        return HabitatSimulator(config)
    if scene is None:
        raise ValueError("the built-in simulator needs a scene")
    return BuiltinSimulator(scene, config)
