"""The ONNX Runtime detector backend (engine name `onnxruntime`).

Runs both model families of the manifest: SSD (the default pedestrian model: uint8 NHWC RGB in,
box encodings + logits out, decoded with anchors for the input size) and YOLOv8/YOLO11 (float
NCHW RGB 0..1, letterboxed, `[B, 4 + C, N]` out). Execution providers are taken from what the
installed onnxruntime offers, best first: TensorRT, CUDA, CPU.
"""

import logging
import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, cast

import cv2
import numpy as np
import onnxruntime as ort

from edge.core.errors import ModelError
from edge.detection.anchors import ssd_anchors, usable_anchors
from edge.detection.engines import EngineOptions, register_engine
from edge.detection.engines.base import Detections, PreparedBatch
from edge.detection.manifest import ModelSpec
from edge.detection.postprocess import (
    SSD_BOX_CODER_SCALES,
    Letterbox,
    PostprocessSettings,
    Size,
    letterbox_geometry,
    nms,
    postprocess_ssd,
    postprocess_yolo,
)

log = logging.getLogger(__name__)

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
YOLO_PAD_VALUE = 114  # Ultralytics' letterbox grey
# The SSD finds objects of roughly 30 to 300 input pixels (what it saw at its trained 300x300).
# With a coarse pass, the fine pass keeps the boxes below this height in its own input pixels
# and the coarse pass the boxes above it, so each scale reports the objects it sees well.
COARSE_FROM_PX = 150.0


def choose_providers(available: Sequence[str]) -> List[str]:
    """The installed providers we use, best first; CPU is always last and always there."""
    chosen = [name for name in PREFERRED_PROVIDERS if name in available]
    return chosen if "CPUExecutionProvider" in chosen else chosen + ["CPUExecutionProvider"]


def physical_cores() -> int:
    try:
        import psutil

        count = psutil.cpu_count(logical=False)
    except ImportError:  # pragma: no cover - psutil is a dependency; keep working without it
        count = None
    return count or os.cpu_count() or 1


def session_options(threads: Optional[int] = None) -> ort.SessionOptions:
    """Settings for an edge CPU shared with decoding and tracking threads: one intra-op thread
    per physical core (SMT siblings add little to convolutions), no inter-op parallelism, and
    no busy-waiting between inferences so idle time goes to the other threads."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or physical_cores()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only; ORT's warnings about unused providers are noise here
    return options


def resolve_model_file(model: ModelSpec, precision: str, providers: Sequence[str]) -> Tuple[str, str]:
    """(manifest role, reason) of the file to load for the requested precision.

    fp16 has no file of its own: TensorRT builds it from the fp32 file, elsewhere fp32 runs.
    A model without an INT8 file (e.g. a YOLO export) runs its fp32 file."""
    if precision == "fp16":
        if "TensorrtExecutionProvider" in providers:
            return "fp32", "fp16 built by the TensorRT execution provider from the fp32 file"
        return "fp32", f"fp16 needs TensorRT; {providers[0]} runs the fp32 file"
    if precision == "int8" and "int8" not in model.files and "fp32" in model.files:
        return "fp32", f"model {model.name} has no int8 file; using the fp32 file"
    return precision, ""


def aspect_input(frame_size: Tuple[int, int], shorter: int) -> Tuple[int, int]:
    """(width, height) of an input whose shorter side is `shorter` and whose aspect ratio is the
    frame's (rounded to whole pixels), for SSD inputs that keep the aspect."""
    width, height = frame_size
    if width >= height:
        return int(round(shorter * width / height)), shorter
    return shorter, int(round(shorter * height / width))


def preprocess_ssd(frames: Sequence[np.ndarray], size: Tuple[int, int]) -> np.ndarray:
    """BGR frames -> one contiguous uint8 NHWC RGB batch, each frame plainly resized to `size`
    (width, height) as the SSD model was trained."""
    width, height = size
    batch = np.empty((len(frames), height, width, 3), np.uint8)
    for index, frame in enumerate(frames):
        resized = cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)
        cv2.cvtColor(resized, cv2.COLOR_BGR2RGB, dst=batch[index])
    return batch


