"""Stand-in for the TensorRT Python bindings (tests only; put on sys.path by tests/conftest.py
fixtures, never by the package).

It mirrors the part of the TensorRT 8.5+/10 Python API that edge/engines/tensorrt.py calls, with
the same names, arguments and failure behaviour (build_serialized_network and
deserialize_cuda_engine return None and log an error rather than raise; the ONNX parser reports
errors through num_errors/get_error; TensorRT 8 wants an EXPLICIT_BATCH network for ONNX,
TensorRT 10 has only the named-tensor API, 8.4 only the binding API). Behind it, an "engine" is
the ONNX model run by onnxruntime on the CPU, so outputs are real. A serialised plan records the
TensorRT version and device it was built for and is refused by another, as real plans are.

`configure()` and `read_plan()` are stand-in controls for tests; real TensorRT has neither.
"""

import enum
import json
import struct
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

__version__ = "10.3.0"
_PLAN_MAGIC = b"STANDIN-TRT-PLAN\n"


@dataclass
class _Platform:
    fast_int8: bool = True
    fast_fp16: bool = True
    dla_cores: int = 0
    dla_needs_gpu_fallback: bool = True  # SSD/YOLO heads have layers DLA cannot run
    builds: int = 0  # how many times build_serialized_network produced a plan
    calibration_batches: int = 0  # get_batch calls that returned data


PLATFORM = _Platform()


def configure(version: str = "10.3.0", **platform: object) -> _Platform:
    """Stand-in control: pick the TensorRT version mimicked and the platform's abilities."""
    global __version__, PLATFORM
    __version__ = version
    PLATFORM = _Platform(**platform)  # type: ignore[arg-type]
    return PLATFORM


def _major_minor() -> Tuple[int, int]:
    major, minor = __version__.split(".")[:2]
    return int(major), int(minor)


def _has_binding_api() -> bool:
    return _major_minor()[0] < 10


def _has_tensor_api() -> bool:
    return _major_minor() >= (8, 5)


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5


_NP = {
    DataType.FLOAT: np.float32,
    DataType.HALF: np.float16,
    DataType.INT8: np.int8,
    DataType.INT32: np.int32,
    DataType.UINT8: np.uint8,
    DataType.BOOL: np.bool_,
}


def nptype(trt_type: DataType) -> type:
    return _NP[trt_type]


def volume(shape: Sequence[int]) -> int:
    return int(np.prod(list(shape))) if len(shape) else 1


class Dims(tuple):
    """Shapes come back as Dims, a tuple-like of ints where -1 is a dynamic dimension."""


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class NetworkDefinitionCreationFlag(enum.IntEnum):
    EXPLICIT_BATCH = 0
    EXPLICIT_PRECISION = 1
    STRONGLY_TYPED = 2


class BuilderFlag(enum.IntEnum):
    FP16 = 0
    INT8 = 1
    DEBUG = 2
    GPU_FALLBACK = 3
    REFIT = 5


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0
    DLA_MANAGED_SRAM = 1
    DLA_LOCAL_DRAM = 2
    DLA_GLOBAL_DRAM = 3


class DeviceType(enum.IntEnum):
    GPU = 0
    DLA = 1


class CalibrationAlgoType(enum.IntEnum):
    LEGACY_CALIBRATION = 0
    ENTROPY_CALIBRATION = 1
    ENTROPY_CALIBRATION_2 = 2
    MINMAX_CALIBRATION = 3


class ILogger:
    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    def __init__(self) -> None:
        pass

    def log(self, severity: "ILogger.Severity", msg: str) -> None:
        raise NotImplementedError

    INTERNAL_ERROR = Severity.INTERNAL_ERROR
    ERROR = Severity.ERROR
    WARNING = Severity.WARNING
    INFO = Severity.INFO
    VERBOSE = Severity.VERBOSE


class Logger(ILogger):
    def __init__(self, min_severity: "ILogger.Severity" = ILogger.Severity.WARNING) -> None:
        self.min_severity = min_severity
        self.messages: List[Tuple[ILogger.Severity, str]] = []

    def log(self, severity: "ILogger.Severity", msg: str) -> None:
        self.messages.append((severity, msg))


