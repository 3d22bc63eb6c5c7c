"""Fakes for runtime tests: a frame source that needs no video file and a detector that needs
no model, both as fast as the worker can take them."""

import threading
from typing import List, Optional, Sequence

import numpy as np

from edge.core.detections import Detections
from edge.detection.engines.base import PreparedBatch
from edge.runtime.sources import Frame, SourceStats

IMAGE = np.zeros((36, 64, 3), np.uint8)


class FastSource:
    """A `FrameSource` with a new frame whenever asked, `fps` apart in source time (so every
    frame is due at a target of `fps`), up to `frames` frames (None: endless)."""

    def __init__(self, camera_id: str, fps: float, start: float = 1_700_000_000.0, frames: Optional[int] = None):
        self.camera_id = camera_id
        self.realtime = False
        self.finished = False
        self.stats = SourceStats(connected=True)
        self.frame_ready: Optional[threading.Event] = None
        self._fps = fps
        self._start = start
        self._frames = frames
        self._index = 0

    def start(self) -> None:
        if self.frame_ready is not None:
            self.frame_ready.set()

    def stop(self) -> None:
        self.finished = True

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

    def __init__(self, max_batch: int = 2) -> None:
        self.max_batch = max_batch
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
