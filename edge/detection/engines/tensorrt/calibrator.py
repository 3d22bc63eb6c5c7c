"""TensorRT's INT8 entropy calibrator, fed with calibration frames pre-processed by the model
family, its table kept next to the calibration set so a rebuild skips calibration."""

import logging
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional

import numpy as np

from edge.core.errors import ModelError
from edge.detection.atomic_file import atomic_write
from edge.detection.engines.base import CalibrationSource
from edge.detection.engines.tensorrt.build import TensorRTModules
from edge.detection.int8.sets import Preprocess, tensor_batches

log = logging.getLogger(__name__)


def make_entropy_calibrator(
    modules: TensorRTModules, batches: Callable[[], Iterator[np.ndarray]], batch_size: int, cache_path: Path
) -> Any:
    """An IInt8EntropyCalibrator2 that feeds `batches()` (arrays of exactly `batch_size` frames,
    preprocessed as the detector does) and keeps its table in `cache_path`: when the table
    exists TensorRT reads it and asks for no batch."""
    trt, cuda = modules.trt, modules.cuda

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[name-defined]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.cache_path = Path(cache_path)
            self.batches_served = 0
            self._iterator: Optional[Iterator[np.ndarray]] = None
            self._device: Any = None
            self._device_bytes = 0

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names: List[str]) -> Optional[List[int]]:
            if self._iterator is None:
                self._iterator = batches()
            batch = next(self._iterator, None)
            if batch is None:
                return None
            if batch.shape[0] != batch_size:
                raise ModelError(f"calibration batch of {batch.shape[0]} frames, expected {batch_size}")
            batch = np.ascontiguousarray(batch)
            if self._device is None or batch.nbytes > self._device_bytes:
                self._device = cuda.mem_alloc(batch.nbytes)
                self._device_bytes = batch.nbytes
            cuda.memcpy_htod(self._device, batch)
            self.batches_served += 1
            return [int(self._device)]

        def read_calibration_cache(self) -> Optional[bytes]:
            try:
                data = self.cache_path.read_bytes()
            except FileNotFoundError:
                return None
            log.info("INT8 calibration table reused from %s", self.cache_path)
            return data or None

        def write_calibration_cache(self, cache: Any) -> None:
            atomic_write(self.cache_path, bytes(cache))
            log.info("INT8 calibration table written to %s", self.cache_path)

    return EntropyCalibrator()



def calibrator_factory(
    modules: TensorRTModules, calibration: Optional[CalibrationSource], to_tensor: Preprocess, max_batch: int
) -> Optional[Callable[[], Any]]:
    """What builds the calibrator when an INT8 build needs one (None: no calibration data)."""
    if calibration is None:
        return None
    source = calibration
    batch_size = max(1, min(source.batch_size, max_batch, len(source.frames)))

    def factory() -> Any:
        return make_entropy_calibrator(
            modules,
            lambda: tensor_batches(source.frames, to_tensor, batch_size),
            batch_size,
            source.table_path,
        )

    return factory
