"""The heatmap as a PNG: person-seconds in a perceptual colour map (inferno, transparent where
nobody stood) over the camera's latest snapshot, with a colour bar as the legend."""

from __future__ import annotations

import io

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from aggregator.query import HeatmapGrid


def heatmap_png(grid: HeatmapGrid | None, snapshot_jpeg: bytes | None, title: str) -> bytes:
    if snapshot_jpeg is not None:
        background = np.asarray(Image.open(io.BytesIO(snapshot_jpeg)).convert("RGB"))
        height, width = background.shape[:2]
    else:
        background = None
        width, height = (grid.cols * 10, grid.rows * 10) if grid else (640, 360)
    figure = Figure(figsize=(8, 8 * height / width + 0.6), dpi=100)
    axes = figure.add_axes((0.02, 0.08, 0.84, 0.84))
    axes.set_axis_off()
    axes.set_title(title, fontsize=10)
    extent = (0, width, height, 0)
    if background is not None:
        axes.imshow(background, extent=extent)
    else:
        axes.imshow(np.zeros((2, 2)), cmap="gray", extent=extent, vmin=0, vmax=1)
    if grid is not None and grid.total > 0:
        values = np.ma.masked_less_equal(grid.values, 0)
        image = axes.imshow(values, cmap="inferno", alpha=0.65, extent=extent, interpolation="bilinear")
        bar = figure.colorbar(image, cax=figure.add_axes((0.88, 0.1, 0.03, 0.8)))
        bar.set_label("person-seconds per cell")
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()
