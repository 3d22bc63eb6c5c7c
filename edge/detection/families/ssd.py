"""The SSD family (the default SSDLite-MobileNetV2 pedestrian model): uint8 NHWC RGB in, each
frame plainly resized to the input; box encodings + class logits out, decoded against the
anchors of the input size (edge.detection.families.ssd_anchors) with the TF Object Detection
API box coder, then class-aware NMS and the mapping back to source-frame pixels.

Two options serve real scenes (measured on PETS09 S2.L1, benchmarks/results/real_scene.md):
- `keep_aspect`: the tier's input is the shorter side and the longer one follows the frame's
  aspect ratio (4:3 at 576 runs at 768x576) instead of squashing the frame into a square, which
  made boxes ~27 % too wide. The first frame of a batch sets the batch's input size; anchors and
  the usable-layer mask are generated per size.
- `coarse_input`: the SSD finds objects of roughly 30 to 300 input pixels (what it saw at its
  trained 300x300), so at a large input a person close to the camera is missed. A second pass
  at the coarse input, run by the same engine, reports the boxes of at least `COARSE_FROM_PX`
  (in the main input's pixels) and the main pass the smaller ones, merged by NMS. It lives in
  the family so every engine whose input shape may change gets it.
Scores of degenerate predictor layers (the phantom box, ssd_anchors.usable_anchors) are zeroed.
"""

from typing import List, Mapping, Optional, Sequence, cast

import numpy as np

from edge.core.detections import Detections
from edge.core.errors import ModelError
from edge.detection.engines.base import EngineOptions, PreparedBatch
from edge.detection.families.base import (
    DEFAULT_SETTINGS,
    PostprocessSettings,
    Size,
    clip_boxes,
    frame_sizes,
    keep_best,
)
from edge.detection.families.ssd_anchors import ssd_anchors, usable_anchors
from edge.detection.manifest import ModelSpec
from edge.detection.nms import nms
from edge.detection.pictures import Image, resized_rgb

SSD_BOX_CODER_SCALES = (10.0, 10.0, 5.0, 5.0)  # ty, tx, th, tw (TF Object Detection API default)
# With a coarse pass, the main pass keeps the boxes below this height in its own input pixels and
# the coarse pass the boxes above it, so each scale reports the people it sees well.
COARSE_FROM_PX = 150.0


def aspect_input(frame_size: Size, shorter: int) -> Size:
    """(width, height) of an input whose shorter side is `shorter` and whose aspect ratio is the
    frame's (rounded to whole pixels)."""
    width, height = frame_size
    if width >= height:
        return int(round(shorter * width / height)), shorter
    return shorter, int(round(shorter * height / width))


def preprocess_ssd(frames: Sequence[Image], size: Size) -> np.ndarray:
    """Frames -> one contiguous uint8 NHWC RGB batch, each frame plainly resized to `size`
    (width, height) as the SSD model was trained (an I420 picture straight from its planes)."""
    width, height = size
    batch = np.empty((len(frames), height, width, 3), np.uint8)
    for index, frame in enumerate(frames):
        resized_rgb(frame, (width, height), out=batch[index])
    return batch


