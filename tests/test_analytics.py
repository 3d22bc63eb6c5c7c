"""Analytics: line crossings (direction, hysteresis, frame-skip), zones (entries, dwell),
occupancy, heatmap encoding."""

from typing import List, Sequence, Tuple

import numpy as np
import pytest

from contract import HeatmapBody, decode_cells, sum_tiles
from edge.commands.overlay import render_heatmap_overlay
from edge.config import CameraConfig, Config
from edge.core.analytics import (
    CameraAnalytics,
    LineSpec,
    ZoneSpec,
    encode_tiles,
    inside_polygon,
)
from edge.core.tracking import Track
from edge.runtime.analysis import analytics_from_config

W, H = 1000, 1000  # 1 px = 0.001 normalised
# A vertical door at x = 0.5 from y 0.2 to 0.8, pointing down: its left (seen on the image) is
# x > 0.5, so walking right to left is "in".
DOOR = LineSpec("door", (0.5, 0.2), (0.5, 0.8))
ZONE = ZoneSpec("queue", ((0.6, 0.6), (0.9, 0.6), (0.9, 0.9), (0.6, 0.9)))
T0 = 1_700_000_000.0  # a multiple of 10 and 60


def track(track_id: int, foot: Tuple[float, float], matched: bool = True, class_id: int = 0) -> Track:
    x, y = foot[0] * W, foot[1] * H
    return Track(track_id, (x - 20, y - 100, x + 20, y), 0.9, class_id, True, matched, 5, T0)


def make(**kwargs) -> CameraAnalytics:
    options = dict(
        class_names=["person", "car"],
        counted_classes=["person"],
        lines=[DOOR],
        zones=[ZONE],
        counts_window_s=10.0,
        line_min_distance=0.02,
    )
    options.update(kwargs)
    return CameraAnalytics(**options)


def walk(
    analytics: CameraAnalytics, xs: Sequence[float], y: float = 0.5, dt: float = 0.1, start: float = T0
) -> float:
    t = start
    for x in xs:
        analytics.observe(t, dt, (W, H), [track(1, (x, y))])
        t += dt
    return t


def door_counts(analytics: CameraAnalytics, now: float) -> List[Tuple[int, int]]:
    return [(w.lines["door"].count_in, w.lines["door"].count_out) for w in analytics.close_due(now).counts]


def test_direction_in_and_out() -> None:
    a = make()
    t = walk(a, np.linspace(0.8, 0.2, 20))  # right to left on screen: the door's left to right
    t = walk(a, np.linspace(0.2, 0.8, 20), start=t)
    assert door_counts(a, T0 + 10) == [(1, 1)]


def test_direction_follows_the_point_order() -> None:
    a = make(lines=[LineSpec("door", (0.5, 0.8), (0.5, 0.2))])
    walk(a, np.linspace(0.8, 0.2, 20))
    assert door_counts(a, T0 + 10) == [(0, 1)]


def test_stops_on_the_line_counts_nothing() -> None:
    a = make()
    walk(a, list(np.linspace(0.8, 0.5, 10)) + [0.5] * 30)
    assert door_counts(a, T0 + 10) == [(0, 0)]


def test_jitter_on_the_line_counts_nothing() -> None:
    rng = np.random.default_rng(1)
    a = make()
    walk(a, list(np.linspace(0.8, 0.505, 10)) + list(0.5 + rng.uniform(-0.015, 0.015, 60)))
    assert door_counts(a, T0 + 10) == [(0, 0)]


def test_turns_back_counts_nothing() -> None:
    a = make()
    walk(a, list(np.linspace(0.8, 0.49, 10)) + list(np.linspace(0.49, 0.8, 10)))
    assert door_counts(a, T0 + 10) == [(0, 0)]


def test_leaves_and_reenters_counts_each_crossing() -> None:
    a = make()
    path = list(np.linspace(0.8, 0.2, 10)) + list(np.linspace(0.2, 0.8, 10)) + list(np.linspace(0.8, 0.2, 10))
    walk(a, path)
    assert door_counts(a, T0 + 10) == [(2, 1)]


def test_crosses_between_two_processed_frames_at_frame_skip_3() -> None:
    """Processed every 0.3 s, the foot point jumps from 0.56 to 0.44: never on the line."""
    a = make()
    walk(a, [0.68, 0.62, 0.56, 0.44, 0.38, 0.32], dt=0.3)
    assert door_counts(a, T0 + 10) == [(1, 0)]


def test_passing_beside_the_segment_counts_nothing() -> None:
    a = make()
    walk(a, np.linspace(0.8, 0.2, 20), y=0.9)  # below the door's end
    assert door_counts(a, T0 + 10) == [(0, 0)]


def test_coasting_tracks_do_not_cross_lines() -> None:
    a = make()
    t = T0
    for x in (0.7, 0.6, 0.55):
        a.observe(t, 0.1, (W, H), [track(1, (x, 0.5))])
        t += 0.1
    for x in (0.45, 0.4):  # the tracker's prediction, not a measurement
        a.observe(t, 0.1, (W, H), [track(1, (x, 0.5), matched=False)])
        t += 0.1
    assert door_counts(a, T0 + 10) == [(0, 0)]


