"""Registry of detector backends by name (`onnxruntime`, `tensorrt`).

Backends register a factory; heavy imports (onnxruntime, tensorrt, pycuda) happen inside the
backend module, which is imported only when that engine is asked for, so the CPU path never
needs the NVIDIA packages.
"""

import importlib
from dataclasses import dataclass
from typing import Callable, Dict, Tuple

from edge.core.errors import ConfigError
from edge.detection.engines.base import Detections, Detector, PreparedBatch, detect
from edge.detection.manifest import ModelSpec

__all__ = [
    "Detections",
    "Detector",
    "EngineOptions",
    "PreparedBatch",
    "create_detector",
    "detect",
    "engine_names",
    "register_engine",
]


@dataclass(frozen=True)
class EngineOptions:
    """How to load a model on an engine (one tier of the policy table)."""

    precision: str = "int8"  # fp32 | fp16 | int8
    input_size: Tuple[int, int] = (300, 300)  # (width, height)
    # SSD: the input's shorter side is input_size[1], its longer side follows the frame's aspect
    # ratio (a 4:3 frame at 300 runs at 400x300) instead of squashing the frame into a square.
    keep_aspect: bool = False
    # SSD: a second pass with this shorter side (0 = none) for people too large for the main
    # input; each pass keeps the sizes it sees well (engines/onnxruntime.py, COARSE_FROM_PX).
    coarse_input: int = 0
    max_batch: int = 1
    score_threshold: float = 0.4
    nms_iou: float = 0.45
    dla_core: int = -1  # TensorRT only; -1 = GPU
    cache_dir: str = ""  # where built engines / quantised models are cached


EngineFactory = Callable[[ModelSpec, EngineOptions], Detector]
_FACTORIES: Dict[str, EngineFactory] = {}
# Backend modules, imported on first use so their heavy dependencies stay optional.
_MODULES = {"onnxruntime": "edge.detection.engines.onnxruntime", "tensorrt": "edge.detection.engines.tensorrt"}


def register_engine(name: str) -> Callable[[EngineFactory], EngineFactory]:
    def decorator(factory: EngineFactory) -> EngineFactory:
        _FACTORIES[name] = factory
        return factory

    return decorator


def engine_names() -> Tuple[str, ...]:
    return tuple(_MODULES)


def create_detector(engine: str, model: ModelSpec, options: EngineOptions) -> Detector:
    """Load `model` on the named engine; raises ConfigError for an unknown engine and
    ModelError for a missing or corrupt model."""
    if engine not in _MODULES:
        raise ConfigError(f"unknown engine {engine!r}; known: {', '.join(_MODULES)}")
    if engine not in _FACTORIES:
        importlib.import_module(_MODULES[engine])
    return _FACTORIES[engine](model, options)
