"""Videos with sound and their frames: what is written is what a player finds, left ear on the left."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from avworld.viz.panels import COLORMAP, PanelConfig, compose, spectrogram_image
from avworld.viz.video import probe, write_video

SR = 16000


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "avworld.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def frames(t: int = 12, h: int = 48, w: int = 64) -> np.ndarray:
    """(t, h, w, 3) uint8: a bright square moving right on a dark ground."""
    out = np.full((t, h, w, 3), 30, np.uint8)
    for i in range(t):
        out[i, h // 4 : h // 2, i : i + 8] = 220
    return out


def tone(seconds: float, ear: int, hz: float = 1000.0) -> np.ndarray:
    """(2, S) float32: a sine in channel ``ear`` only."""
    t = np.arange(round(seconds * SR)) / SR
    audio = np.zeros((2, t.size), np.float32)
    audio[ear] = 0.5 * np.sin(2 * np.pi * hz * t)
    return audio


def decode_audio(path: Path) -> np.ndarray:
    """The audio track of ``path`` decoded back to (2, S) float32."""
    with av.open(str(path)) as container:
        return np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)


@pytest.mark.parametrize("audio_seconds", [0.6, 1.0, 1.7])  # short (padded), exact, long (trimmed)
def test_write_video_then_probe(tmp_path: Path, audio_seconds: float) -> None:
    path = tmp_path / "clip.mp4"
    write_video(path, frames(12, 47, 63), fps=12, audio=tone(audio_seconds, 0), sample_rate=SR)
    info = probe(path)
    video, audio = info["video"], info["audio"]
    assert video["codec"] == "h264" and video["frames"] == 12
    assert (video["height"], video["width"]) == (48, 64)  # padded to even sizes for yuv420p
    assert video["fps"] == pytest.approx(12) and video["duration"] == pytest.approx(1.0, abs=0.01)
    assert audio["codec"] == "aac" and audio["channels"] == 2 and audio["sample_rate"] == SR
    assert audio["duration"] == pytest.approx(1.0, abs=0.1)
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]  # no temporary file left behind


@pytest.mark.parametrize("ear", [0, 1])
def test_each_ear_stays_on_its_side(tmp_path: Path, ear: int) -> None:
    path = tmp_path / "tone.mp4"
    write_video(path, frames(8), fps=4, audio=tone(2.0, ear))
    decoded = decode_audio(path)  # (2, S)
    rms = np.sqrt(np.mean(decoded**2, axis=1))
    assert decoded.shape[0] == 2
    assert rms[ear] == pytest.approx(0.5 / np.sqrt(2), rel=0.1)
    assert rms[1 - ear] < 0.01 * rms[ear]


def test_silent_video_and_streamed_frames(tmp_path: Path) -> None:
    path = tmp_path / "silent.mkv"
    write_video(path, (f for f in frames(10)), fps=5.0)  # frames from a generator, no audio
    info = probe(path)
    assert info["audio"] is None
    assert info["video"]["frames"] == 10 and info["video"]["duration"] == pytest.approx(2.0, abs=0.01)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"frames": frames().astype(np.float32)}, "frames"),
        ({"frames": frames()[0]}, "frames"),  # one image, not a sequence of them
        ({"frames": frames()[..., :2]}, "frames"),
        ({"frames": np.zeros((0, 8, 8, 3), np.uint8)}, "frames"),
        ({"frames": iter([frames()[0], frames(h=32)[0]])}, "frames"),  # sizes change midway
        ({"fps": 0}, "fps"),
        ({"fps": float("nan")}, "fps"),
        ({"audio": tone(1.0, 0)[:1]}, "audio"),
        ({"audio": tone(1.0, 0).T}, "audio"),
        ({"audio": (tone(1.0, 0) * 1000).astype(np.int16)}, "audio"),
        ({"audio": np.full((2, 100), np.nan, np.float32)}, "audio"),
        ({"sample_rate": 12345}, "sample_rate"),
        ({"path": "clip.avi"}, "path"),
    ],
)
def test_bad_inputs_name_the_argument(tmp_path: Path, kwargs: dict, name: str) -> None:
    args = {"frames": frames(), "fps": 12.0, "audio": tone(1.0, 0), "sample_rate": SR, **kwargs}
    with pytest.raises(ValueError, match=rf"^{name}:"):
        write_video(tmp_path / args.pop("path", "clip.mp4"), **args)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_compose_shapes() -> None:
    rgb = np.zeros((64, 48, 3), np.uint8)
    top = np.zeros((100, 100, 3), np.uint8)
    spec = np.zeros((2, 129, 40), np.float32)
    cfg = PanelConfig(height=128, spectrogram_width=96, caption_height=16)
    assert compose(rgb, config=cfg).shape == (144, 96, 3)
    full = compose(rgb, top, spec, imagined=rgb, step=3, action="FORWARD", reward=0.25, config=cfg)
    assert full.shape == (144, 96 + 96 + 128 + 96, 3) and full.dtype == np.uint8
    assert compose(rgb, top, spec[:, :, :0], step=0, config=cfg).shape == (144, 96 + 128 + 96, 3)  # no sound yet
    assert compose(rgb, top, spec).shape == (256 + 20, 192 + 256 + 256, 3)  # the defaults


def test_compose_puts_several_imagined_views_in_order_right_of_the_real_one() -> None:
    cfg = PanelConfig(height=64, spectrogram_width=32, caption_height=16)
    colours = {"real": (200, 0, 0), "a": (0, 200, 0), "b": (0, 0, 200)}
    views = {name: np.full((32, 32, 3), colour, np.uint8) for name, colour in colours.items()}
    top = np.zeros((50, 50, 3), np.uint8)
    frame = compose(views["real"], top, np.zeros((2, 129, 4), np.float32), imagined={"a": views["a"], "b": views["b"]}, config=cfg)
    assert frame.shape == (64 + 16, 3 * 64 + 64 + 32, 3)
    for i, name in enumerate(("real", "a", "b")):  # below each panel's label, the panel's own colour
        assert (frame[48, i * 64 : (i + 1) * 64] == views[name][0, 0]).all(), name
    with pytest.raises(ValueError, match=r"^imagined\['b'\]:"):
        compose(views["real"], imagined={"a": views["a"], "b": np.zeros((8, 8), np.uint8)})


def test_compose_rejects_bad_views() -> None:
    with pytest.raises(ValueError, match=r"^rgb:"):
        compose(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match=r"^topdown:"):
        compose(np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match=r"^spectrogram:"):
        compose(np.zeros((64, 64, 3), np.uint8), spectrogram=np.zeros((129, 40), np.float32))


def test_spectrogram_image_puts_left_on_top_low_at_bottom_and_new_at_right() -> None:
    lo, hi = -10.0, 0.0
    spec = np.full((2, 64, 10), lo, np.float32)
    spec[0, :8, -3:] = hi  # left ear, lowest frequencies, newest columns: loud
    img = spectrogram_image(spec, height=64, width=40, columns=20, value_range=(lo, hi))  # (64, 40, 3)
    loud = (img == COLORMAP[255]).all(axis=-1)
    rows, cols = np.nonzero(loud)
    assert rows.min() >= 24 and rows.max() < 32  # the bottom of the top (left-ear) half
    assert cols.min() >= 34 and cols.max() == 39  # the right edge
    assert (img[:, :30] == COLORMAP[0]).all(axis=-1)[np.arange(64) != 32].all()  # padding and quiet: the floor colour


def test_cli_viz_writes_a_video_with_sound(tmp_path: Path) -> None:
    proc = run_cli("viz", "agent=random", "max_steps=8", f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / "rollout.mp4"
    assert f"video written to {path}" in proc.stdout
    info = probe(path)
    video, audio = info["video"], info["audio"]
    frames_per_step = 3  # 12 fps over 0.25 s steps
    assert video["frames"] % frames_per_step == 0 and 2 <= video["frames"] // frames_per_step <= 9  # the start + 1..8 steps
    assert (video["height"], video["width"]) == (276, 768)
    assert video["duration"] == pytest.approx(video["frames"] / 12, abs=0.01)
    assert audio["channels"] == 2 and audio["sample_rate"] == SR
    assert audio["duration"] == pytest.approx(video["duration"], abs=0.1)


def test_cli_viz_takes_what_as_a_word(tmp_path: Path) -> None:
    """`avworld viz WHAT ...` names the job (only `rollout`): an unknown one is refused by name."""
    proc = run_cli("viz", "movie", "agent=random", f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode != 0
    assert "unknown job 'movie'; jobs: rollout" in proc.stderr
