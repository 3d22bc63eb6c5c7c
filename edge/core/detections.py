"""The record a detector returns for one frame (pure: numpy only)."""

from dataclasses import dataclass

import numpy as np


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
