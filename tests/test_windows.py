"""Counting and heatmap windows: wall-clock alignment, empty windows, and the heatmap's
person-seconds total."""

from typing import List

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from contract import sum_tiles
from edge.core.analytics import CameraAnalytics, window_start
from edge.core.tracking import Track

W, H = 640, 360


def person(track_id: int, x: float, y: float, confirmed: bool = True) -> Track:
    return Track(track_id, (x - 10, y - 50, x + 10, y), 0.9, 0, confirmed, True, 3, 0.0)


def make(**kwargs) -> CameraAnalytics:
    options = dict(
        class_names=["person"], counted_classes=["person"], counts_window_s=10.0, heatmap_window_s=60.0
    )
    options.update(kwargs)
    return CameraAnalytics(**options)


def test_window_start_is_aligned_to_the_wall_clock() -> None:
    assert window_start(1_000_007.5, 10.0) == 1_000_000.0
    assert window_start(1_000_060.0, 60.0) == 1_000_020.0  # 1_000_020 = 16667 * 60


def test_counts_windows_align_and_empty_ones_still_close() -> None:
    a = make()
    a.observe(1003.0, 0.1, (W, H), [person(1, 100, 200)])
    assert a.close_due(1009.9).counts == []
    a.observe(1012.0, 0.1, (W, H), [person(1, 100, 200)])
    # Nothing processed from 1012 to 1045: windows [1010, 1020) .. [1030, 1040) still close.
    windows = a.close_due(1045.0).counts
    assert [w.window for w in windows] == [
        (1000.0, 1010.0),
        (1010.0, 1020.0),
        (1020.0, 1030.0),
        (1030.0, 1040.0),
    ]
    assert [w.frames for w in windows] == [1, 1, 0, 0]
    assert windows[2].objects["person"].now == 0 and windows[2].objects["person"].max == 0
    assert a.close_due(1045.0).counts == []


def test_heatmap_window_closes_on_its_own_boundary() -> None:
    a = make()
    a.observe(1_000_019.0, 0.5, (W, H), [person(1, 100, 200)])
    assert a.close_due(1_000_019.9).heatmaps == []
    (heatmap,) = a.close_due(1_000_020.0).heatmaps
    assert heatmap.window == (999_960.0, 1_000_020.0)
    assert len(heatmap.tiles) == 1
    # The next window saw nothing: it closes with no tiles.
    (empty,) = a.close_due(1_000_080.0).heatmaps
    assert empty.tiles == [] and empty.bodies() == []


def test_disabled_heatmap_emits_nothing() -> None:
    a = make(heatmap_enabled=False)
    a.observe(1000.0, 0.1, (W, H), [person(1, 100, 200)])
    assert a.close_due(2000.0).heatmaps == []


frame_strategy = st.lists(
    st.tuples(
        st.sampled_from([0.1, 0.2, 0.3, 1 / 15]),  # seconds the frame stands for (frame-skip)
        st.lists(
            st.tuples(
                st.floats(-30, W + 30),  # foot points, some outside the image (boxes cut by its edge)
                st.floats(0, H + 30),
                st.booleans(),  # confirmed
            ),
            max_size=8,
        ),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(
    frames=frame_strategy,
    grid=st.sampled_from([(64, 36), (10, 7), (5, 5)]),
    tile=st.sampled_from([(16, 12), (4, 3)]),
)
def test_heatmap_sum_equals_person_seconds(frames: List, grid, tile) -> None:
    a = make(heatmap_grid=grid, heatmap_tile=tile)
    t = 60_000.0
    expected = 0.0
    for seconds, people in frames:
        tracks = [person(i, x, y, ok) for i, (x, y, ok) in enumerate(people)]
        a.observe(t, seconds, (W, H), tracks)
        expected += seconds * sum(1 for _, _, ok in people if ok)
        t += seconds
    assert t < 60_060.0  # all in one heatmap window
    (window,) = a.close_due(60_060.0).heatmaps
    if expected == 0:
        assert window.tiles == []
        return
    decoded = sum_tiles(window.bodies()).to_numpy()
    rounding = sum(0.5 * tile_.scale * tile_.values.size for tile_ in window.tiles)
    assert abs(decoded.sum() - expected) <= rounding + 1e-9
    np.testing.assert_allclose(window.grid.sum(), expected, rtol=1e-9)
