"""Cross-thread state under load: stats and telemetry read from several threads while the
inference worker and the analysis thread run flat out (fake sources, fake detector), with
the interpreter switching threads far more often than usual so that a read racing a write
(the `deque mutated during iteration` crash of issue 9) shows up within the run."""

import sys
import threading
import time
from typing import Callable, Dict, List

import pytest

from edge.runtime.analysis import ClosedWindow
from tests.runtime_fakes import fake_appliance, three_cameras

READS = 2000  # per reader thread


@pytest.fixture
def fast_switching():
    """Switch threads every 10 µs instead of 5 ms, so unguarded shared state fails at once."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(before)


@pytest.mark.slow
def test_stats_and_telemetry_from_three_threads_against_a_busy_worker(fast_switching) -> None:
    config = three_cameras()
    closed: List[ClosedWindow] = []
    appliance = fake_appliance(config, [closed.append])
    errors: List[BaseException] = []
    seen: Dict[str, List[int]] = {}

    def reader(name: str, read: Callable[[], int]) -> None:
        totals = seen.setdefault(name, [])
        try:
            for _ in range(READS):
                totals.append(read())
        except BaseException as exc:  # the test reports it below
            errors.append(exc)

    def stats() -> int:
        return sum(camera.processed for camera in appliance.pipeline.stats())

    def telemetry() -> int:
        wire = appliance.telemetry().to_wire()
        assert set(wire["cameras"]) == {"cam0", "cam1", "cam2"}
        return sum(camera["processed"] for camera in wire["cameras"].values())

    threads = [
        threading.Thread(target=reader, args=("stats-1", stats)),
        threading.Thread(target=reader, args=("stats-2", stats)),
        threading.Thread(target=reader, args=("telemetry", telemetry)),
    ]
    appliance.start()
    try:
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            appliance.tick()  # the main loop reads the counters too
            time.sleep(0.01)
    finally:
        appliance.stop()
    assert errors == []
    assert appliance.pipeline.error is None
    for name, totals in seen.items():
        assert len(totals) == READS, name
        assert totals == sorted(totals), name  # counters only grow: every read was consistent
        assert totals[-1] > totals[0], name  # the worker was busy while this thread read
    assert any(window.kind == "counts" for window in closed)  # the analysis thread ran too


def test_the_camera_order_is_never_mutated_by_the_worker() -> None:
    config = three_cameras()
    appliance = fake_appliance(config, [])
    before = appliance.pipeline.cameras
    appliance.start()
    try:
        while sum(camera.processed for camera in appliance.pipeline.stats()) < 200:
            time.sleep(0.01)
    finally:
        appliance.stop()
    assert appliance.pipeline.cameras is before
    processed = [camera.processed for camera in appliance.pipeline.stats()]
    # Rotating where a batch starts still serves every camera about equally.
    assert max(processed) - min(processed) <= 2, processed
