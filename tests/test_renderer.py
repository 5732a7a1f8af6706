"""Known-answer checks of the egocentric renderer and the top-down map on tiny hand-built scenes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from avworld.sim.renderer import SPEAKER_COLOR, RenderConfig, Renderer
from avworld.sim.scenes.scene import AgentStart, Door, Furniture, Scene, SoundSource, Wall
from avworld.sim.topdown import AGENT_RGB, FLOOR_RGB, FREE_RGB, HEADING_RGB, PATH_RGB, SOURCE_RGB, WALL_RGB, TopdownView, render_topdown

EYE = 1.5
HALF = 0.05  # half the wall thickness


def box_room(w: float = 4.0, h: float = 4.0, sources: tuple[SoundSource, ...] | None = None, **kwargs: object) -> Scene:
    """A w x h room of 0.1 m walls centred on x in {0, w}, y in {0, h}; inner faces 5 cm inside."""
    walls = (
        Wall((0, 0), (w, 0), 2 * HALF, "plaster"),
        Wall((w, 0), (w, h), 2 * HALF, "brick"),
        Wall((w, h), (0, h), 2 * HALF, "painted"),
        Wall((0, h), (0, 0), 2 * HALF, "concrete"),
    )
    return Scene(walls=walls, start=AgentStart((1, 1)), sources=sources or (SoundSource((0.5, 0.5), "tone"),), **kwargs)  # type: ignore[arg-type]


def row_slope(config: RenderConfig, row: int) -> float:
    """Upward slope of a row's rays (tan of its elevation)."""
    focal = config.width / 2 / math.tan(math.radians(config.hfov_deg) / 2)
    return (config.height / 2 - 0.5 - row) / focal


def is_speaker(rgb: np.ndarray) -> np.ndarray:
    """Pixels of the speaker's orange, (H, W) bool."""
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return (r > 90) & (r > 2 * g) & (b < 40)


CFG = RenderConfig()


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("width", {"width": 4}),
        ("width", {"width": 64.0}),
        ("height", {"height": 2000}),
        ("hfov_deg", {"hfov_deg": 5.0}),
        ("hfov_deg", {"hfov_deg": 175.0}),
        ("max_depth", {"max_depth": 0.0}),
        ("max_depth", {"max_depth": float("inf")}),
    ],
)
def test_config_errors_name_the_field(field: str, kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=field):
        RenderConfig(**kwargs)  # type: ignore[arg-type]


def test_eye_height_must_be_inside_the_room() -> None:
    with pytest.raises(ValueError, match="eye_height"):
        Renderer(box_room(), CFG, eye_height=3.0)


@pytest.mark.parametrize(("width", "height"), [(64, 64), (128, 96), (256, 256), (65, 33)])
def test_shapes_dtypes_and_range(width: int, height: int) -> None:
    config = RenderConfig(width=width, height=height)
    rgb, depth = Renderer(box_room(), config).render(1.3, 2.2, 0.7)
    assert rgb.shape == (height, width, 3) and rgb.dtype == np.uint8
    assert depth.shape == (height, width) and depth.dtype == np.float32
    assert np.isfinite(depth).all() and (depth > 0).all() and (depth <= config.max_depth).all()


@pytest.mark.parametrize("yaw", [0.0, math.pi / 2, math.pi, -math.pi / 2])
def test_depth_of_the_wall_ahead(yaw: float) -> None:
    _, depth = Renderer(box_room(), CFG).render(2.0, 2.0, yaw)
    # from the centre the horizon rows see the facing wall in every column, and z-depth of a wall square to the view is constant
    np.testing.assert_allclose(depth[31:33], 2.0 - HALF, atol=1e-4)


def test_depth_of_the_wall_ahead_off_centre() -> None:
    _, depth = Renderer(box_room(), CFG).render(1.0, 2.5, 0.0)
    np.testing.assert_allclose(depth[31:33, 24:40], 3.0 - HALF, atol=1e-4)
    assert depth[31, 0] < 3.0 - HALF - 0.5  # the left wall (y = 3.95) cuts the view's left edge


def test_odd_size_centre_ray_along_the_axes() -> None:
    """An odd width has a ray exactly along the view axis, parallel to two walls' faces; it must not hit them."""
    renderer = Renderer(box_room(), RenderConfig(width=65, height=33))
    for yaw in (0.0, math.pi / 2, -math.pi / 2):
        _, depth = renderer.render(2.0, 2.0, yaw)
        assert depth[16, 32] == pytest.approx(2.0 - HALF, abs=1e-4)


def test_depth_is_mirror_symmetric_for_a_symmetric_pose() -> None:
    scene = box_room(sources=(SoundSource((0.5, 2.0), "tone"),))  # on the axis, behind the camera
    _, depth = Renderer(scene, CFG).render(1.0, 2.0, 0.0)
    np.testing.assert_allclose(depth, depth[:, ::-1], atol=1e-4)
    assert depth[31, 0] < depth[31, 32] - 0.5  # the side walls are in view: not trivially constant along rows


