"""People analytics per camera (pure: no I/O, no clock; time is passed in with every frame).

`CameraAnalytics` is fed, for every processed frame, the confirmed tracks with the frame's UNIX
time, the seconds that frame stands for (frame-skip included) and the frame size. It keeps:

- occupancy per class: now / max / time-weighted mean over the window, unique confirmed tracks;
- line crossings with direction, once per track per crossing (see `LineCounter`);
- zones: occupancy, entries, dwell time of the tracks that left in the window;
- a heatmap grid in person-seconds on the foot points (bottom centre of the boxes).

Counts close every `counts_window_s` and the heatmap every `heatmap_window_s`, on wall-clock
boundaries (floor(t / window) * window), into `CountsWindow` and `HeatmapWindow` records whose
`body()` / `bodies()` are the message bodies of DESIGN.md. A window in which no frame was
processed still closes, with zeros, so gaps are explicit.

Geometry is normalised (0..1 of the frame width and height), so it survives a resolution change.
Seen on the image (y down), "left" of a line from its first point to its second is the side where
the cross product (b - a) x (p - a) is negative; `in` is a crossing from left to right.

Coasting tracks (`Track.matched` false: the tracker reports them on a prediction through a missed
detection) count for occupancy and the heatmap but never move a track across a line or a zone
boundary: only measured positions do.

Point-in-polygon and segment tests are written here (a few numpy lines) rather than taken from
OpenCV, because `cv2.pointPolygonTest` handles one point per call and this runs per frame.
"""

import math
from dataclasses import dataclass, field, replace
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

import numpy as np

from contract import UINT16_MAX, CountsBody, LineCounts, ObjectCounts, ZoneCounts, tile_body
from edge.core.tracking import Track

Point = Tuple[float, float]
Window = Tuple[float, float]

# Beyond this many windows without frames (a clock jump), the empty ones in between are skipped.
MAX_EMPTY_WINDOWS = 1000


def window_start(t: float, window_s: float) -> float:
    """Start of the wall-clock-aligned window holding time t."""
    return math.floor(t / window_s) * window_s


