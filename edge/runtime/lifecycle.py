"""The running appliance: start, the once-a-second tick (tier adaptation, source health, snapshots,
live state), loading a new tier's detector in the background, telemetry, stop. It is given its parts already built
(`edge.runtime.appliance.build_appliance` is the composition root) and builds nothing itself.

Threads: the main loop calls `start`, `tick` and `stop`; a `tier-load` thread loads a new
detector and hands it to the pipeline; the publisher's thread reads `telemetry()`. State
written by the tier-load thread (the precision decision, a load error) and the tier history the
main loop appends to are guarded by one lock.
"""

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from contract.state import DeviceState, StateTopics, build_camera_state, build_device_state
from edge import __version__
from edge.config import Config
from edge.core.accuracy import PrecisionDecision
from edge.core.errors import VideoAnalysisError
from edge.core.policy import AdaptiveController, TierChange
from edge.core.tiers import Tier
from edge.delivery.publisher import Publisher
from edge.delivery.spool import Spool, SpoolError
from edge.detection.engines import Detector
from edge.detection.pictures import as_bgr
from edge.device.hardware import HardwareProfile, read_memory_percent, read_temperature_c
from edge.device.tiers import TierSelection
from edge.runtime.analysis import CameraAnalysis, ClosedWindow
from edge.runtime.clock import StampClock
from edge.runtime.pipeline import CameraStats, Pipeline
from edge.runtime.privacy import PrivacySpec, snapshot_jpeg
from edge.runtime.source_health import SourceWatch
from edge.runtime.telemetry import DeviceLoad, Telemetry

log = logging.getLogger(__name__)

DetectorLoader = Callable[[Tier], Tuple[Detector, PrecisionDecision]]


