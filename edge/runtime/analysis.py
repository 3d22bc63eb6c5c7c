"""One camera's analysis behind the pipeline: tracker → analytics → closed windows → sinks.

The pipeline calls `update` for every analysed frame and `poll` to close windows that are
due; each closed window becomes a `ClosedWindow` (a DESIGN.md message body with its kind,
camera and bounds) handed to every sink (the publisher's spool, the demo's printer and
summary). The tracker and the open windows live here, not in the pipeline, so a tier switch
(another detector, another frame-skip) keeps them. Closed windows are not kept: whoever needs
a history or totals keeps them in its own sink, so a device running for months holds only the
open windows.
"""

import threading
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from contract import KIND_COUNTS, KIND_HEATMAP
from contract.state import CameraState
from edge.config import CameraConfig, Config
from edge.core.analytics import CameraAnalytics, ClosedWindows, LineSpec, Window, ZoneSpec
from edge.core.detections import Detections
from edge.core.tracking import ByteTracker, TrackerParams
from edge.delivery.live_state import CameraLiveState
from edge.detection.pictures import Image
from edge.runtime.clock import StampClock
from edge.runtime.pipeline import WindowStatus
from edge.runtime.sources import Frame


@dataclass(frozen=True)
class ClosedWindow:
    """One message body of a closed window: a counts window, or one heatmap tile of a heatmap
    window (a heatmap window yields one per non-empty tile)."""

    kind: str  # contract.wire.KIND_COUNTS or KIND_HEATMAP
    camera: str
    window: Window
    body: Mapping[str, Any]


WindowSink = Callable[[ClosedWindow], None]


class CameraAnalysis:
    def __init__(
        self,
        config: Config,
        camera: CameraConfig,
        sinks: Sequence[WindowSink],
        class_names: Sequence[str] = ("person",),
        stamps: Optional[StampClock] = None,
    ) -> None:
        self.camera = camera
        # Analysis runs on pipeline time; windows are stamped with pipeline time + the wall-clock
        # offset, which changes only when the wall clock steps (edge.runtime.clock).
        self.stamps = stamps
        self._offset = stamps.offset if stamps is not None else 0.0
        self.tracker = ByteTracker(TrackerParams.from_config(config.tracker))
        self.analytics = analytics_from_config(config, camera, class_names)
        self.sinks = list(sinks)
        # The newest analysed frame (snapshots, the demo's heatmap picture); replaced as a
        # whole, so a reader on another thread sees one frame or the next.
        self.last_frame: Optional[Image] = None  # converted to BGR only for a snapshot
        # Source index of the newest analysed frame: how much of a file has played, frame-skip
        # included (the demo's ground truth).
        self.last_index: Optional[int] = None
        # Every detected or tracked box of the last frame, to pixelate people in snapshots.
        self.last_people: np.ndarray = np.zeros((0, 4), np.float32)
        # Published live each window (heartbeat) and on change; fed from the analysis thread,
        # read by the appliance's tick.
        self._live = CameraLiveState(
            config.device_id,
            camera.id,
            config.detector.classes,
            [line.id for line in camera.lines],
            [zone.id for zone in camera.zones],
            heartbeat_s=config.counts.window_s,
        )
        self._live_lock = threading.Lock()
        self._final_closed = False

    def update(self, frame: Frame, detections: Detections, seconds: float) -> None:
        tracks = self.tracker.update(detections, frame.timestamp)
        height, width = frame.image.shape[:2]
        self.analytics.observe(frame.timestamp, seconds, (width, height), tracks)
        self.last_frame = frame.image
        self.last_index = frame.index
        track_boxes = np.array([t.box for t in tracks], np.float32).reshape(-1, 4)
        self.last_people = np.concatenate([detections.boxes.astype(np.float32), track_boxes])

    def poll(self, now: float, status: WindowStatus, final: bool = False) -> None:
        """Hand closed windows to the sinks; `final` also closes the open windows (end of a
        file, or shutdown), labelled with their nominal bounds. `status` is what the pipeline
        measured for the counts body (covered fps, tier, dropped frames)."""
        if final:
            if self._final_closed:
                return
            self._final_closed = True
            now = now + max(self.analytics.counts_window_s, self.analytics.heatmap_window_s)
        offset = self.stamps.offset if self.stamps is not None else self._offset
        if offset != self._offset:
            # The wall clock stepped: the open windows close now, stamped as before the step.
            self.analytics.cut(now)
            self._emit_closed(self.analytics.close_due(now), now, status)
            self._offset = offset
            with self._live_lock:
                self._live.clock_stepped()
        self._emit_closed(self.analytics.close_due(now), now, status)

    def _stamped(self, window: Window) -> Window:
        return (window[0] + self._offset, window[1] + self._offset)

    def _emit_closed(self, closed: ClosedWindows, now: float, status: WindowStatus) -> None:
        counts = [replace(window, window=self._stamped(window.window)) for window in closed.counts]
        with self._live_lock:
            for window in counts:
                self._live.fold_window(window, now + self._offset)
            self._live.observe(self.analytics.present_objects, self.analytics.present_zones, status.fps, status.tier)
        for window in counts:
            body = window.body(
                fps=status.fps,
                target_fps=self.camera.target_fps,
                tier=status.tier,
                dropped=status.dropped,
            )
            self._emit(ClosedWindow(KIND_COUNTS, self.camera.id, window.window, body))
        for heatmap in closed.heatmaps:
            for body in heatmap.bodies():
                self._emit(ClosedWindow(KIND_HEATMAP, self.camera.id, self._stamped(heatmap.window), body))

    def hold_live_state(self, until: float) -> None:
        """No live state before `until` unless the previous run's is restored first."""
        with self._live_lock:
            self._live.hold(until)

    def restore_live_state(self, previous: CameraState, now: float) -> bool:
        """Continue today's line totals from the state the broker retained (see
        `edge.delivery.live_state`); whether it was taken."""
        with self._live_lock:
            return self._live.restore(previous, now)

    def live_state_due(self, now: float) -> Optional[CameraState]:
        """The live state to publish now, if any (see `edge.delivery.live_state`)."""
        with self._live_lock:
            return self._live.due(now)

    def _emit(self, closed: ClosedWindow) -> None:
        for sink in self.sinks:
            sink(closed)


def analytics_from_config(config: Config, camera: CameraConfig, class_names: Sequence[str]) -> CameraAnalytics:
    """A camera's analytics from the daemon's config; `class_names` are the detector's classes
    (index = `Track.class_id`); the classes counted are `config.detector.classes`."""
    counts, heatmap = config.counts, config.heatmap
    return CameraAnalytics(
        class_names=class_names,
        counted_classes=config.detector.classes,
        lines=[LineSpec(line.id, line.points[0], line.points[1]) for line in camera.lines],
        zones=[ZoneSpec(zone.id, tuple(zone.polygon)) for zone in camera.zones],
        counts_window_s=counts.window_s,
        line_min_distance=counts.line_min_distance,
        heatmap_window_s=heatmap.window_s,
        heatmap_grid=heatmap.grid,
        heatmap_tile=heatmap.tile,
        heatmap_enabled=heatmap.enabled,
        # A track the tracker has dropped is not coming back; let zones close its dwell.
        forget_after_s=config.tracker.buffer_s + 1.0,
    )
