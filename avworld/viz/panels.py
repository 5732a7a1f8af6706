"""One video frame per step: what the agent sees, where it is, what it hears, and what it did.

Layout, left to right at one height: the first-person view, optional imagined first-person views (one per
world model, each labelled), the top-down map, and the scrolling log-spectrograms of the left ear (top) and right ear
(bottom), newest sound at the right edge, low frequencies at the bottom. A caption line below gives the
step, action, reward and an optional note. Images are scaled by nearest neighbour, so pixels stay sharp.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

_VIRIDIS_KEYS = np.array([(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)], np.float64)
COLORMAP = (
    np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_VIRIDIS_KEYS)), _VIRIDIS_KEYS[:, c]) for c in range(3)], axis=-1)
    .round()
    .astype(np.uint8)
)
"""(256, 3) uint8 viridis-like lookup table: dark violet (low) through teal to yellow (high)."""
LABEL_RGB, LABEL_BACK_RGB = (255, 255, 255), (0, 0, 0)
CAPTION_BACK_RGB = (24, 24, 28)


@dataclass
class PanelConfig:
    """Sizes and scales of :func:`compose`'s frame."""

    height: int = 256
    """Pixel height of every panel (views are scaled to it, keeping their aspect ratio)."""
    spectrogram_width: int = 256
    spectrogram_columns: int = 375
    """STFT frames across the spectrogram panel: 3 s at 16 kHz with hop 128."""
    spectrogram_range: tuple[float, float] = (-11.5, 4.9)
    """Log-magnitudes mapped to the bottom and top of the colormap (the range of ``log_spectrogram`` by default)."""
    caption_height: int = 20

    def __post_init__(self) -> None:
        for name in ("height", "spectrogram_width", "spectrogram_columns", "caption_height"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name}: expected at least 2, got {getattr(self, name)!r}")
        lo, hi = self.spectrogram_range
        if not lo < hi:
            raise ValueError(f"spectrogram_range: expected (low, high) with low < high, got {self.spectrogram_range!r}")


def compose(
    rgb: np.ndarray,
    topdown: np.ndarray | None = None,
    spectrogram: np.ndarray | None = None,
    *,
    imagined: np.ndarray | Mapping[str, np.ndarray] | None = None,
    step: int | None = None,
    action: str | None = None,
    reward: float | None = None,
    note: str | None = None,
    config: PanelConfig | None = None,
) -> np.ndarray:
    """One frame, uint8 (height + caption_height, W, 3).

    ``rgb``: uint8 (h, w, 3) the real first-person view; ``imagined``: one such view (labelled "imagined") or several,
    label → view, shown in order right of the real one; ``topdown``: uint8 (h', w', 3) map;
    ``spectrogram``: (2, F, T) log-magnitudes of the left and right ear, the last column the newest (only the
    last ``spectrogram_columns`` are shown; fewer leave the left side blank, as at an episode's start).
    ``note`` ends the caption (e.g. the imagined reward, or which world is shown).
    """
    config = config or PanelConfig()
    h = config.height
    panels = [_scale_to_height(_check_image(rgb, "rgb"), h)]
    labels: list[tuple[str, int, int]] = []  # (text, x, y) at panels' top-left corners
    views = {"imagined": imagined} if isinstance(imagined, np.ndarray) else dict(imagined or {})
    if views:
        labels.append(("real", 0, 0))
    for label, view in views.items():
        labels.append((label, sum(p.shape[1] for p in panels), 0))
        panels.append(_scale_to_height(_check_image(view, f"imagined[{label!r}]" if len(views) > 1 else "imagined"), h))
    if topdown is not None:
        panels.append(_scale_to_height(_check_image(topdown, "topdown"), h))
    if spectrogram is not None:
        x = sum(p.shape[1] for p in panels)
        labels += [("L", x, 0), ("R", x, h // 2)]
        panels.append(spectrogram_image(spectrogram, h, config.spectrogram_width, config.spectrogram_columns, config.spectrogram_range))
    views = np.concatenate(panels, axis=1)  # (h, W, 3)
    frame = np.empty((h + config.caption_height, views.shape[1], 3), np.uint8)
    frame[:h] = views
    frame[h:] = CAPTION_BACK_RGB
    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    for text, x, y in labels:
        box = draw.textbbox((x + 4, y + 4), text)
        draw.rectangle((box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2), fill=LABEL_BACK_RGB)
        draw.text((x + 4, y + 4), text, fill=LABEL_RGB)
    caption = "   ".join(
        part
        for part in (
            f"step {step}" if step is not None else "",
            f"action {action}" if action is not None else "",
            f"reward {reward:+.3f}" if reward is not None else "",
            note or "",
        )
        if part
    )
    if caption:
        top, bottom = draw.textbbox((0, 0), caption)[1::2]
        draw.text((6, h + (config.caption_height - top - bottom) // 2), caption, fill=LABEL_RGB)
    return np.asarray(image)


def spectrogram_image(spectrogram: np.ndarray, height: int, width: int, columns: int, value_range: tuple[float, float]) -> np.ndarray:
    """Colour image uint8 (height, width, 3) of ``spectrogram`` (2, F, T): left ear on top, right below, each with
    low frequencies at the bottom; the last ``columns`` STFT frames span the width, right-aligned."""
    spec = np.asarray(spectrogram)
    if spec.ndim != 3 or spec.shape[0] != 2 or spec.shape[1] < 1 or not np.issubdtype(spec.dtype, np.number):
        raise ValueError(f"spectrogram: expected a real array (2, F, T) (left ear, right ear), got shape {spec.shape}")
    lo, hi = value_range
    n_freq = spec.shape[1]
    window = np.full((2, n_freq, columns), lo, np.float32)  # (2, F, columns)
    shown = spec[:, :, -columns:] if spec.shape[2] else spec[:, :, :0]
    window[:, :, columns - shown.shape[2] :] = shown
    r = np.arange(height) * 2
    ear = r // height  # (height,) 0 top half, 1 bottom half
    freq = n_freq - 1 - ((r % height) * n_freq) // height  # (height,) high frequencies first
    cols = (np.arange(width) * columns) // width  # (width,)
    values = window[ear[:, None], freq[:, None], cols[None, :]]  # (height, width)
    level = np.clip((values - lo) / (hi - lo), 0.0, 1.0)
    image = COLORMAP[np.rint(level * 255).astype(np.intp)]
    image[height // 2] = LABEL_BACK_RGB  # a line between the ears
    return image


def _scale_to_height(image: np.ndarray, height: int) -> np.ndarray:
    """``image`` (h, w, 3) scaled by nearest neighbour to (height, round(w * height / h), 3)."""
    h, w = image.shape[:2]
    width = max(1, round(w * height / h))
    rows = (np.arange(height) * h) // height
    cols = (np.arange(width) * w) // width
    return image[rows[:, None], cols[None, :]]


def _check_image(image: np.ndarray, name: str) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        shape = image.shape if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"{name}: expected an image (h, w, 3), got {shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"{name}: expected dtype uint8, got {image.dtype}")
    return image