@pytest.mark.parametrize("config", [RenderConfig(max_depth=30.0), RenderConfig(128, 96, hfov_deg=70.0, max_depth=30.0)])
def test_floor_and_ceiling_follow_the_row_elevation(config: RenderConfig) -> None:
    scene = box_room(20.0, 20.0, floor_color=(200, 40, 40), ceiling_color=(40, 40, 200))
    rgb, depth = Renderer(scene, config).render(10.0, 10.0, 0.3)
    h = config.height
    for row in (h - 1, h * 7 // 8, h * 3 // 4):
        np.testing.assert_allclose(depth[row], EYE / -row_slope(config, row), rtol=1e-4)
    for row in (0, h // 8, h // 4):
        np.testing.assert_allclose(depth[row], (scene.height - EYE) / row_slope(config, row), rtol=1e-4)
    bottom, top = rgb[h * 3 // 4 :].reshape(-1, 3).mean(0), rgb[: h // 4].reshape(-1, 3).mean(0)
    assert bottom[0] > 2 * bottom[2] and top[2] > 2 * top[0]


def test_depth_is_clipped() -> None:
    config = RenderConfig(max_depth=1.0)
    _, depth = Renderer(box_room(), config).render(2.0, 2.0, 0.0)
    assert depth.max() == pytest.approx(1.0) and (depth[31:33] == 1.0).all()


def test_box_in_front_shows_its_face_top_and_colour() -> None:
    table = Furniture((3.0, 3.0), (0.5, 0.5, 1.0), 0.0, "wood", (20, 200, 20))
    empty = box_room(6.0, 6.0, sources=(SoundSource((0.5, 0.5), "tone"),))
    scene = box_room(6.0, 6.0, sources=(SoundSource((0.5, 0.5), "tone"),), furniture=(table,))
    rgb, depth = Renderer(scene, CFG).render(1.0, 3.0, 0.0)
    _, depth_empty = Renderer(empty, CFG).render(1.0, 3.0, 0.0)
    # front face at x = 2.75 spans z in [0, 1] at depth 1.75: rows 41..58; the top face is seen from above at rows 39..40
    np.testing.assert_allclose(depth[[42, 50, 58]][:, 30:34], 1.75, atol=1e-4)
    assert depth_empty[50, 32] > 2.5
    top_depth = (1.0 - EYE) / row_slope(CFG, 39)
    np.testing.assert_allclose(depth[39, 31:33], top_depth, atol=1e-4)
    assert 1.75 < top_depth < 2.25
    for row in (39, 50):
        r, g, b = rgb[row, 32].astype(int)
        assert g > 2 * r and g > 2 * b
    np.testing.assert_allclose(depth[31:33], depth_empty[31:33])  # above the box: the wall behind


def test_door_opening_and_jambs() -> None:
    walls = (
        Wall((0, 0), (8, 0), 0.1),
        Wall((8, 0), (8, 4), 0.1),
        Wall((8, 4), (0, 4), 0.1),
        Wall((0, 4), (0, 0), 0.1),
        Wall((4, 0), (4, 4), 0.1),
    )
    scene = Scene(walls=walls, start=AgentStart((1, 1)), sources=(SoundSource((0.5, 0.5), "tone"),), doors=(Door((4.0, 2.0), 1.0),))
    _, depth = Renderer(scene, RenderConfig(256, 256)).render(2.0, 2.0, 0.0)
    horizon = depth[127]
    np.testing.assert_allclose(horizon[120:136], 8.0 - HALF - 2.0, atol=1e-4)  # through the door
    np.testing.assert_allclose(horizon[:90], 2.0 - HALF, atol=1e-4)  # the partition beside it
    jamb = horizon[:128][(horizon[:128] > 2.0 - HALF + 1e-3) & (horizon[:128] < 2.0 + HALF - 1e-3)]
    assert jamb.size >= 1  # the door's side face, between the partition's two faces


def test_turning_and_moving_change_the_image() -> None:
    renderer = Renderer(box_room(), CFG)
    rgb, depth = renderer.render(2.0, 2.0, 0.0)
    rgb_turned, depth_turned = renderer.render(2.0, 2.0, math.pi / 2)
    np.testing.assert_allclose(depth_turned, depth, atol=1e-4)  # a square room looks the same depth-wise...
    assert np.abs(rgb_turned.astype(int) - rgb.astype(int)).mean() > 5  # ...but not colour-wise
    rgb_moved, depth_moved = renderer.render(2.25, 2.0, 0.0)
    assert np.abs(rgb_moved.astype(int) - rgb.astype(int)).mean() > 5
    np.testing.assert_allclose(depth_moved[31:33], 2.0 - HALF - 0.25, atol=1e-4)
    rgb_small_turn, _ = renderer.render(2.0, 2.0, math.radians(15))
    assert np.abs(rgb_small_turn.astype(int) - rgb.astype(int)).mean() > 5


def test_speaker_visible_only_when_in_view() -> None:
    scene = box_room(sources=(SoundSource((3.0, 2.0), "tone", height=1.0),))
    renderer = Renderer(scene, CFG)
    rgb, depth = renderer.render(1.0, 2.0, 0.0)
    speaker = is_speaker(rgb)
    assert speaker[45:55, 30:34].all()
    assert depth[50, 32] == pytest.approx(2.0 - 0.15, abs=1e-4)  # its 0.3 m box's front face
    assert not speaker[:30].any()  # below the eye: nothing orange above the horizon
    assert not is_speaker(renderer.render(1.0, 2.0, math.pi)[0]).any()  # behind the camera
    rgb_inside, depth_inside = renderer.render(3.0, 2.0, 0.0)  # the speaker is no obstacle: the camera may stand in it
    assert not is_speaker(rgb_inside).any()
    np.testing.assert_allclose(depth_inside[31:33], 1.0 - HALF, atol=1e-4)


def test_speaker_colour_is_striking() -> None:
    r, g, b = SPEAKER_COLOR
    assert r > 200 and b < 40 and r > 2 * g


def test_nothing_in_view_gives_floor_and_ceiling() -> None:
    scene = box_room()
    _, depth = Renderer(scene, CFG).render(10.0, 2.0, 0.0)  # outside the room, looking away from it
    np.testing.assert_allclose(depth[63], EYE / -row_slope(CFG, 63), rtol=1e-4)
    assert (depth[31:33] == CFG.max_depth).all()
    assert (depth == depth[:, :1]).all()  # every row is one plane


def test_deterministic_and_stateless() -> None:
    scene = box_room(furniture=(Furniture((3.0, 1.0), (1.0, 0.5, 0.7), 0.4),))
    a = Renderer(scene, CFG)
    first = a.render(1.2, 1.7, 0.3)
    a.render(3.1, 3.0, 2.0)
    again = a.render(1.2, 1.7, 0.3)
    fresh = Renderer(scene, CFG).render(1.2, 1.7, 0.3)
    for x, y in ((first, again), (first, fresh)):
        assert x[0].tobytes() == y[0].tobytes() and x[1].tobytes() == y[1].tobytes()


def two_by_one() -> Scene:
    return box_room(8.0, 4.0, sources=(SoundSource((1.0, 3.0), "tone"),), furniture=(Furniture((6.0, 1.0), (1.0, 0.5, 0.7), 0.3),))


def test_topdown_shape_and_layers() -> None:
    scene = two_by_one()
    size = 200
    path = np.array([[2.0, 1.0], [4.0, 1.0], [4.0, 2.5]])
    img = render_topdown(scene, pose=(5.0, 2.0, 0.0), path=path, size=size)
    assert img.shape == (size, size, 3) and img.dtype == np.uint8
    view = TopdownView.of_scene(scene, size)

    def at(x: float, y: float) -> tuple[int, ...]:
        row, col = np.floor(view.to_pixel(np.array([x, y]))).astype(int)
        return tuple(img[row, col])

    assert at(4.0, 0.0) == WALL_RGB and at(0.0, 2.0) == WALL_RGB
    assert at(1.0, 3.0) == SOURCE_RGB
    assert at(3.0, 1.0) == PATH_RGB
    assert at(4.9, 2.0) == AGENT_RGB and at(5.45, 2.0) == HEADING_RGB
    assert at(2.0, 3.0) == FLOOR_RGB
    assert at(6.0, 1.0) not in (FLOOR_RGB, WALL_RGB)  # furniture
    # +y is up and the 8 x 4 m scene is centred in the square: the source (top left) lands in the upper left quarter
    row, col = view.to_pixel(np.array([1.0, 3.0]))
    assert row < size / 2 and col < size / 2
    assert (img[: size // 5] == FLOOR_RGB).all()  # the margin above the scene (a 2:1 scene leaves a quarter empty)


def test_topdown_free_tint_and_bare_map() -> None:
    scene = two_by_one()
    cell = 0.1
    free = np.zeros((40, 80), bool)
    free[:, :40] = True  # the left half, x < 4
    img = render_topdown(scene, free=free, free_origin=(0.05, 0.05), free_cell=cell, size=128)
    view = TopdownView.of_scene(scene, 128)
    (r1, c1), (r2, c2) = np.floor(view.to_pixel(np.array([[2.0, 1.5], [5.0, 3.0]]))).astype(int)
    assert tuple(img[r1, c1]) == FREE_RGB and tuple(img[r2, c2]) == FLOOR_RGB
    with pytest.raises(ValueError, match="free_origin"):
        render_topdown(scene, free=free)
    bare = render_topdown(scene, size=64, path=np.zeros((0, 2)))
    assert bare.shape == (64, 64, 3) and (bare == np.asarray(AGENT_RGB, np.uint8)).all(axis=-1).sum() == 0
    dot = render_topdown(scene, size=64, path=np.array([[4.0, 2.0]]))
    assert (dot == np.asarray(PATH_RGB, np.uint8)).all(axis=-1).any()
