"""Inference lanes: several frames inferred at once on one model, their detections analysed in
the order the frames were taken whichever lane finishes first, and a retired detector closed
only once no lane runs on it."""

import threading
import time
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import pytest

from edge.config import parse_config
from edge.core.detections import Detections
from edge.detection.engines.base import EngineOptions, PreparedBatch, physical_cores
from edge.detection.engines.onnxruntime import lane_threads
from edge.detection.factory import create_detector
from edge.detection.manifest import load_manifest
from edge.runtime.pipeline import Pipeline, WindowStatus, _InOrder
from edge.runtime.sources import Frame, SourceReader
from tests.runtime_fakes import FastSource, FixedDetector

WAIT_S = 10.0  # a generous bound on waits that should end at once; never a measured time


def test_jobs_pass_on_in_ticket_order_whichever_finishes_first() -> None:
    delivered: List[str] = []
    in_order = _InOrder(delivered.append)  # type: ignore[arg-type]
    first, second, third, fourth = (in_order.ticket() for _ in range(4))
    in_order.done(second, ["b1", "b2"])  # type: ignore[list-item]
    assert delivered == []  # waits for the first
    in_order.done(first, ["a"])  # type: ignore[list-item]
    assert delivered == ["a", "b1", "b2"]
    in_order.done(fourth, ["d"])  # type: ignore[list-item]
    in_order.done(third, [])  # a failed detection passes its turn with no jobs
    assert delivered == ["a", "b1", "b2", "d"]


class _Recorder:
    """A FrameAnalyser that records the frames it is given, in order."""

    def __init__(self) -> None:
        self.indices: List[int] = []

    def update(self, frame: Frame, detections: Detections, seconds: float) -> None:
        self.indices.append(frame.index)

    def poll(self, now: float, status: WindowStatus, final: bool = False) -> None:
        pass


class _FirstFinishesLast(FixedDetector):
    """Two lanes; the call on frame 0 waits until a later call has finished, so the lanes
    finish out of order."""

    def __init__(self) -> None:
        super().__init__(max_batch=1, lanes=2)
        self.later_done = threading.Event()
        self.finish_order: List[int] = []
        self._lock = threading.Lock()

    def preprocess(self, frames: Sequence[np.ndarray]) -> PreparedBatch:
        batch = super().preprocess(frames)
        batch.extras["index"] = int(frames[0][0, 0, 0])
        return batch

    def infer(self, batch: PreparedBatch) -> List[np.ndarray]:
        index = int(batch.extras["index"])  # type: ignore[call-overload]
        if index == 0:
            assert self.later_done.wait(WAIT_S), "the second lane never finished a frame"
        with self._lock:
            self.finish_order.append(index)
        if index != 0:
            self.later_done.set()
        return super().infer(batch)


class _NumberedSource(FastSource):
    """FastSource frames whose first pixel holds the frame index (for the detector above)."""

    def take(self, timeout: float = 0.0) -> Optional[Frame]:
        frame = super().take(timeout)
        if frame is None:
            return None
        image = np.zeros((36, 64, 3), np.uint8)
        image[0, 0, 0] = frame.index
        return Frame(frame.camera_id, frame.index, frame.timestamp, image)


def test_two_lanes_finish_out_of_order_and_the_tracker_still_sees_frames_in_order() -> None:
    config = parse_config({"cameras": [{"id": "cam", "source": "fake.mp4", "target_fps": 10}]})
    analyser = _Recorder()
    detector = _FirstFinishesLast()
    pipeline = Pipeline([(config.cameras[0], _NumberedSource("cam", 10.0, frames=30), analyser)], detector)
    assert pipeline.lanes == 2
    pipeline.start()
    assert pipeline.join(WAIT_S)
    assert pipeline.error is None
    assert detector.finish_order[0] != 0  # a later frame finished first ...
    assert analyser.indices == list(range(30))  # ... yet every frame was analysed in order


class _Gated(FixedDetector):
    """Runs until `release` is set once `entered` says a lane is inside `infer`."""

    def __init__(self) -> None:
        super().__init__(max_batch=1, lanes=2)
        self.entered = threading.Event()
        self.release = threading.Event()

    def infer(self, batch: PreparedBatch) -> List[np.ndarray]:
        self.entered.set()
        assert self.release.wait(WAIT_S)
        return super().infer(batch)