class IInt8Calibrator:
    def get_algorithm(self) -> CalibrationAlgoType:
        return CalibrationAlgoType.LEGACY_CALIBRATION

    def get_batch_size(self) -> int:
        raise NotImplementedError

    def get_batch(self, names: List[str]) -> Optional[List[int]]:
        raise NotImplementedError

    def read_calibration_cache(self) -> Optional[bytes]:
        raise NotImplementedError

    def write_calibration_cache(self, cache: memoryview) -> None:
        raise NotImplementedError


class IInt8EntropyCalibrator2(IInt8Calibrator):
    def __init__(self) -> None:
        # Real bindings need the base __init__ called explicitly; remember that it was.
        self._trt_base_initialised = True

    def get_algorithm(self) -> CalibrationAlgoType:
        return CalibrationAlgoType.ENTROPY_CALIBRATION_2


class IHostMemory:
    """Serialized plan; supports the buffer protocol like the real one (bytes(mem), len)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def __bytes__(self) -> bytes:
        return self._data

    def __buffer__(self, flags: int) -> memoryview:
        return memoryview(self._data)

    @property
    def nbytes(self) -> int:
        return len(self._data)

    def __len__(self) -> int:
        return len(self._data)


@dataclass
class ITensor:
    name: str
    shape: Dims
    dtype: DataType = DataType.FLOAT
    is_network_input: bool = False


@dataclass
class INetworkDefinition:
    flags: int
    inputs: List[ITensor] = field(default_factory=list)
    outputs: List[ITensor] = field(default_factory=list)
    onnx_bytes: bytes = b""

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    def get_input(self, index: int) -> ITensor:
        return self.inputs[index]

    def get_output(self, index: int) -> ITensor:
        return self.outputs[index]

    @property
    def has_implicit_batch_dimension(self) -> bool:
        explicit = self.flags & (1 << int(NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
        return _major_minor()[0] < 10 and not explicit


class ParserError:
    def __init__(self, description: str) -> None:
        self._description = description

    def desc(self) -> str:
        return self._description

    def code(self) -> int:
        return 1

    def node(self) -> int:
        return -1

    def __str__(self) -> str:
        return self._description


class OnnxParser:
    def __init__(self, network: INetworkDefinition, logger: Logger) -> None:
        self.network = network
        self.logger = logger
        self._errors: List[ParserError] = []

    @property
    def num_errors(self) -> int:
        return len(self._errors)

    def get_error(self, index: int) -> ParserError:
        return self._errors[index]

    def clear_errors(self) -> None:
        self._errors.clear()

    def parse_from_file(self, model: str) -> bool:
        with open(model, "rb") as handle:
            return self.parse(handle.read())

    def parse(self, model: bytes, path: Optional[str] = None) -> bool:
        import onnx

        if self.network.has_implicit_batch_dimension:
            self._errors.append(ParserError("ONNX parser requires a network created with EXPLICIT_BATCH"))
            return False
        try:
            proto = onnx.load_from_string(bytes(model))
        except Exception as exc:  # the real parser reports, never raises
            self._errors.append(ParserError(f"failed to parse ONNX model: {exc}"))
            return False
        initialisers = {init.name for init in proto.graph.initializer}
        for value in proto.graph.input:
            if value.name in initialisers:
                continue
            self.network.inputs.append(
                ITensor(value.name, _dims(value), _dtype(value), is_network_input=True)
            )
        for value in proto.graph.output:
            self.network.outputs.append(ITensor(value.name, _dims(value), _dtype(value)))
        self.network.onnx_bytes = bytes(model)
        return True


_ONNX_TYPES = {
    1: DataType.FLOAT,
    2: DataType.UINT8,
    3: DataType.INT8,
    6: DataType.INT32,
    9: DataType.BOOL,
    10: DataType.HALF,
}


def _dtype(value: object) -> DataType:
    return _ONNX_TYPES[value.type.tensor_type.elem_type]  # type: ignore[attr-defined]


def _dims(value: object) -> Dims:
    dims = value.type.tensor_type.shape.dim  # type: ignore[attr-defined]
    return Dims(d.dim_value if d.HasField("dim_value") else -1 for d in dims)


class IOptimizationProfile:
    def __init__(self) -> None:
        self.shapes: Dict[str, Tuple[Dims, Dims, Dims]] = {}

    def set_shape(self, input: str, min: Sequence[int], opt: Sequence[int], max: Sequence[int]) -> None:
        self.shapes[input] = (Dims(min), Dims(opt), Dims(max))

    def get_shape(self, input: str) -> List[Dims]:
        return list(self.shapes.get(input, ()))

    def __bool__(self) -> bool:
        return all(
            len(lo) == len(hi) and all(0 < a <= b <= c for a, b, c in zip(lo, opt, hi))
            for lo, opt, hi in self.shapes.values()
        )


class IBuilderConfig:
    def __init__(self) -> None:
        self._flags = 0
        self._pools: Dict[MemoryPoolType, int] = {}
        self.int8_calibrator: Optional[IInt8Calibrator] = None
        self.default_device_type = DeviceType.GPU
        self.DLA_core = -1
        self.profiles: List[IOptimizationProfile] = []
        self._calibration_profile: Optional[IOptimizationProfile] = None

    def set_flag(self, flag: BuilderFlag) -> None:
        self._flags |= 1 << int(flag)

    def clear_flag(self, flag: BuilderFlag) -> None:
        self._flags &= ~(1 << int(flag))

    def get_flag(self, flag: BuilderFlag) -> bool:
        return bool(self._flags & (1 << int(flag)))

    @property
    def flags(self) -> int:
        return self._flags

    def set_memory_pool_limit(self, pool: MemoryPoolType, pool_size: int) -> None:
        self._pools[pool] = int(pool_size)

    def get_memory_pool_limit(self, pool: MemoryPoolType) -> int:
        return self._pools.get(pool, 1 << 40)

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        if not profile:
            return -1
        self.profiles.append(profile)
        return len(self.profiles) - 1

    @property
    def num_optimization_profiles(self) -> int:
        return len(self.profiles)

    def set_calibration_profile(self, profile: IOptimizationProfile) -> bool:
        self._calibration_profile = profile
        return True

    def get_calibration_profile(self) -> Optional[IOptimizationProfile]:
        return self._calibration_profile


class Builder:
    def __init__(self, logger: Logger) -> None:
        self.logger = logger

    @property
    def platform_has_fast_int8(self) -> bool:
        return PLATFORM.fast_int8

    @property
    def platform_has_fast_fp16(self) -> bool:
        return PLATFORM.fast_fp16

    @property
    def num_DLA_cores(self) -> int:  # noqa: N802 - the real attribute name
        return PLATFORM.dla_cores

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        return INetworkDefinition(flags=flags)

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig()

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def _error(self, message: str) -> None:
        self.logger.log(ILogger.ERROR, message)

    def build_serialized_network(
        self, network: INetworkDefinition, config: IBuilderConfig
    ) -> Optional[IHostMemory]:
        if not network.inputs:
            self._error("Network has no inputs")
            return None
        dynamic = [t.name for t in network.inputs if -1 in t.shape]
        profile = config.profiles[0] if config.profiles else None
        if dynamic and (profile is None or any(name not in profile.shapes for name in dynamic)):
            self._error(f"Network has dynamic inputs {dynamic} but no optimization profile covers them")
            return None
        if config.default_device_type == DeviceType.DLA:
            if not 0 <= config.DLA_core < PLATFORM.dla_cores:
                self._error(f"DLA core {config.DLA_core} does not exist ({PLATFORM.dla_cores} cores)")
                return None
            if not (config.get_flag(BuilderFlag.INT8) or config.get_flag(BuilderFlag.FP16)):
                self._error("DLA supports only FP16 and INT8 precision")
                return None
            if PLATFORM.dla_needs_gpu_fallback and not config.get_flag(BuilderFlag.GPU_FALLBACK):
                self._error("Layer cannot run on DLA and GPU fallback is not enabled")
                return None
        calibration = ""
        if config.get_flag(BuilderFlag.INT8):
            if config.int8_calibrator is None:
                self._error("INT8 requested without a calibrator or dynamic ranges")
                return None
            calibration = self._calibrate(network, config)
            if not calibration:
                return None
        header = {
            "version": __version__,
            "device": _device_name(),
            "compute_capability": list(_compute_capability()),
            "flags": config.flags,
            "int8": config.get_flag(BuilderFlag.INT8),
            "fp16": config.get_flag(BuilderFlag.FP16),
            "gpu_fallback": config.get_flag(BuilderFlag.GPU_FALLBACK),
            "device_type": int(config.default_device_type),
            "dla_core": config.DLA_core,
            "workspace": config.get_memory_pool_limit(MemoryPoolType.WORKSPACE),
            "inputs": [[t.name, list(t.shape), int(t.dtype)] for t in network.inputs],
            "outputs": [[t.name, list(t.shape), int(t.dtype)] for t in network.outputs],
            "profile": {k: [list(s) for s in v] for k, v in (profile.shapes.items() if profile else [])},
            "calibration": calibration,
        }
        encoded = json.dumps(header).encode()
        PLATFORM.builds += 1
        return IHostMemory(_PLAN_MAGIC + struct.pack("<I", len(encoded)) + encoded + network.onnx_bytes)

    def _calibrate(self, network: INetworkDefinition, config: IBuilderConfig) -> str:
        """Run the calibrator as TensorRT does: use its cache when it returns one, else pull
        batches until get_batch returns None and hand the resulting table to write_calibration_cache."""
        calibrator = config.int8_calibrator
        assert calibrator is not None
        if not getattr(calibrator, "_trt_base_initialised", False):
            self._error("calibrator did not call IInt8EntropyCalibrator2.__init__")
            return ""
        cached = calibrator.read_calibration_cache()
        if cached:
            text = bytes(cached).decode()
            if text.startswith(f"TRT-{_plan_tag()}-EntropyCalibration2"):
                return text
            self.logger.log(ILogger.WARNING, "calibration cache from another version ignored")
        batch_size = calibrator.get_batch_size()
        names = [t.name for t in network.inputs]
        amax = {name: 0.0 for name in names}
        profile = config.get_calibration_profile() or (config.profiles[0] if config.profiles else None)
        batches = 0
        while True:
            pointers = calibrator.get_batch(names)
            if not pointers:
                break
            if len(pointers) != len(names):
                self._error(f"get_batch returned {len(pointers)} pointers for {len(names)} inputs")
                return ""
            from pycuda import driver

            for tensor, pointer in zip(network.inputs, pointers):
                shape = list(tensor.shape)
                if -1 in shape:
                    if profile is None:
                        self._error("calibration of a dynamic network needs a calibration profile")
                        return ""
                    shape = list(profile.shapes[tensor.name][1])
                shape[0] = batch_size
                itemsize = np.dtype(nptype(tensor.dtype)).itemsize
                raw = driver.device_buffer(int(pointer))[: volume(shape) * itemsize]
                data = raw.view(nptype(tensor.dtype)).astype(np.float32)
                amax[tensor.name] = max(amax[tensor.name], float(np.abs(data).max()))
            batches += 1
            PLATFORM.calibration_batches += 1
        if batches == 0:
            self._error("Calibration failure: the calibrator provided no batches")
            return ""
        lines = [f"TRT-{_plan_tag()}-EntropyCalibration2"]
        for name, value in amax.items():
            scale = max(value, 1e-8) / 127.0
            lines.append(f"{name}: {struct.pack('>f', scale).hex()}")
        table = "\n".join(lines) + "\n"
        calibrator.write_calibration_cache(memoryview(table.encode()))
        return table


def _plan_tag() -> str:
    major, minor = _major_minor()
    return f"{major}{minor:02d}"


def _device_name() -> str:
    from pycuda import driver

    return driver.DEVICE_NAME


def _compute_capability() -> Tuple[int, int]:
    from pycuda import driver

    return driver.COMPUTE_CAPABILITY


def read_plan(plan: bytes) -> Dict[str, object]:
    """Stand-in control: the build settings recorded in a serialised plan."""
    if not plan.startswith(_PLAN_MAGIC):
        raise ValueError("not a stand-in plan")
    start = len(_PLAN_MAGIC)
    (length,) = struct.unpack("<I", plan[start : start + 4])
    return json.loads(plan[start + 4 : start + 4 + length])


class Runtime:
    def __init__(self, logger: Logger) -> None:
        self.logger = logger
        self.DLA_core = -1

    def deserialize_cuda_engine(self, serialized_engine: bytes) -> Optional["ICudaEngine"]:
        data = bytes(serialized_engine)
        try:
            header = read_plan(data)
        except (ValueError, struct.error, UnicodeDecodeError):
            self.logger.log(
                ILogger.ERROR, "1: [runtime.cpp::parsePlan] Error Code 1: Serialization (magic tag mismatch)"
            )
            return None
        if header["version"] != __version__:
            self.logger.log(
                ILogger.ERROR,
                "6: The engine plan file is not compatible with this version of TensorRT, expecting library "
                f"version {__version__} got {header['version']}, please rebuild.",
            )
            return None
        if header["device"] != _device_name() or tuple(header["compute_capability"]) != _compute_capability():
            self.logger.log(ILogger.ERROR, "6: The engine plan file is generated on an incompatible device.")
            return None
        start = len(_PLAN_MAGIC) + 4 + len(json.dumps(header).encode())
        try:
            return _engine_class()(header, data[start:])
        except Exception as exc:  # a truncated model inside the plan
            self.logger.log(ILogger.ERROR, f"1: Serialization assertion failed: {exc}")
            return None


class _EngineCore:
    def __init__(self, header: Dict[str, object], onnx_bytes: bytes) -> None:
        import onnxruntime

        self.header = header
        self._session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        self._inputs = [(name, Dims(shape)) for name, shape, _ in header["inputs"]]  # type: ignore[union-attr]
        self._outputs = [(name, Dims(shape)) for name, shape, _ in header["outputs"]]  # type: ignore[union-attr]
        self._dtypes = {
            name: DataType(code)
            for name, _, code in header["inputs"] + header["outputs"]  # type: ignore[operator]
        }
        self._profile = {k: [Dims(s) for s in v] for k, v in header["profile"].items()}  # type: ignore[union-attr]
        self._tensors = self._inputs + self._outputs

    def _lookup(self, name: str) -> Tuple[str, Dims]:
        for entry in self._tensors:
            if entry[0] == name:
                return entry
        raise KeyError(name)

    @property
    def num_optimization_profiles(self) -> int:
        return 1

    def serialize(self) -> IHostMemory:
        encoded = json.dumps(self.header).encode()
        return IHostMemory(_PLAN_MAGIC + struct.pack("<I", len(encoded)) + encoded)

    def create_execution_context(self) -> "IExecutionContext":
        return _context_class()(self)


class _EngineTensorAPI(_EngineCore):
    """Named-tensor API: TensorRT 8.5 and later (the only one in 10)."""

    @property
    def num_io_tensors(self) -> int:
        return len(self._tensors)

    def get_tensor_name(self, index: int) -> str:
        return self._tensors[index][0]

    def get_tensor_shape(self, name: str) -> Dims:
        return self._lookup(name)[1]

    def get_tensor_dtype(self, name: str) -> DataType:
        return self._dtypes[name]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        self._lookup(name)
        return TensorIOMode.INPUT if any(name == n for n, _ in self._inputs) else TensorIOMode.OUTPUT

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> List[Dims]:
        return list(self._profile[name])


class _EngineBindingAPI(_EngineCore):
    """Binding API: TensorRT 8 (removed in 10)."""

    @property
    def num_bindings(self) -> int:
        return len(self._tensors)

    def get_binding_name(self, index: int) -> str:
        return self._tensors[index][0]

    def get_binding_index(self, name: str) -> int:
        return [n for n, _ in self._tensors].index(name)

    def binding_is_input(self, index: int) -> bool:
        return index < len(self._inputs)

    def get_binding_shape(self, index: int) -> Dims:
        return self._tensors[index][1]

    def get_binding_dtype(self, index: int) -> DataType:
        return self._dtypes[self._tensors[index][0]]

    def get_profile_shape(self, profile_index: int, binding: int) -> List[Dims]:
        return list(self._profile[self._tensors[binding][0]])


class _ContextCore:
    def __init__(self, engine: _EngineCore) -> None:
        self.engine = engine
        self._shapes: Dict[str, Dims] = {name: shape for name, shape in engine._inputs}
        self._addresses: Dict[str, int] = {}
        self._probed: Dict[object, Dict[str, Dims]] = {}
        self.executions = 0

    def _set_shape(self, name: str, shape: Sequence[int]) -> bool:
        shape = Dims(shape)
        declared = self.engine._lookup(name)[1]
        if len(shape) != len(declared) or any(d != -1 and d != s for d, s in zip(declared, shape)):
            return False
        profile = self.engine._profile.get(name)
        if profile is not None and not all(a <= s <= b for a, s, b in zip(profile[0], shape, profile[2])):
            return False
        self._shapes[name] = shape
        return True

    def _resolved_shape(self, name: str) -> Dims:
        """Input shapes as set; output shapes as TensorRT's shape inference gives them once the
        inputs are known (here: from one run of the model on zeros of those shapes)."""
        if name in self._shapes:
            return self._shapes[name]
        declared = self.engine._lookup(name)[1]
        if -1 not in declared:
            return declared
        if not self.all_binding_shapes_specified:
            return declared
        key = tuple(sorted(self._shapes.items()))
        if key not in self._probed:
            feeds = {n: np.zeros(shape, nptype(self.engine._dtypes[n])) for n, shape in self._shapes.items()}
            names = [n for n, _ in self.engine._outputs]
            results = self.engine._session.run(names, feeds)
            self._probed[key] = {n: Dims(r.shape) for n, r in zip(names, results)}
        return self._probed[key][name]

    @property
    def all_binding_shapes_specified(self) -> bool:
        return all(-1 not in shape for shape in self._shapes.values())

    def _run(self, addresses: Dict[str, int]) -> bool:
        from pycuda import driver

        if not self.all_binding_shapes_specified or any(n not in addresses for n, _ in self.engine._tensors):
            return False
        feeds = {}
        for name, _ in self.engine._inputs:
            shape = self._shapes[name]
            dtype = nptype(self.engine._dtypes[name])
            raw = driver.device_buffer(addresses[name])[: volume(shape) * np.dtype(dtype).itemsize]
            feeds[name] = raw.view(dtype).reshape(shape).copy()
        results = self.engine._session.run([n for n, _ in self.engine._outputs], feeds)
        for (name, _), value in zip(self.engine._outputs, results):
            if tuple(value.shape) != tuple(self._resolved_shape(name)):
                return False
            target = driver.device_buffer(addresses[name])
            dtype = nptype(self.engine._dtypes[name])
            data = np.ascontiguousarray(value, dtype).reshape(-1).view(np.uint8)
            if data.nbytes > target.nbytes:
                return False
            target[: data.nbytes] = data
        self.executions += 1
        return True


class _ContextTensorAPI(_ContextCore):
    def set_input_shape(self, name: str, shape: Sequence[int]) -> bool:
        return self._set_shape(name, shape)

    def get_tensor_shape(self, name: str) -> Dims:
        return self._resolved_shape(name)

    def set_tensor_address(self, name: str, memory: int) -> bool:
        self.engine._lookup(name)
        self._addresses[name] = int(memory)
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        return self._run(self._addresses)


class _ContextBindingAPI(_ContextCore):
    def set_binding_shape(self, binding: int, shape: Sequence[int]) -> bool:
        return self._set_shape(self.engine._tensors[binding][0], shape)

    def get_binding_shape(self, binding: int) -> Dims:
        return self._resolved_shape(self.engine._tensors[binding][0])

    def execute_async_v2(self, bindings: Sequence[int], stream_handle: int) -> bool:
        if len(bindings) != len(self.engine._tensors):
            return False
        return self._run({name: int(ptr) for (name, _), ptr in zip(self.engine._tensors, bindings)})


def _flavour(tensor_api: type, binding_api: type) -> Tuple[type, ...]:
    bases = []
    if _has_tensor_api():
        bases.append(tensor_api)
    if _has_binding_api():
        bases.append(binding_api)
    return tuple(bases)


def _engine_class() -> type:
    return type("ICudaEngine", _flavour(_EngineTensorAPI, _EngineBindingAPI), {})


def _context_class() -> type:
    return type("IExecutionContext", _flavour(_ContextTensorAPI, _ContextBindingAPI), {})


ICudaEngine = _EngineCore
IExecutionContext = _ContextCore
