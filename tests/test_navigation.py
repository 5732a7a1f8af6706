"""Navigation physics: occupancy, collision and sliding, geodesic distances through doors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avworld.sim.navigation import NavGrid
from avworld.sim.scenes.scene import Scene
from tests.conftest import two_rooms

GRID = NavGrid(two_rooms(), radius=0.18)


def test_clearance_is_exact_distance_to_walls() -> None:
    # Cell centre near (1, 1.5): 1 m from the outer wall's centre line at x=0, which is 0.1 m thick.
    i, j = GRID.to_cell(np.array([1.0, 1.5]))
    x, _ = GRID.to_world(i, j)
    assert GRID.clearance[i, j] == pytest.approx(x - 0.1, abs=1e-9)
    assert GRID.free[i, j]
    assert not GRID.navigable(np.array([0.2, 3.0]))  # 0.1 m from the wall surface < radius
    assert not GRID.navigable(np.array([-1.0, 3.0]))  # outside the walls
    assert not GRID.navigable(np.array([2.0, 3.0]))  # inside the furniture


def test_geodesic_goes_through_the_door() -> None:
    field = GRID.goal_field((7.0, 1.0))
    start = np.array([1.0, 1.0])
    geo = field.distance(start)
    # Through the door at (4, 5): the shortest way rounds the jamb near (4, 4.55 + radius).
    via_jamb = math.dist((1, 1), (4, 4.73)) + math.dist((4, 4.73), (7, 1))
    assert via_jamb <= geo <= via_jamb * 1.03
    path = field.path((1.0, 1.0))
    assert np.linalg.norm(np.diff(path, axis=0), axis=1).sum() == pytest.approx(geo, rel=0.02)
    assert (path[:, 1].max()) > 4.5  # it climbs to the door
    assert GRID.navigable(path[1:-1]).all()


def test_closed_door_makes_the_other_room_unreachable() -> None:
    closed = Scene(**{**two_rooms().__dict__, "doors": ()})
    field = NavGrid(closed, 0.18).goal_field((7.0, 1.0))
    assert math.isinf(field.distance(np.array([1.0, 1.0])))
    assert len(field.path((1.0, 1.0))) == 0


def test_free_move_and_blocked_move() -> None:
    assert GRID.move(1.0, 1.0, 0.0, 0.25) == pytest.approx((1.25, 1.0, False))
    # Straight into the partition (surface at x=3.95): stops short, at least a radius away.
    x, y, collided = GRID.move(3.6, 2.0, 0.0, 0.25)
    assert collided and 3.6 < x <= 3.95 - 0.18 + GRID.cell and y == pytest.approx(2.0)


def test_sliding_along_a_wall() -> None:
    # 30° into the partition: the x part is blocked, the y part slides on.
    x, y, collided = GRID.move(3.7, 2.0, math.radians(30), 0.25)
    assert collided and x <= 3.95 - 0.18 + GRID.cell
    assert y == pytest.approx(2.0 + 0.25 * math.sin(math.radians(30)), abs=GRID.cell)


@settings(max_examples=40, deadline=None)
@given(
    st.floats(0.3, 7.7),
    st.floats(0.3, 5.7),
    st.lists(st.tuples(st.floats(-math.pi, math.pi), st.floats(0.0, 0.6)), min_size=1, max_size=30),
)
def test_agent_never_ends_inside_an_obstacle(x0: float, y0: float, moves: list[tuple[float, float]]) -> None:
    if not GRID.navigable(np.array([x0, y0])):
        return
    x, y = x0, y0
    for yaw, dist in moves:
        x, y, _ = GRID.move(x, y, yaw, dist)
        assert GRID.navigable(np.array([x, y]))
        d = GRID.solids.distances(np.array([[x, y]]))[0].min()
        assert d >= GRID.radius - GRID.cell * math.sqrt(0.5) - 1e-9


@settings(max_examples=30, deadline=None)
@given(st.floats(0.3, 7.7), st.floats(0.3, 5.7))
def test_geodesic_is_never_below_euclidean(x: float, y: float) -> None:
    field = GRID.goal_field((7.0, 1.0))
    d = field.distance(np.array([x, y]))
    assert d >= math.dist((x, y), (7.0, 1.0)) - 1e-9
    assert not np.isnan(d)


def test_moves_never_slip_through_a_blocked_corner() -> None:
    grid = NavGrid(two_rooms(), radius=0.18)
    i, j = grid.to_cell(np.array([2.0, 2.0]))
    grid.free[i - 3 : i + 4, j - 3 : j + 4] = True
    grid.free[i + 1, j] = grid.free[i, j + 1] = False  # two blocked cells touching at a corner, free cells around them
    start = grid.to_world(i, j)
    x, y, collided = grid.move(float(start[0]), float(start[1]), math.radians(45), 3 * grid.cell)  # right through the corner
    assert collided and grid.to_cell(np.array([x, y])) != (i + 1, j + 1)
    x, y, collided = grid.move(float(start[0]), float(start[1]), math.radians(-135), 3 * grid.cell)  # the open diagonal
    assert not collided


def test_no_move_reaches_a_pocket_the_goal_field_cannot() -> None:
    from avworld.sim.scenes.procedural import generate_apartment

    scene = generate_apartment(1014215)  # a test scene with a one-cell pocket behind a corner (a benchmark agent got in)
    grid = NavGrid(scene, radius=0.18)
    field = grid.goal_field(tuple(float(v) for v in scene.sources[0].position[:2]))
    pocket = grid.free & ~np.isfinite(field.field)
    assert pocket.any()
    tried = 0
    for i, j in np.argwhere(pocket):
        for di, dj in ((-1, -1), (-1, 1), (1, -1), (1, 1)):
            if not (np.isfinite(field.field[i + di, j + dj]) and not grid.free[i + di, j] and not grid.free[i, j + dj]):
                continue
            start, target = grid.to_world(i + di, j + dj), grid.to_world(i, j)
            yaw = math.atan2(*(target - start)[::-1])
            for offset in np.linspace(-0.4, 0.4, 9) * grid.cell:  # beside the straight line, too
                x0, y0 = start + offset * np.array([-math.sin(yaw), math.cos(yaw)])
                for distance in (0.05, 0.1, 0.25):
                    x, y, _ = grid.move(float(x0), float(y0), yaw, distance)
                    tried += 1
                    assert math.isfinite(float(field.distance(np.array([x, y])))), (x0, y0, distance)
    assert tried > 0


def test_distance_fields_of_many_sources_stay_within_the_acoustic_budget() -> None:
    """Each distractor position of each reset needs a distance field for its diffracted path: they are cached in an LRU
    bounded in bytes (a quarter of ``cache_mb``, as the sound paths), not kept forever (issue 27: 9 → 2,213 fields)."""
    from avworld.sim.acoustics.responses import AcousticsConfig, SceneAcoustics

    acoustics = SceneAcoustics(two_rooms(), AcousticsConfig(cache_mb=4, ism_order=0), ear_height=1.5)
    field_bytes = 0
    for k in range(24):
        source = (0.5 + 0.3 * k, 2.5, 1.0)
        acoustics.paths(source, 20, 20)
        field = acoustics.grid.goal_field(source[:2])
        field_bytes = field.field.nbytes + field.predecessors.nbytes
    fields = acoustics._fields
    assert 1 <= len(fields) <= 2**20 // field_bytes < 24
    assert fields.nbytes <= 2**20