def side_of_line(a: Point, b: Point, p: np.ndarray) -> np.ndarray:
    """Signed distance of points p (N, 2) from the line a->b: < 0 left, > 0 right (y down)."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    length = math.hypot(dx, dy)
    return (dx * (p[:, 1] - a[1]) - dy * (p[:, 0] - a[0])) / length


def inside_polygon(polygon: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Even-odd rule test of points (N, 2) against polygon (M, 2): (N,) bool."""
    x, y = points[:, 0:1], points[:, 1:2]
    x1, y1 = polygon[:, 0][None, :], polygon[:, 1][None, :]
    x2, y2 = np.roll(polygon[:, 0], -1)[None, :], np.roll(polygon[:, 1], -1)[None, :]
    straddles = (y1 > y) != (y2 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_cross = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
    inside: np.ndarray = np.count_nonzero(straddles & (x < x_cross), axis=1) % 2 == 1
    return inside


def distance_to_polygon_edges(polygon: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Shortest distance of points (N, 2) to the polygon's boundary: (N,)."""
    a = polygon[None, :, :]
    b = np.roll(polygon, -1, axis=0)[None, :, :]
    p = points[:, None, :]
    ab = b - a
    t = np.clip(np.sum((p - a) * ab, axis=2) / np.maximum(np.sum(ab * ab, axis=2), 1e-12), 0.0, 1.0)
    nearest = a + t[:, :, None] * ab
    distances: np.ndarray = np.sqrt(np.min(np.sum((p - nearest) ** 2, axis=2), axis=1))
    return distances


# --- lines -----------------------------------------------------------------------------


@dataclass
class _LineTrackState:
    committed_side: int  # -1 left, +1 right, 0 not yet clear of the line
    through_segment: bool  # the latest crossing of the (infinite) line was through the segment
    last_point: Point
    last_distance: float  # signed distance of last_point from the line


class LineCounter:
    """Counts crossings of one line segment, with hysteresis.

    Per track it remembers the side the foot point was last clearly on (at least `min_distance`
    from the line). A crossing counts when the track becomes clearly on the other side and its
    latest crossing of the line, found by intersecting the path between two processed frames with
    the segment, went through the segment (not around its ends). So a track that jitters on the
    line, stops on it or turns back counts nothing, one that jumps across between two processed
    frames (frame-skip) counts once, and one that leaves and comes back counts again.
    """

    def __init__(self, line_id: str, a: Point, b: Point, min_distance: float) -> None:
        if a == b:
            raise ValueError(f"line {line_id!r}: its two points are the same")
        self.line_id = line_id
        self.a, self.b = a, b
        self.min_distance = min_distance
        self._states: Dict[int, _LineTrackState] = {}
        self.count_in = 0
        self.count_out = 0

    def _through_segment(self, p: Point, q: Point, dp: float, dq: float) -> bool:
        t = dp / (dp - dq)
        x, y = p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])
        ax, ay = self.a
        bx, by = self.b
        u = ((x - ax) * (bx - ax) + (y - ay) * (by - ay)) / ((bx - ax) ** 2 + (by - ay) ** 2)
        return 0.0 <= u <= 1.0

    def observe(self, track_ids: Sequence[int], feet: np.ndarray) -> None:
        """Feet (N, 2) normalised foot points of measured tracks in one frame."""
        if len(track_ids) == 0:
            return
        sides = side_of_line(self.a, self.b, feet)
        for track_id, point_array, d in zip(track_ids, feet.tolist(), sides.tolist()):
            point = (point_array[0], point_array[1])
            clear = (1 if d > 0 else -1) if abs(d) >= self.min_distance and d != 0 else 0
            state = self._states.get(track_id)
            if state is None:
                self._states[track_id] = _LineTrackState(clear, False, point, d)
                continue
            if d == 0:
                # Exactly on the line (whole pixels make this common): wait for a side, or the
                # crossing from the last side to the next would never be tested.
                continue
            if state.last_distance * d < 0:
                state.through_segment = self._through_segment(state.last_point, point, state.last_distance, d)
            state.last_point, state.last_distance = point, d
            if clear == 0 or clear == state.committed_side:
                if clear != 0:
                    state.through_segment = False
                continue
            if state.committed_side != 0 and state.through_segment:
                if clear > 0:
                    self.count_in += 1
                else:
                    self.count_out += 1
            state.committed_side = clear
            state.through_segment = False

    def forget(self, track_ids: Iterable[int]) -> None:
        for track_id in track_ids:
            self._states.pop(track_id, None)


# --- zones -----------------------------------------------------------------------------


@dataclass
class _ZoneTrackState:
    entered_at: float
    last_inside_at: float


class ZoneCounter:
    """Occupancy, entries and dwell of one polygon zone.

    A foot point enters when it is inside the polygon (a track first seen inside enters too) and
    leaves only once it is outside by at least `min_distance`, so a person standing on the edge
    does not enter again and again. Dwell is from the first frame inside to the last frame inside.
    """

    def __init__(self, zone_id: str, polygon: Sequence[Point], min_distance: float) -> None:
        if len(polygon) < 3:
            raise ValueError(f"zone {zone_id!r}: a polygon needs at least 3 points")
        self.zone_id = zone_id
        self.polygon = np.asarray(polygon, np.float64)
        self.min_distance = min_distance
        self._inside: Dict[int, _ZoneTrackState] = {}
        self.entered = 0
        self.dwell_s: List[float] = []

    def observe(self, t: float, track_ids: Sequence[int], feet: np.ndarray) -> None:
        if len(track_ids) == 0:
            return
        inside = inside_polygon(self.polygon, feet)
        outside_clearly = ~inside
        if self.min_distance > 0 and np.any(outside_clearly):
            outside_clearly &= distance_to_polygon_edges(self.polygon, feet) >= self.min_distance
        for track_id, is_in, gone in zip(track_ids, inside.tolist(), outside_clearly.tolist()):
            state = self._inside.get(track_id)
            if is_in:
                if state is None:
                    self._inside[track_id] = _ZoneTrackState(t, t)
                    self.entered += 1
                else:
                    state.last_inside_at = t
            elif gone and state is not None:
                self._leave(track_id)

    def _leave(self, track_id: int) -> None:
        state = self._inside.pop(track_id)
        self.dwell_s.append(state.last_inside_at - state.entered_at)

    def take_dwells(self) -> List[float]:
        """Dwell times of the exits since the last call."""
        dwells, self.dwell_s = self.dwell_s, []
        return dwells

    def occupants(self) -> Set[int]:
        return set(self._inside)

    def forget(self, track_ids: Iterable[int]) -> None:
        """Tracks gone for good: those inside leave now, with the dwell they had."""
        for track_id in track_ids:
            if track_id in self._inside:
                self._leave(track_id)


