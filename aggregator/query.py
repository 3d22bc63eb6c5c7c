"""Read-side logic over stored windows, pure (no I/O): counts bucketed by window/hour/day, line
and zone totals, and heatmap tiles merged into one grid.

Roll-ups are computed at query time from the per-window records (additive sums), so replicas
never contend on shared aggregate rows and a late, replayed window simply joins its bucket.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from aggregator.store import StoredMessage
from aggregator.validate import decode_tile

BUCKETS = {"hour": 3600.0, "day": 86400.0}


@dataclass
class CountsBucket:
    start: float
    end: float
    windows: int = 0
    frames: int = 0
    dropped: int = 0
    people_max: int = 0
    lines: dict[str, dict[str, int]] = field(default_factory=dict)
    zones: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Totals:
    windows: int
    lines: dict[str, dict[str, int]]
    zones: dict[str, dict[str, int]]


@dataclass(frozen=True)
class HeatmapGrid:
    cols: int
    rows: int
    tiles: int
    values: np.ndarray  # (rows, cols) person-seconds

    @property
    def total(self) -> float:
        return float(self.values.sum())


def _add(target: dict[str, dict[str, int]], name: str, values: dict[str, int]) -> None:
    entry = target.setdefault(name, {key: 0 for key in values})
    for key, value in values.items():
        entry[key] = entry.get(key, 0) + value


def bucket_counts(messages: list[StoredMessage], bucket: str) -> list[CountsBucket]:
    """Counts windows summed into buckets ("window": one per window, "hour", "day" in UTC)."""
    buckets: dict[float, CountsBucket] = {}
    for message in sorted(messages, key=lambda m: m.window):
        start, end = message.window
        if bucket in BUCKETS:
            size = BUCKETS[bucket]
            start = math.floor(start / size) * size
            end = start + size
        entry = buckets.setdefault(start, CountsBucket(start, end))
        body = message.body
        entry.windows += 1
        entry.frames += body["frames"]
        entry.dropped += body["dropped"]
        entry.people_max = max(entry.people_max, body["objects"].get("person", {}).get("max", 0))
        for name, line in body["lines"].items():
            _add(entry.lines, name, {"in": line["in"], "out": line["out"]})
        for name, zone in body["zones"].items():
            _add(entry.zones, name, {"entered": zone["entered"]})
    return [buckets[key] for key in sorted(buckets)]


def totals(messages: list[StoredMessage]) -> Totals:
    lines: dict[str, dict[str, int]] = {}
    zones: dict[str, dict[str, int]] = {}
    for message in messages:
        for name, line in message.body["lines"].items():
            _add(lines, name, {"in": line["in"], "out": line["out"]})
        for name, zone in message.body["zones"].items():
            _add(zones, name, {"entered": zone["entered"]})
    return Totals(len(messages), lines, zones)


def merge_heatmap(tiles: list[StoredMessage]) -> HeatmapGrid | None:
    """Sum the tiles into one grid in person-seconds; tiles of another grid size than the newest
    (a resolution change) are left out. None when there is no tile."""
    if not tiles:
        return None
    cols, rows = max(tiles, key=lambda m: m.window[1]).body["grid"]
    grid = np.zeros((rows, cols), dtype=np.float64)
    used = 0
    for message in tiles:
        body = message.body
        if list(body["grid"]) != [cols, rows]:
            continue
        width, height = body["tile_size"]
        tx, ty = body["tile"]
        cells = np.frombuffer(decode_tile(body), dtype="<u2").reshape(height, width) * float(body["scale"])
        x0, y0 = tx * width, ty * height
        h, w = min(height, rows - y0), min(width, cols - x0)
        grid[y0 : y0 + h, x0 : x0 + w] += cells[:h, :w]
        used += 1
    return HeatmapGrid(cols, rows, used, grid)
