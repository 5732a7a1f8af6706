"""Surface materials: how a surface looks (colour, texture) and how it sounds.

Every surface of a scene (wall, floor, ceiling, furniture) names one material
of :data:`MATERIALS`. The renderer uses the colour and the texture pattern;
the acoustics use ``acoustic``, a key of pyroomacoustics' material database
(absorption and scattering per octave band).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TEXTURE_PX_PER_M = 32
"""Texture resolution: texels per metre. A texture tile covers ``TILE_M`` metres."""
TILE_M = 2.0
TILE_PX = int(TEXTURE_PX_PER_M * TILE_M)


@dataclass(frozen=True)
class Material:
    """A named surface material."""

    name: str
    color: tuple[int, int, int]
    pattern: str
    acoustic: str
    """Key of pyroomacoustics' absorption table."""
    scattering: str | float = 0.05
    """Key of pyroomacoustics' scattering table, or a flat coefficient (smooth surfaces scatter little)."""


MATERIALS: dict[str, Material] = {
    m.name: m
    for m in (
        Material("plaster", (214, 204, 186), "plaster", "rough_lime_wash"),
        Material("painted", (170, 190, 205), "plaster", "plasterboard"),
        Material("brick", (160, 82, 58), "brick", "brickwork"),
        Material("concrete", (150, 150, 146), "speckle", "rough_concrete"),
        Material("wood_panel", (150, 105, 66), "planks_vertical", "wooden_lining"),
        Material("tiles", (205, 220, 225), "tiles", "ceramic_tiles"),
        Material("glass", (175, 210, 225), "glass", "glass_window"),
        Material("curtain", (120, 40, 60), "stripes", "curtains_velvet", 0.2),
        Material("acoustic_panel", (80, 90, 110), "grid", "panel_fabric_covered_8pcf"),
        Material("wood_floor", (165, 118, 72), "planks", "wood_16mm"),
        Material("carpet", (110, 120, 90), "speckle", "carpet_cotton"),
        Material("linoleum", (190, 180, 150), "tiles", "linoleum_on_concrete"),
        Material("marble", (225, 222, 215), "marble", "marble_floor"),
        Material("ceiling_plaster", (235, 235, 230), "plaster", "ceiling_plasterboard"),
        Material("ceiling_tile", (225, 225, 215), "grid", "ceiling_fissured_tile"),
        Material("fabric", (90, 100, 150), "speckle", "chairs_upholstered_cloth", "theatre_audience"),
        Material("leather", (95, 60, 40), "plaster", "chairs_upholstered_leather", "theatre_audience"),
        Material("wood", (140, 95, 55), "planks", "wood_16mm", "classroom_tables"),
        Material("metal", (170, 175, 180), "stripes", "hard_surface"),
    )
}

WALL_MATERIALS = ("plaster", "painted", "brick", "concrete", "wood_panel", "tiles", "glass", "curtain", "acoustic_panel")
FLOOR_MATERIALS = ("wood_floor", "carpet", "linoleum", "marble", "tiles", "concrete")
CEILING_MATERIALS = ("ceiling_plaster", "ceiling_tile", "plaster")


def _pattern(kind: str) -> np.ndarray:
    """Brightness multiplier of one texture tile, shape (TILE_PX, TILE_PX), rows = height (v), cols = u.

    Deterministic on every machine: built from a fixed-seed PCG64 stream.
    """
    n = TILE_PX
    rng = np.random.default_rng(abs(hash_name(kind)))
    v, u = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    noise = rng.random((n, n))
    px = TEXTURE_PX_PER_M
    if kind == "plaster":
        out = 0.93 + 0.07 * noise
    elif kind == "speckle":
        out = 0.8 + 0.25 * (noise > 0.7) + 0.05 * noise
    elif kind == "brick":
        course = px // 4  # one course of bricks every 25 cm
        row = v // course
        shift = (row % 2) * (px // 4)
        mortar = ((v % course) < 2) | (((u + shift) % (px // 2)) < 2)
        tone = rng.random(n)[(row * 7 + (u + shift) // (px // 2)) % n]
        out = np.where(mortar, 1.35, 0.8 + 0.25 * tone) + 0.04 * noise
    elif kind in ("planks", "planks_vertical"):
        across = u if kind == "planks_vertical" else v
        along = v if kind == "planks_vertical" else u
        width = px // 5
        plank = across // width
        seam = (across % width) == 0
        grain = 0.06 * np.sin(along * 0.9 + plank * 1.7) + 0.08 * rng.random(n)[plank % n]
        out = np.where(seam, 0.6, 0.9 + grain)
    elif kind == "tiles":
        grout = ((u % (px // 3)) < 1) | ((v % (px // 3)) < 1)
        out = np.where(grout, 0.7, 1.0 + 0.03 * noise)
    elif kind == "grid":
        line = ((u % (px // 2)) < 2) | ((v % (px // 2)) < 2)
        out = np.where(line, 0.75, 0.98 + 0.04 * noise)
    elif kind == "stripes":
        out = 0.85 + 0.15 * (np.sin(u * 2 * np.pi / (px / 5)) > 0) + 0.03 * noise
    elif kind == "glass":
        out = 0.95 + 0.15 * (((u + v) % px) < px // 8)
    elif kind == "marble":
        out = 0.92 + 0.08 * np.sin((u + 0.6 * v) * 0.35 + 3 * noise)
    else:
        raise ValueError(f"unknown texture pattern {kind!r}")
    return out.astype(np.float32)


def hash_name(name: str) -> int:
    """A stable (process-independent) integer hash of a string."""
    h = 2166136261
    for ch in name.encode():
        h = ((h ^ ch) * 16777619) & 0xFFFFFFFF
    return h


_PATTERNS: dict[str, np.ndarray] = {}


def texture(material: str, color: tuple[int, int, int] | None = None) -> np.ndarray:
    """RGB texture tile of a material, uint8 (TILE_PX, TILE_PX, 3), tinted by ``color`` if given."""
    mat = MATERIALS[material]
    if mat.pattern not in _PATTERNS:
        _PATTERNS[mat.pattern] = _pattern(mat.pattern)
    base = np.asarray(color if color is not None else mat.color, dtype=np.float32)
    return np.clip(_PATTERNS[mat.pattern][..., None] * base, 0, 255).astype(np.uint8)