def decode_ssd_boxes(
    encodings: np.ndarray, anchors: np.ndarray, scales: Sequence[float] = SSD_BOX_CODER_SCALES
) -> np.ndarray:
    """TF Object Detection API `FasterRcnnBoxCoder` decode.

    `encodings` (..., N, 4) as (ty, tx, th, tw); `anchors` (N, 4) as (ymin, xmin, ymax, xmax),
    normalised. Returns (..., N, 4) boxes as (x1, y1, x2, y2), normalised, not clipped."""
    anchors = anchors.astype(np.float32, copy=False)
    anchor_h = anchors[:, 2] - anchors[:, 0]
    anchor_w = anchors[:, 3] - anchors[:, 1]
    anchor_cy = anchors[:, 0] + 0.5 * anchor_h
    anchor_cx = anchors[:, 1] + 0.5 * anchor_w
    ty, tx, th, tw = (encodings[..., k] / np.float32(scales[k]) for k in range(4))
    cy = ty * anchor_h + anchor_cy
    cx = tx * anchor_w + anchor_cx
    half_h = 0.5 * np.exp(th) * anchor_h
    half_w = 0.5 * np.exp(tw) * anchor_w
    return np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=-1).astype(np.float32)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def postprocess_ssd(
    box_encodings: np.ndarray,
    class_logits: np.ndarray,
    anchors: np.ndarray,
    frame_sizes: Sequence[Size],
    settings: PostprocessSettings = DEFAULT_SETTINGS,
    box_coder_scales: Sequence[float] = SSD_BOX_CODER_SCALES,
    logit_scale: float = 1.0,
    usable: Optional[np.ndarray] = None,
) -> List[Detections]:
    """SSD outputs of a batch -> one `Detections` per frame, in that frame's pixels.

    `box_encodings` (B, N, 4); `class_logits` (B, N, 1 + C) with column 0 the background, scores
    by sigmoid (the TF post-processor's converter); `anchors` (N, 4) for the input size used.
    The frame was plainly resized to the input, so normalised boxes scale by the frame size.
    Like TF's post-processor, a box may be kept for several classes and boxes are clipped to
    the image before NMS. `usable` (N,) bool, when given, drops the anchors of degenerate layers
    (`ssd_anchors.usable_anchors`: the phantom near-full-frame box)."""
    if box_encodings.ndim == 4:  # (B, N, 1, 4), the uncut TF layout
        box_encodings = box_encodings[:, :, 0, :]
    if box_encodings.shape[1] != len(anchors):
        raise ValueError(f"model predicts {box_encodings.shape[1]} boxes but there are {len(anchors)} anchors")
    results = []
    for index, frame_size in enumerate(frame_sizes):
        scores = sigmoid(class_logits[index, :, 1:] / np.float32(logit_scale))
        if usable is not None:
            scores = scores * usable[:, None]
        anchor_idx, class_idx = np.nonzero(scores > settings.score_threshold)
        if anchor_idx.size == 0:
            results.append(Detections.empty())
            continue
        normalised = decode_ssd_boxes(box_encodings[index, anchor_idx], anchors[anchor_idx], box_coder_scales)
        width, height = frame_size
        pixels = clip_boxes(normalised * np.array([width, height, width, height], np.float32), frame_size)
        results.append(keep_best(pixels, scores[anchor_idx, class_idx], class_idx.astype(np.int32), settings))
    return results


def check_input(model: ModelSpec, size: int) -> None:
    """ModelError unless the model's manifest lists `size` (the input's shorter side)."""
    if model.supported_inputs and size not in model.supported_inputs:
        supported = ", ".join(str(s) for s in model.supported_inputs)
        raise ModelError(f"model {model.name}: input {size} not supported (supported: {supported})")


def model_anchors(model: ModelSpec, input_size: Size) -> np.ndarray:
    """The anchors of `model` at `input_size` (width, height): the file frozen from the graph at
    the native size, else generated."""
    if tuple(input_size) == tuple(model.input_size) and "anchors" in model.files:
        try:
            return np.load(model.file("anchors")).astype(np.float32)
        except ValueError as exc:
            raise ModelError(f"{model.files['anchors'].path}: cannot read anchors ({exc})") from None
    return ssd_anchors(input_size)


