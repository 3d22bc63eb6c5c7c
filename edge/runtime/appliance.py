"""The composition root: `build_appliance` wires every part the daemon runs from one
configuration (probe → tiers → their agreement → controller → detector → sources → analyses →
pipeline → spool → publisher) and hands them to the running `Appliance` (edge.runtime.lifecycle), which
`edge.runtime.service` runs under systemd and the demo runs on one machine.
"""

import logging
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from contract import new_boot_id
from contract.state import StateError, StateTopics, parse_camera_state
from edge.config import CameraConfig, Config
from edge.core.errors import ConfigError
from edge.core.policy import AdaptiveController, TierChange
from edge.core.tier_agreement import dominated
from edge.delivery.publisher import Publisher
from edge.delivery.spool import Spool
from edge.detection.factory import pipeline_lanes
from edge.detection.int8.guard import load_guarded_tier_detector, log_progress
from edge.detection.manifest import DEFAULT_MODELS_DIR, load_manifest
from edge.device.agreement import check_agreement
from edge.device.hardware import HardwareProfile, probe
from edge.device.tiers import (
    MeasurementCache,
    TierSelection,
    default_cache_path,
    fit_warning,
    measure_tier,
    predict_capacities,
    select_tiers,
    size_variant,
)
from edge.runtime.analysis import CameraAnalysis, WindowSink
from edge.runtime.clock import StampClock
from edge.runtime.lifecycle import Appliance, ApplianceParts, PublishingSink
from edge.runtime.memory import limit_malloc_arenas, release_free_memory
from edge.runtime.pipeline import FrameAnalyser, Pipeline
from edge.runtime.sources import FrameSource, SourceReader, stream_size
from edge.runtime.telemetry import Telemetry

log = logging.getLogger(__name__)

DEFAULT_FRAME_SIZE = (1280, 720)
# How long a camera's live state waits at start for the broker's retained one (the previous run's
# totals of the day); when the broker has none, publishing starts after this.
RESTORE_WAIT_S = 5.0


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


class _LiveStateRestorer:
    """The publisher's `on_restore`: hands a camera's retained live state (the previous run's)
    to its analysis, which continues today's totals from it. Called on paho's thread."""

    def __init__(
        self,
        analyses: Mapping[str, CameraAnalysis],
        cameras: Sequence[str],
        topics: StateTopics,
        clock: Callable[[], float],
    ) -> None:
        self.analyses = analyses  # filled after the publisher is built, before it starts
        self.by_topic = {topics.camera_state(camera): camera for camera in cameras}
        self.clock = clock

    def topics(self) -> List[str]:
        return sorted(self.by_topic)

    def __call__(self, topic: str, payload: bytes) -> None:
        camera = self.by_topic.get(topic)
        if camera is None:
            return
        try:
            previous = parse_camera_state(payload, topic)
        except StateError as exc:
            log.warning("not continuing today's totals: %s", exc)
            return
        if self.analyses[camera].restore_live_state(previous, self.clock()):
            log.info("%s: continuing today's line totals from the retained live state", camera)


def _select(config: Config, profile: HardwareProfile, progress: Callable[[str], None]) -> TierSelection:
    """The runnable tiers: those this device can run whose detections agree with the best one's."""
    selection = select_tiers(config.policy, profile, load_manifest(config.models_dir or DEFAULT_MODELS_DIR))
    for dropped in selection.dropped:
        log.info("tier %s dropped: %s", dropped.name, dropped.reason)
    selection = check_agreement(config, selection, profile.fingerprint(), progress)
    if not selection.runnable:
        raise ConfigError(f"policy.tiers: no tier of {selection.platform} can run on this device")
    return selection


def _frame_size(config: Config) -> Tuple[int, int]:
    """The largest frame the cameras' analysed streams deliver (720p when none can be opened
    now): tier capacities are measured decoding frames of this size."""
    sizes = [stream_size(camera.analysed_url(), config.decode.threads) for camera in config.cameras]
    known = [size for size in sizes if size is not None]
    return max(known, key=lambda size: size[0] * size[1]) if known else DEFAULT_FRAME_SIZE


def choose_tiers(
    config: Config, profile: HardwareProfile, progress: Callable[[str], None] = log_progress
) -> Tuple[TierSelection, List[float]]:
    """The tiers this site runs, best first, with each one's capacity (analysed frames/s,
    decoding the cameras' frames): those this device can run whose detections agree with the
    best one's, less those a cheaper equivalent detector makes pointless here."""
    return without_equivalents(config, profile, _select(config, profile, progress))


