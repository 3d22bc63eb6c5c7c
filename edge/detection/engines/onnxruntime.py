"""The ONNX Runtime engine plug-in (engine name `onnxruntime`): runs a model's ONNX graph in an
ONNX Runtime session. Execution providers are taken from what the installed onnxruntime offers,
best first: TensorRT, CUDA, CPU. The TensorRT execution provider's settings are built here, once,
for this engine and for the `tensorrt` engine's route through ONNX Runtime.
"""

import logging
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import onnxruntime as ort

from edge.core.errors import ModelError
from edge.detection.engines.base import EngineOptions, EngineRequest, physical_cores
from edge.detection.manifest import ModelSpec

log = logging.getLogger(__name__)

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
TENSORRT_PROVIDERS = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
TENSORRT_WORKSPACE_BYTES = 1 << 30


def choose_providers(available: Sequence[str]) -> List[str]:
    """The installed providers we use, best first; CPU is always last and always there."""
    chosen = [name for name in PREFERRED_PROVIDERS if name in available]
    return chosen if "CPUExecutionProvider" in chosen else chosen + ["CPUExecutionProvider"]


def session_options(threads: Optional[int] = None) -> ort.SessionOptions:
    """Settings for an edge CPU shared with decoding and tracking threads: `threads` intra-op
    threads (default one per physical core: SMT siblings add little to convolutions), no
    inter-op parallelism, and no busy-waiting between inferences so idle time goes to the other
    threads.

    No memory pattern: ORT would plan one block per input shape and keep each in its arena, and
    our inputs change shape (aspect-kept input, coarse pass, batch 1..N). Without it the SSD at
    1024x576 keeps 23 MB less at batch 1 and 85 MB less at batch 4, at the same CPU per frame
    (benchmarks/results/memory.md)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or physical_cores()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_mem_pattern = False
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only; ORT's warnings about unused providers are noise here
    return options


def ort_tensorrt_cache_dir(options: EngineOptions) -> Path:
    return Path(options.cache_dir or ".") / "ort-tensorrt"


def ort_tensorrt_provider_options(options: EngineOptions, cache_dir: Path) -> Dict[str, object]:
    """ONNX Runtime TensorRT execution provider settings: INT8 from the QDQ model's explicit
    scales, FP16 for what stays in float, engines cached by ONNX Runtime under `cache_dir`."""
    settings: Dict[str, object] = {
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache_dir),
        "trt_timing_cache_enable": True,
        "trt_max_workspace_size": TENSORRT_WORKSPACE_BYTES,
        "trt_fp16_enable": options.precision in ("fp16", "int8"),
        "trt_int8_enable": options.precision == "int8",
    }
    if options.dla_core >= 0:
        settings.update(trt_dla_enable=True, trt_dla_core=options.dla_core)
    return settings


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


def lane_threads(lanes: int) -> int:
    """Intra-op threads of a session that runs `lanes` calls at once: the physical cores shared
    out, at least one each."""
    return max(1, physical_cores() // max(1, lanes))


def cpu_batch_limit(provider: str, options: EngineOptions) -> int:
    """Most frames per call the pixel budget allows on the CPU provider (any number elsewhere):
    at the tier's input a frame keeps the threads busy alone, so a bigger batch only holds more
    activations (DetectorConfig.cpu_batch_pixels)."""
    if provider != "CPUExecutionProvider" or options.cpu_batch_pixels <= 0:
        return options.max_batch
    width, height = options.input_size
    return max(1, options.cpu_batch_pixels // (width * height))


class OnnxRuntimeEngine:
    """A model's graph in an ONNX Runtime session; implements `edge.detection.engines.base.Engine`.
    `providers` forces the execution providers (default: the best installed); `threads`
    overrides the intra-op thread count (default: physical cores / the options' lanes).

    Lanes (CPU provider only): ONNX Runtime's `run` may be called from several threads at once
    on one session (weights shared, activations per call). Two calls on one intra-op thread each
    analyse more frames than one call on two threads, whose threads meet at every layer (2-core
    VM, SSDLite at 533x300: 83-88 against 46-62 frames/s); one frame alone then takes a thread,
    not both (at 15 calls/s: 25-27 against 20-21 ms p50; benchmarks/results/lanes.md). GPU
    providers run one call at a time."""

    def __init__(
        self, request: EngineRequest, providers: Optional[Sequence[str]] = None, threads: Optional[int] = None
    ) -> None:
        model, options = request.model, request.options
        self.providers = list(providers or choose_providers(ort.get_available_providers()))
        role, reason = resolve_model_file(model, options.precision, self.providers)
        if reason:
            log.info("%s: %s", model.name, reason)
        self.precision = role
        self.fallback_reasons: Mapping[str, str] = {options.precision: reason} if reason else {}
        self.artifact = model.file(role)  # verifies the sha256
        on_cpu = self.providers[0] == "CPUExecutionProvider"
        self.lanes = max(1, options.lanes) if on_cpu else 1
        self._session: Optional[ort.InferenceSession] = self._load(options, threads or lane_threads(self.lanes))
        self._input = self._session.get_inputs()[0]
        self.output_names = [output.name for output in self._session.get_outputs()]
        declared_batch = self._input.shape[0]
        self.max_batch = min(
            options.max_batch if not isinstance(declared_batch, int) else min(options.max_batch, declared_batch),
            cpu_batch_limit(self.providers[0], options),
        )
        self.input_dtype: type = np.float16 if self._input.type == "tensor(float16)" else np.float32

    def _load(self, options: EngineOptions, threads: Optional[int]) -> ort.InferenceSession:
        provider_options: List[Dict[str, object]] = []
        for provider in self.providers:
            if provider == "TensorrtExecutionProvider":
                cache_dir = ort_tensorrt_cache_dir(options)
                cache_dir.mkdir(parents=True, exist_ok=True)
                provider_options.append(ort_tensorrt_provider_options(options, cache_dir))
            else:
                provider_options.append({})
        try:
            return ort.InferenceSession(
                str(self.artifact),
                sess_options=session_options(threads),
                providers=self.providers,
                provider_options=provider_options,
            )
        except Exception as exc:  # ORT raises its own pybind types (InvalidProtobuf, Fail, ...)
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{self.artifact}: cannot load ONNX model ({detail[:200]})") from None

    def run(self, tensor: np.ndarray) -> List[np.ndarray]:
        assert self._session is not None, "engine closed"
        return list(self._session.run(self.output_names, {self._input.name: tensor}))

    def close(self) -> None:
        self._session = None


def open_engine(request: EngineRequest) -> OnnxRuntimeEngine:
    engine = OnnxRuntimeEngine(request)
    width, height = request.options.input_size
    log.info(
        "loaded %s (%s, %dx%d, batch <= %d, %d lane(s)) on %s",
        request.model.name,
        engine.precision,
        width,
        height,
        engine.max_batch,
        engine.lanes,
        ", ".join(engine.providers),
    )
    return engine
