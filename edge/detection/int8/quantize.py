"""CPU INT8: ONNX Runtime static quantisation (QDQ) from a calibration set, cached.

Settings: QDQ format (the one ONNX Runtime's CPU kernels fuse into QLinearConv and TensorRT's
execution provider reads as explicit quantisation), unsigned 8-bit activations with signed 8-bit
per-channel weights (U8S8: the VNNI / dot-product fast path), MinMax calibration. On the default
model they gave agreement mAP@0.5 1.0 with FP32 on the held-out frames (benchmarks/results/).
The model is first run through `quant_pre_process` (shape inference + graph optimisation), as
ONNX Runtime recommends, and the quantised model's input normalisation is then folded into its
first convolution (`input_fold`, ~3 % less inference; `fold_input`).

The result is cached under `<cache dir>/quantized/`, named by the sha256 of (model sha256,
calibration set hash, onnxruntime version, input size, settings): the same inputs never
recalibrate, any change does. `onnxruntime.quantization` needs the `onnx` package; it is
imported only here, when a model is actually quantised.

The cache quantises in a child process: ONNX Runtime's calibration session runs the unoptimised
float graph, which lifted the daemon's first start by ~270 MB over its interpreter and left
~95 MB its allocator never gave back for as long as the daemon ran; a child returns all of it
when it exits (benchmarks/results/memory.md). `make_reader` must therefore be picklable.
"""

import hashlib
import json
import logging
import os
import pickle
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional, Tuple

from edge.core.errors import ModelError
from edge.detection.manifest import sha256_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuantizeSettings:
    per_channel: bool = True
    activation_type: str = "QUInt8"
    weight_type: str = "QInt8"
    calibrate_method: str = "MinMax"
    nodes_to_exclude: Tuple[str, ...] = ()  # nodes kept in float (e.g. an exact input prefix)
    fold_input: bool = True  # the input normalisation folded into the first conv (input_fold.py)

    @property
    def tag(self) -> str:
        channel = "pc" if self.per_channel else "pt"
        fold = "-foldin" if self.fold_input else ""
        return f"qdq-{self.activation_type}-{self.weight_type}-{channel}-{self.calibrate_method}{fold}".lower()


@dataclass(frozen=True)
class QuantizeKey:
    model_sha256: str
    calibration_hash: str
    onnxruntime_version: str
    input_size: Tuple[int, int]
    settings: QuantizeSettings

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class QuantizeResult:
    path: Path
    key: QuantizeKey
    reused: bool  # True when taken from the cache
    seconds: float  # time spent quantising (0 when reused)

    @property
    def sha256(self) -> str:
        return sha256_of(self.path)


def onnxruntime_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


def cached_path(cache_dir: Path, model_name: str, key: QuantizeKey) -> Path:
    width, height = key.input_size
    return Path(cache_dir) / "quantized" / f"{model_name}-int8-{width}x{height}-{key.digest()[:16]}.onnx"


def quantize_cached(
    fp32_path: Path,
    model_name: str,
    calibration_hash: str,
    input_size: Tuple[int, int],
    make_reader: Callable[[str], object],
    cache_dir: Path,
    settings: QuantizeSettings = QuantizeSettings(),
    progress: Optional[Callable[[str], None]] = None,
) -> QuantizeResult:
    """The INT8 QDQ model for (model, calibration set, ORT version, input, settings), quantised
    now only when the cache has none. `make_reader(input_name)` returns a
    CalibrationDataReader over the calibration (not held-out) frames."""
    size = (int(input_size[0]), int(input_size[1]))
    key = QuantizeKey(sha256_of(fp32_path), calibration_hash, onnxruntime_version(), size, settings)
    target = cached_path(cache_dir, model_name, key)
    if target.is_file():
        log.info("INT8 model reused from %s", target)
        return QuantizeResult(target, key, reused=True, seconds=0.0)
    start = time.monotonic()
    if progress:
        progress(f"quantising {model_name} to INT8 ({settings.tag})")
    quantize_model_in_child(fp32_path, target, make_reader, settings)
    for stale in target.parent.glob(f"{model_name}-int8-{input_size[0]}x{input_size[1]}-*.onnx"):
        if stale != target:  # superseded by a new calibration set or ORT version
            stale.unlink()
    seconds = time.monotonic() - start
    log.info("INT8 model written to %s in %.1f s", target, seconds)
    return QuantizeResult(target, key, reused=False, seconds=seconds)


def quantize_model_in_child(
    fp32_path: Path, target: Path, make_reader: Callable[[str], object], settings: QuantizeSettings
) -> None:
    """`quantize_model` in a fresh interpreter that imports only this module and what the job
    needs (multiprocessing's spawn would import the caller's main module too, and a fork of a
    daemon with threads and ONNX Runtime sessions is not safe); its error is raised here."""
    job = pickle.dumps(sys.path) + pickle.dumps((fp32_path, target, make_reader, settings))
    done = subprocess.run([sys.executable, "-m", __name__], input=job, stdout=subprocess.PIPE, check=False)
    if done.returncode == 0:
        return
    try:
        error = pickle.loads(done.stdout)
    except Exception:  # killed before it could answer (out of memory, a signal)
        error = None
    if isinstance(error, BaseException):
        raise error
    raise ModelError(f"{fp32_path}: the INT8 quantisation process failed (exit status {done.returncode})")


def _quantize_job() -> int:
    """The child's side: sys.path, then the job, pickled on stdin; an error pickled on stdout."""
    sys.path[:] = pickle.load(sys.stdin.buffer)
    fp32_path, target, make_reader, settings = pickle.load(sys.stdin.buffer)
    try:
        quantize_model(fp32_path, target, make_reader, settings)
    except Exception as exc:
        try:
            answer = pickle.dumps(exc)
        except Exception:  # ONNX Runtime's own exception types do not pickle
            answer = pickle.dumps(ModelError(f"{fp32_path}: INT8 quantisation failed: {exc}"))
        sys.stdout.buffer.write(answer)
        return 1
    return 0


def quantize_model(
    fp32_path: Path, target: Path, make_reader: Callable[[str], object], settings: QuantizeSettings
) -> None:
    """Static QDQ quantisation of `fp32_path` into `target`; `make_reader(input_name)` gives the
    calibration data reader. Used by the cache above and by models/quantize_default.py."""
    try:
        import onnxruntime
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:
        raise ModelError(f"INT8 quantisation needs the onnx package (pip install onnx): {exc}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    session = onnxruntime.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    with tempfile.TemporaryDirectory(dir=str(target.parent)) as work:
        prepared = Path(work) / "prepared.onnx"
        quantized = Path(work) / "quantized.onnx"
        # Symbolic shape inference needs sympy; ONNX shape inference is enough for these models.
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(quantized),
            make_reader(input_name),
            quant_format=QuantFormat.QDQ,
            per_channel=settings.per_channel,
            activation_type=getattr(QuantType, settings.activation_type),
            weight_type=getattr(QuantType, settings.weight_type),
            calibrate_method=getattr(CalibrationMethod, settings.calibrate_method),
            nodes_to_exclude=list(settings.nodes_to_exclude) or None,
        )
        if settings.fold_input:
            _fold_input(quantized)
        os.replace(quantized, target)


def _fold_input(path: Path) -> None:
    import onnx

    from edge.detection.int8.input_fold import fold_input_normalisation

    model = onnx.load(str(path))
    if fold_input_normalisation(model):
        onnx.save(model, str(path))
    else:
        log.info("%s: input normalisation left unfolded (not a chain this can fold)", path.name)


if __name__ == "__main__":
    sys.exit(_quantize_job())
