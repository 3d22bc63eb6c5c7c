"""The YOLO family (Ultralytics YOLOv8/YOLO11 exports, any class set): float NCHW RGB 0..1 in,
each frame letterboxed with grey padding; one `[B, 4 + C, N]` head out, decoded to each
candidate's best class, class-aware NMS, and mapped back through the frame's letterbox.
"""

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, cast

import cv2
import numpy as np

from edge.core.detections import Detections
from edge.detection.engines.base import EngineOptions, PreparedBatch
from edge.detection.families.base import (
    DEFAULT_SETTINGS,
    PostprocessSettings,
    Size,
    clip_boxes,
    frame_sizes,
    keep_best,
)
from edge.detection.manifest import ModelSpec
from edge.detection.pictures import Image, as_bgr

YOLO_PAD_VALUE = 114  # Ultralytics' letterbox grey


@dataclass(frozen=True)
class Letterbox:
    """How a frame was fitted into the model input: scaled by `scale`, then placed at
    (`pad_x`, `pad_y`) on the padded canvas."""

    scale: float
    pad_x: float
    pad_y: float


def letterbox_geometry(frame_size: Size, input_size: Size) -> Letterbox:
    """Scale and centred padding that fit `frame_size` into `input_size` keeping the aspect ratio
    (Ultralytics' LetterBox with auto=False, centre=True)."""
    frame_w, frame_h = frame_size
    input_w, input_h = input_size
    scale = min(input_w / frame_w, input_h / frame_h)
    new_w, new_h = int(round(frame_w * scale)), int(round(frame_h * scale))
    return Letterbox(scale=scale, pad_x=(input_w - new_w) // 2, pad_y=(input_h - new_h) // 2)


def undo_letterbox(boxes: np.ndarray, letterbox: Letterbox) -> np.ndarray:
    """Boxes in model-input pixels -> boxes in source-frame pixels."""
    offset = np.array([letterbox.pad_x, letterbox.pad_y, letterbox.pad_x, letterbox.pad_y], np.float32)
    return (boxes - offset) / np.float32(letterbox.scale)


def preprocess_yolo(
    frames: Sequence[Image], size: Size, dtype: type = np.float32
) -> Tuple[np.ndarray, List[Letterbox]]:
    """Frames -> one contiguous float NCHW RGB 0..1 batch, each frame letterboxed into `size`
    (width, height) with grey padding, plus the letterbox of each frame."""
    width, height = size
    canvas = np.full((len(frames), height, width, 3), YOLO_PAD_VALUE, np.uint8)
    letterboxes = []
    for index, frame in enumerate(frames):
        frame_h, frame_w = frame.shape[:2]
        box = letterbox_geometry((frame_w, frame_h), size)
        new_w, new_h = int(round(frame_w * box.scale)), int(round(frame_h * box.scale))
        x, y = int(box.pad_x), int(box.pad_y)
        canvas[index, y : y + new_h, x : x + new_w] = cv2.resize(
            as_bgr(frame), (new_w, new_h), interpolation=cv2.INTER_LINEAR
        )
        letterboxes.append(box)
    tensor: np.ndarray = np.ascontiguousarray(canvas[..., ::-1].transpose(0, 3, 1, 2), dtype=dtype)
    tensor *= dtype(1.0 / 255.0)
    return tensor, letterboxes


def postprocess_yolo(
    output: np.ndarray,
    letterboxes: Sequence[Letterbox],
    frame_sizes: Sequence[Size],
    settings: PostprocessSettings = DEFAULT_SETTINGS,
) -> List[Detections]:
    """YOLOv8/YOLO11 head output of a batch -> one `Detections` per frame, in that frame's pixels.

    `output` (B, 4 + C, N): rows 0..3 are cx, cy, w, h in model-input pixels, rows 4.. the class
    scores (already sigmoid). Each candidate keeps its best class (Ultralytics' default), then
    class-aware NMS; boxes are mapped back through the frame's letterbox and clipped."""
    if output.ndim != 3 or output.shape[1] < 5:
        raise ValueError(f"expected a YOLO output of shape (batch, 4 + classes, boxes), got {output.shape}")
    results = []
    for index, (letterbox, frame_size) in enumerate(zip(letterboxes, frame_sizes)):
        prediction = output[index]
        class_scores = prediction[4:]
        class_ids = np.argmax(class_scores, axis=0)
        scores = class_scores[class_ids, np.arange(class_scores.shape[1])]
        candidates = np.nonzero(scores > settings.score_threshold)[0]
        if candidates.size == 0:
            results.append(Detections.empty())
            continue
        cx, cy, w, h = (prediction[k, candidates] for k in range(4))
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1).astype(np.float32)
        boxes = clip_boxes(undo_letterbox(boxes, letterbox), frame_size)
        results.append(keep_best(boxes, scores[candidates], class_ids[candidates].astype(np.int32), settings))
    return results


class YoloFamily:
    """A YOLO export at one input size; implements `edge.detection.families.base.ModelFamily`."""

    def __init__(self, model: ModelSpec, options: EngineOptions) -> None:
        self.input_size: Size = (int(options.input_size[0]), int(options.input_size[1]))
        self.settings = PostprocessSettings(options.score_threshold, options.nms_iou)

    def tensor(self, frames: Sequence[Image], dtype: Optional[type] = None) -> np.ndarray:
        return preprocess_yolo(frames, self.input_size, dtype or np.float32)[0]

    def preprocess(self, frames: Sequence[Image], dtype: Optional[type] = None) -> PreparedBatch:
        tensor, letterboxes = preprocess_yolo(frames, self.input_size, dtype or np.float32)
        return PreparedBatch(tensor, frame_sizes(frames), {"letterboxes": letterboxes})

    def output_order(self, names: Sequence[str], where: str) -> List[int]:
        return list(range(len(names)))

    def check_outputs(self, outputs: Sequence[np.ndarray], where: str) -> None:
        """The head's shape is checked by `postprocess_yolo` on every batch."""

    def decode(self, outputs: List[np.ndarray], batch: PreparedBatch) -> List[Detections]:
        letterboxes = cast(List[Letterbox], batch.extras["letterboxes"])
        return postprocess_yolo(outputs[0].astype(np.float32), letterboxes, batch.frame_sizes, self.settings)
