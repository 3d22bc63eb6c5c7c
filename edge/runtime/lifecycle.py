"""The running appliance: start, the once-a-second tick (tier adaptation, snapshots), loading a
new tier's detector in the background, telemetry, stop. It is given its parts already built
(`edge.runtime.appliance.build_appliance` is the composition root) and builds nothing itself.

Threads: the main loop calls `start`, `tick` and `stop`; a `tier-load` thread loads a new
detector and hands it to the pipeline; the publisher's thread reads `telemetry()`. State
written by the tier-load thread (the precision decision, a load error) and the tier history the
main loop appends to are guarded by one lock.
"""

import logging
import threading
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import cv2

from edge import __version__
from edge.config import Config
from edge.core.accuracy import PrecisionDecision
from edge.core.errors import VideoAnalysisError
from edge.core.policy import AdaptiveController, TierChange
from edge.core.tiers import Tier
from edge.delivery.publisher import Publisher
from edge.delivery.spool import Spool, SpoolError
from edge.detection.engines import Detector
from edge.device.hardware import HardwareProfile, read_memory_percent, read_temperature_c
from edge.device.tiers import TierSelection
from edge.runtime.analysis import CameraAnalysis, ClosedWindow
from edge.runtime.pipeline import Pipeline
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
        return Telemetry(
            version=__version__,
            tier=status.tier.name,
            tier_level=status.level,
            effective_fps=status.effective_fps,
            target_fps=status.target_fps,
            tier_changes=history,
            precision=self.precision,
            spool_write_errors=delivery.errors if delivery is not None else 0,
            cameras=self.pipeline.stats(),
            latency_ms=self.pipeline.timer.percentiles_ms(),
            load=DeviceLoad(read_temperature_c(), read_memory_percent(), _cpu_percent()),
            capacity_warning=self.parts.capacity_warning,
        )

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self.parts.publisher is not None:
            self.parts.publisher.start()
        self.pipeline.start()

    def tick(self) -> Optional[TierChange]:
        """Once a second: adapt the tier, publish snapshots. Returns the tier change, if any.
        While a new tier's detector loads (INT8 calibration can take seconds), the old tier
        keeps running and the controller waits, so its measurements stay those of one tier."""
        if self._loading is not None:
            if self._loading.is_alive():
                self._snapshots()
                return None
            self._loading = None
            with self._lock:
                error, self._loading_error = self._loading_error, None
            if error is not None:
                raise error
        processed = sum(stats.processed for stats in self.pipeline.stats())
        busy = sum(self.pipeline.timer.total_s(stage) for stage in ("preprocess", "inference", "postprocess"))
        change = self.parts.controller.update(
            processed,
            busy_s=busy,
            temperature_c=read_temperature_c(),
            memory_percent=read_memory_percent(),
        )
        if change is not None:
            self.switch_tier(change)
        self._snapshots()
        return change

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
                ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])
                if ok:
                    publisher.publish_snapshot(camera_id, jpeg.tobytes())

    def stop_pipeline(self) -> None:
        """Stop the sources and the worker, and close the open windows (spooled as partial
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
