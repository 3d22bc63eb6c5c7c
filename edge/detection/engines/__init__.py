"""The registry of engine plug-ins: the one place that knows engine names.

A plug-in is a module defining `open_engine(request: EngineRequest) -> Engine` plus its
registration here (or a `register_engine` call of its own): its name, its module (imported on
first use, so heavy dependencies such as onnxruntime, tensorrt or pycuda stay optional), a
capability check `can_run(profile) -> Optional[reason]` that tier selection asks without
importing the module, and how it gets to INT8 (docs/adding-an-engine.md shows a whole one).
"""

import importlib
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Protocol, Tuple, cast

from edge.core.errors import ConfigError
from edge.detection.engines.base import (
    CalibrationSource,
    Detections,
    Detector,
    Engine,
    EngineOptions,
    EngineRequest,
    PreparedBatch,
    detect,
)

__all__ = [
    "CalibrationSource",
    "Detections",
    "Detector",
    "Engine",
    "EngineOptions",
    "EnginePlugin",
    "EngineRequest",
    "PreparedBatch",
    "REFERENCE_ENGINE",
    "detect",
    "engine_names",
    "engine_plugin",
    "register_engine",
]


class Platform(Protocol):
    """What the built-in capability checks read of the hardware profile
    (edge.device.hardware.HardwareProfile)."""

    @property
    def nvidia_gpu(self) -> bool: ...

    @property
    def tensorrt_version(self) -> Optional[str]: ...

    @property
    def pycuda(self) -> bool: ...

    @property
    def onnxruntime_version(self) -> Optional[str]: ...


CapabilityCheck = Callable[[Platform], Optional[str]]


class _PluginModule(Protocol):
    def open_engine(self, request: EngineRequest) -> Engine: ...


@dataclass(frozen=True)
class EnginePlugin:
    """One engine as the rest of the appliance sees it."""

    name: str
    module: str  # defines open_engine(request) -> Engine; imported on first use
    can_run: CapabilityCheck  # None when the engine can run on this hardware, else why not
    # True: the engine builds INT8 itself from calibration frames (EngineRequest.calibration);
    # False: it runs the INT8 file of the model (the guard quantises one with ONNX Runtime).
    calibrates_int8: bool = False
    int8_fallback: str = "fp32"  # what runs when the INT8 accuracy guard refuses INT8
    # True: the engine builds for one input shape (TensorRT plans), so the SSD options whose input
    # follows the frame (keep_aspect, coarse_input) are turned off for its tiers (factory).
    fixed_input_shape: bool = False

    def open(self, request: EngineRequest) -> Engine:
        module = cast(_PluginModule, importlib.import_module(self.module))
        return module.open_engine(request)


# The engine that runs the FP32 reference the INT8 guard compares candidates with.
REFERENCE_ENGINE = "onnxruntime"
_PLUGINS: Dict[str, EnginePlugin] = {}


def register_engine(plugin: EnginePlugin) -> EnginePlugin:
    _PLUGINS[plugin.name] = plugin
    return plugin


def engine_names() -> Tuple[str, ...]:
    return tuple(_PLUGINS)


def engine_plugin(name: str) -> EnginePlugin:
    """The plug-in registered as `name`; ConfigError naming the known ones otherwise."""
    if name not in _PLUGINS:
        raise ConfigError(f"unknown engine {name!r}; known: {', '.join(_PLUGINS)}")
    return _PLUGINS[name]


def _onnxruntime_can_run(profile: Platform) -> Optional[str]:
    return "onnxruntime is not importable" if profile.onnxruntime_version is None else None


def _tensorrt_can_run(profile: Platform) -> Optional[str]:
    if not profile.nvidia_gpu:
        return "tensorrt needs an NVIDIA GPU (none found)"
    if profile.tensorrt_version is None:
        return "tensorrt needs the tensorrt Python package (not importable)"
    if not profile.pycuda:
        return "tensorrt needs pycuda (not importable)"
    return None


register_engine(EnginePlugin("onnxruntime", "edge.detection.engines.onnxruntime", _onnxruntime_can_run))
register_engine(
    EnginePlugin(
        "tensorrt",
        "edge.detection.engines.tensorrt",
        _tensorrt_can_run,
        calibrates_int8=True,
        int8_fallback="fp16",
        fixed_input_shape=True,
    )
)
