"""Shared tiny scenes with known answers."""

from __future__ import annotations

import pytest

from avworld.sim.scene import AgentStart, Door, Furniture, Scene, SoundSource, Wall


def two_rooms() -> Scene:
    """Two 4 x 6 m rooms side by side (x in [0, 8], y in [0, 6]); one 0.9 m door at (4, 5) in the partition."""
    return Scene(
        walls=(
            Wall((0, 0), (8, 0), 0.2, "brick"),
            Wall((8, 0), (8, 6), 0.2, "brick"),
            Wall((8, 6), (0, 6), 0.2, "brick"),
            Wall((0, 6), (0, 0), 0.2, "brick"),
            Wall((4, 0), (4, 6), 0.1, "plaster"),
        ),
        doors=(Door((4, 5), 0.9),),
        furniture=(Furniture((2, 3), (1.0, 0.6, 0.8), 0.0, "wood"),),
        sources=(SoundSource((7, 1), "telephone"),),
        start=AgentStart((1, 1), 0.0),
        name="two-rooms",
    )


@pytest.fixture
def scene() -> Scene:
    return two_rooms()
