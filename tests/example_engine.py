"""An example engine plug-in: a plain ONNX Runtime CPU session runs the model's FP32 graph."""

from pathlib import Path
from typing import List, Mapping, Optional

import numpy as np

from edge.core.errors import ModelError
from edge.detection.engines import EnginePlugin, EngineRequest, Platform


class PlainCpuEngine:
    """Implements edge.detection.engines.base.Engine: tensor in, output tensors out."""

    def __init__(self, request: EngineRequest) -> None:
        import onnxruntime  # a backend's own package is imported when the engine is opened

        requested = request.options.precision
        self.precision = "fp32"  # this example runs the float graph only
        self.fallback_reasons: Mapping[str, str] = {} if requested == "fp32" else {requested: "fp32 only"}
        self.artifact: Path = request.model.file("fp32")  # verifies the sha256 (ModelError)
        self.max_batch = request.options.max_batch
        self.lanes = 1  # one call at a time
        self.input_dtype: type = np.float32  # what float families (YOLO) feed; SSD feeds uint8
        try:
            self._session = onnxruntime.InferenceSession(str(self.artifact), providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(f"{self.artifact}: cannot load ONNX model ({type(exc).__name__})") from None
        self._input = self._session.get_inputs()[0].name
        self.output_names: List[str] = [output.name for output in self._session.get_outputs()]

    def run(self, tensor: np.ndarray) -> List[np.ndarray]:
        return list(self._session.run(self.output_names, {self._input: tensor}))

    def close(self) -> None:
        self._session = None


def open_engine(request: EngineRequest) -> PlainCpuEngine:
    return PlainCpuEngine(request)


def can_run(profile: Platform) -> Optional[str]:
    return None if profile.onnxruntime_version else "onnxruntime is not importable"


PLUGIN = EnginePlugin("plain-cpu", __name__, can_run)