# --- windows and their bodies ----------------------------------------------------------


@dataclass(frozen=True)
class CountsWindow:
    """One closed counting window of one camera."""

    window: Window
    frames: int  # processed frames in the window
    objects: Dict[str, ObjectCounts]
    lines: Dict[str, LineCounts]
    zones: Dict[str, ZoneCounts]

    def body(
        self,
        *,
        fps: float,
        target_fps: float,
        tier: Union[int, str],
        dropped: int,
        frames: Optional[int] = None,
    ) -> Dict[str, object]:
        """The DESIGN.md `counts` body. The pipeline supplies what it measures (fps, target,
        tier, dropped frames); `frames` defaults to the processed frames analytics saw."""
        return CountsBody(
            fps=round(float(fps), 2),
            target_fps=float(target_fps),
            tier=tier,
            frames=self.frames if frames is None else int(frames),
            dropped=int(dropped),
            objects={name: replace(c, mean=round(c.mean, 3)) for name, c in self.objects.items()},
            lines=dict(self.lines),
            zones={
                name: replace(
                    c,
                    mean=round(c.mean, 3),
                    dwell_mean_s=None if c.dwell_mean_s is None else round(c.dwell_mean_s, 2),
                )
                for name, c in self.zones.items()
            },
        ).to_dict()


@dataclass(frozen=True)
class HeatmapTile:
    """One tile of a heatmap grid: cells [y0:y0+h, x0:x0+w] with x0 = tx * w, y0 = ty * h.
    Edge tiles are padded with zeros to the full tile size."""

    grid: Tuple[int, int]  # cols, rows of the whole grid
    tile: Tuple[int, int]  # tx, ty
    tile_size: Tuple[int, int]  # w, h cells
    scale: float  # value * scale = person-seconds
    values: np.ndarray  # (h, w) uint16

    def body(self) -> Dict[str, object]:
        """The DESIGN.md `heatmap` body, encoded by the contract's tile codec."""
        return tile_body(self.grid, self.tile, self.tile_size, self.scale, self.values).to_dict()


@dataclass(frozen=True)
class HeatmapWindow:
    """One closed heatmap window: the grid (rows, cols) in person-seconds and its non-empty tiles."""

    window: Window
    grid: np.ndarray
    tiles: List[HeatmapTile]

    def bodies(self) -> List[Dict[str, object]]:
        return [tile.body() for tile in self.tiles]


