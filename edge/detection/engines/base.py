"""The detector interface every inference backend implements, and the record it returns.

A detector takes a batch of BGR uint8 frames (any sizes) and returns one `Detections` per
frame with boxes in that frame's pixel coordinates. It is split into three stages so the
pipeline and the benchmark can time them separately; `detect()` chains them.
"""

from dataclasses import dataclass, field
from typing import Dict, List, Protocol, Sequence, Tuple

import numpy as np

from edge.core.detections import Detections


@dataclass
class PreparedBatch:
    """Output of `preprocess`: the input tensor plus what `postprocess` needs to map boxes back."""

    tensor: np.ndarray
    frame_sizes: List[Tuple[int, int]]  # (width, height) of each source frame
    extras: Dict[str, object] = field(default_factory=dict)


class Detector(Protocol):
    """A loaded model on one backend."""

    name: str
    classes: Sequence[str]
    input_size: Tuple[int, int]  # (width, height) the model sees
    max_batch: int  # frames per `infer` call the engine accepts (1 = no batching)

    def preprocess(self, frames: Sequence[np.ndarray]) -> PreparedBatch: ...

    def infer(self, batch: PreparedBatch) -> List[np.ndarray]: ...

    def postprocess(self, outputs: List[np.ndarray], batch: PreparedBatch) -> List[Detections]: ...

    def close(self) -> None: ...


def detect(detector: Detector, frames: Sequence[np.ndarray]) -> List[Detections]:
    """Run the three stages on a batch no larger than `detector.max_batch`."""
    batch = detector.preprocess(frames)
    return detector.postprocess(detector.infer(batch), batch)
