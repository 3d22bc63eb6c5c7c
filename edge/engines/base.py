"""The detector interface every inference backend implements, and the record it returns.

A detector takes a batch of BGR uint8 frames (any sizes) and returns one `Detections` per
frame with boxes in that frame's pixel coordinates. It is split into three stages so the
pipeline and the benchmark can time them separately; `detect()` chains them.
"""

from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

import numpy as np

try:  # Python 3.8 has Protocol in typing; keep the import explicit for readers.
    from typing import Protocol
except ImportError:  # pragma: no cover
    from typing_extensions import Protocol  # type: ignore[assignment]


@dataclass(frozen=True)
class Detections:
    """Detections of one frame: `boxes` (N, 4) float32 x1, y1, x2, y2 in source pixels,
    `scores` (N,) float32 in 0..1, `class_ids` (N,) int32 indices into the model's classes."""

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.scores)
        if self.boxes.shape != (n, 4) or self.class_ids.shape != (n,):
            raise ValueError(
                f"inconsistent detections: boxes {self.boxes.shape}, scores {self.scores.shape}, "
                f"class_ids {self.class_ids.shape}"
            )

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> "Detections":
        return cls(
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            class_ids=np.zeros((0,), np.int32),
        )

    def select(self, mask: np.ndarray) -> "Detections":
        """The subset picked by a boolean mask or an index array."""
        return Detections(self.boxes[mask], self.scores[mask], self.class_ids[mask])


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