def encode_tiles(grid: np.ndarray, tile_size: Tuple[int, int]) -> List[HeatmapTile]:
    """Split a (rows, cols) person-seconds grid into tiles; only tiles with a non-zero cell.
    Each tile gets its own scale so its largest cell is 65535."""
    rows, cols = grid.shape
    tw, th = tile_size
    tiles = []
    for ty in range(-(-rows // th)):
        for tx in range(-(-cols // tw)):
            block = np.zeros((th, tw))
            part = grid[ty * th : (ty + 1) * th, tx * tw : (tx + 1) * tw]
            block[: part.shape[0], : part.shape[1]] = part
            peak = float(block.max())
            if peak <= 0:
                continue
            scale = peak / UINT16_MAX
            values = np.clip(np.rint(block / scale), 0, UINT16_MAX).astype(np.uint16)
            tiles.append(HeatmapTile((cols, rows), (tx, ty), (tw, th), scale, values))
    return tiles




# --- per camera ------------------------------------------------------------------------


@dataclass
class _Accumulator:
    """Running sums for one counting window."""

    frames: int = 0
    seconds: float = 0.0
    now: Dict[str, int] = field(default_factory=dict)
    max: Dict[str, int] = field(default_factory=dict)
    weighted: Dict[str, float] = field(default_factory=dict)
    unique: Dict[str, Set[int]] = field(default_factory=dict)
    zone_now: Dict[str, int] = field(default_factory=dict)
    zone_max: Dict[str, int] = field(default_factory=dict)
    zone_weighted: Dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class LineSpec:
    line_id: str
    a: Point
    b: Point


@dataclass(frozen=True)
class ZoneSpec:
    zone_id: str
    polygon: Tuple[Point, ...]


@dataclass(frozen=True)
class ClosedWindows:
    counts: List[CountsWindow]
    heatmaps: List[HeatmapWindow]


class CameraAnalytics:
    """All analytics of one camera. Feed `observe` every processed frame (times in UNIX seconds,
    non-decreasing), call `close_due(now)` as often as you like to collect closed windows."""

    def __init__(
        self,
        class_names: Sequence[str],
        counted_classes: Sequence[str],
        lines: Sequence[LineSpec] = (),
        zones: Sequence[ZoneSpec] = (),
        counts_window_s: float = 10.0,
        line_min_distance: float = 0.02,
        heatmap_window_s: float = 60.0,
        heatmap_grid: Tuple[int, int] = (64, 36),
        heatmap_tile: Tuple[int, int] = (16, 12),
        heatmap_enabled: bool = True,
        forget_after_s: float = 2.0,
    ) -> None:
        if counts_window_s <= 0 or heatmap_window_s <= 0:
            raise ValueError("window lengths must be positive")
        self.class_names = list(class_names)
        self.counted = list(counted_classes)
        self._class_ids = {i: name for i, name in enumerate(self.class_names) if name in self.counted}
        self.lines = [LineCounter(s.line_id, s.a, s.b, line_min_distance) for s in lines]
        self.zones = [ZoneCounter(s.zone_id, s.polygon, line_min_distance) for s in zones]
        self.counts_window_s = counts_window_s
        self.heatmap_window_s = heatmap_window_s
        self.heatmap_enabled = heatmap_enabled
        self.grid_size = heatmap_grid  # cols, rows
        self.tile_size = heatmap_tile
        self.forget_after_s = forget_after_s
        self._last_seen: Dict[int, float] = {}
        self._counts_start: Optional[float] = None
        self._heatmap_start: Optional[float] = None
        self._acc = _Accumulator()
        self._lines_at_start = {line.line_id: (0, 0) for line in self.lines}
        self._entered_at_start = {zone.zone_id: 0 for zone in self.zones}
        self._grid = np.zeros((heatmap_grid[1], heatmap_grid[0]))
        self._pending_counts: List[CountsWindow] = []
        self._pending_heatmaps: List[HeatmapWindow] = []

    # --- feeding ---

    def observe(
        self, timestamp: float, seconds_per_frame: float, frame_size: Tuple[int, int], tracks: Sequence[Track]
    ) -> None:
        """One processed frame: `frame_size` is (width, height) in pixels, `tracks` the tracker's
        output (unconfirmed tracks and uncounted classes are ignored here)."""
        self._roll(timestamp)
        width, height = frame_size
        counted = [tr for tr in tracks if tr.confirmed and tr.class_id in self._class_ids]
        feet = np.array([tr.foot_point for tr in counted], np.float64).reshape(-1, 2) / (width, height)
        acc = self._acc
        acc.frames += 1
        acc.seconds += seconds_per_frame

        per_class: Dict[str, int] = {name: 0 for name in self.counted}
        for tr in counted:
            name = self._class_ids[tr.class_id]
            per_class[name] += 1
            acc.unique.setdefault(name, set()).add(tr.track_id)
        for name, n in per_class.items():
            acc.now[name] = n
            acc.max[name] = max(acc.max.get(name, 0), n)
            acc.weighted[name] = acc.weighted.get(name, 0.0) + n * seconds_per_frame

        measured = [i for i, tr in enumerate(counted) if tr.matched]
        measured_ids = [counted[i].track_id for i in measured]
        measured_feet = feet[measured]
        for line in self.lines:
            line.observe(measured_ids, measured_feet)
        present = {tr.track_id for tr in counted}
        for zone in self.zones:
            zone.observe(timestamp, measured_ids, measured_feet)
            n = len(zone.occupants() & present)
            acc.zone_now[zone.zone_id] = n
            acc.zone_max[zone.zone_id] = max(acc.zone_max.get(zone.zone_id, 0), n)
            acc.zone_weighted[zone.zone_id] = acc.zone_weighted.get(zone.zone_id, 0.0) + n * seconds_per_frame

        if self.heatmap_enabled and len(counted):
            cols, rows = self.grid_size
            cx = np.clip((feet[:, 0] * cols).astype(np.int64), 0, cols - 1)
            cy = np.clip((feet[:, 1] * rows).astype(np.int64), 0, rows - 1)
            np.add.at(self._grid, (cy, cx), seconds_per_frame)

        for tr in counted:
            self._last_seen[tr.track_id] = timestamp
        self._forget(timestamp)

    def _forget(self, now: float) -> None:
        gone = [tid for tid, seen in self._last_seen.items() if now - seen > self.forget_after_s]
        if not gone:
            return
        for tid in gone:
            del self._last_seen[tid]
        for line in self.lines:
            line.forget(gone)
        for zone in self.zones:
            zone.forget(gone)

    # --- closing ---

    def close_due(self, now: float) -> ClosedWindows:
        """Every window that ended at or before `now` (including ones closed by `observe`)."""
        self._roll(now)
        closed = ClosedWindows(self._pending_counts, self._pending_heatmaps)
        self._pending_counts, self._pending_heatmaps = [], []
        return closed

    def _roll(self, now: float) -> None:
        if self._counts_start is None:
            self._counts_start = window_start(now, self.counts_window_s)
            self._heatmap_start = window_start(now, self.heatmap_window_s)
        assert self._heatmap_start is not None
        self._forget(now)
        skipped = False
        while now >= self._counts_start + self.counts_window_s:
            end = self._counts_start + self.counts_window_s
            self._pending_counts.append(self._close_counts((self._counts_start, end)))
            self._counts_start = end
            if not skipped and now >= end + MAX_EMPTY_WINDOWS * self.counts_window_s:
                self._counts_start = window_start(now, self.counts_window_s)
                skipped = True
        skipped = False
        while now >= self._heatmap_start + self.heatmap_window_s:
            end = self._heatmap_start + self.heatmap_window_s
            if self.heatmap_enabled:
                grid = self._grid
                self._pending_heatmaps.append(
                    HeatmapWindow((self._heatmap_start, end), grid, encode_tiles(grid, self.tile_size))
                )
            self._grid = np.zeros_like(self._grid)
            self._heatmap_start = end
            if not skipped and now >= end + MAX_EMPTY_WINDOWS * self.heatmap_window_s:
                self._heatmap_start = window_start(now, self.heatmap_window_s)
                skipped = True

    def _close_counts(self, window: Window) -> CountsWindow:
        acc = self._acc
        seconds = acc.seconds

        def mean(weighted: float) -> float:
            return weighted / seconds if seconds > 0 else 0.0

        objects = {
            name: ObjectCounts(
                acc.now.get(name, 0),
                acc.max.get(name, 0),
                mean(acc.weighted.get(name, 0.0)),
                len(acc.unique.get(name, ())),
            )
            for name in self.counted
        }
        lines = {}
        for line in self.lines:
            done_in, done_out = self._lines_at_start[line.line_id]
            lines[line.line_id] = LineCounts(line.count_in - done_in, line.count_out - done_out)
            self._lines_at_start[line.line_id] = (line.count_in, line.count_out)
        zones = {}
        for zone in self.zones:
            dwells = zone.take_dwells()
            zones[zone.zone_id] = ZoneCounts(
                acc.zone_now.get(zone.zone_id, 0),
                acc.zone_max.get(zone.zone_id, 0),
                mean(acc.zone_weighted.get(zone.zone_id, 0.0)),
                zone.entered - self._entered_at_start[zone.zone_id],
                sum(dwells) / len(dwells) if dwells else None,
            )
            self._entered_at_start[zone.zone_id] = zone.entered
        self._acc = _Accumulator()
        return CountsWindow(window, acc.frames, objects, lines, zones)