def test_a_retired_detector_is_closed_only_after_its_last_lane_is_done() -> None:
    config = parse_config({"cameras": [{"id": "cam", "source": "fake.mp4", "target_fps": 10}]})
    old = _Gated()
    pipeline = Pipeline([(config.cameras[0], FastSource("cam", 10.0), _Recorder())], old)
    pipeline.start()
    try:
        assert old.entered.wait(WAIT_S)
        pipeline.apply_tier(FixedDetector(max_batch=1, lanes=2), frame_skip=1)
        # Both lanes take frames on the new detector; the old one is still in a lane's call.
        assert not old.closed
        old.release.set()
        deadline = time.monotonic() + WAIT_S
        while not old.closed and time.monotonic() < deadline:
            time.sleep(0.01)
        assert old.closed
    finally:
        old.release.set()
        pipeline.stop()
    assert pipeline.error is None


def test_a_lane_beyond_the_detectors_lanes_waits() -> None:
    config = parse_config({"cameras": [{"id": "cam", "source": "fake.mp4", "target_fps": 10}]})
    analyser = _Recorder()
    pipeline = Pipeline(
        [(config.cameras[0], FastSource("cam", 10.0, frames=20), analyser)], FixedDetector(lanes=1), lanes=3
    )
    pipeline.start()
    assert pipeline.join(WAIT_S)
    assert analyser.indices == list(range(20))


def test_busy_time_counts_lanes_that_run_at_once_once() -> None:
    """The controller's capacity is frames per busy second: two lanes each busy for a second
    analysed two seconds' worth of frames in that one second."""
    config = parse_config({"cameras": [{"id": "cam", "source": "fake.mp4", "target_fps": 10}]})
    wiring = [(config.cameras[0], FastSource("cam", 10.0), _Recorder())]
    two = Pipeline(wiring, FixedDetector(lanes=2))
    one = Pipeline(wiring, FixedDetector(lanes=1))
    for pipeline in (two, one):
        for _ in range(2):
            pipeline.timer.add("inference", 0.9)
            pipeline.timer.add("preprocess", 0.1)
    assert two.busy_s() == pytest.approx(1.0)
    assert one.busy_s() == pytest.approx(2.0)


@pytest.fixture(scope="module")
def ssd_model():
    return load_manifest()["ssdlite-mobilenetv2-pedestrian"]


def test_onnxruntime_lanes_share_the_cores_and_give_the_same_detections(ssd_model) -> None:
    assert lane_threads(2) == max(1, physical_cores() // 2)
    assert lane_threads(64) == 1
    options = EngineOptions(precision="int8", input_size=(300, 300), keep_aspect=True, lanes=2)
    detector = create_detector("onnxruntime", ssd_model, options)
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 255, (360, 640, 3), dtype=np.uint8) for _ in range(6)]
    try:
        assert detector.lanes == 2
        alone = [_boxes(detector, frame) for frame in frames]
        together: List[Optional[np.ndarray]] = [None] * len(frames)

        def lane(first: int) -> None:
            for k in range(first, len(frames), 2):
                together[k] = _boxes(detector, frame=frames[k])

        threads = [threading.Thread(target=lane, args=(k,)) for k in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for mine, theirs in zip(alone, together):
            assert theirs is not None and np.array_equal(mine, theirs)
    finally:
        detector.close()


def _boxes(detector, frame: np.ndarray) -> np.ndarray:
    prepared = detector.preprocess([frame])
    return detector.postprocess(detector.infer(prepared), prepared)[0].boxes


def test_one_call_at_a_time_uses_every_core(ssd_model) -> None:
    detector = create_detector("onnxruntime", ssd_model, EngineOptions(precision="int8", input_size=(300, 300)))
    try:
        assert detector.lanes == 1
    finally:
        detector.close()


def test_a_reader_that_hands_over_every_frame_decodes_two_ahead(tmp_path: Path) -> None:
    from edge.devkit.synthetic import Scene, write_scene

    video = write_scene(Scene("clip", 160, 96, 20.0, 1.0, ()), tmp_path)
    reader = SourceReader("cam", str(video), realtime=False)
    reader.start()
    try:
        deadline = time.monotonic() + WAIT_S
        while reader.stats.frames_read < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # room to read a third frame, which it must not before one is taken
        assert reader.stats.frames_read == 2
        first = reader.take(timeout=WAIT_S)
        second = reader.take(timeout=WAIT_S)
        assert first is not None and second is not None and (first.index, second.index) == (0, 1)
    finally:
        reader.stop()
    assert reader.stats.frames_dropped == 0
