"""A wall-clock step (fake wall and monotonic clocks): analysis goes on, the open window is closed
at the step and a new one started, windows stay contiguous on the steady time line, and the
newer windows are stamped with the corrected wall time; the live state follows them."""

from typing import List

import numpy as np

from edge.config import parse_config
from edge.core.detections import Detections
from edge.runtime.analysis import CameraAnalysis, ClosedWindow
from edge.runtime.clock import StampClock
from edge.runtime.pipeline import WindowStatus
from edge.runtime.sources import Frame
from tests.test_analysis_memory import detections_at

T0 = 1_700_000_000.0
STEP_S = -600.0
STATUS = WindowStatus(10.0, "tier", 0)
IMAGE = np.zeros((360, 640, 3), np.uint8)


class Clocks:
    def __init__(self) -> None:
        self.mono = 100.0
        self.wall_offset = T0 - 100.0

    def monotonic(self) -> float:
        return self.mono

    def wall(self) -> float:
        return self.mono + self.wall_offset


def test_a_backward_step_keeps_analysing_and_windows_stay_contiguous():
    config = parse_config(
        {
            "cameras": [{"id": "cam", "source": "x.mp4", "lines": [{"id": "door", "points": [[0.5, 0], [0.5, 1]]}]}],
            "counts": {"window_s": 10},
            "heatmap": {"window_s": 10},
        }
    )
    clocks = Clocks()
    stamps = StampClock(clocks.wall, clocks.monotonic)
    closed: List[ClosedWindow] = []
    analysis = CameraAnalysis(config, config.cameras[0], [closed.append], stamps=stamps)
    step_at = T0 + 25.0
    for tenth in range(600):  # 60 s at 10 frames/s
        clocks.mono = 100.0 + tenth / 10.0
        if tenth == 250:
            clocks.wall_offset += STEP_S  # NTP sets the clock 10 minutes back
            assert stamps.check() == STEP_S
        elif tenth % 10 == 0:
            assert stamps.check() is None
        now = stamps.pipeline_time()
        people: Detections = detections_at(int(tenth / 10), 0)
        analysis.update(Frame("cam", tenth, now, IMAGE), people, 0.1)
        analysis.poll(now, STATUS)
    counts = [c for c in closed if c.kind == "counts"]
    # In emission order: full windows, the open one closed at the step, then a short window to
    # the usual boundary and full ones, stamped in the new wall time.
    assert [c.window for c in counts[:3]] == [(T0, T0 + 10), (T0 + 10, T0 + 20), (T0 + 20, step_at)]
    assert [c.window for c in counts[3:]] == [
        (step_at + STEP_S, T0 + 30 + STEP_S),
        (T0 + 30 + STEP_S, T0 + 40 + STEP_S),
        (T0 + 40 + STEP_S, T0 + 50 + STEP_S),
    ]
    assert all(c.body["frames"] > 0 for c in counts)  # nothing stopped analysing
    assert sum(c.body["frames"] for c in counts) == 500  # every frame before the still open window
    heatmaps = {c.window for c in closed if c.kind == "heatmap"}
    assert (T0 + 20, step_at) in heatmaps
    state = analysis.live_state_due(clocks.wall())
    assert state is not None and state.window == T0 + 50 + STEP_S  # the live state follows the new time


def test_a_steady_clock_reports_no_step():
    clocks = Clocks()
    stamps = StampClock(clocks.wall, clocks.monotonic)
    for _ in range(100):
        clocks.mono += 1.0
        assert stamps.check() is None
    assert stamps.offset == 0.0 and stamps.pipeline_time() == clocks.wall()