class PublishingSink:
    """The window sink that spools every closed window for the publisher."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher
        self.errors = 0  # windows lost because the spool could not be written

    def __call__(self, closed: ClosedWindow) -> None:
        try:
            self.publisher.submit(closed.kind, closed.camera, closed.window, closed.body)
        except SpoolError as exc:
            # Disk full or unwritable: what is already spooled stays; this window is lost, and
            # says so in the log and in telemetry rather than stopping the analysis.
            self.errors += 1
            log.error("%s (%s window of %s not stored)", exc, closed.kind, closed.camera)


@dataclass(frozen=True)
class ApplianceParts:
    """Everything the daemon runs, wired from one configuration."""

    config: Config
    profile: HardwareProfile
    selection: TierSelection
    controller: AdaptiveController
    pipeline: Pipeline
    analyses: Dict[str, CameraAnalysis]
    load_detector: DetectorLoader  # a tier's detector, as the daemon runs it (guarded INT8)
    spool: Optional[Spool] = None
    publisher: Optional[Publisher] = None
    delivery: Optional[PublishingSink] = None
    clock: Callable[[], float] = time.time  # wall clock: stamps live state
    stamps: Optional[StampClock] = None  # wall-clock step detection (windows' stamps)
    monotonic: Callable[[], float] = time.monotonic  # schedules
    capacity_warning: Optional[str] = None  # no tier is predicted to hold the cameras' target


class Appliance:
    """Runs the parts: start, tick, tier switches, stop."""

    def __init__(
        self,
        parts: ApplianceParts,
        precision: PrecisionDecision,
        on_tier_change: Optional[Callable[[TierChange], None]] = None,
    ) -> None:
        self.parts = parts
        self.tier_history: List[TierChange] = [parts.controller.start_change]
        self._on_tier_change = on_tier_change
        self._lock = threading.Lock()  # guards tier_history, _precision and _loading_error
        self._precision = precision
        self._loading_error: Optional[VideoAnalysisError] = None
        self._loading: Optional[threading.Thread] = None
        self._pipeline_stopped = False
        config = parts.config
        self._state_topics = StateTopics(config.mqtt.prefix, config.device_id)
        self._device_state_at: Optional[float] = None
        self._source_watch = SourceWatch(parts.monotonic)
        self._sources_down: List[str] = []  # guarded by _lock: telemetry reads it
        self._privacy = {
            camera.id: PrivacySpec(
                masks=tuple(tuple(polygon) for polygon in camera.privacy_masks),
                blur_people=config.mqtt.snapshot.blur_people,
            )
            for camera in config.cameras
        }

    @property
    def pipeline(self) -> Pipeline:
        return self.parts.pipeline

    @property
    def precision(self) -> PrecisionDecision:
        with self._lock:
            return self._precision

    def telemetry(self) -> Telemetry:
        status = self.parts.controller.status()
        delivery = self.parts.delivery
        with self._lock:
            history = list(self.tier_history)
        agreement = self.parts.selection.agreement_of(status.tier.index)
        return Telemetry(
            version=__version__,
            tier=status.tier.name,
            tier_level=status.level,
            effective_fps=status.effective_fps,
            target_fps=status.target_fps,
            tier_changes=history,
            precision=self.precision,
            spool_write_errors=delivery.errors if delivery is not None else 0,
            sources_down=self.sources_down,
            cameras=self.pipeline.stats(),
            latency_ms=self.pipeline.timer.percentiles_ms(),
            load=DeviceLoad(read_temperature_c(), read_memory_percent(), _cpu_percent()),
            capacity_warning=self.parts.capacity_warning,
            tier_agreement=agreement.agreement_map50 if agreement is not None else None,
        )

    def healthy(self) -> bool:
        """Whether the service may feed the systemd watchdog: false while delivery is degraded
        (no progress while connected) or the sender has gone, so systemd restarts the daemon."""
        publisher = self.parts.publisher
        return publisher is None or publisher.healthy()

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self.parts.publisher is not None:
            self.parts.publisher.start()
        self.pipeline.start()

    def tick(self) -> Optional[TierChange]:
        """Once a second: adapt the tier, publish snapshots. Returns the tier change, if any.
        While a new tier's detector loads (INT8 calibration can take seconds), the old tier
        keeps running and the controller waits, so its measurements stay those of one tier.
        A wall-clock step is noticed here; each camera's analysis closes its open windows at
        its next poll and stamps the next ones with the new time."""
        if self.parts.stamps is not None:
            self.parts.stamps.check()
        if self._loading is not None:
            if self._loading.is_alive():
                self._watch_sources(self.pipeline.stats())
                self._snapshots()
                self._live_states()
                return None
            self._loading = None
            with self._lock:
                error, self._loading_error = self._loading_error, None
            if error is not None:
                raise error
        cameras = self.pipeline.stats()
        down = self._watch_sources(cameras)
        processed = sum(stats.processed for stats in cameras)
        busy = self.pipeline.busy_s()
        active_target = sum(camera.target_fps for camera in self.parts.config.cameras if camera.id not in down)
        change = self.parts.controller.update(
            processed,
            busy_s=busy,
            temperature_c=read_temperature_c(),
            memory_percent=read_memory_percent(),
            active_target_fps=active_target,
        )
        if change is not None:
            self.switch_tier(change)
        self._snapshots()
        self._live_states()
        return change

    def _watch_sources(self, cameras: List[CameraStats]) -> List[str]:
        down = self._source_watch.update(cameras)
        with self._lock:
            self._sources_down = down
        return down

    @property
    def sources_down(self) -> List[str]:
        with self._lock:
            return list(self._sources_down)

    def switch_tier(self, change: TierChange) -> None:
        """Record a tier change and load its detector in the background; the pipeline swaps
        to it once loaded (`tick` reports a failed load)."""
        log.info("%s", change)
        with self._lock:
            self.tier_history.append(change)
        if self._on_tier_change is not None:
            self._on_tier_change(change)
        self._loading = threading.Thread(target=self._load_tier, args=(change,), name="tier-load", daemon=True)
        self._loading.start()

    def _load_tier(self, change: TierChange) -> None:
        try:
            detector, precision = self.parts.load_detector(change.to_tier)
        except VideoAnalysisError as exc:
            with self._lock:
                self._loading_error = exc
            return
        with self._lock:
            self._precision = precision
        self.pipeline.apply_tier(detector, change.to_tier.frame_skip, change.to_tier.name)

    def _snapshots(self) -> None:
        publisher = self.parts.publisher
        if publisher is None:
            return
        for camera_id, analysis in self.parts.analyses.items():
            frame = analysis.last_frame
            if frame is not None and publisher.snapshot_due(camera_id):
                jpeg = snapshot_jpeg(as_bgr(frame), self._privacy[camera_id], analysis.last_people)
                if jpeg is not None:
                    publisher.publish_snapshot(camera_id, jpeg)

    def _live_states(self) -> None:
        """Retained live state: each camera's when it changed or its heartbeat is due, the
        device's diagnostics every telemetry interval (on the monotonic clock, so a wall-clock
        step neither stalls nor floods it)."""
        publisher = self.parts.publisher
        if publisher is None:
            return
        now = self.parts.clock()
        down = self.sources_down
        for camera_id, analysis in self.parts.analyses.items():
            if camera_id in down:
                continue  # not refreshed: subscribers' expire_after marks it unavailable
            state = analysis.live_state_due(now)
            if state is not None:
                publisher.publish_state(self._state_topics.camera_state(camera_id), build_camera_state(state))
        tick = self.parts.monotonic()
        interval = self.parts.config.mqtt.telemetry_interval_s
        if self._device_state_at is not None and tick - self._device_state_at < interval:
            return
        self._device_state_at = tick
        device = DeviceState(
            device=self.parts.config.device_id,
            ts=now,
            spool_depth=publisher.stats().spool_depth,
            temperature_c=read_temperature_c(),
            cameras=list(self.parts.analyses),
            sources_down=down,
        )
        publisher.publish_state(self._state_topics.device_state, build_device_state(device))

    def stop_pipeline(self) -> None:
        """Stop the sources and the lanes, and close the open windows (spooled as partial
        windows with their nominal bounds, so nothing counted is lost)."""
        if self._pipeline_stopped:
            return
        self._pipeline_stopped = True
        if self._loading is not None:
            self._loading.join()
        self.pipeline.stop()

    def stop(self) -> None:
        """Stop everything; undelivered messages stay in the spool for the next start."""
        self.stop_pipeline()
        if self.parts.publisher is not None:
            self.parts.publisher.stop()
        if self.parts.spool is not None:
            self.parts.spool.close()


def _cpu_percent() -> Optional[float]:
    try:
        import psutil

        return float(psutil.cpu_percent(interval=None))
    except ImportError:  # pragma: no cover
        return None
