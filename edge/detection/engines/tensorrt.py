"""TensorRT backend: build an engine from the ONNX model, cache it safely, run it with pycuda.

Build: ONNX parser into an explicit-batch network (the flag TensorRT 8 needs; 10 has only that
kind), a builder config with a workspace limit, an optimisation profile over batch 1..max_batch at
the tier's input size, and the precision asked for: INT8 through an entropy calibrator fed with
the calibration set (its table cached next to the set, so a rebuild skips calibration), FP16 and
FP32 as fallbacks when the platform has no fast INT8/FP16 or a build fails; DLA (Xavier/Orin)
when the tier asks, with GPU fallback for the layers DLA cannot run.

Cache: serialised engines are valid only for the TensorRT version and GPU that built them, so
they are stored under a key of (model sha256, TensorRT version, device name, compute capability,
precision, input, max batch, DLA core): a JetPack upgrade or a different board misses the cache
and rebuilds rather than crashing. A plan that does not deserialise (corrupt file, truncated
write, incompatible build) is deleted and rebuilt. Writes are atomic (temp file + rename).

Inference: page-locked host buffers and device buffers sized for max_batch, one CUDA stream,
async copies; TensorRT 8.5+/10's named-tensor API (set_input_shape, set_tensor_address,
execute_async_v3) when present, else TensorRT 8's binding API (set_binding_shape,
execute_async_v2). Feature detection, not version parsing, decides.

Where the TensorRT Python bindings are missing (JetPack 4 on the Nano ships them for Python 3.6
only), ONNX Runtime's TensorRT execution provider runs the model instead: INT8 from the QDQ model,
with ONNX Runtime's own engine cache.

`tensorrt` and `pycuda` are imported only when this engine is used. Tested against a stand-in
of their Python API (tests/trt_standin); see the README for what that does and does not prove.
"""

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from edge.core.errors import ModelError
from edge.detection.anchors import ssd_anchors
from edge.detection.engines import EngineOptions, register_engine
from edge.detection.engines.base import Detections, PreparedBatch
from edge.detection.engines.onnxruntime import preprocess_ssd, preprocess_yolo
from edge.detection.int8.sets import CalibrationFrame, tensor_batches
from edge.detection.manifest import ModelSpec
from edge.detection.postprocess import SSD_BOX_CODER_SCALES, PostprocessSettings, postprocess_ssd, postprocess_yolo

log = logging.getLogger(__name__)

DEFAULT_WORKSPACE_BYTES = 1 << 30
PRECISIONS = ("int8", "fp16", "fp32")


