"""The one place detectors are built: the daemon, `bench`, `calibrate`, `detect`, the INT8 guard
and the tests all come through `create_detector` (family × engine plug-in) with options from
`engine_options`.
"""

import logging
from pathlib import Path
from typing import Callable, Optional, Protocol

from edge.config import Config
from edge.detection.detector import FamilyDetector
from edge.detection.engines import Engine, EngineOptions, EngineRequest, engine_plugin
from edge.detection.engines.base import CalibrationSource, physical_cores
from edge.detection.families import family_for
from edge.detection.manifest import DEFAULT_MODELS_DIR, ModelSpec, load_manifest

log = logging.getLogger(__name__)


class TierLike(Protocol):
    """What building a tier's detector needs of it (edge.core.tiers.Tier and
    edge.config.TierConfig both have it)."""

    @property
    def model(self) -> str: ...

    @property
    def precision(self) -> str: ...

    @property
    def engine(self) -> str: ...

    @property
    def input(self) -> int: ...

    @property
    def dla(self) -> bool: ...


def cache_dir(config: Config) -> Path:
    """Where built engines and quantised models are cached."""
    return config.state_dir / "cache"


def tracking_score_threshold(config: Config) -> float:
    """The score threshold of the daemon's detector: the tracker's low threshold when lower,
    because ByteTrack's second stage uses low-score detections."""
    return min(config.detector.score_threshold, config.tracker.low_threshold)


def pipeline_lanes(config: Config) -> int:
    """The inference lanes of the daemon's pipeline on a CPU (detector.cpu_lanes; 0: one per
    physical core). Commands that detect one frame after another keep one lane on every core."""
    return config.detector.cpu_lanes or physical_cores()


def engine_options(
    config: Config, tier: TierLike, max_batch: int, score_threshold: Optional[float] = None, lanes: int = 1
) -> EngineOptions:
    """Engine options of a tier; `score_threshold` defaults to detector.score_threshold. An
    engine that builds for one input shape runs the square input without the coarse pass.
    `lanes`: calls the pipeline makes at once (pipeline_lanes); 1 for callers that detect one
    frame after another."""
    follows_frame = not engine_plugin(tier.engine).fixed_input_shape
    if not follows_frame and (config.detector.keep_aspect or config.detector.coarse_input):
        log.info(
            "tier %s@%d on %s: detector.keep_aspect and detector.coarse_input off (the engine builds "
            "for one input shape)",
            tier.model,
            tier.input,
            tier.engine,
        )
    return EngineOptions(
        precision=tier.precision,
        input_size=(tier.input, tier.input),
        keep_aspect=config.detector.keep_aspect and follows_frame,
        coarse_input=config.detector.coarse_input if follows_frame else 0,
        max_batch=max_batch,
        cpu_batch_pixels=config.detector.cpu_batch_pixels,
        lanes=lanes,
        score_threshold=config.detector.score_threshold if score_threshold is None else score_threshold,
        nms_iou=config.detector.nms_iou,
        dla_core=0 if tier.dla else -1,
        cache_dir=str(cache_dir(config)),
    )


def compose(
    model: ModelSpec,
    options: EngineOptions,
    open_engine: Callable[[EngineRequest], Engine],
    calibration: Optional[CalibrationSource] = None,
) -> FamilyDetector:
    """The model's family at the options' input size, on the engine `open_engine` opens."""
    family = family_for(model, options)
    engine = open_engine(EngineRequest(model, options, family.tensor, calibration))
    try:
        return FamilyDetector(model, family, engine)
    except BaseException:
        engine.close()
        raise


def create_detector(
    engine: str, model: ModelSpec, options: EngineOptions, calibration: Optional[CalibrationSource] = None
) -> FamilyDetector:
    """`model` on the named engine; ConfigError for an unknown engine, ModelError for a missing
    or corrupt model. `calibration` is for engines that build INT8 themselves (the INT8 guard
    passes it; without it they calibrate on the default set, edge.detection.int8.tables)."""
    return compose(model, options, engine_plugin(engine).open, calibration)


def tier_model(config: Config, tier: TierLike) -> ModelSpec:
    return load_manifest(config.models_dir or DEFAULT_MODELS_DIR)[tier.model]


def load_tier_detector(config: Config, tier: TierLike, max_batch: int, lanes: int = 1) -> FamilyDetector:
    """The detector of one tier as the daemon runs it, without the INT8 accuracy guard
    (measurements and tests)."""
    options = engine_options(config, tier, max_batch, tracking_score_threshold(config), lanes)
    return create_detector(tier.engine, tier_model(config, tier), options)
