"""Model families by the manifest's `family` field: each one's pre-processing and decode,
written once and shared by every engine."""

from typing import Callable, Dict

from edge.core.errors import ModelError
from edge.detection.engines.base import EngineOptions
from edge.detection.families.base import ModelFamily
from edge.detection.families.ssd import SsdFamily
from edge.detection.families.yolo import YoloFamily
from edge.detection.manifest import ModelSpec

_FAMILIES: Dict[str, Callable[[ModelSpec, EngineOptions], ModelFamily]] = {"ssd": SsdFamily, "yolo": YoloFamily}


def family_for(model: ModelSpec, options: EngineOptions) -> ModelFamily:
    """The family of `model` at the options' input size; ModelError for an unknown family or a
    size the model cannot take."""
    if model.family not in _FAMILIES:
        expected = " or ".join(_FAMILIES)
        raise ModelError(f"model {model.name}: unknown family {model.family!r} (expected {expected})")
    return _FAMILIES[model.family](model, options)
