"""Scene JSON round trip and every rejection case of the loader."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

from avworld.sim.scenes.loading import load_scene, save_scene, validate_scene
from avworld.sim.scenes.scene import Scene, SceneError


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "scene.json"
    path.write_text(json.dumps(data))
    return path


def test_json_round_trip(scene: Scene, tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    save_scene(scene, path)
    loaded = load_scene(path)
    assert loaded == scene
    assert json.loads(path.read_text()) == scene.to_dict()


def test_save_is_atomic_and_leaves_no_temp_files(scene: Scene, tmp_path: Path) -> None:
    save_scene(scene, tmp_path / "s.json")
    save_scene(scene, tmp_path / "s.json")
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]


def test_door_cuts_the_wall(scene: Scene) -> None:
    pieces = [p for p in scene.wall_pieces() if p.wall == 4]
    assert len(pieces) == 2
    ys = sorted((min(p.a[1], p.b[1]), max(p.a[1], p.b[1])) for p in pieces)
    assert ys[0][1] == pytest.approx(4.55) and ys[1][0] == pytest.approx(5.45)


def _mutate(scene: Scene, path: str, value: object) -> dict:
    data = copy.deepcopy(scene.to_dict())
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "field", "words"),
    [
        ("walls.0.start", [math.nan, 0], "walls[0].start[0]", "finite"),
        ("walls.1.end", [8, math.inf], "walls[1].end[1]", "finite"),
        ("walls.2.start", [5000, 6], "walls[2].start[0]", "out of range"),
        ("walls.3.thickness", -0.1, "walls[3].thickness", "out of range"),
        ("walls.0.material", "cheese", "walls[0].material", "unknown material"),
        ("floor_material", "lava", "floor_material", "unknown material"),
        ("furniture.0.material", 3, "furniture[0].material", "unknown material"),
        ("furniture.0.size", [1, 1], "furniture[0].size", "list of 3"),
        ("furniture.0.size", [1, 1, 9], "furniture[0].size[2]", "out of range"),
        ("walls.0.color", [300, 0, 0], "walls[0].color", "0..255"),
        ("sources.0.sound", "", "sources[0].sound", "sound id"),
        ("height", "tall", "height", "number"),
        ("start.position", "here", "start.position", "list of 2"),
        ("version", 99, "version", "unsupported"),
    ],
)
def test_field_errors_name_the_field(scene: Scene, tmp_path: Path, path: str, value: object, field: str, words: str) -> None:
    file = write(tmp_path, _mutate(scene, path, value))
    with pytest.raises(SceneError) as err:
        load_scene(file)
    assert err.value.field == field
    assert words in str(err.value) and str(file) in str(err.value)


def test_missing_and_unknown_fields(scene: Scene) -> None:
    data = scene.to_dict()
    del data["walls"][0]["end"]
    with pytest.raises(SceneError, match=r"walls\[0\]\.end: missing"):
        Scene.from_dict(data)
    data = scene.to_dict()
    data["doors"][0]["colour"] = 1
    with pytest.raises(SceneError, match=r"doors\[0\]\.colour: unknown field"):
        Scene.from_dict(data)
    with pytest.raises(SceneError, match="at least one sound source"):
        Scene.from_dict(_mutate(scene, "sources", []))


@pytest.mark.parametrize(
    ("path", "value", "field", "words"),
    [
        ("start.position", [4.0, 2.0], "start.position", "inside walls[4]"),
        ("start.position", [2.0, 3.0], "start.position", "inside furniture[0]"),
        ("sources.0.position", [0.0, 3.0], "sources[0].position", "inside walls[3]"),
        ("start.position", [-3.0, 3.0], "start.position", "outside the walls"),
        ("sources.0.position", [20.0, 1.0], "sources[0].position", "outside the walls"),
        ("start.position", [0.2, 3.0], "start.position", "closer than the agent radius"),
        ("doors.0.position", [2.0, 2.0], "doors[0].position", "lies on no wall"),
    ],
)
def test_geometry_errors(scene: Scene, tmp_path: Path, path: str, value: object, field: str, words: str) -> None:
    file = write(tmp_path, _mutate(scene, path, value))
    with pytest.raises(SceneError) as err:
        load_scene(file)
    assert err.value.field == field and words in str(err.value), str(err.value)


def test_unreachable_source_is_refused(scene: Scene) -> None:
    closed = Scene.from_dict(_mutate(scene, "doors", []))
    with pytest.raises(SceneError, match=r"sources\[0\]\.position: .*cannot be reached"):
        validate_scene(closed, 0.18)


def test_narrow_door_blocks_a_wide_agent(scene: Scene) -> None:
    validate_scene(scene, 0.18)
    with pytest.raises(SceneError, match="cannot be reached"):
        validate_scene(scene, 0.5)


def test_unreadable_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(SceneError, match="cannot read"):
        load_scene(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"walls": [')
    with pytest.raises(SceneError, match=r"bad\.json: not valid JSON \(line 1"):
        load_scene(bad)
    latin = tmp_path / "latin.json"
    latin.write_bytes('{"name": "salle à manger"}'.encode("latin-1"))
    with pytest.raises(SceneError, match=r"latin\.json: not UTF-8 text \(byte 16 is b'\\xe0'\)"):
        load_scene(latin)
    with pytest.raises(SceneError, match="expected an object"):
        Scene.from_dict([1, 2])


def _square(side: float, walls: int = 4) -> dict[str, object]:
    """A closed square room of ``side`` metres, its south wall split into ``walls - 3`` pieces."""
    south = [{"start": [side * k / (walls - 3), 0], "end": [side * (k + 1) / (walls - 3), 0]} for k in range(walls - 3)]
    others = [{"start": [side, 0], "end": [side, side]}, {"start": [side, side], "end": [0, side]}, {"start": [0, side], "end": [0, 0]}]
    return {"walls": south + others, "sources": [{"position": [side - 1, 1], "sound": "telephone"}], "start": {"position": [1, 1]}}


@pytest.mark.parametrize(
    ("side", "walls", "words"),
    [
        (400.0, 4, r"walls span 400\.0 m, over the limit of 50 m \(MAX_EXTENT"),
        (10.0, 200, r"200 walls is over the limit of 64 \(MAX_WALLS"),
    ],
)
def test_scenes_too_large_are_refused_at_load_naming_the_limit(tmp_path: Path, side: float, walls: int, words: str) -> None:
    path = tmp_path / "big.json"
    path.write_text(json.dumps(_square(side, walls)))
    with pytest.raises(SceneError, match=words):
        load_scene(path)


def test_a_grid_over_its_cell_limit_is_refused_before_it_is_built() -> None:
    from avworld.sim.navigation import MAX_GRID_CELLS, NavGrid

    big = Scene.from_dict(_square(45.0))  # within MAX_EXTENT, but not at a 2.5 cm cell
    with pytest.raises(SceneError, match=rf"over the limit of {MAX_GRID_CELLS:,} \(MAX_GRID_CELLS"):
        NavGrid(big, 0.18, cell=0.025)
    assert Scene.from_dict(_square(49.0)).walls  # a large scene under every limit still loads


def test_procedural_scenes_stay_under_the_size_limits() -> None:
    from avworld.sim.scenes.procedural import generate_apartment
    from avworld.sim.scenes.scene import MAX_EXTENT, MAX_WALLS

    for seed in range(0, 400, 37):
        s = generate_apartment(seed)
        lo, hi = s.bounds()
        assert len(s.walls) <= MAX_WALLS / 2 and float(max(hi - lo)) <= MAX_EXTENT / 2