def without_equivalents(
    config: Config, profile: HardwareProfile, selection: TierSelection
) -> Tuple[TierSelection, List[float]]:
    """The judged selection less the tiers a cheaper equivalent detector makes pointless on this
    site (edge.core.tier_agreement.dominated), with the kept tiers' capacities (measured once
    per device and camera resolution, cached)."""
    frame_size = _frame_size(config)
    lanes = pipeline_lanes(config)
    capacities = predict_capacities(
        selection.runnable,
        lambda tier: measure_tier(config, tier, frame_size, lanes=lanes),
        MeasurementCache(default_cache_path(config)),
        profile.fingerprint(),
        size_variant(frame_size, lanes),
    )
    reasons = dominated(selection.runnable, capacities, selection.agreement, config.policy.equivalence_floor)
    if not reasons:
        return selection, capacities
    for tier in selection.runnable:
        if tier.index in reasons:
            log.info("tier %s dropped: %s", tier.name, reasons[tier.index])
    kept = [value for tier, value in zip(selection.runnable, capacities) if tier.index not in reasons]
    return selection.without(reasons), kept


def _controller(
    config: Config, selection: TierSelection, capacities: Sequence[float], clock: Callable[[], float]
) -> Tuple[AdaptiveController, Optional[str]]:
    """The controller, and the one-line warning when no tier can hold the cameras' target."""
    target = sum(camera.target_fps for camera in config.cameras)
    warning = fit_warning(selection.runnable, capacities, target, len(config.cameras))
    if warning is not None:
        log.warning("%s", warning)
    return AdaptiveController(selection.runnable, capacities, target, config.policy, clock), warning


def build_appliance(
    config: Config,
    sinks: Sequence[WindowSink] = (),
    clock: Callable[[], float] = time.time,
    profile: Optional[HardwareProfile] = None,
    publish: bool = True,
    on_tier_change: Optional[Callable[[TierChange], None]] = None,
    progress: Callable[[str], None] = log_progress,
) -> Appliance:
    """Every part the daemon runs, built from one configuration. `sinks` also receive every
    closed window (the demo's printer and summary); `publish=False` runs without spool and
    MQTT (load tests)."""
    if not config.cameras:
        raise ConfigError("config: cameras: at least one camera is needed to run")
    limit_malloc_arenas()  # before any of the appliance's threads allocates
    profile = profile or probe()
    # `clock` stamps windows; waiting, pacing and the policy run on the steady pipeline time.
    stamps = StampClock(wall=clock)
    steady = stamps.pipeline_time
    selection, capacities = choose_tiers(config, profile, progress)
    controller, capacity_warning = _controller(config, selection, capacities, steady)
    release_free_memory()  # what measuring the tiers freed, before the detector is loaded
    log.info("%s", controller.start_change)
    if on_tier_change is not None:
        on_tier_change(controller.start_change)
    relay = _TelemetryRelay()
    spool: Optional[Spool] = None
    publisher: Optional[Publisher] = None
    delivery: Optional[PublishingSink] = None
    window_sinks = list(sinks)
    analyses: Dict[str, CameraAnalysis] = {}
    if publish:
        spool = Spool.from_config(config)
        topics = StateTopics(config.mqtt.prefix, config.device_id)
        restorer = _LiveStateRestorer(analyses, [camera.id for camera in config.cameras], topics, clock)
        publisher = Publisher(
            config,
            spool,
            new_boot_id(),
            clock,
            telemetry_source=relay,
            restore_topics=restorer.topics(),
            on_restore=restorer,
        )
        delivery = PublishingSink(publisher)
        window_sinks.append(delivery)
    wiring: List[Tuple[CameraConfig, FrameSource, FrameAnalyser]] = []
    for camera in config.cameras:
        analyses[camera.id] = CameraAnalysis(config, camera, window_sinks, stamps=stamps)
        if publish:
            analyses[camera.id].hold_live_state(clock() + RESTORE_WAIT_S)
        source = SourceReader(
            camera.id,
            camera.analysed_url(),
            realtime=camera.realtime,
            loop=camera.loop,
            clock=steady,
            decode_threads=config.decode.threads,
            nice=config.decode.nice,
            skip_deblocking=config.decode.skip_deblocking,
        )
        wiring.append((camera, source, analyses[camera.id]))
    max_batch = min(config.detector.max_batch, len(config.cameras))
    tier = controller.tier
    device = profile.fingerprint()
    lanes = pipeline_lanes(config)
    detector, precision = load_guarded_tier_detector(config, tier, max_batch, progress, device, lanes)
    release_free_memory()  # what the INT8 check freed (the FP32 model, the held-out frames)
    pipeline = Pipeline(wiring, detector, tier.frame_skip, steady, config.policy.window_s, tier.name)
    parts = ApplianceParts(
        config=config,
        profile=profile,
        selection=selection,
        controller=controller,
        pipeline=pipeline,
        analyses=analyses,
        load_detector=lambda new: load_guarded_tier_detector(config, new, max_batch, device=device, lanes=lanes),
        spool=spool,
        publisher=publisher,
        delivery=delivery,
        clock=clock,
        stamps=stamps,
        capacity_warning=capacity_warning,
    )
    appliance = Appliance(parts, precision, on_tier_change)
    relay.source = appliance.telemetry
    return appliance