def preprocess_yolo(
    frames: Sequence[np.ndarray], size: Tuple[int, int], dtype: type = np.float32
) -> Tuple[np.ndarray, List[Letterbox]]:
    """BGR frames -> one contiguous float NCHW RGB 0..1 batch, each frame letterboxed into `size`
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
            frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR
        )
        letterboxes.append(box)
    tensor: np.ndarray = np.ascontiguousarray(canvas[..., ::-1].transpose(0, 3, 1, 2), dtype=dtype)
    tensor *= dtype(1.0 / 255.0)
    return tensor, letterboxes


class OnnxRuntimeDetector:
    """A model loaded in an ONNX Runtime session; implements `edge.detection.engines.base.Detector`.
    `threads` overrides the intra-op thread count (default: physical cores)."""

    def __init__(self, model: ModelSpec, options: EngineOptions, threads: Optional[int] = None) -> None:
        if model.family not in ("ssd", "yolo"):
            raise ModelError(f"model {model.name}: unknown family {model.family!r} (expected ssd or yolo)")
        self.name = model.name
        self.family = model.family
        self.classes: Sequence[str] = model.classes
        self.input_size: Tuple[int, int] = (int(options.input_size[0]), int(options.input_size[1]))
        self.keep_aspect = options.keep_aspect and model.family == "ssd"
        coarse = int(options.coarse_input)
        self.coarse_input = coarse if model.family == "ssd" and 0 < coarse < self.input_size[1] else 0
        self.settings = PostprocessSettings(options.score_threshold, options.nms_iou)
        self.providers = choose_providers(ort.get_available_providers())
        role, reason = resolve_model_file(model, options.precision, self.providers)
        if reason:
            log.info("%s: %s", model.name, reason)
        self.precision = role
        self.path = model.file(role)  # verifies the sha256
        self._session = self._load(self.path, options, threads)
        self._input = self._session.get_inputs()[0]
        self._output_names = self._outputs_for(model)
        declared_batch = self._input.shape[0]
        self.max_batch = (
            min(options.max_batch, declared_batch) if isinstance(declared_batch, int) else options.max_batch
        )
        self._anchors = self._anchors_for(model) if self.family == "ssd" else None
        self._usable = usable_anchors(self.input_size) if self.family == "ssd" else None
        scales = cast(Sequence[float], model.extras.get("box_coder_scales", SSD_BOX_CODER_SCALES))
        self._box_coder_scales: Tuple[float, ...] = tuple(float(value) for value in scales)
        self._logit_scale = float(cast(float, model.extras.get("logit_scale", 1.0)))
        self._check_runs()

    def _load(
        self, path: "os.PathLike[str]", options: EngineOptions, threads: Optional[int]
    ) -> ort.InferenceSession:
        provider_options: List[Dict[str, object]] = []
        for provider in self.providers:
            if provider == "TensorrtExecutionProvider":
                trt: Dict[str, object] = {"trt_fp16_enable": options.precision == "fp16"}
                if options.cache_dir:
                    trt.update(trt_engine_cache_enable=True, trt_engine_cache_path=options.cache_dir)
                if options.dla_core >= 0:
                    trt.update(trt_dla_enable=True, trt_dla_core=options.dla_core)
                provider_options.append(trt)
            else:
                provider_options.append({})
        try:
            return ort.InferenceSession(
                str(path),
                sess_options=session_options(threads),
                providers=self.providers,
                provider_options=provider_options,
            )
        except Exception as exc:  # ORT raises its own pybind types (InvalidProtobuf, Fail, ...)
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{path}: cannot load ONNX model ({detail[:200]})") from None

    def _outputs_for(self, model: ModelSpec) -> List[str]:
        """Output names in the order postprocess expects (SSD: box encodings, then logits)."""
        names = [output.name for output in self._session.get_outputs()]
        if self.family != "ssd":
            return names
        declared = cast(Mapping[str, str], model.extras.get("outputs", {}))
        wanted = [declared.get("box_encodings", names[0]), declared.get("class_logits", names[-1])]
        missing = [name for name in wanted if name not in names]
        if missing:
            raise ModelError(f"{self.path}: no output {missing[0]!r} (outputs: {', '.join(names)})")
        return wanted

    def _anchors_for(self, model: ModelSpec) -> np.ndarray:
        width, height = self.input_size
        if width != height and not self.keep_aspect:
            raise ModelError(f"model {model.name}: SSD input must be square, got {width}x{height}")
        if model.supported_inputs and width not in model.supported_inputs:
            supported = ", ".join(str(s) for s in model.supported_inputs)
            raise ModelError(f"model {model.name}: input {width} not supported (supported: {supported})")
        if (width, height) == tuple(model.input_size) and "anchors" in model.files:
            try:
                return np.load(model.file("anchors")).astype(np.float32)
            except ValueError as exc:
                raise ModelError(f"{model.files['anchors'].path}: cannot read anchors ({exc})") from None
        return ssd_anchors(width)

    def _check_runs(self) -> None:
        """One inference on a blank frame: catches a model that loads but cannot run at this input
        size, or whose box count does not match the anchors, at load time with exit code 3."""
        width, height = self.input_size
        try:
            outputs = self.infer(self.preprocess([np.zeros((height, width, 3), np.uint8)]))
        except Exception as exc:
            raise ModelError(
                f"{self.path}: model does not run at {width}x{height} ({type(exc).__name__})"
            ) from None
        if self._anchors is not None and outputs[0].shape[1] != len(self._anchors):
            raise ModelError(
                f"{self.path}: model predicts {outputs[0].shape[1]} boxes at {width}x{height}, "
                f"expected {len(self._anchors)} anchors"
            )

    def preprocess(self, frames: Sequence[np.ndarray]) -> PreparedBatch:
        if not 0 < len(frames) <= self.max_batch:
            raise ValueError(f"batch of {len(frames)} frames; this detector takes 1..{self.max_batch}")
        sizes = [(int(frame.shape[1]), int(frame.shape[0])) for frame in frames]
        if self.family == "ssd":
            # With keep_aspect the first frame sets the batch's input; a frame of another aspect
            # in the same batch is resized to it, as every frame is without keep_aspect.
            size = aspect_input(sizes[0], self.input_size[1]) if self.keep_aspect else self.input_size
            extras: Dict[str, object] = {"input_size": size}
            if self.coarse_input:
                coarse = self.coarse_input
                coarse_size = aspect_input(sizes[0], coarse) if self.keep_aspect else (coarse, coarse)
                extras.update(coarse_size=coarse_size, coarse=preprocess_ssd(frames, coarse_size))
            return PreparedBatch(preprocess_ssd(frames, size), sizes, extras)
        dtype = np.float16 if self._input.type == "tensor(float16)" else np.float32
        tensor, letterboxes = preprocess_yolo(frames, self.input_size, dtype)
        return PreparedBatch(tensor, sizes, {"letterboxes": letterboxes})

    def infer(self, batch: PreparedBatch) -> List[np.ndarray]:
        outputs: List[np.ndarray] = self._session.run(self._output_names, {self._input.name: batch.tensor})
        if "coarse" in batch.extras:
            outputs += self._session.run(self._output_names, {self._input.name: batch.extras["coarse"]})
        return outputs

    def _decode_ssd(
        self, box_encodings: np.ndarray, class_logits: np.ndarray, size: Tuple[int, int], frame_sizes: List[Size]
    ) -> List[Detections]:
        anchors, usable = self._anchors, self._usable
        if size != self.input_size:
            anchors, usable = ssd_anchors(size), usable_anchors(size)
        assert anchors is not None and usable is not None
        return postprocess_ssd(
            box_encodings,
            class_logits,
            anchors,
            frame_sizes,
            self.settings,
            self._box_coder_scales,
            self._logit_scale,
            usable,
        )

    def _merge_scales(
        self, fine: List[Detections], coarse: List[Detections], fine_height: int, frame_sizes: List[Size]
    ) -> List[Detections]:
        """Per frame, the fine pass's small boxes and the coarse pass's large ones, then NMS
        across both (a person at the boundary height may be found by both)."""
        merged = []
        for small, large, (_, frame_h) in zip(fine, coarse, frame_sizes):
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

    def postprocess(self, outputs: List[np.ndarray], batch: PreparedBatch) -> List[Detections]:
        if self.family == "ssd":
            size = cast(Tuple[int, int], batch.extras.get("input_size", self.input_size))
            fine = self._decode_ssd(outputs[0], outputs[1], size, batch.frame_sizes)
            if len(outputs) < 4:
                return fine
            coarse_size = cast(Tuple[int, int], batch.extras["coarse_size"])
            coarse = self._decode_ssd(outputs[2], outputs[3], coarse_size, batch.frame_sizes)
            return self._merge_scales(fine, coarse, size[1], batch.frame_sizes)
        letterboxes = cast(List[Letterbox], batch.extras["letterboxes"])
        return postprocess_yolo(outputs[0].astype(np.float32), letterboxes, batch.frame_sizes, self.settings)

    def close(self) -> None:
        self._session = None


@register_engine("onnxruntime")
def create_onnxruntime_detector(model: ModelSpec, options: EngineOptions) -> OnnxRuntimeDetector:
    detector = OnnxRuntimeDetector(model, options)
    log.info(
        "loaded %s (%s, %dx%d, batch <= %d) on %s",
        model.name,
        detector.precision,
        detector.input_size[0],
        detector.input_size[1],
        detector.max_batch,
        ", ".join(detector.providers),
    )
    return detector
