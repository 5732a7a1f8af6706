"""Plots for reports, drawn with matplotlib's Agg renderer straight to PNG bytes (no window, no pyplot state)."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping

from matplotlib.figure import Figure

PLOT_SIZE = (5.0, 3.2)
"""Figure size in inches; at :data:`PLOT_DPI` a plot is 500 × 320 pixels."""
PLOT_DPI = 100


def horizon_plot(values: Mapping[str, Mapping[int, float | None]], metric: str, ylabel: str | None = None) -> bytes:
    """A PNG of ``metric`` against the prediction horizon, one line per model.

    ``values``: {model: {horizon (steps): value}}; None or NaN values are left out, and a model with no value at all
    draws no line. The horizon axis is logarithmic (base 2) when the horizons span more than a factor of 4.
    """
    if not values:
        raise ValueError("values: expected at least one model, got none")
    horizons = sorted({int(h) for per in values.values() for h in per})
    if not horizons or horizons[0] < 1:
        raise ValueError(f"values: expected horizons ≥ 1, got {horizons}")
    figure = Figure(figsize=PLOT_SIZE, dpi=PLOT_DPI, layout="constrained")
    axes = figure.add_subplot()
    for model, per in values.items():
        points = sorted((int(h), float(v)) for h, v in per.items() if v is not None and math.isfinite(float(v)))
        if points:
            xs, ys = zip(*points, strict=True)
            axes.plot(xs, ys, marker="o", label=model)
    if horizons[-1] > 4 * horizons[0]:
        axes.set_xscale("log", base=2)
    axes.set_xticks(horizons, [str(h) for h in horizons])
    axes.set_xlabel("horizon (imagined steps)")
    axes.set_ylabel(ylabel or metric)
    axes.set_title(metric)
    axes.grid(alpha=0.3)
    if axes.get_lines():
        axes.legend(fontsize="small")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
