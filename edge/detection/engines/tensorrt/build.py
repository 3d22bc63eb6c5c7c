"""Building a TensorRT engine from an ONNX model, and loading it through the cache.

Build: ONNX parser into an explicit-batch network (the flag TensorRT 8 needs; 10 has only that
kind), a builder config with a workspace limit, an optimisation profile over batch 1..max_batch at
the tier's input size, and the precision asked for: INT8 through an entropy calibrator
(edge.detection.engines.tensorrt.calibrator), FP16 and FP32 as fallbacks when the platform has no
fast INT8/FP16 or a build fails; DLA (Xavier/Orin) when asked, with GPU fallback for the layers
DLA cannot run. A cached plan that does not deserialise (corrupt file, truncated write,
incompatible build) is deleted and rebuilt.

`tensorrt` and `pycuda` are imported only by `import_tensorrt`, when this engine is used.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from edge.core.errors import ModelError
from edge.detection.engines.tensorrt.cache import EngineCache, EngineKey

log = logging.getLogger(__name__)

DEFAULT_WORKSPACE_BYTES = 1 << 30
PRECISIONS = ("int8", "fp16", "fp32")


@dataclass(frozen=True)
class DeviceInfo:
    name: str
    compute_capability: Tuple[int, int]


@dataclass(frozen=True)
class PrecisionPlan:
    """Precisions to try, best first, and why any better one was left out."""

    order: Tuple[str, ...]
    skipped: Dict[str, str] = field(default_factory=dict)


def plan_precisions(requested: str, fast_int8: bool, fast_fp16: bool) -> PrecisionPlan:
    """The requested precision and the ones below it, without those the platform cannot run fast.
    FP32 is always the last resort."""
    if requested not in PRECISIONS:
        raise ModelError(f"precision {requested!r}: expected one of {', '.join(PRECISIONS)}")
    order: List[str] = []
    skipped: Dict[str, str] = {}
    for precision in PRECISIONS[PRECISIONS.index(requested) :]:
        if precision == "int8" and not fast_int8:
            skipped["int8"] = "platform has no fast INT8"
        elif precision == "fp16" and not fast_fp16:
            skipped["fp16"] = "platform has no fast FP16"
        else:
            order.append(precision)
    return PrecisionPlan(tuple(order), skipped)


def profile_shapes(
    declared: Sequence[int], input_size: Tuple[int, int], max_batch: int
) -> Tuple[Tuple[int, ...], Tuple[int, ...], Tuple[int, ...]]:
    """(min, opt, max) shapes of the input for a profile over batch 1..max_batch at `input_size`.
    The layout is read from the declared shape: channels last (N, H, W, 3) or first (N, 3, H, W)."""
    if len(declared) != 4:
        raise ModelError(f"TensorRT input: expected a 4-D image input, got shape {tuple(declared)}")
    if declared[0] not in (-1, max_batch) and max_batch != 1:
        raise ModelError(
            f"TensorRT input: batch fixed at {declared[0]}, cannot build for max batch {max_batch}"
        )
    width, height = input_size
    channels_last = declared[3] in (1, 3)
    spatial = (height, width)
    for axis, want in zip((1, 2) if channels_last else (2, 3), spatial):
        if declared[axis] not in (-1, want):
            raise ModelError(f"TensorRT input: fixed size {tuple(declared)} does not allow {width}x{height}")

    def with_batch(batch: int) -> Tuple[int, ...]:
        if channels_last:
            return (batch, height, width, declared[3])
        return (batch, declared[1], height, width)

    return with_batch(1), with_batch(max_batch), with_batch(max_batch)


@dataclass
class TensorRTModules:
    """The imported `tensorrt` and `pycuda.driver` modules (passed around so tests can use the
    stand-in and nothing imports them at module load)."""

    trt: Any
    cuda: Any


def import_tensorrt() -> TensorRTModules:
    try:
        import pycuda.autoinit  # noqa: F401  (creates the CUDA context on device 0)
        import pycuda.driver as cuda
        import tensorrt as trt
    except ImportError as exc:
        raise ModelError(
            f"engine tensorrt: Python bindings missing ({exc}); install JetPack/TensorRT and pycuda"
        ) from None
    return TensorRTModules(trt=trt, cuda=cuda)


def device_info(modules: TensorRTModules) -> DeviceInfo:
    device = modules.cuda.Device(0)
    major, minor = device.compute_capability()
    return DeviceInfo(name=str(device.name()), compute_capability=(int(major), int(minor)))


def make_logger(trt: Any) -> Any:
    """A TensorRT logger that forwards to Python logging and remembers the last error."""

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.last_error = ""

        def log(self, severity: Any, msg: str) -> None:
            if severity <= trt.ILogger.Severity.ERROR:
                self.last_error = msg
                log.error("TensorRT: %s", msg)
            elif severity == trt.ILogger.Severity.WARNING:
                log.warning("TensorRT: %s", msg)
            else:
                log.debug("TensorRT: %s", msg)

    return _Logger()



@dataclass(frozen=True)
class BuildRequest:
    onnx_path: Path
    precision: str
    input_size: Tuple[int, int]
    max_batch: int
    dla_core: int = -1
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES


def build_plan(modules: TensorRTModules, request: BuildRequest, calibrator: Any = None) -> bytes:
    """Build and serialise one engine; ModelError naming the cause when TensorRT cannot."""
    trt = modules.trt
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    major = int(str(trt.__version__).split(".")[0])
    # TensorRT 8 parses ONNX only into explicit-batch networks; 10 has no other kind (flag deprecated).
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(request.onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise ModelError(f"{request.onnx_path}: TensorRT ONNX parser failed: {errors}")
    config = builder.create_builder_config()
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, request.workspace_bytes)
    else:  # TensorRT < 8.4
        config.max_workspace_size = request.workspace_bytes
    profile = builder.create_optimization_profile()
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        low, opt, high = profile_shapes(tuple(tensor.shape), request.input_size, request.max_batch)
        profile.set_shape(tensor.name, low, opt, high)
    if config.add_optimization_profile(profile) < 0:
        raise ModelError(f"{request.onnx_path}: TensorRT rejected the optimisation profile")
    if request.precision in ("fp16", "int8") and getattr(builder, "platform_has_fast_fp16", True):
        config.set_flag(trt.BuilderFlag.FP16)  # with INT8 too: layers that do not quantise run in FP16
    if request.precision == "int8":
        if calibrator is None:
            raise ModelError("TensorRT INT8 build needs a calibrator (run `video-analysis calibrate`)")
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
        config.set_calibration_profile(profile)
    if request.dla_core >= 0:
        if builder.num_DLA_cores <= request.dla_core:
            raise ModelError(
                f"DLA core {request.dla_core} requested; this device has {builder.num_DLA_cores}"
            )
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = request.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ModelError(
            f"{request.onnx_path}: TensorRT could not build the {request.precision} engine: "
            f"{logger.last_error or 'no reason logged'}"
        )
    return bytes(plan)


@dataclass
class LoadedEngine:
    engine: Any
    runtime: Any  # kept alive as long as its engine
    key: EngineKey
    path: Path
    built: bool  # False when it came from the cache


def deserialize(modules: TensorRTModules, plan: bytes) -> Tuple[Any, Any]:
    """(engine, runtime); engine is None when the plan is corrupt or built for another
    TensorRT version or device (TensorRT returns None for those; some versions raise)."""
    runtime = modules.trt.Runtime(make_logger(modules.trt))
    try:
        return runtime.deserialize_cuda_engine(plan), runtime
    except Exception as exc:  # TensorRT raises RuntimeError on some malformed plans
        log.warning("TensorRT could not deserialise the engine: %s", exc)
        return None, runtime


def load_or_build(
    modules: TensorRTModules,
    cache: EngineCache,
    key: EngineKey,
    request: BuildRequest,
    calibrator_factory: Optional[Callable[[], Any]] = None,
) -> LoadedEngine:
    """The cached engine for `key`, or a freshly built one when missing, corrupt or incompatible."""
    plan = cache.read(key)
    if plan is not None:
        engine, runtime = deserialize(modules, plan)
        if engine is not None:
            return LoadedEngine(engine, runtime, key, cache.path_for(key), built=False)
        log.warning("engine %s is corrupt or incompatible; rebuilding", cache.path_for(key))
        cache.discard(key)
    log.info(
        "building TensorRT %s engine for %s at %dx%d (max batch %d)%s; this can take minutes",
        key.precision,
        key.model_name,
        *key.input_size,
        key.max_batch,
        f" on DLA core {key.dla_core}" if key.dla_core >= 0 else "",
    )
    calibrator = calibrator_factory() if (request.precision == "int8" and calibrator_factory) else None
    plan = build_plan(modules, request, calibrator)
    engine, runtime = deserialize(modules, plan)
    if engine is None:
        raise ModelError(f"TensorRT built a {key.precision} engine for {key.model_name} it cannot load")
    return LoadedEngine(engine, runtime, key, cache.store(key, plan), built=True)


