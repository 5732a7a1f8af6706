"""Measured head-related transfer functions (HRTFs) from a SOFA file, as octave-band gains per direction.

The default head is Brown & Duda's sphere (:mod:`avworld.sim.acoustics.binaural`): it cannot tell front
from back. A measured HRTF (``sim.acoustics.hrtf=PATH``, AES69 SOFA, convention
``SimpleFreeFieldHRIR``, read with `sofar <https://sofar.readthedocs.io>`_) replaces the
sphere's shadow for the direct sound and every image source: each arrival takes the band
gains of the measured direction nearest to it (largest cosine), per ear. Delays stay
geometric (the ears' distances to the arrival), so interaural time differences follow the
head's ``ear_distance`` either way.

Gains are the RMS magnitude of each ear's transfer function over the octave around each
band centre, divided by the mean magnitude over all directions and both ears below
500 Hz, where a head barely shadows: so, as with the sphere, a low frequency reaches each
ear with gain about 1 and the file's arbitrary measurement level does not matter.

Coordinates as SOFA defines them: azimuth counter-clockwise from the front (90° is left),
elevation up from the horizontal plane; avworld's head faces its yaw with the left ear at +90°.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import cache

import numpy as np

LOW_HZ = 500.0
"""Below this, a head barely shadows: the band the gains are normalised to."""


class HRTFError(ValueError):
    """A SOFA file cannot be used; ``str(err)`` starts with the path (and the field)."""

    def __init__(self, path: str | os.PathLike, message: str) -> None:
        self.path = os.fspath(path)
        super().__init__(f"{self.path}: {message}")


@dataclass(eq=False)
class HRTF:
    """Per measured direction, the HRIR pair of a SOFA file and its directions as unit vectors in the head's frame.

    ``directions`` (M, 3): x to the front, y to the left, z up. ``irs`` (M, 2, N): ear 0 left, 1 right. ``fs``: their rate.
    """

    path: str
    directions: np.ndarray
    irs: np.ndarray
    fs: float
    _bands: dict[tuple[float, ...], np.ndarray] = field(default_factory=dict, repr=False)

    def band_gains(self, centers: np.ndarray) -> np.ndarray:
        """Gains (M, 2, B) at octave bands of ``centers`` (B,) Hz, normalised as the module docstring says."""
        key = tuple(float(c) for c in centers)
        if key not in self._bands:
            n_fft = max(self.irs.shape[-1], 2 ** math.ceil(math.log2(self.fs / 20)))  # ≤ 20 Hz bins: the 125 Hz octave has some
            mag = np.abs(np.fft.rfft(self.irs, n_fft, axis=-1))  # (M, 2, F)
            f = np.fft.rfftfreq(n_fft, 1 / self.fs)
            low = mag[..., (f > 0) & (f < LOW_HZ)].mean()
            gains = []
            for c in key:
                sel = (f >= c / math.sqrt(2)) & (f < c * math.sqrt(2))
                gains.append(np.sqrt((mag[..., sel] ** 2).mean(axis=-1)) if sel.any() else np.full(mag.shape[:2], low))
            self._bands[key] = np.stack(gains, axis=-1) / max(low, 1e-12)
        return self._bands[key]

    def gains(self, directions: np.ndarray, centers: np.ndarray) -> np.ndarray:
        """Band gains (2, K, B) of arrivals from ``directions`` (K, 3) in the head's frame (any length), nearest measured."""
        unit = directions / np.maximum(np.linalg.norm(directions, axis=-1, keepdims=True), 1e-12)
        nearest = np.argmax(unit @ self.directions.T, axis=-1)  # (K,)
        return self.band_gains(centers)[nearest].transpose(1, 0, 2)


@cache
def load_hrtf(path: str) -> HRTF:
    """Read and check a SOFA file of HRIRs; :class:`HRTFError` names the file and the field that is wrong."""
    if not os.path.isfile(path):
        raise HRTFError(path, "no such file")
    try:
        import sofar
    except ImportError:
        raise HRTFError(path, "reading SOFA files needs the sofar package: pip install 'avworld[hrtf]'") from None
    try:
        sofa = sofar.read_sofa(path, verify=False, verbose=False)
    except Exception as err:  # sofar and netCDF4 raise many kinds; all mean the same to the user
        raise HRTFError(path, f"not a readable SOFA file ({type(err).__name__}: {err})") from None
    try:
        irs = np.asarray(sofa.Data_IR, float)
        positions = np.asarray(sofa.SourcePosition, float)
        kind = str(sofa.SourcePosition_Type)
        fs = float(np.asarray(sofa.Data_SamplingRate, float).ravel()[0])
    except AttributeError as err:
        raise HRTFError(path, f"missing field ({err})") from None
    if irs.ndim != 3 or irs.shape[1] != 2 or irs.shape[2] < 8:
        raise HRTFError(path, f"Data.IR: expected (measurements, 2 ears, ≥ 8 samples), got {irs.shape}")
    if not np.isfinite(irs).all() or not np.abs(irs).max() > 0:
        raise HRTFError(path, "Data.IR: holds non-finite values or only zeros")
    if positions.ndim != 2 or positions.shape != (irs.shape[0], 3) or not np.isfinite(positions).all():
        raise HRTFError(path, f"SourcePosition: expected finite ({irs.shape[0]}, 3) to match Data.IR, got {positions.shape}")
    if not (math.isfinite(fs) and fs >= 8000):
        raise HRTFError(path, f"Data.SamplingRate: expected a rate ≥ 8000 Hz, got {fs}")
    if kind == "spherical":
        az, el = np.radians(positions[:, 0]), np.radians(positions[:, 1])
        directions = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)
    elif kind == "cartesian":
        directions = positions / np.maximum(np.linalg.norm(positions, axis=-1, keepdims=True), 1e-12)
    else:
        raise HRTFError(path, f"SourcePosition_Type: expected 'spherical' or 'cartesian', got {kind!r}")
    return HRTF(path, directions, irs, fs)


def head_frame(vectors: np.ndarray, yaw: float) -> np.ndarray:
    """World vectors (..., 3) in the frame of a head facing ``yaw``: x front, y left, z up."""
    c, s = math.cos(yaw), math.sin(yaw)
    x, y = vectors[..., 0], vectors[..., 1]
    return np.stack([c * x + s * y, -s * x + c * y, vectors[..., 2]], axis=-1)