class SsdFamily:
    """An SSD model at one input size; implements `edge.detection.families.base.ModelFamily`."""

    def __init__(self, model: ModelSpec, options: EngineOptions) -> None:
        self.model = model
        self.input_size: Size = (int(options.input_size[0]), int(options.input_size[1]))
        width, height = self.input_size
        if width != height and not options.keep_aspect:
            raise ModelError(f"model {model.name}: SSD input must be square, got {width}x{height}")
        check_input(model, height)
        self.keep_aspect = options.keep_aspect
        coarse = int(options.coarse_input)
        self.coarse_input = coarse if 0 < coarse < height else 0
        if self.coarse_input:
            check_input(model, self.coarse_input)
        self.settings = PostprocessSettings(options.score_threshold, options.nms_iou)
        scales = cast(Sequence[float], model.extras.get("box_coder_scales", SSD_BOX_CODER_SCALES))
        self.box_coder_scales = tuple(float(value) for value in scales)
        self.logit_scale = float(cast(float, model.extras.get("logit_scale", 1.0)))
        self.declared_outputs = cast(Mapping[str, str], model.extras.get("outputs", {}))
        self.anchors = model_anchors(model, self.input_size)

    def tensor(self, frames: Sequence[Image], dtype: Optional[type] = None) -> np.ndarray:
        return preprocess_ssd(frames, self.input_size)  # the graph takes uint8 whatever the engine

    def _size(self, frame_size: Size, shorter: int) -> Size:
        return aspect_input(frame_size, shorter) if self.keep_aspect else (shorter, shorter)

    def _main_input(self, frame_size: Size) -> int:
        """The tier's input; with keep_aspect and a frame whose shorter side is smaller, the
        largest input the model takes that does not enlarge the frame. Enlarging adds cost, not
        detail: a 640x360 frame at 576 ran at 1024x576, 2.6 times the pixels, and a 2-camera
        demo on a 2-core CPU no longer held its frame rate."""
        tier = self.input_size[1]
        shorter = min(frame_size)
        if not self.keep_aspect or shorter >= tier:
            return tier
        fitting = [size for size in self.model.supported_inputs if size <= shorter]
        return max(fitting) if fitting else tier

    def preprocess(self, frames: Sequence[Image], dtype: Optional[type] = None) -> PreparedBatch:
        # With keep_aspect the first frame sets the batch's input; a frame of another aspect in
        # the same batch is resized to it, as every frame is without keep_aspect.
        sizes = frame_sizes(frames)
        main = self._main_input(sizes[0])
        coarse = [self.coarse_input] if self.coarse_input and self.coarse_input < main else []
        passes = [main] + coarse
        inputs = [self._size(sizes[0], shorter) for shorter in passes]
        tensors = [preprocess_ssd(frames, size) for size in inputs]
        return PreparedBatch(tensors[0], sizes, {"inputs": inputs}, tensors[1:])

    def output_order(self, names: Sequence[str], where: str) -> List[int]:
        """Box encodings, then logits (named in the manifest's extras, else first and last)."""
        wanted = [
            self.declared_outputs.get("box_encodings", names[0]),
            self.declared_outputs.get("class_logits", names[-1]),
        ]
        missing = [name for name in wanted if name not in names]
        if missing:
            raise ModelError(f"{where}: no output {missing[0]!r} (outputs: {', '.join(names)})")
        return [list(names).index(name) for name in wanted]

    def check_outputs(self, outputs: Sequence[np.ndarray], where: str) -> None:
        width, height = self.input_size
        if outputs[0].shape[1] != len(self.anchors):
            raise ModelError(
                f"{where}: model predicts {outputs[0].shape[1]} boxes at {width}x{height}, "
                f"expected {len(self.anchors)} anchors"
            )

    def _decode_pass(
        self, box_encodings: np.ndarray, class_logits: np.ndarray, size: Size, batch: PreparedBatch
    ) -> List[Detections]:
        anchors = self.anchors if size == self.input_size else model_anchors(self.model, size)
        return postprocess_ssd(
            box_encodings.astype(np.float32, copy=False),
            class_logits.astype(np.float32, copy=False),
            anchors,
            batch.frame_sizes,
            self.settings,
            self.box_coder_scales,
            self.logit_scale,
            usable_anchors(size),
        )

    def decode(self, outputs: List[np.ndarray], batch: PreparedBatch) -> List[Detections]:
        inputs = cast(List[Size], batch.extras.get("inputs", [self.input_size]))
        passes = [self._decode_pass(outputs[2 * k], outputs[2 * k + 1], size, batch) for k, size in enumerate(inputs)]
        if len(passes) == 1:
            return passes[0]
        return self._merge_scales(passes[0], passes[1], inputs[0][1], batch.frame_sizes)

    def _merge_scales(
        self, fine: List[Detections], coarse: List[Detections], fine_height: int, sizes: Sequence[Size]
    ) -> List[Detections]:
        """Per frame, the main pass's small boxes and the coarse pass's large ones, then NMS
        across both (a person at the boundary height may be found by both)."""
        merged = []
        for small, large, (_, frame_h) in zip(fine, coarse, sizes):
            to_fine_px = fine_height / float(frame_h)
            small = small.select((small.boxes[:, 3] - small.boxes[:, 1]) * to_fine_px < COARSE_FROM_PX)
            large = large.select((large.boxes[:, 3] - large.boxes[:, 1]) * to_fine_px >= COARSE_FROM_PX)
            both = Detections(
                np.concatenate([small.boxes, large.boxes]),
                np.concatenate([small.scores, large.scores]),
                np.concatenate([small.class_ids, large.class_ids]),
            )
            keep = nms(both.boxes, both.scores, both.class_ids, self.settings.nms_iou, self.settings.max_detections)
            merged.append(both.select(keep))
        return merged
