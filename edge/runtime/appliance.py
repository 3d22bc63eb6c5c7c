"""The appliance: every part the daemon runs, wired from one configuration (probe → tiers →
controller → detector → sources → pipeline → analytics → spool → publisher), and its
once-a-second tick (tier adaptation, snapshots). `edge.runtime.service` runs it under systemd.
"""

import logging
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import cv2

from contract.wire import new_boot_id
from edge import __version__
from edge.config import Config
from edge.core.accuracy import PrecisionDecision
from edge.core.errors import ConfigError, VideoAnalysisError
from edge.core.policy import AdaptiveController, TierChange
from edge.core.tiers import Tier
from edge.delivery.publisher import Publisher
from edge.delivery.spool import Spool, SpoolError
from edge.detection.engines import Detector, EngineOptions, create_detector, detect
from edge.detection.int8.guard import load_guarded_detector
from edge.detection.manifest import DEFAULT_MODELS_DIR, load_manifest
from edge.device.hardware import HardwareProfile, probe, read_memory_percent, read_temperature_c
from edge.device.tiers import MeasurementCache, default_cache_path, predict_capacities, select_tiers
from edge.runtime.analysis import CameraAnalysis, WindowSink, WindowStatus
from edge.runtime.pipeline import Pipeline
from edge.runtime.sources import SourceReader

log = logging.getLogger(__name__)


