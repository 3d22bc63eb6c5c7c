"""A day of one camera's analysis path on a fake clock keeps its state bounded (issue 9:
closed windows used to be kept for the demo, 38 MB per camera per day).

One analysed frame a second, people walking through a door line and a zone one after another
(new track ids all day), counts windows closing every 10 s and heatmap windows every 60 s.
The state the analysis retains (every container and array reachable from it) is measured after
hour 1 and after hour 24 and may not grow; the Python memory allocated in the last hour and
still held at its end is traced (tracing the whole day would triple the run time) and must stay
far below what one hour of kept windows used to cost (1.6 MB). A busy camera (people all day:
86 400 tracked frames, about 100 s here) is the slow variant; a quiet one (people one minute in
thirty, polled every 10 s in between) runs in the default suite.
"""

import tracemalloc
from collections import deque
from typing import Any, List, Set

import numpy as np
import pytest

from edge.config import parse_config
from edge.core.detections import Detections
from edge.runtime.analysis import CameraAnalysis, ClosedWindow
from edge.runtime.pipeline import WindowStatus
from edge.runtime.sources import Frame

HOUR = 3600
T0 = 1_700_000_000.0
W, H = 640, 360
IMAGE = np.zeros((H, W, 3), np.uint8)
STATUS = WindowStatus(1.0, "tier", 0)
WALK_S = 60  # each person crosses the frame in a minute
EVERY_S = 20  # a new person every 20 s: about three in view at once


def detections_at(t: int, first_start: int) -> Detections:
    """The people in view at second t, walking left to right at 10 px/s, one starting every
    EVERY_S seconds from `first_start` on."""
    boxes = []
    for start in range(t - t % EVERY_S - WALK_S, t + 1, EVERY_S):
        age = t - start
        if 0 <= age < WALK_S and start >= first_start:
            x = 20 + age * 10
            lane = (start // EVERY_S) % 3
            y = 120 + 60 * lane  # feet at 0.61, 0.78 and 0.94 of the height: all on the line
            boxes.append([x, y, x + 40, y + 100])
    n = len(boxes)
    return Detections(
        np.array(boxes, np.float32).reshape(n, 4), np.full(n, 0.9, np.float32), np.zeros(n, np.int32)
    )


def retained(root: Any) -> int:
    """Items held by `root`: the lengths of every container and the sizes of every array
    reachable through containers and the attributes of this project's objects."""
    seen: Set[int] = set()
    stack: List[Any] = [root]
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            total += obj.size
        elif isinstance(obj, dict):
            total += len(obj)
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset, deque)):
            total += len(obj)
            stack.extend(obj)
        elif type(obj).__module__.startswith("edge.") and hasattr(obj, "__dict__"):
            stack.extend(vars(obj).values())
    return total


@pytest.mark.parametrize(
    "busy_s, cycle_s", [pytest.param(1, 1, marks=pytest.mark.slow, id="busy"), pytest.param(60, 1800, id="quiet")]
)
def test_a_day_of_analysis_keeps_its_state_bounded(busy_s: int, cycle_s: int) -> None:
    """People walk through for `busy_s` seconds of every `cycle_s` (busy: all the time)."""
    config = parse_config(
        {
            "cameras": [
                {
                    "id": "door-cam",
                    "source": "door.mp4",
                    "target_fps": 1,
                    "lines": [{"id": "door", "points": [[0.5, 0.0], [0.5, 1.0]]}],
                    "zones": [{"id": "queue", "polygon": [[0.6, 0.3], [0.9, 0.3], [0.9, 1.0], [0.6, 1.0]]}],
                }
            ],
            "counts": {"window_s": 10},
            "heatmap": {"window_s": 60},
        }
    )
    counts_windows = 0
    crossings = 0
    busy = busy_s == cycle_s
    people = 24 * HOUR // EVERY_S if busy else 24 * HOUR // cycle_s * ((busy_s - WALK_S) // EVERY_S + 1)

    def sink(closed: ClosedWindow) -> None:
        nonlocal counts_windows, crossings
        if closed.kind == "counts":
            counts_windows += 1
            crossings += closed.body["lines"]["door"]["in"] + closed.body["lines"]["door"]["out"]

    analysis = CameraAnalysis(config, config.cameras[0], sinks=[sink])
    items_1h = held_last_hour = 0
    try:
        for t in range(24 * HOUR + 1):
            if t % cycle_s < busy_s:
                frame = Frame("door-cam", t, T0 + t, IMAGE)
                analysis.update(frame, detections_at(t, 0 if busy else t - t % cycle_s), 1.0)
            if t % cycle_s < busy_s or t % 10 == 0:
                analysis.poll(T0 + t, STATUS)
            if t == HOUR:
                items_1h = retained(analysis)
            if t == 23 * HOUR:
                tracemalloc.start()
        held_last_hour = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    items_24h = retained(analysis)
    assert counts_windows == 24 * HOUR // 10  # the day really ran: every window closed
    assert crossings >= people - 2  # and people were counted all day
    assert items_24h <= items_1h + 200, (items_1h, items_24h)
    assert held_last_hour < 256 * 1024, held_last_hour
