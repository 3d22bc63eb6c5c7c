"""MOT-format ground truth and the scoring helpers of `video-analysis evaluate`.

A MOT Challenge file has one box per line, `frame,id,left,top,width,height,flag,x,y,z`, frames
1-based (frame n is the video's frame n - 1), `flag` 0 marking boxes the benchmark ignores (neither
a miss nor a false positive when detected). Only the first seven columns are read; a file with
six columns (no flag) counts every box.

Detections are matched to ground truth per frame by an optimal one-to-one assignment on IoU
(scipy's `linear_sum_assignment`, as motmetrics does); a detection left unmatched that covers an
ignored box by the same IoU is dropped rather than counted as a false positive. True line
crossings come from the ground-truth foot points (bottom centre) run through the product's own
`LineCounter`, so the truth follows exactly the rule the appliance counts with.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from edge.core.analytics import LineCounter, LineSpec
from edge.core.assignment import linear_sum_assignment
from edge.core.errors import ConfigError

Point = Tuple[float, float]


@dataclass(frozen=True)
class FrameTruth:
    """Ground truth of one video frame: `boxes` (N, 4) x1 y1 x2 y2 pixels, `ids` (N,), and
    `counted` (N,) bool, False for boxes the benchmark ignores."""

    ids: np.ndarray
    boxes: np.ndarray
    counted: np.ndarray

    @classmethod
    def empty(cls) -> "FrameTruth":
        return cls(np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0, bool))

    def people(self) -> int:
        return int(np.count_nonzero(self.counted))


@dataclass(frozen=True)
class GroundTruth:
    """Per 0-based video frame index, its boxes; frames without a line are empty."""

    frames: Dict[int, FrameTruth]
    last_frame: int  # highest 0-based frame index annotated

    def at(self, index: int) -> FrameTruth:
        return self.frames.get(index, FrameTruth.empty())

    def identities(self) -> int:
        ids = {int(i) for truth in self.frames.values() for i in truth.ids[truth.counted]}
        return len(ids)


def read_mot(path: Path) -> GroundTruth:
    """Parse a MOT ground-truth file; ConfigError naming the file and line on bad input."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ground truth ({exc.strerror})") from None
    rows: Dict[int, List[Tuple[int, float, float, float, float, bool]]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.replace(" ", "").split(",")
        try:
            if len(fields) < 6:
                raise ValueError("expected frame,id,left,top,width,height[,flag,...]")
            frame, track_id = int(float(fields[0])), int(float(fields[1]))
            left, top, width, height = (float(value) for value in fields[2:6])
            flag = float(fields[6]) if len(fields) > 6 else 1.0
            if frame < 1:
                raise ValueError(f"frame {frame} (frames are 1-based)")
            if not (np.isfinite([left, top, width, height]).all() and width > 0 and height > 0):
                raise ValueError("box must be finite with positive width and height")
        except ValueError as exc:
            raise ConfigError(f"{path}:{number}: {exc}") from None
        rows.setdefault(frame - 1, []).append((track_id, left, top, left + width, top + height, flag != 0))
    if not rows:
        raise ConfigError(f"{path}: no ground-truth boxes")
    frames = {
        index: FrameTruth(
            ids=np.array([r[0] for r in boxes], np.int64),
            boxes=np.array([r[1:5] for r in boxes], np.float64),
            counted=np.array([r[5] for r in boxes], bool),
        )
        for index, boxes in rows.items()
    }
    return GroundTruth(frames, max(frames))


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in `a` (N, 4) with every box in `b` (M, 4), x1 y1 x2 y2."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


@dataclass(frozen=True)
class FrameMatch:
    """One frame's detections against its ground truth at one IoU threshold. `pairs` are
    (detection index, ground-truth index) of the matches; `ignored` the detections dropped
    because they cover an ignored box."""

    pairs: List[Tuple[int, int]]
    true_positives: int
    false_positives: int
    misses: int
    ignored: List[int] = field(default_factory=list)


def match_frame(boxes: np.ndarray, truth: FrameTruth, iou_threshold: float) -> FrameMatch:
    """Optimal one-to-one matching of detection boxes (N, 4) to the counted ground truth."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    counted = np.flatnonzero(truth.counted)
    iou = iou_matrix(boxes, truth.boxes[counted])
    pairs: List[Tuple[int, int]] = []
    if iou.size:
        rows, cols = linear_sum_assignment(-iou)
        pairs = [(int(r), int(counted[c])) for r, c in zip(rows, cols) if iou[r, c] >= iou_threshold]
    matched = {d for d, _ in pairs}
    left = np.array([d for d in range(len(boxes)) if d not in matched], np.int64)
    ignored: List[int] = []
    skipped = np.flatnonzero(~truth.counted)
    if len(left) and len(skipped):
        cover = iou_matrix(boxes[left], truth.boxes[skipped]).max(axis=1) >= iou_threshold
        ignored = left[cover].tolist()
    return FrameMatch(
        pairs=pairs,
        true_positives=len(pairs),
        false_positives=len(left) - len(ignored),
        misses=len(counted) - len(pairs),
        ignored=ignored,
    )


@dataclass(frozen=True)
class Crossings:
    count_in: int
    count_out: int


def foot_points(boxes: np.ndarray, frame_size: Tuple[int, int]) -> np.ndarray:
    """Bottom centres of boxes (N, 4) in pixels, normalised by the frame size: (N, 2)."""
    width, height = frame_size
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2.0 / width, boxes[:, 3] / height], axis=1)


def true_crossings(
    truth: GroundTruth,
    lines: Sequence[LineSpec],
    frame_size: Tuple[int, int],
    min_distance: float,
    frames: Optional[Sequence[int]] = None,
) -> Dict[str, Crossings]:
    """Crossings of every line by the counted ground-truth people, with the product's rule,
    over `frames` (0-based indices; default every annotated frame)."""
    counters = [LineCounter(line.line_id, line.a, line.b, min_distance) for line in lines]
    indices = range(truth.last_frame + 1) if frames is None else frames
    for index in indices:
        frame = truth.at(index)
        ids = frame.ids[frame.counted].tolist()
        feet = foot_points(frame.boxes[frame.counted], frame_size)
        for counter in counters:
            counter.observe(ids, feet)
    return {counter.line_id: Crossings(counter.count_in, counter.count_out) for counter in counters}
