"""The composition root: `build_appliance` wires every part the daemon runs from one
configuration (probe → tiers → controller → detector → sources → analyses → pipeline → spool →
publisher) and hands them to the running `Appliance` (edge.runtime.lifecycle), which
`edge.runtime.service` runs under systemd and the demo runs on one machine.
"""

import logging
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from contract.wire import new_boot_id
from edge.config import CameraConfig, Config
from edge.core.accuracy import PrecisionDecision
from edge.core.errors import ConfigError
from edge.core.policy import AdaptiveController, TierChange
from edge.core.tiers import Tier
from edge.delivery.publisher import Publisher
from edge.delivery.spool import Spool
from edge.detection.engines import Detector, EngineOptions, create_detector, detect
from edge.detection.int8.guard import load_guarded_detector
from edge.detection.manifest import DEFAULT_MODELS_DIR, load_manifest
from edge.device.hardware import HardwareProfile, probe
from edge.device.tiers import MeasurementCache, TierSelection, default_cache_path, predict_capacities, select_tiers
from edge.runtime.analysis import CameraAnalysis, WindowSink
from edge.runtime.lifecycle import Appliance, ApplianceParts, PublishingSink
from edge.runtime.pipeline import FrameAnalyser, Pipeline
from edge.runtime.sources import FrameSource, SourceReader
from edge.runtime.telemetry import Telemetry

log = logging.getLogger(__name__)


def tier_options(config: Config, tier: Tier, max_batch: int) -> EngineOptions:
    """Engine options of a tier; the score threshold is the tracker's low threshold, because
    ByteTrack's second stage uses low-score detections."""
    return EngineOptions(
        precision=tier.precision,
        input_size=(tier.input, tier.input),
        max_batch=max_batch,
        score_threshold=min(config.detector.score_threshold, config.tracker.low_threshold),
        nms_iou=config.detector.nms_iou,
        dla_core=0 if tier.dla else -1,
        cache_dir=str(config.state_dir / "cache"),
    )


def load_tier_detector(config: Config, tier: Tier, max_batch: int) -> Detector:
    """The detector of one tier as configured (no accuracy guard: measurements and tests)."""
    model = load_manifest(config.models_dir or DEFAULT_MODELS_DIR)[tier.model]
    return create_detector(tier.engine, model, tier_options(config, tier, max_batch))


def _log_progress(message: str) -> None:
    log.info("calibration: %s", message)


def load_guarded_tier_detector(
    config: Config, tier: Tier, max_batch: int, progress: Callable[[str], None] = _log_progress
) -> Tuple[Detector, PrecisionDecision]:
    """The detector the daemon runs: INT8 is calibrated on this device's calibration set and
    used only when it agrees with FP32 above `calibration.agreement_floor`; else FP32."""
    model = load_manifest(config.models_dir or DEFAULT_MODELS_DIR)[tier.model]
    detector, decision = load_guarded_detector(
        config, tier, model, tier_options(config, tier, max_batch), progress=progress
    )
    log.info("precision for %s: %s (%s)", tier.name, decision.chosen, decision.reason)
    return detector, decision


def measure_tier(config: Config, tier: Tier, frames: int = 20) -> float:
    """Processed frames per second of one tier on this device (single stream, batch 1)."""
    import numpy as np

    detector = load_tier_detector(config, tier, max_batch=1)
    try:
        image = np.random.default_rng(0).integers(0, 255, (360, 640, 3), dtype=np.uint8)
        detect(detector, [image])  # warm-up: first-run allocations are not the tier's speed
        started = time.perf_counter()
        for _ in range(frames):
            detect(detector, [image])
        return frames / (time.perf_counter() - started)
    finally:
        detector.close()


class _TelemetryRelay:
    """The publisher's telemetry source. The publisher is built before the appliance whose
    telemetry it publishes (the appliance runs the publisher), so the appliance is attached
    here once it exists; the publisher asks for telemetry only after `Appliance.start`."""

    def __init__(self) -> None:
        self.source: Optional[Callable[[], Telemetry]] = None

    def __call__(self) -> Mapping[str, Any]:
        if self.source is None:
            raise RuntimeError("telemetry asked for before the appliance was built")
        return self.source().to_wire()


def _select(config: Config, profile: HardwareProfile) -> TierSelection:
    selection = select_tiers(config.policy, profile, load_manifest(config.models_dir or DEFAULT_MODELS_DIR))
    for dropped in selection.dropped:
        log.info("tier %s dropped: %s", dropped.name, dropped.reason)
    if not selection.runnable:
        raise ConfigError(f"policy.tiers: no tier of {selection.platform} can run on this device")
    return selection


def _controller(
    config: Config, profile: HardwareProfile, selection: TierSelection, clock: Callable[[], float]
) -> AdaptiveController:
    capacities = predict_capacities(
        selection.runnable,
        lambda tier: measure_tier(config, tier),
        MeasurementCache(default_cache_path(config)),
        profile.fingerprint(),
    )
    target = sum(camera.target_fps for camera in config.cameras)
    return AdaptiveController(selection.runnable, capacities, target, config.policy, clock)


def build_appliance(
    config: Config,
    sinks: Sequence[WindowSink] = (),
    clock: Callable[[], float] = time.time,
    profile: Optional[HardwareProfile] = None,
    publish: bool = True,
    on_tier_change: Optional[Callable[[TierChange], None]] = None,
    progress: Callable[[str], None] = _log_progress,
) -> Appliance:
    """Every part the daemon runs, built from one configuration. `sinks` also receive every
    closed window (the demo's printer and summary); `publish=False` runs without spool and
    MQTT (load tests)."""
    if not config.cameras:
        raise ConfigError("config: cameras: at least one camera is needed to run")
    profile = profile or probe()
    selection = _select(config, profile)
    controller = _controller(config, profile, selection, clock)
    log.info("%s", controller.start_change)
    if on_tier_change is not None:
        on_tier_change(controller.start_change)
    relay = _TelemetryRelay()
    spool: Optional[Spool] = None
    publisher: Optional[Publisher] = None
    delivery: Optional[PublishingSink] = None
    window_sinks = list(sinks)
    if publish:
        spool = Spool.from_config(config)
        publisher = Publisher(config, spool, new_boot_id(), clock, telemetry_source=relay)
        delivery = PublishingSink(publisher)
        window_sinks.append(delivery)
    analyses: Dict[str, CameraAnalysis] = {}
    wiring: List[Tuple[CameraConfig, FrameSource, FrameAnalyser]] = []
    for camera in config.cameras:
        analyses[camera.id] = CameraAnalysis(config, camera, window_sinks)
        source = SourceReader(camera.id, camera.source, realtime=camera.realtime, loop=camera.loop, clock=clock)
        wiring.append((camera, source, analyses[camera.id]))
    max_batch = min(config.detector.max_batch, len(config.cameras))
    tier = controller.tier
    detector, precision = load_guarded_tier_detector(config, tier, max_batch, progress)
    pipeline = Pipeline(wiring, detector, tier.frame_skip, clock, config.policy.window_s, tier.name)
    parts = ApplianceParts(
        config=config,
        profile=profile,
        selection=selection,
        controller=controller,
        pipeline=pipeline,
        analyses=analyses,
        load_detector=lambda new_tier: load_guarded_tier_detector(config, new_tier, max_batch),
        spool=spool,
        publisher=publisher,
        delivery=delivery,
    )
    appliance = Appliance(parts, precision, on_tier_change)
    relay.source = appliance.telemetry
    return appliance