@dataclass(frozen=True)
class DeviceInfo:
    name: str
    compute_capability: Tuple[int, int]


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialised engine depends on; any change means a different engine."""

    model_name: str
    model_sha256: str
    tensorrt_version: str
    device_name: str
    compute_capability: Tuple[int, int]
    precision: str
    input_size: Tuple[int, int]  # (width, height)
    max_batch: int
    dla_core: int  # -1 = GPU

    def digest(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def stem(self) -> str:
        """The part of the file name shared by engines that differ only in version or device."""
        width, height = self.input_size
        where = f"dla{self.dla_core}" if self.dla_core >= 0 else "gpu"
        return f"{self.model_name}-{self.precision}-{width}x{height}-b{self.max_batch}-{where}"

    @property
    def filename(self) -> str:
        return f"{self.stem}-{self.digest()[:16]}.engine"


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


class EngineCache:
    """Serialised engines under one directory, one file per EngineKey, written atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path_for(self, key: EngineKey) -> Path:
        return self.directory / key.filename

    def read(self, key: EngineKey) -> Optional[bytes]:
        path = self.path_for(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def store(self, key: EngineKey, plan: bytes) -> Path:
        """Write the plan and its key, and drop engines this one supersedes (same model, precision,
        input, batch and DLA, built for another TensorRT version or device)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path_for(key)
        _atomic_write(path, plan)
        _atomic_write(path.with_suffix(".json"), json.dumps(asdict(key), indent=2).encode())
        for stale in self.directory.glob(f"{key.stem}-*.engine"):
            if stale != path:
                stale.unlink()
                stale.with_suffix(".json").unlink(missing_ok=True)
        return path

    def discard(self, key: EngineKey) -> None:
        path = self.path_for(key)
        path.unlink(missing_ok=True)
        path.with_suffix(".json").unlink(missing_ok=True)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=str(path.parent), prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


# --- the TensorRT API (lazy) -------------------------------------------------------------------


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
            _atomic_write(self.cache_path, bytes(cache))
            log.info("INT8 calibration table written to %s", self.cache_path)

    return EntropyCalibrator()


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


# --- inference ---------------------------------------------------------------------------------


@dataclass
class TensorBinding:
    name: str
    is_input: bool
    dtype: Any
    max_shape: Tuple[int, ...]
    host: np.ndarray
    device: Any


def _engine_tensors(trt: Any, engine: Any) -> List[Tuple[str, bool, Any]]:
    """(name, is_input, numpy dtype) for every I/O tensor, in binding order."""
    if hasattr(engine, "num_io_tensors"):
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        return [
            (n, engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT, trt.nptype(engine.get_tensor_dtype(n)))
            for n in names
        ]
    return [
        (engine.get_binding_name(i), engine.binding_is_input(i), trt.nptype(engine.get_binding_dtype(i)))
        for i in range(engine.num_bindings)
    ]


class TensorRTRunner:
    """Runs one engine on batches of 1..max_batch: buffers sized once, one stream."""

    def __init__(self, modules: TensorRTModules, engine: Any, max_input_shape: Tuple[int, ...]) -> None:
        self.modules = modules
        self.engine = engine
        self.context = engine.create_execution_context()
        self.stream = modules.cuda.Stream()
        self.tensor_api = hasattr(self.context, "execute_async_v3") and hasattr(engine, "num_io_tensors")
        tensors = _engine_tensors(modules.trt, engine)
        inputs = [t for t in tensors if t[1]]
        if len(inputs) != 1:
            raise ModelError(f"TensorRT engine: expected one input, found {len(inputs)}")
        self.input_name = inputs[0][0]
        # Output sizes for the largest batch come from the context once the input shape is set.
        self._set_input_shape(max_input_shape)
        self.bindings: List[TensorBinding] = []
        for name, is_input, dtype in tensors:
            shape = tuple(max_input_shape) if is_input else self._output_shape(name)
            host = modules.cuda.pagelocked_empty(int(np.prod(shape)), dtype)
            device = modules.cuda.mem_alloc(host.nbytes)
            self.bindings.append(TensorBinding(name, is_input, dtype, shape, host, device))
            if self.tensor_api:
                self.context.set_tensor_address(name, int(device))

    def _index(self, name: str) -> int:
        return [n for n, _, _ in _engine_tensors(self.modules.trt, self.engine)].index(name)

    def _set_input_shape(self, shape: Tuple[int, ...]) -> None:
        if self.tensor_api:
            accepted = self.context.set_input_shape(self.input_name, tuple(shape))
        else:
            accepted = self.context.set_binding_shape(self._index(self.input_name), tuple(shape))
        if accepted is False:
            raise ModelError(f"TensorRT engine rejected input shape {tuple(shape)} (outside its profile)")

    def _output_shape(self, name: str) -> Tuple[int, ...]:
        if self.tensor_api:
            return tuple(self.context.get_tensor_shape(name))
        return tuple(self.context.get_binding_shape(self._index(name)))

    def run(self, tensor: np.ndarray) -> List[np.ndarray]:
        cuda = self.modules.cuda
        source = self.bindings[[b.is_input for b in self.bindings].index(True)]
        if tensor.shape[0] > source.max_shape[0] or tensor.shape[1:] != source.max_shape[1:]:
            raise ModelError(f"TensorRT engine: batch {tensor.shape} does not fit {source.max_shape}")
        self._set_input_shape(tuple(tensor.shape))
        staged = source.host[: tensor.size]
        staged[:] = tensor.astype(source.dtype, copy=False).reshape(-1)
        cuda.memcpy_htod_async(source.device, staged, self.stream)
        if self.tensor_api:
            ok = self.context.execute_async_v3(self.stream.handle)
        else:
            ok = self.context.execute_async_v2([int(b.device) for b in self.bindings], self.stream.handle)
        if not ok:
            raise ModelError("TensorRT engine: execution failed")
        results = []
        for binding in self.bindings:
            if binding.is_input:
                continue
            shape = self._output_shape(binding.name)
            view = binding.host[: int(np.prod(shape))]
            cuda.memcpy_dtoh_async(view, binding.device, self.stream)
            results.append((view, shape))
        self.stream.synchronize()
        return [view.reshape(shape).copy() for view, shape in results]

    @property
    def output_names(self) -> List[str]:
        return [b.name for b in self.bindings if not b.is_input]

    def close(self) -> None:
        for binding in self.bindings:
            binding.device.free()
        self.bindings = []


# --- the detector ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CalibrationSource:
    """Frames that calibrate an INT8 build, and where the calibration table is kept."""

    frames: Sequence[CalibrationFrame]
    table_path: Path
    batch_size: int = 8


def engine_cache_dir(options: EngineOptions) -> Path:
    if not options.cache_dir:
        raise ModelError("engine tensorrt: no cache directory configured for built engines")
    return Path(options.cache_dir) / "engines"


class ModelCodec:
    """The model family's pre- and post-processing, shared with the ONNX Runtime engine."""

    def __init__(self, model: ModelSpec, options: EngineOptions) -> None:
        self.family = model.family
        self.input_size = (int(options.input_size[0]), int(options.input_size[1]))
        self.settings = PostprocessSettings(options.score_threshold, options.nms_iou)
        scales = model.extras.get("box_coder_scales", SSD_BOX_CODER_SCALES)
        self.box_coder_scales: Tuple[float, ...] = tuple(float(v) for v in scales)  # type: ignore[attr-defined]
        self.logit_scale = float(model.extras.get("logit_scale", 1.0))  # type: ignore[arg-type]
        outputs = model.extras.get("outputs", {})
        self.declared_outputs = (
            {str(k): str(v) for k, v in outputs.items()} if isinstance(outputs, dict) else {}
        )
        self.anchors: Optional[np.ndarray] = None
        if self.family == "ssd":
            width = self.input_size[0]
            if self.input_size == tuple(model.input_size) and "anchors" in model.files:
                self.anchors = np.load(model.file("anchors")).astype(np.float32)
            else:
                self.anchors = ssd_anchors(width)
        elif self.family != "yolo":
            raise ModelError(f"model {model.name}: unknown family {model.family!r} (expected ssd or yolo)")

    def tensor(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        if self.family == "ssd":
            return preprocess_ssd(frames, self.input_size)
        return preprocess_yolo(frames, self.input_size)[0]

    def preprocess(self, frames: Sequence[np.ndarray]) -> PreparedBatch:
        sizes = [(int(frame.shape[1]), int(frame.shape[0])) for frame in frames]
        if self.family == "ssd":
            return PreparedBatch(preprocess_ssd(frames, self.input_size), sizes)
        tensor, letterboxes = preprocess_yolo(frames, self.input_size)
        return PreparedBatch(tensor, sizes, {"letterboxes": letterboxes})

    def order_outputs(self, names: Sequence[str]) -> List[int]:
        """Indices of the engine outputs in the order postprocess wants them."""
        if self.family != "ssd":
            return list(range(len(names)))
        wanted = [
            self.declared_outputs.get("box_encodings", names[0]),
            self.declared_outputs.get("class_logits", names[-1]),
        ]
        missing = [name for name in wanted if name not in names]
        if missing:
            raise ModelError(f"TensorRT engine: no output {missing[0]!r} (outputs: {', '.join(names)})")
        return [list(names).index(name) for name in wanted]

    def postprocess(self, outputs: List[np.ndarray], batch: PreparedBatch) -> List[Detections]:
        if self.family == "ssd":
            assert self.anchors is not None
            return postprocess_ssd(
                outputs[0].astype(np.float32, copy=False),
                outputs[1].astype(np.float32, copy=False),
                self.anchors,
                batch.frame_sizes,
                self.settings,
                self.box_coder_scales,
                self.logit_scale,
            )
        letterboxes = batch.extras["letterboxes"]
        return postprocess_yolo(outputs[0].astype(np.float32), letterboxes, batch.frame_sizes, self.settings)  # type: ignore[arg-type]


class TensorRTDetector:
    """A model on a TensorRT engine; implements `edge.detection.engines.base.Detector`. Tries the
    requested precision and falls back (INT8 -> FP16 -> FP32) when the platform lacks it or
    the build fails; `precision` and `fallback_reasons` say what happened."""

    def __init__(
        self,
        model: ModelSpec,
        options: EngineOptions,
        calibration: Optional[CalibrationSource] = None,
        modules: Optional[TensorRTModules] = None,
    ) -> None:
        self.modules = modules or import_tensorrt()
        self.name = model.name
        self.classes = model.classes
        self.codec = ModelCodec(model, options)
        self.input_size = self.codec.input_size
        self.max_batch = max(1, int(options.max_batch))
        self.fallback_reasons: Dict[str, str] = {}
        onnx_path = model.file("fp32")
        device = device_info(self.modules)
        builder = self.modules.trt.Builder(make_logger(self.modules.trt))
        plan = plan_precisions(
            options.precision,
            bool(getattr(builder, "platform_has_fast_int8", True)),
            bool(getattr(builder, "platform_has_fast_fp16", True)),
        )
        self.fallback_reasons.update(plan.skipped)
        cache = EngineCache(engine_cache_dir(options))
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
                input_size=self.input_size,
                max_batch=self.max_batch,
                dla_core=dla_core,
            )
            request = BuildRequest(onnx_path, precision, self.input_size, self.max_batch, dla_core)
            try:
                loaded = load_or_build(
                    self.modules, cache, key, request, self._calibrator_factory(calibration)
                )
                break
            except ModelError as exc:
                self.fallback_reasons[precision] = str(exc)
                log.warning("%s: TensorRT %s engine unavailable (%s)", model.name, precision, exc)
        if loaded is None:
            raise ModelError(f"{model.name}: no TensorRT engine could be built ({self.fallback_reasons})")
        self.loaded = loaded
        self.precision = loaded.key.precision
        self.engine_path = loaded.path
        declared = self._input_declared_shape(loaded.engine)
        _, _, max_shape = profile_shapes(declared, self.input_size, self.max_batch)
        self.runner = TensorRTRunner(self.modules, loaded.engine, max_shape)
        self._output_order = self.codec.order_outputs(self.runner.output_names)

    def _input_declared_shape(self, engine: Any) -> Tuple[int, ...]:
        for name, is_input, _ in _engine_tensors(self.modules.trt, engine):
            if is_input:
                if hasattr(engine, "num_io_tensors"):
                    return tuple(engine.get_tensor_shape(name))
                return tuple(engine.get_binding_shape(engine.get_binding_index(name)))
        raise ModelError("TensorRT engine has no input")

    def _calibrator_factory(self, calibration: Optional[CalibrationSource]) -> Optional[Callable[[], Any]]:
        if calibration is None:
            return None
        source = calibration
        batch_size = max(1, min(source.batch_size, self.max_batch, len(source.frames)))

        def factory() -> Any:
            return make_entropy_calibrator(
                self.modules,
                lambda: tensor_batches(source.frames, self.codec.tensor, batch_size),
                batch_size,
                source.table_path,
            )

        return factory

    def preprocess(self, frames: Sequence[np.ndarray]) -> PreparedBatch:
        if not 0 < len(frames) <= self.max_batch:
            raise ValueError(f"batch of {len(frames)} frames; this detector takes 1..{self.max_batch}")
        return self.codec.preprocess(frames)

    def infer(self, batch: PreparedBatch) -> List[np.ndarray]:
        outputs = self.runner.run(batch.tensor)
        return [outputs[i] for i in self._output_order]

    def postprocess(self, outputs: List[np.ndarray], batch: PreparedBatch) -> List[Detections]:
        return self.codec.postprocess(outputs, batch)

    def close(self) -> None:
        self.runner.close()


def ort_tensorrt_provider_options(options: EngineOptions, cache_dir: Path) -> Dict[str, object]:
    """ONNX Runtime TensorRT execution provider settings: INT8 from the QDQ model's explicit
    scales, FP16 for what stays in float, engines cached by ONNX Runtime under `cache_dir`."""
    settings: Dict[str, object] = {
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache_dir),
        "trt_timing_cache_enable": True,
        "trt_max_workspace_size": DEFAULT_WORKSPACE_BYTES,
        "trt_fp16_enable": options.precision in ("fp16", "int8"),
        "trt_int8_enable": options.precision == "int8",
    }
    if options.dla_core >= 0:
        settings.update(trt_dla_enable=True, trt_dla_core=options.dla_core)
    return settings


