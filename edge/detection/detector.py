"""One detector = a model family (pre-processing, decode) × an engine (runs the graph); it
implements `edge.detection.engines.base.Detector` for any pair."""

from pathlib import Path
from typing import List, Mapping, Sequence, Tuple

import numpy as np

from edge.core.detections import Detections
from edge.core.errors import ModelError
from edge.detection.engines.base import Engine, PreparedBatch
from edge.detection.families.base import ModelFamily
from edge.detection.manifest import ModelSpec
from edge.detection.pictures import Image


class FamilyDetector:
    """`family` pre-processes frames into the tensor `engine` runs and decodes its outputs."""

    def __init__(self, model: ModelSpec, family: ModelFamily, engine: Engine) -> None:
        self.name = model.name
        self.classes: Sequence[str] = model.classes
        self.family = family
        self.engine = engine
        self.input_size: Tuple[int, int] = family.input_size
        self.max_batch = engine.max_batch
        self.lanes = engine.lanes
        self.precision = engine.precision
        self.fallback_reasons: Mapping[str, str] = engine.fallback_reasons
        self.artifact: Path = engine.artifact
        self._order = family.output_order(engine.output_names, str(engine.artifact))
        self._check_runs()

    def _check_runs(self) -> None:
        """One inference on a blank frame: catches a model that loads but cannot run at this input
        size, or whose outputs the family cannot decode, at load time with exit code 3."""
        width, height = self.input_size
        try:
            outputs = self.infer(self.preprocess([np.zeros((height, width, 3), np.uint8)]))
        except Exception as exc:
            raise ModelError(
                f"{self.artifact}: model does not run at {width}x{height} ({type(exc).__name__})"
            ) from None
        self.family.check_outputs(outputs, str(self.artifact))

    def preprocess(self, frames: Sequence[Image]) -> PreparedBatch:
        if not 0 < len(frames) <= self.max_batch:
            raise ValueError(f"batch of {len(frames)} frames; this detector takes 1..{self.max_batch}")
        return self.family.preprocess(frames, self.engine.input_dtype)

    def infer(self, batch: PreparedBatch) -> List[np.ndarray]:
        ordered: List[np.ndarray] = []
        for tensor in [batch.tensor, *batch.more_tensors]:
            outputs = self.engine.run(tensor)
            ordered += [outputs[index] for index in self._order]
        return ordered

    def postprocess(self, outputs: List[np.ndarray], batch: PreparedBatch) -> List[Detections]:
        return self.family.decode(outputs, batch)

    def close(self) -> None:
        self.engine.close()