def test_zone_entries_and_dwell() -> None:
    a = make()
    t = T0
    # Track 1 enters at t0+1, stays 3 s, leaves. Track 2 is already inside when first seen.
    for k in range(60):
        now = T0 + k * 0.1
        tracks = [track(2, (0.7, 0.7))] if k < 20 else []
        x = 0.7 if 10 <= k < 40 else 0.3
        tracks.append(track(1, (x, 0.7)))
        a.observe(now, 0.1, (W, H), tracks)
        t = now
    # Track 2 vanished at t0+1.9; it is forgotten (dwell closed) after forget_after_s.
    a.observe(t + 2, 0.1, (W, H), [])
    window = a.close_due(T0 + 10).counts[0]
    zone = window.zones["queue"]
    assert zone.entered == 2
    assert zone.max == 2
    assert zone.dwell_mean_s == pytest.approx((2.9 + 1.9) / 2)


def test_zone_edge_jitter_enters_once() -> None:
    a = make()
    rng = np.random.default_rng(2)
    walk(a, list(0.6 + rng.uniform(-0.01, 0.01, 50)), y=0.7)
    assert a.close_due(T0 + 10).counts[0].zones["queue"].entered == 1


def test_occupancy_per_class_and_unique() -> None:
    a = make(lines=[], zones=[])
    for k in range(10):
        tracks = [track(1, (0.2, 0.5)), track(9, (0.4, 0.5), class_id=1)]
        if k >= 5:
            tracks.append(track(2, (0.3, 0.5)))
        unconfirmed = Track(3, (0, 0, 10, 10), 0.9, 0, False, True, 1, T0)
        a.observe(T0 + k, 1.0, (W, H), tracks + [unconfirmed])
    objects = a.close_due(T0 + 10).counts[0].objects
    assert set(objects) == {"person"}
    person = objects["person"]
    assert (person.now, person.max, person.unique) == (2, 2, 2)
    assert person.mean == pytest.approx(1.5)


def test_body_matches_design() -> None:
    a = make()
    walk(a, np.linspace(0.8, 0.2, 20))
    window = a.close_due(T0 + 10).counts[0]
    body = window.body(fps=9.8, target_fps=10.0, tier=0, dropped=1)
    assert set(body) == {"fps", "target_fps", "tier", "frames", "dropped", "objects", "lines", "zones"}
    assert body["frames"] == 20 and body["dropped"] == 1
    assert body["lines"] == {"door": {"in": 1, "out": 0}}
    assert set(body["objects"]["person"]) == {"now", "max", "mean", "unique"}
    assert set(body["zones"]["queue"]) == {"now", "max", "mean", "entered", "dwell_mean_s"}
    assert window.window == (T0, T0 + 10)


def test_from_config() -> None:
    config = Config()
    camera = CameraConfig(
        id="cam",
        source="x.mp4",
        lines=[{"id": "door", "points": [(0.5, 0.2), (0.5, 0.8)]}],
        zones=[{"id": "queue", "polygon": [(0.6, 0.6), (0.9, 0.6), (0.9, 0.9)]}],
    )
    a = analytics_from_config(config, camera, ["person"])
    assert [line.line_id for line in a.lines] == ["door"]
    assert a.counts_window_s == config.counts.window_s
    assert a.grid_size == config.heatmap.grid


def test_inside_polygon() -> None:
    square = np.array([(0, 0), (1, 0), (1, 1), (0, 1)], float)
    points = np.array([(0.5, 0.5), (1.5, 0.5), (-0.1, 0.2), (0.99, 0.01)])
    assert inside_polygon(square, points).tolist() == [True, False, False, True]


def test_heatmap_tiles_round_trip_and_skip_empty() -> None:
    grid = np.zeros((36, 64))
    grid[0, 0] = 3.0
    grid[20, 40] = 0.1
    grid[35, 63] = 1234.5
    tiles = encode_tiles(grid, (16, 12))
    assert sorted(t.tile for t in tiles) == [(0, 0), (2, 1), (3, 2)]
    bodies = [t.body() for t in tiles]
    assert all(b["unit"] == "person_seconds" and b["dtype"] == "uint16" for b in bodies)
    back = sum_tiles(bodies).to_numpy()
    np.testing.assert_allclose(back, grid, atol=1234.5 / 65535)
    assert len(decode_cells(HeatmapBody.from_dict(bodies[0]))) == 12 * 16


def test_heatmap_edge_tiles_are_padded() -> None:
    grid = np.ones((10, 10))
    tiles = encode_tiles(grid, (4, 4))
    assert len(tiles) == 9 and all(t.values.shape == (4, 4) for t in tiles)
    np.testing.assert_allclose(sum_tiles(t.body() for t in tiles).to_numpy(), grid, atol=1e-4)


def test_render_overlay() -> None:
    frame = np.full((90, 160, 3), 100, np.uint8)
    grid = np.zeros((9, 16))
    grid[4, 8] = 5.0
    out = render_heatmap_overlay(frame, grid)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert not np.array_equal(out[45, 85], frame[45, 85])
    assert np.array_equal(out[0, 0], frame[0, 0])
