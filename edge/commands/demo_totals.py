"""The demo's window sink: running totals per camera (line crossings, zone entries, analysed
frames, the summed heatmap) for its summary. It keeps sums, not windows, so its size does not
grow with the run's length; it is read once the pipeline has stopped."""

from dataclasses import dataclass, field
from typing import Dict, Optional

import numpy as np

from contract import KIND_COUNTS, KIND_HEATMAP, sum_tiles
from edge.runtime.analysis import ClosedWindow


@dataclass
class LineTotal:
    count_in: int = 0
    count_out: int = 0


@dataclass
class CameraTotals:
    frames: int = 0  # analysed frames in the closed counts windows
    counts_windows: int = 0
    lines: Dict[str, LineTotal] = field(default_factory=dict)
    zone_entries: Dict[str, int] = field(default_factory=dict)
    heatmap: Optional[np.ndarray] = None  # (rows, cols) person-seconds, None before a tile

    def line_counts(self) -> Dict[str, Dict[str, int]]:
        """{line_id: {"in": n, "out": n}}, as the counts bodies and the ground truth spell it."""
        return {line_id: {"in": t.count_in, "out": t.count_out} for line_id, t in self.lines.items()}


class WindowTotals:
    """A window sink summing what the demo's summary reports."""

    def __init__(self) -> None:
        self.cameras: Dict[str, CameraTotals] = {}

    def camera(self, camera_id: str) -> CameraTotals:
        return self.cameras.get(camera_id, CameraTotals())

    def __call__(self, closed: ClosedWindow) -> None:
        totals = self.cameras.setdefault(closed.camera, CameraTotals())
        body = closed.body
        if closed.kind == KIND_COUNTS:
            totals.frames += int(body["frames"])
            totals.counts_windows += 1
            for line_id, counts in body["lines"].items():
                line = totals.lines.setdefault(line_id, LineTotal())
                line.count_in += int(counts["in"])
                line.count_out += int(counts["out"])
            for zone_id, counts in body["zones"].items():
                totals.zone_entries[zone_id] = totals.zone_entries.get(zone_id, 0) + int(counts["entered"])
        elif closed.kind == KIND_HEATMAP:
            tile = sum_tiles([body]).to_numpy()
            totals.heatmap = tile if totals.heatmap is None else totals.heatmap + tile
