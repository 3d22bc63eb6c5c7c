"""Fakes for runtime tests: a frame source that needs no video file and a detector that needs
no model, both as fast as the worker can take them, and an appliance built from them."""

import threading
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

from edge.config import Config, parse_config
from edge.core.accuracy import PrecisionDecision
from edge.core.detections import Detections
from edge.core.policy import AdaptiveController
from edge.core.tiers import Tier
from edge.detection.engines.base import PreparedBatch
from edge.device.hardware import HardwareProfile
from edge.device.tiers import TierSelection
from edge.runtime.analysis import CameraAnalysis, WindowSink
from edge.runtime.lifecycle import Appliance, ApplianceParts
from edge.runtime.pipeline import Pipeline
from edge.runtime.sources import Frame, SourceStats

TIER = Tier(0, "fake", "int8", "onnxruntime", 64, 1)
DECISION = PrecisionDecision("int8", "int8", "onnxruntime", True, "fake", 0.9)
PROFILE = HardwareProfile("x86", "test", "x86_64", "test", 2, False, False, False, False, False, None, None)

IMAGE = np.zeros((36, 64, 3), np.uint8)


class FastSource:
    """A `FrameSource` with a new frame whenever asked, `fps` apart in source time (so every
    frame is due at a target of `fps`), up to `frames` frames (None: endless)."""

    def __init__(self, camera_id: str, fps: float, frames: Optional[int] = None) -> None:
        self.camera_id = camera_id
        self.realtime = False
        self.finished = False
        self.stats = SourceStats(connected=True)
        self.frame_ready: Optional[threading.Event] = None
        self._fps = fps
        self._start = time.time()
        self._frames = frames
        self._index = 0
        self.interval_s = 0.0  # the pacing the pipeline set (its frames are all due anyway)

    def start(self) -> None:
        if self.frame_ready is not None:
            self.frame_ready.set()

    def stop(self) -> None:
        self.finished = True

    def pace(self, interval_s: float) -> None:
        self.interval_s = interval_s

    def take(self, timeout: float = 0.0) -> Optional[Frame]:
        if self.finished or (self._frames is not None and self._index >= self._frames):
            self.finished = True
            return None
        frame = Frame(self.camera_id, self._index, self._start + self._index / self._fps, IMAGE)
        self._index += 1
        self.stats.frames_read += 1
        return frame


class FixedDetector:
    """A detector that finds the same people in every frame."""

    name = "fixed"
    classes: Sequence[str] = ("person",)
    input_size = (64, 36)

    def __init__(self, max_batch: int = 2, lanes: int = 1) -> None:
        self.max_batch = max_batch
        self.lanes = lanes
        self.closed = False
        self._detections = Detections(
            boxes=np.array([[5, 5, 15, 30], [30, 4, 40, 32]], np.float32),
            scores=np.array([0.9, 0.8], np.float32),
            class_ids=np.array([0, 0], np.int32),
        )

    def preprocess(self, frames: Sequence[np.ndarray]) -> PreparedBatch:
        return PreparedBatch(np.zeros((len(frames), 1), np.float32), [(64, 36)] * len(frames))

    def infer(self, batch: PreparedBatch) -> List[np.ndarray]:
        return [batch.tensor]

    def postprocess(self, outputs: List[np.ndarray], batch: PreparedBatch) -> List[Detections]:
        return [self._detections] * len(batch.frame_sizes)

    def close(self) -> None:
        self.closed = True


def three_cameras() -> Config:
    return parse_config(
        {
            "cameras": [
                {
                    "id": f"cam{n}",
                    "source": f"fake{n}.mp4",
                    "target_fps": 10,
                    "lines": [{"id": "door", "points": [[0.5, 0.0], [0.5, 1.0]]}],
                }
                for n in range(3)
            ],
            "counts": {"window_s": 1},
            "heatmap": {"window_s": 2},
        }
    )


def fake_appliance(config: Config, sinks: Sequence[WindowSink]) -> Appliance:
    """The running appliance on fast fake sources and a fixed detector, without MQTT."""
    analyses: Dict[str, CameraAnalysis] = {}
    wiring = []
    for camera in config.cameras:
        analyses[camera.id] = CameraAnalysis(config, camera, sinks)
        wiring.append((camera, FastSource(camera.id, camera.target_fps), analyses[camera.id]))
    pipeline = Pipeline(wiring, FixedDetector(max_batch=2, lanes=2), frame_skip=1, tier_name=TIER.name)
    controller = AdaptiveController([TIER], [1000.0], 30.0, config.policy, time.time)
    parts = ApplianceParts(
        config=config,
        profile=PROFILE,
        selection=TierSelection("x86", (TIER,), ()),
        controller=controller,
        pipeline=pipeline,
        analyses=analyses,
        load_detector=lambda tier: (FixedDetector(), DECISION),
    )
    return Appliance(parts, DECISION)
