"""The TensorRT engine plug-in (engine name `tensorrt`): builds an engine from the model's FP32
ONNX file (edge.detection.engines.tensorrt.build), caches it safely (.cache), calibrates INT8
itself (.calibrator) and runs it with pycuda (.runner). It tries the requested precision and
falls back (INT8 -> FP16 -> FP32) when the platform lacks it or the build fails.

Where the TensorRT Python bindings are missing (JetPack 4 on the Nano ships them for Python 3.6
only), ONNX Runtime's TensorRT execution provider runs the model instead: INT8 from the QDQ model,
with ONNX Runtime's own engine cache.

`tensorrt` and `pycuda` are imported only when this engine is opened. Tested against a stand-in
of their Python API (tests/trt_standin); see the README for what that does and does not prove.
"""

import dataclasses
import logging
from pathlib import Path
from typing import Dict, List, Mapping, Optional

import numpy as np

from edge.core.errors import ModelError
from edge.detection.engines.base import Engine, EngineOptions, EngineRequest
from edge.detection.engines.tensorrt.build import (
    BuildRequest,
    LoadedEngine,
    TensorRTModules,
    device_info,
    import_tensorrt,
    load_or_build,
    make_logger,
    plan_precisions,
    profile_shapes,
)
from edge.detection.engines.tensorrt.cache import EngineCache, EngineKey
from edge.detection.engines.tensorrt.calibrator import calibrator_factory
from edge.detection.engines.tensorrt.runner import TensorRTRunner, input_declared_shape

log = logging.getLogger(__name__)


def engine_cache_dir(options: EngineOptions) -> Path:
    if not options.cache_dir:
        raise ModelError("engine tensorrt: no cache directory configured for built engines")
    return Path(options.cache_dir) / "engines"


class TensorRTEngine:
    """A model on a TensorRT engine; implements `edge.detection.engines.base.Engine`.
    `precision` and `fallback_reasons` say which precision was built and why better ones were not."""

    def __init__(self, request: EngineRequest, modules: Optional[TensorRTModules] = None) -> None:
        model, options = request.model, request.options
        if options.keep_aspect or options.coarse_input:
            raise ModelError(
                f"engine tensorrt: {model.name} builds for one input shape; keep_aspect and coarse_input "
                "need an input that follows the frame (use engine_options, which turns them off)"
            )
        self.modules = modules or import_tensorrt()
        input_size = (int(options.input_size[0]), int(options.input_size[1]))
        self.max_batch = max(1, int(options.max_batch))
        self.lanes = 1  # one execution context, one CUDA stream: calls run one at a time
        self.input_dtype: type = np.float32
        reasons: Dict[str, str] = {}
        onnx_path = model.file("fp32")
        device = device_info(self.modules)
        builder = self.modules.trt.Builder(make_logger(self.modules.trt))
        plan = plan_precisions(
            options.precision,
            bool(getattr(builder, "platform_has_fast_int8", True)),
            bool(getattr(builder, "platform_has_fast_fp16", True)),
        )
        reasons.update(plan.skipped)
        cache = EngineCache(engine_cache_dir(options))
        calibrator = calibrator_factory(self.modules, request.calibration, request.to_tensor, self.max_batch)
        loaded: Optional[LoadedEngine] = None
        for precision in plan.order:
            # DLA runs FP16/INT8 only; an FP32 fallback runs on the GPU.
            dla_core = options.dla_core if precision != "fp32" else -1
            key = EngineKey(
                model_name=model.name,
                model_sha256=model.files["fp32"].sha256,
                tensorrt_version=str(self.modules.trt.__version__),
                device_name=device.name,
                compute_capability=device.compute_capability,
                precision=precision,
                input_size=input_size,
                max_batch=self.max_batch,
                dla_core=dla_core,
            )
            build = BuildRequest(onnx_path, precision, input_size, self.max_batch, dla_core)
            try:
                loaded = load_or_build(self.modules, cache, key, build, calibrator)
                break
            except ModelError as exc:
                reasons[precision] = str(exc)
                log.warning("%s: TensorRT %s engine unavailable (%s)", model.name, precision, exc)
        if loaded is None:
            raise ModelError(f"{model.name}: no TensorRT engine could be built ({reasons})")
        self.fallback_reasons: Mapping[str, str] = reasons
        self.loaded = loaded
        self.precision = loaded.key.precision
        self.artifact = loaded.path
        declared = input_declared_shape(self.modules.trt, loaded.engine)
        _, _, max_shape = profile_shapes(declared, input_size, self.max_batch)
        self.runner = TensorRTRunner(self.modules, loaded.engine, max_shape)
        self.output_names: List[str] = self.runner.output_names

    def run(self, tensor: np.ndarray) -> List[np.ndarray]:
        return self.runner.run(tensor)

    def close(self) -> None:
        self.runner.close()


def open_ort_tensorrt_engine(request: EngineRequest) -> Engine:
    """The route where the TensorRT Python bindings are missing but ONNX Runtime was built with
    its TensorRT execution provider (JetPack 4 on the Nano)."""
    import onnxruntime as ort

    from edge.detection.engines.onnxruntime import TENSORRT_PROVIDERS, OnnxRuntimeEngine

    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        raise ModelError(
            "engine tensorrt: neither the TensorRT Python bindings nor ONNX Runtime's TensorRT "
            "execution provider is installed"
        )
    return OnnxRuntimeEngine(request, providers=TENSORRT_PROVIDERS)


def open_engine(request: EngineRequest) -> Engine:
    try:
        modules = import_tensorrt()
    except ModelError as missing:
        log.warning("%s; trying ONNX Runtime's TensorRT execution provider", missing)
        return open_ort_tensorrt_engine(request)
    if request.calibration is None and request.options.precision == "int8":
        from edge.detection.int8.tables import default_calibration

        calibration = default_calibration("tensorrt", request.model, request.options)
        request = dataclasses.replace(request, calibration=calibration)
    engine = TensorRTEngine(request, modules)
    width, height = request.options.input_size
    log.info(
        "loaded %s on TensorRT %s (%s, %dx%d, batch <= %d, %s)",
        request.model.name,
        modules.trt.__version__,
        engine.precision,
        width,
        height,
        engine.max_batch,
        engine.artifact,
    )
    return engine