def create_ort_tensorrt_detector(model: ModelSpec, options: EngineOptions) -> Any:
    """The route where the TensorRT Python bindings are missing but ONNX Runtime was built with
    its TensorRT execution provider (JetPack 4 on the Nano)."""
    import onnxruntime as ort

    from edge.detection.engines.onnxruntime import OnnxRuntimeDetector

    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        raise ModelError(
            "engine tensorrt: neither the TensorRT Python bindings nor ONNX Runtime's TensorRT "
            "execution provider is installed"
        )
    cache_dir = Path(options.cache_dir or ".") / "ort-tensorrt"
    cache_dir.mkdir(parents=True, exist_ok=True)

    class _OrtTensorRTDetector(OnnxRuntimeDetector):
        def _load(self, path: "os.PathLike[str]", opts: EngineOptions, threads: Optional[int] = None) -> Any:
            trt_options = ort_tensorrt_provider_options(opts, cache_dir)
            return ort.InferenceSession(
                str(path),
                providers=["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
                provider_options=[trt_options, {}, {}],
            )

    return _OrtTensorRTDetector(model, options)


def default_calibration(model: ModelSpec, options: EngineOptions) -> Optional[CalibrationSource]:
    """Calibration from the newest set under the cache dir's calibration/ (else the built-in set,
    copied there), for loads that come through the engine registry."""
    from edge.detection.int8.sets import ensure_builtin_set, list_sets, load_set

    root = Path(options.cache_dir or ".") / "calibration"
    sets = list_sets(root)
    if sets:
        chosen = load_set(sets[0])
    else:
        chosen = ensure_builtin_set(root)
    frames, _ = chosen.split(0.2)
    return CalibrationSource(
        frames, calibration_table_path(chosen.directory, model, options, chosen.content_hash())
    )


def calibration_table_path(set_dir: Path, model: ModelSpec, options: EngineOptions, set_hash: str) -> Path:
    width, height = options.input_size
    return (
        set_dir / f"trt-{model.name}-{model.files['fp32'].sha256[:12]}-{width}x{height}-{set_hash[:12]}.cache"
    )


@register_engine("tensorrt")
def create_tensorrt_detector(model: ModelSpec, options: EngineOptions) -> Any:
    try:
        modules = import_tensorrt()
    except ModelError as missing:
        log.warning("%s; trying ONNX Runtime's TensorRT execution provider", missing)
        return create_ort_tensorrt_detector(model, options)
    calibration = default_calibration(model, options) if options.precision == "int8" else None
    detector = TensorRTDetector(model, options, calibration, modules)
    log.info(
        "loaded %s on TensorRT %s (%s, %dx%d, batch <= %d, %s)",
        model.name,
        modules.trt.__version__,
        detector.precision,
        *detector.input_size,
        detector.max_batch,
        detector.engine_path,
    )
    return detector