def tier_options(config: Config, tier: Tier, max_batch: int) -> EngineOptions:
    """Engine options of a tier; the score threshold is the tracker's low threshold, because
    ByteTrack's second stage uses low-score detections."""
    return EngineOptions(
        precision=tier.precision,
        input_size=(tier.input, tier.input),
        keep_aspect=config.detector.keep_aspect,
        coarse_input=config.detector.coarse_input,
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


class Appliance:
    """Everything the daemon runs, built from one configuration."""

    def __init__(
        self,
        config: Config,
        sink: Optional[WindowSink] = None,
        clock: Callable[[], float] = time.time,
        profile: Optional[HardwareProfile] = None,
        publish: bool = True,
        on_tier_change: Optional[Callable[[TierChange], None]] = None,
        progress: Callable[[str], None] = _log_progress,
    ) -> None:
        if not config.cameras:
            raise ConfigError("config: cameras: at least one camera is needed to run")
        self.config = config
        self.clock = clock
        self.boot_id = new_boot_id()
        self.profile = profile or probe()
        manifest = load_manifest(config.models_dir or DEFAULT_MODELS_DIR)
        self.selection = select_tiers(config.policy, self.profile, manifest)
        for dropped in self.selection.dropped:
            log.info("tier %s dropped: %s", dropped.name, dropped.reason)
        if not self.selection.runnable:
            raise ConfigError(f"policy.tiers: no tier of {self.selection.platform} can run on this device")
        capacities = predict_capacities(
            self.selection.runnable,
            lambda tier: measure_tier(config, tier),
            MeasurementCache(default_cache_path(config)),
            self.profile.fingerprint(),
        )
        target = sum(camera.target_fps for camera in config.cameras)
        self.controller = AdaptiveController(self.selection.runnable, capacities, target, config.policy, clock)
        self.tier_history: List[TierChange] = [self.controller.start_change]
        self._on_tier_change = on_tier_change
        log.info("%s", self.controller.start_change)
        if on_tier_change is not None:
            on_tier_change(self.controller.start_change)
        self.publisher: Optional[Publisher] = None
        self.spool: Optional[Spool] = None
        if publish:
            self.spool = Spool.from_config(config)
            self.publisher = Publisher(config, self.spool, self.boot_id, clock, telemetry_source=self.telemetry)
        sinks = [s for s in (sink, self._publish_window if self.publisher else None) if s is not None]
        self.analyses: Dict[str, CameraAnalysis] = {}
        cameras = []
        for camera in config.cameras:
            analysis = CameraAnalysis(config, camera, sinks, status=self._window_status)
            self.analyses[camera.id] = analysis
            reader = SourceReader(camera.id, camera.source, realtime=camera.realtime, loop=camera.loop, clock=clock)
            cameras.append((camera, reader, analysis))
        self.max_batch = min(config.detector.max_batch, len(config.cameras))
        detector, self.precision = load_guarded_tier_detector(config, self.controller.tier, self.max_batch, progress)
        self.pipeline = Pipeline(cameras, detector, self.controller.tier.frame_skip, clock, config.policy.window_s)
        self._pipeline_stopped = False
        self.spool_errors = 0
        self._loading: Optional[threading.Thread] = None
        self._loading_error: Optional[VideoAnalysisError] = None

    # --- wiring --------------------------------------------------------------------------
    def _window_status(self, camera_id: str) -> WindowStatus:
        """The pipeline-side fields of a counts body: covered fps, tier, dropped frames."""
        for stats in self.pipeline.stats():
            if stats.camera_id == camera_id:
                return WindowStatus(stats.covered_fps, self.controller.tier.name, stats.dropped)
        return WindowStatus(0.0, self.controller.tier.name, 0)

    def _publish_window(self, kind: str, camera_id: str, window: Any, body: Dict[str, Any]) -> None:
        assert self.publisher is not None
        try:
            self.publisher.submit(kind, camera_id, window, body)
        except SpoolError as exc:
            # Disk full or unwritable: what is already spooled stays; this window is lost, and
            # says so in the log and in telemetry rather than stopping the analysis.
            self.spool_errors += 1
            log.error("%s (%s window of %s not stored)", exc, kind, camera_id)

    def telemetry(self) -> Dict[str, Any]:
        status = self.controller.status()
        return {
            "version": __version__,
            "tier": status.tier.name,
            "tier_level": status.level,
            "effective_fps": status.effective_fps,
            "target_fps": status.target_fps,
            "tier_changes": [change.to_dict() for change in self.tier_history[-5:]],
            "precision": self.precision.to_dict(),
            "spool_write_errors": self.spool_errors,
            "cameras": {s.camera_id: s.__dict__ for s in self.pipeline.stats()},
            "latency_ms": self.pipeline.timer.percentiles_ms(),
            "temperature_c": read_temperature_c(),
            "memory_percent": read_memory_percent(),
            "cpu_percent": _cpu_percent(),
        }

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self.publisher is not None:
            self.publisher.start()
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
            if self._loading_error is not None:
                raise self._loading_error
        processed = sum(camera.processed for camera in self.pipeline.cameras)
        busy = sum(self.pipeline.timer.total_s(stage) for stage in ("preprocess", "inference", "postprocess"))
        change = self.controller.update(
            processed,
            busy_s=busy,
            temperature_c=read_temperature_c(),
            memory_percent=read_memory_percent(),
        )
        if change is not None:
            self._apply(change)
        self._snapshots()
        return change

    def _apply(self, change: TierChange) -> None:
        log.info("%s", change)
        self.tier_history.append(change)
        if self._on_tier_change is not None:
            self._on_tier_change(change)
        self._loading_error = None
        self._loading = threading.Thread(target=self._load_tier, args=(change,), name="tier-load", daemon=True)
        self._loading.start()

    def _load_tier(self, change: TierChange) -> None:
        try:
            detector, self.precision = load_guarded_tier_detector(self.config, change.to_tier, self.max_batch)
        except VideoAnalysisError as exc:
            self._loading_error = exc
            return
        self.pipeline.apply_tier(detector, change.to_tier.frame_skip)

    def _snapshots(self) -> None:
        if self.publisher is None:
            return
        for camera in self.pipeline.cameras:
            frame = self.analyses[camera.config.id].last_frame
            if frame is not None and self.publisher.snapshot_due(camera.config.id):
                ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])
                if ok:
                    self.publisher.publish_snapshot(camera.config.id, jpeg.tobytes())

    def stop_pipeline(self) -> None:
        """Stop the sources and the worker, and close the open windows (spooled as partial
        windows with their nominal bounds, so nothing counted is lost)."""
        if self._pipeline_stopped:
            return
        self._pipeline_stopped = True
        if self._loading is not None:
            self._loading.join()
        self.pipeline.stop()
        now = self.clock()
        for analysis in self.analyses.values():
            analysis.poll(now, final=True)

    def stop(self) -> None:
        """Stop everything; undelivered messages stay in the spool for the next start."""
        self.stop_pipeline()
        if self.publisher is not None:
            self.publisher.stop()
        if self.spool is not None:
            self.spool.close()


def _cpu_percent() -> Optional[float]:
    try:
        import psutil

        return float(psutil.cpu_percent(interval=None))
    except ImportError:  # pragma: no cover
        return None
