"""The two interfaces of the detection layer and the records passed across them.

An **engine** runs a model's graph: input tensor in, output tensors out (`Engine`). A
**detector** is a model family (pre-processing and decode, edge.detection.families) composed
with an engine: it takes a batch of BGR uint8 frames (any sizes) and returns one `Detections`
per frame in that frame's pixels (`Detector`). The detector is split into three stages so the
pipeline and the benchmark can time them separately; `detect()` chains them.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple

import numpy as np

from edge.core.detections import Detections
from edge.detection.int8.sets import CalibrationFrame
from edge.detection.manifest import ModelSpec
from edge.detection.pictures import Image


def physical_cores() -> int:
    """Physical cores of this machine (SMT siblings add little to convolutions)."""
    try:
        import psutil

        count = psutil.cpu_count(logical=False)
    except ImportError:  # pragma: no cover - psutil is a dependency; keep working without it
        count = None
    return count or os.cpu_count() or 1


@dataclass(frozen=True)
class EngineOptions:
    """How to load a model on an engine (one tier of the policy table)."""

    precision: str = "int8"  # fp32 | fp16 | int8
    input_size: Tuple[int, int] = (300, 300)  # (width, height)
    # SSD: the input's shorter side is input_size[1], the longer one follows the frame's aspect
    # ratio (a 4:3 frame at 300 runs at 400x300) instead of squashing the frame into a square.
    keep_aspect: bool = False
    # SSD: a second pass with this shorter side (0 = none) for people too large for the main
    # input (edge.detection.families.ssd).
    coarse_input: int = 0
    max_batch: int = 1
    # CPU execution: most input pixels per call (0 = no limit); see DetectorConfig.cpu_batch_pixels.
    cpu_batch_pixels: int = 0
    # CPU execution: frames inferred at once, each on its own thread with cores / lanes intra-op
    # threads (1: one call at a time on every core); see DetectorConfig.cpu_lanes.
    lanes: int = 1
    score_threshold: float = 0.4
    nms_iou: float = 0.45
    dla_core: int = -1  # TensorRT only; -1 = GPU
    cache_dir: str = ""  # where built engines / quantised models are cached


@dataclass(frozen=True)
class CalibrationSource:
    """Frames that calibrate an INT8 build inside an engine, and where its table is kept."""

    frames: Sequence[CalibrationFrame]
    table_path: Path
    batch_size: int = 8


@dataclass(frozen=True)
class EngineRequest:
    """What an engine plug-in is opened with. `to_tensor` is the model family's pre-processing
    (frames -> input tensor), for engines that calibrate INT8 themselves."""

    model: ModelSpec
    options: EngineOptions
    to_tensor: Callable[[Sequence[np.ndarray]], np.ndarray]
    calibration: Optional[CalibrationSource] = None


class Engine(Protocol):
    """A model graph loaded on one backend."""

    precision: str  # what runs, after any fallback (int8 | fp16 | fp32)
    fallback_reasons: Mapping[str, str]  # precision -> why it was not used
    artifact: Path  # the file that runs: the ONNX model or a built engine plan
    max_batch: int
    lanes: int  # calls `run` may take at once from different threads (1: one at a time)
    input_dtype: type  # element type of the input tensor (float families)
    output_names: List[str]

    def run(self, tensor: np.ndarray) -> List[np.ndarray]:
        """Outputs in `output_names` order."""
        ...

    def close(self) -> None: ...


@dataclass
class PreparedBatch:
    """Output of `preprocess`: the input tensor plus what `postprocess` needs to map boxes back."""

    tensor: np.ndarray
    frame_sizes: List[Tuple[int, int]]  # (width, height) of each source frame
    extras: Dict[str, object] = field(default_factory=dict)
    # Further input tensors of the same frames that the engine runs too (the SSD's coarse pass);
    # `postprocess` gets the outputs of every pass, one pass after the other.
    more_tensors: List[np.ndarray] = field(default_factory=list)


class Detector(Protocol):
    """A loaded model on one backend."""

    name: str
    classes: Sequence[str]
    input_size: Tuple[int, int]  # (width, height) the model sees
    max_batch: int  # frames per `infer` call the engine accepts (1 = no batching)
    lanes: int  # `infer` calls that may run at once on different threads (1 = one at a time)
    precision: str  # what runs, after any fallback
    fallback_reasons: Mapping[str, str]  # precision -> why it was not used
    artifact: Path  # the file that runs (ONNX model or engine plan)

    def preprocess(self, frames: Sequence[Image]) -> PreparedBatch: ...

    def infer(self, batch: PreparedBatch) -> List[np.ndarray]: ...

    def postprocess(self, outputs: List[np.ndarray], batch: PreparedBatch) -> List[Detections]: ...

    def close(self) -> None: ...


def detect(detector: Detector, frames: Sequence[Image]) -> List[Detections]:
    """Run the three stages on a batch no larger than `detector.max_batch`."""
    batch = detector.preprocess(frames)
    return detector.postprocess(detector.infer(batch), batch)
