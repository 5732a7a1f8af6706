"""Videos with binaural sound: H.264 frames and AAC stereo audio in one file, through PyAV (which ships FFmpeg).

The audio track lasts exactly as long as the video (``T / fps`` seconds), so sound and picture stay in step
in any player; channel 0 of the audio is the left ear.
"""

from __future__ import annotations

import itertools
import math
import numbers
import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from avworld.files import replaced_atomically

CONTAINERS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}
AAC_SAMPLE_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
AUDIO_CHUNK = 1024
"""Samples per audio frame handed to the encoder (AAC's frame size)."""


def write_video(
    path: str | os.PathLike[str],
    frames: np.ndarray | Iterable[np.ndarray],
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
) -> None:
    """Write ``frames`` uint8 (T, H, W, 3) at ``fps`` as H.264 (yuv420p), with ``audio`` float32 (2, S) as AAC stereo.

    ``frames`` may also be an iterable of (H, W, 3) frames, encoded as they come (a long video need not fit in
    memory). H and W are padded to even sizes by repeating the last row/column (yuv420p needs them even). The
    audio is clipped to [-1, 1] and zero-padded or trimmed to ``T / fps`` seconds. The container follows the
    suffix of ``path`` (.mp4, .mov or .mkv); the file appears whole or not at all (written beside it, then renamed).
    """
    path = Path(path)
    if path.suffix.lower() not in CONTAINERS:
        raise ValueError(f"path: expected a {', '.join(CONTAINERS)} file, got {str(path)!r}")
    if isinstance(frames, np.ndarray) and (frames.ndim != 4 or frames.dtype != np.uint8):
        raise ValueError(f"frames: expected uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps: expected a positive finite number, got {fps!r}")
    if audio is not None:
        audio = _check_audio(audio, sample_rate)
    rate = (fps if isinstance(fps, Fraction) else Fraction(float(fps))).limit_denominator(1001)
    pictures = iter(frames)
    first = next(pictures, None)
    if first is None:
        raise ValueError("frames: expected at least one frame, got none")
    h, w, _ = shape = _check_frame(first, 0, None)

    with replaced_atomically(path, suffix=path.suffix) as tmp:  # beside it: an atomic rename
        with av.open(str(tmp), mode="w", format=CONTAINERS[path.suffix.lower()]) as container:
            video = container.add_stream("h264", rate=rate)
            video.width, video.height, video.pix_fmt = w + w % 2, h + h % 2, "yuv420p"
            sound = container.add_stream("aac", rate=sample_rate, layout="stereo") if audio is not None else None
            count = 0
            for frame in itertools.chain([first], pictures):
                _check_frame(frame, count, shape)
                if h % 2 or w % 2:
                    frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
                picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                picture.pts = count
                container.mux(video.encode(picture))
                count += 1
            container.mux(video.encode())
            if sound is not None and audio is not None:
                audio = _fit(audio, round(count / rate * sample_rate))  # (2, samples of T / fps seconds)
                for start in range(0, audio.shape[1], AUDIO_CHUNK):
                    samples = np.ascontiguousarray(audio[:, start : start + AUDIO_CHUNK])  # (2, ≤ AUDIO_CHUNK)
                    chunk = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
                    chunk.sample_rate, chunk.pts = sample_rate, start
                    container.mux(sound.encode(chunk))
                container.mux(sound.encode())


def probe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What a video file holds: ``{"video": {codec, frames, fps, width, height, duration}, "audio": {codec, channels,
    sample_rate, duration} or None}``, durations in seconds (the first stream of each kind)."""
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"path: {str(path)!r} holds no video stream")
        v = container.streams.video[0]
        frames = v.frames or sum(1 for p in container.demux(v) if p.size)
        info: dict[str, Any] = {
            "video": {
                "codec": v.codec_context.name,
                "frames": frames,
                "fps": float(v.average_rate) if v.average_rate else None,
                "width": v.codec_context.width,
                "height": v.codec_context.height,
                "duration": _seconds(v, container),
            },
            "audio": None,
        }
        if container.streams.audio:
            a = container.streams.audio[0]
            info["audio"] = {
                "codec": a.codec_context.name,
                "channels": len(a.codec_context.layout.channels),
                "sample_rate": a.codec_context.sample_rate,
                "duration": _seconds(a, container),
            }
    return info


def first_frame(path: str | os.PathLike[str]) -> np.ndarray:
    """The first decodable frame of the video in ``path``: uint8 (H, W, 3) RGB."""
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"path: {str(path)!r} holds no video stream")
        for frame in container.decode(video=0):
            return frame.to_ndarray(format="rgb24")
    raise ValueError(f"path: {str(path)!r} holds no decodable frame")


def _seconds(stream: Any, container: Any) -> float:
    """Duration of ``stream`` in seconds, else of the whole container."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return container.duration / av.time_base


def _check_frame(frame: Any, index: int, shape: tuple[int, ...] | None) -> tuple[int, ...]:
    """The shape of ``frame``, an image uint8 (H, W, 3) of ``shape`` (any H, W ≥ 1 when None)."""
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[-1] != 3 or 0 in frame.shape:
        raise ValueError(f"frames: frame {index}: expected an image (H, W, 3) with H, W ≥ 1, got {_describe(frame)}")
    if frame.dtype != np.uint8:
        raise ValueError(f"frames: frame {index}: expected dtype uint8, got {frame.dtype}")
    if shape is not None and frame.shape != shape:
        raise ValueError(f"frames: frame {index} has shape {frame.shape}, the first frame {shape}")
    return frame.shape


def _check_audio(audio: Any, sample_rate: int) -> np.ndarray:
    if not isinstance(audio, np.ndarray) or audio.ndim != 2 or audio.shape[0] != 2:
        raise ValueError(f"audio: expected an array (2, S) (channel 0 the left ear), got {_describe(audio)}")
    if not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(f"audio: expected a float dtype (float32 in [-1, 1]), got {audio.dtype}")
    if not np.isfinite(audio).all():
        raise ValueError("audio: holds NaN or infinite samples")
    if sample_rate not in AAC_SAMPLE_RATES:
        raise ValueError(f"sample_rate: AAC takes one of {', '.join(map(str, AAC_SAMPLE_RATES))} Hz, got {sample_rate!r}")
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def _fit(audio: np.ndarray, samples: int) -> np.ndarray:
    """``audio`` (2, S) zero-padded or trimmed to (2, samples)."""
    return np.pad(audio[:, :samples], ((0, 0), (0, max(0, samples - audio.shape[1]))))


def _describe(x: Any) -> str:
    return f"shape {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
