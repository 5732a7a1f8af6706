"""Floor plans of meshes built with trimesh: walls where the surfaces are, gaps where the doors are, errors that say why."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from avworld.sim.acoustics.responses import AcousticsConfig, SceneAcoustics
from avworld.sim.navigation import NavGrid, Solids
from avworld.sim.scenes.floorplan import FloorPlan, FloorPlanError, load_mesh, navmesh_floorplan, slice_floorplan, to_plan
from avworld.sim.scenes.loading import validate_scene
from avworld.sim.scenes.scene import AgentStart, Scene, SoundSource

trimesh = pytest.importorskip("trimesh")  # the `test` extra installs it

R = 0.18
"""Agent radius the navmeshes below are eroded by."""


def box_room(w: float = 4.0, d: float = 3.0, h: float = 2.5, z0: float = 0.0) -> trimesh.Trimesh:
    """The inside of a w × d × h room, [0, w] × [0, d] × [z0, z0 + h], normals facing into it (z up)."""
    room = trimesh.creation.box(extents=(w, d, h))
    room.apply_translation((w / 2, d / 2, z0 + h / 2))
    room.invert()
    return room


def slab(cx: float, cy: float, sx: float, sy: float, h: float = 2.5) -> trimesh.Trimesh:
    """A solid box sx × sy × h standing on z = 0 around (cx, cy)."""
    return trimesh.creation.box(extents=(sx, sy, h), transform=trimesh.transformations.translation_matrix((cx, cy, h / 2)))


def two_rooms() -> trimesh.Trimesh:
    """Two 4 × 4 m rooms of 10 cm walls centred on x = 0, 4, 8 and y = 0, 4; a door at x = 4, y in [1, 2].

    The long walls are two solids each, meeting at x = 4, so that the plan has to merge them.
    """
    return trimesh.util.concatenate(
        [
            slab(1.975, 0, 4.05, 0.1),
            slab(6.025, 0, 4.05, 0.1),
            slab(1.975, 4, 4.05, 0.1),
            slab(6.025, 4, 4.05, 0.1),
            slab(0, 2, 0.1, 4.1),
            slab(8, 2, 0.1, 4.1),
            slab(4, 0.525, 0.1, 0.95),
            slab(4, 2.975, 0.1, 1.95),
        ]
    )


def rect(x0: float, y0: float, x1: float, y1: float, h: float) -> np.ndarray:
    """Two triangles (6, 3) covering [x0, x1] × [y0, y1] at height h (z up), as a triangle soup."""
    v = np.array([[x0, y0, h], [x1, y0, h], [x1, y1, h], [x0, y1, h]])
    return v[[0, 1, 2, 0, 2, 3]]


def y_up(v: np.ndarray) -> np.ndarray:
    """z-up vertices (N, 3) in a y-up frame (habitat-sim's): (x, y, z) → (x, z, -y)."""
    return np.stack([v[:, 0], v[:, 2], -v[:, 1]], axis=1)


def segments(plan: FloorPlan) -> np.ndarray:
    """Wall centre lines (N, 2, 2), each with its ends sorted."""
    out = np.array([[w.start, w.end] for w in plan.walls], float)
    order = np.lexsort((out[:, :, 1], out[:, :, 0]))  # (N, 2): per wall, the end with the smaller x (then y) first
    return np.take_along_axis(out, order[:, :, None], axis=1)


def covered(plan: FloorPlan, points: np.ndarray) -> np.ndarray:
    """Whether each point (N, 2) lies in a wall's solid."""
    scene = plan.scene(AgentStart((0.0, 0.0)), [SoundSource((0.0, 0.0), "telephone")])
    return Solids.of(scene).distances(points).min(axis=1) <= 1e-9


def assert_same_walls(got: np.ndarray, want: list[list[list[float]]], atol: float) -> None:
    want_arr = np.asarray(want, float)
    assert len(got) == len(want_arr), got
    for w in want_arr:
        assert np.any(np.all(np.abs(got - w) <= atol, axis=(1, 2))), f"no wall {w.tolist()} in {got.round(3).tolist()}"


def test_box_room_walls_lie_behind_its_surfaces_and_rise_to_its_ceiling() -> None:
    plan = slice_floorplan(box_room(z0=0.3), thickness=0.1)
    assert plan.floor == pytest.approx(0.3) and plan.height == pytest.approx(2.5)
    t = 0.05  # half the thickness: the wall's inner face is the room's surface
    corners = [[-t, -t], [4 + t, -t], [4 + t, 3 + t], [-t, 3 + t]]
    want = [sorted([corners[k], corners[(k + 1) % 4]]) for k in range(4)]
    assert_same_walls(segments(plan), want, atol=1e-6)
    # The scene format accepts the plan as it is.
    scene = plan.scene(AgentStart((1.0, 1.0)), [SoundSource((3.0, 2.0), "telephone")])
    assert Scene.from_dict(scene.to_dict()) == scene


def test_two_rooms_keep_their_doorway_and_merge_walls_split_in_pieces() -> None:
    plan = slice_floorplan(two_rooms())
    assert plan.height == pytest.approx(2.5)
    want = [
        [[0, 0], [8, 0]],  # one wall, though two solids
        [[0, 4], [8, 4]],
        [[0, 0], [0, 4]],
        [[8, 0], [8, 4]],
        [[4, 0.1], [4, 0.95]],  # partition below the door; its end caps reach y = 0.05 and y = 1
        [[4, 2.05], [4, 3.9]],
    ]
    assert_same_walls(segments(plan), want, atol=1e-6)
    door = np.stack([np.full(9, 4.0), np.linspace(1.01, 1.99, 9)], axis=1)
    assert not covered(plan, door).any()
    assert covered(plan, np.array([[4.0, 0.99], [4.0, 2.01], [4.0, 3.0]])).all()
    # The agent walks from one room to the other through the door only.
    scene = plan.scene(AgentStart((2.0, 3.0)), [SoundSource((6.0, 3.0), "telephone")])
    grid = validate_scene(scene, R)
    geodesic = grid.goal_field((6.0, 3.0)).distance(np.array([2.0, 3.0]))
    assert 4.5 < geodesic < 5.5  # via (4, 1.5): 2 × √(2² + 1.5²) = 5


def test_clutter_smaller_than_min_length_is_dropped() -> None:
    room = trimesh.util.concatenate([box_room(), slab(2.0, 1.5, 0.05, 0.05, h=1.8)])  # a 5 cm pole
    assert len(slice_floorplan(room).walls) == 4
    assert len(slice_floorplan(room, min_length=0.01).walls) == 5


def test_y_up_and_z_up_meshes_give_the_same_plan() -> None:
    mesh = two_rooms()
    z_plan = slice_floorplan(mesh, up="z")
    y_plan = slice_floorplan(y_up(mesh.vertices), mesh.faces, up="y")
    np.testing.assert_allclose(segments(y_plan), segments(z_plan), atol=1e-9)
    assert y_plan.height == pytest.approx(z_plan.height)
    np.testing.assert_allclose(to_plan(y_up(mesh.vertices), "y"), mesh.vertices, atol=1e-12)


def test_plain_arrays_and_triangle_soups_give_the_same_plan_as_a_trimesh() -> None:
    mesh = box_room()
    ref = segments(slice_floorplan(mesh))
    np.testing.assert_allclose(segments(slice_floorplan(np.asarray(mesh.vertices), np.asarray(mesh.faces))), ref)
    np.testing.assert_allclose(segments(slice_floorplan(np.asarray(mesh.vertices)[mesh.faces].reshape(-1, 3))), ref)


def navmesh_two_rooms(h: float = 0.1) -> np.ndarray:
    """A navmesh (triangle soup, y up) of two 3.95 × 4 m rooms behind a 10 cm partition at x = 4 with a door at y in [1, 2].

    Room A has a 1 × 1.5 m bed at [1, 2] × [1, 2.5] (a hole in the floor's navmesh, and an island on top of
    it), and an upper storey lies 3 m higher: neither belongs to the floor plan. The pieces meet in
    T-junctions, as navmesh polygons do.
    """
    a0, a1, b0, b1 = R, 3.95 - R, 4.05 + R, 8 - R
    floor = [
        rect(a0, a0, 1 - R, 4 - R, h),  # room A around the bed
        rect(2 + R, a0, a1, 4 - R, h),
        rect(1 - R, a0, 2 + R, 1 - R, h),
        rect(1 - R, 2.5 + R, 2 + R, 4 - R, h),
        rect(b0, a0, b1, 4 - R, h),  # room B
        rect(a1, 1 + R, b0, 2 - R, h),  # the doorway
        rect(1.1, 1.1, 1.9, 2.4, h + 0.55),  # the bed's top
        rect(a0, a0, b1, 4 - R, h + 3.0),  # upper storey
    ]
    return y_up(np.concatenate(floor))


def test_navmesh_outline_pushed_out_to_the_walls_keeps_doors_and_obstacles() -> None:
    plan = navmesh_floorplan(navmesh_two_rooms(), up="y", offset=R, height=2.6, floor=0.1)
    assert plan.height == 2.6 and plan.floor == 0.1
    cell = 0.02  # the outline is traced on a 2 cm raster
    want = [
        [[-0.05, -0.05], [8.05, -0.05]],
        [[-0.05, 4.05], [8.05, 4.05]],
        [[-0.05, -0.05], [-0.05, 4.05]],
        [[8.05, -0.05], [8.05, 4.05]],
        [[4.0, -0.05], [4.0, 0.95]],  # the partition: both rooms' walls, merged
        [[4.0, 2.05], [4.0, 4.05]],
        [[1.05, 1.05], [1.95, 1.05]],  # around the bed
        [[1.05, 2.45], [1.95, 2.45]],
        [[1.05, 1.05], [1.05, 2.45]],
        [[1.95, 1.05], [1.95, 2.45]],
    ]
    assert_same_walls(segments(plan), want, atol=cell)
    door = np.stack([np.full(7, 4.0), np.linspace(1.05, 1.95, 7)], axis=1)
    assert not covered(plan, door).any()
    # Without a floor given, the lowest storey is taken.
    assert navmesh_floorplan(navmesh_two_rooms(), up="y", offset=R, height=2.6).floor == pytest.approx(0.1)


def test_acoustics_run_on_an_extracted_room() -> None:
    plan = slice_floorplan(box_room(h=2.5))
    scene = plan.scene(AgentStart((1.0, 1.0)), [SoundSource((3.0, 2.0), "telephone", height=1.0)])
    config = AcousticsConfig(fs=8000, ism_order=1, max_ir_s=0.1, position_quantum=0.1)
    acoustics = SceneAcoustics(scene, config, ear_height=1.5, grid=NavGrid(scene, R))
    assert acoustics.room.volume == pytest.approx(4 * 3 * 2.5, rel=0.05)
    assert np.all((acoustics.room.rt60 > 0) & np.isfinite(acoustics.room.rt60))
    ir = acoustics.impulse_response((3.0, 2.0, 1.0), 1.0, 1.0, 0.0)
    assert ir.shape == (2, 800) and np.isfinite(ir).all()
    direct = np.sqrt(2**2 + 1**2 + 0.5**2) / 343.0 * 8000  # samples of the direct path
    first = int(np.argmax(np.abs(ir).sum(axis=0) > 0.1 * np.abs(ir).max()))
    assert abs(first - direct) < 4
    assert np.abs(ir[:, int(direct) + 16 :]).sum() > 0  # reflections off the extracted walls follow


def test_mesh_files_load_in_their_own_coordinates(tmp_path) -> None:
    path = tmp_path / "room.ply"
    box_room().export(path)
    vertices, faces = load_mesh(path)
    np.testing.assert_allclose(segments(slice_floorplan(vertices, faces)), segments(slice_floorplan(box_room())), atol=1e-6)
    with pytest.raises(FileNotFoundError, match="no such mesh file"):
        load_mesh(tmp_path / "missing.glb")


def test_load_mesh_without_trimesh_says_how_to_install_it(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "trimesh", None)
    with pytest.raises(ImportError, match=r"pip install 'avworld\[mesh\]'"):
        load_mesh(tmp_path / "room.glb")


@pytest.mark.parametrize(
    ("vertices", "faces", "message"),
    [
        (np.zeros((0, 3)), np.zeros((0, 3), int), "no triangles"),
        (np.zeros((4, 2)), None, r"shape \(V, 3\)"),
        (np.zeros((4, 3)), None, "multiple of 3"),
        (np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0.0]]), np.array([[0, 1, 2]]), "degenerate"),
        (np.array([[0, 0, 0], [1, 0, 0], [0, 1, np.nan]]), np.array([[0, 1, 2]]), "finite"),
        (np.eye(3), np.array([[0, 1, 3]]), "indices"),
        (np.eye(3), np.array([[0.0, 1.0, 2.0]]), "integer"),
    ],
)
def test_bad_meshes_are_refused_with_a_reason(vertices: np.ndarray, faces: np.ndarray | None, message: str) -> None:
    with pytest.raises(FloorPlanError, match=message):
        slice_floorplan(vertices, faces)


def test_slices_outside_the_mesh_and_other_bad_arguments_are_refused() -> None:
    with pytest.raises(FloorPlanError, match="outside the mesh's heights"):
        slice_floorplan(box_room(), slice_height=3.0)
    with pytest.raises(FloorPlanError, match="outside the mesh's heights"):
        slice_floorplan(box_room(), floor=-2.0)
    with pytest.raises(FloorPlanError, match="up must be one of"):
        slice_floorplan(box_room(), up="x")
    with pytest.raises(FloorPlanError, match=r"scene height 1\.200 m"):
        slice_floorplan(box_room(), height=1.2)
    with pytest.raises(FloorPlanError, match="no navmesh triangle"):
        navmesh_floorplan(navmesh_two_rooms(), up="y", height=2.5, floor=10.0)
    flat = rect(0, 0, 4, 3, 0.0)  # a floor alone: no wall crosses the slice
    with pytest.raises(FloorPlanError, match="outside the mesh's heights"):
        slice_floorplan(flat)
