"""What a model family is: the pre-processing (frames -> input tensor) and the decode (output
tensors -> per-frame `Detections`) of one kind of detection head, independent of the engine that
runs the graph. Also the pieces every family's decode shares: thresholds, clipping, the NMS step.
"""

from dataclasses import dataclass
from typing import List, Optional, Protocol, Sequence, Tuple

import numpy as np

from edge.core.detections import Detections
from edge.detection.engines.base import PreparedBatch
from edge.detection.nms import MAX_DETECTIONS, nms
from edge.detection.pictures import Image

Size = Tuple[int, int]  # (width, height)


@dataclass(frozen=True)
class PostprocessSettings:
    score_threshold: float = 0.4
    nms_iou: float = 0.45
    max_detections: int = MAX_DETECTIONS


DEFAULT_SETTINGS = PostprocessSettings()


class ModelFamily(Protocol):
    """Pre- and post-processing of one model at one input size."""

    input_size: Size  # (width, height) the model sees

    def tensor(self, frames: Sequence[Image], dtype: Optional[type] = None) -> np.ndarray:
        """Frames -> the input tensor (also what calibration feeds an INT8 build)."""
        ...

    def preprocess(self, frames: Sequence[Image], dtype: Optional[type] = None) -> PreparedBatch: ...

    def output_order(self, names: Sequence[str], where: str) -> List[int]:
        """Indices of the graph's outputs in the order `decode` takes them; ModelError naming
        `where` when one is missing."""
        ...

    def check_outputs(self, outputs: Sequence[np.ndarray], where: str) -> None:
        """ModelError naming `where` when outputs of a blank frame cannot be decoded."""
        ...

    def decode(self, outputs: List[np.ndarray], batch: PreparedBatch) -> List[Detections]: ...


def frame_sizes(frames: Sequence[Image]) -> List[Size]:
    return [(int(frame.shape[1]), int(frame.shape[0])) for frame in frames]


def clip_boxes(boxes: np.ndarray, frame_size: Size) -> np.ndarray:
    width, height = frame_size
    limits = np.array([width, height, width, height], np.float32)
    return np.clip(boxes, 0.0, limits).astype(np.float32, copy=False)


def keep_best(
    boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, settings: PostprocessSettings
) -> Detections:
    """The candidates that survive class-aware NMS, best first."""
    keep = nms(boxes, scores, class_ids, settings.nms_iou, settings.max_detections)
    return Detections(
        boxes=boxes[keep].astype(np.float32),
        scores=scores[keep].astype(np.float32),
        class_ids=class_ids[keep].astype(np.int32),
    )
