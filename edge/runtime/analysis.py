"""One camera's analysis behind the pipeline: tracker → analytics → closed windows → sinks.

The pipeline calls `update` for every analysed frame and `poll` to close windows that are
due; closed windows become DESIGN.md message bodies handed to every sink (the publisher's
spool, the demo's printer). The tracker and the open windows live here, not in the
pipeline, so a tier switch (another detector, another frame-skip) keeps them.
"""

import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from contract.state import CameraState
from edge.config import CameraConfig, Config
from edge.core.analytics import CameraAnalytics, CountsWindow, HeatmapWindow
from edge.core.detections import Detections
from edge.core.tracking import ByteTracker, TrackerParams
from edge.delivery.live_state import CameraLiveState
from edge.runtime.sources import Frame

# (kind, camera_id, window, body): kind is "counts" or "heatmap".
WindowSink = Callable[[str, str, Any, Dict[str, Any]], None]


@dataclass(frozen=True)
class WindowStatus:
    """The pipeline-side fields of a counts body for a camera."""

    fps: float
    tier: str
    dropped: int


StatusSource = Callable[[str], WindowStatus]


class CameraAnalysis:
    def __init__(
        self,
        config: Config,
        camera: CameraConfig,
        sinks: Sequence[WindowSink],
        status: Optional[StatusSource] = None,
        class_names: Sequence[str] = ("person",),
    ) -> None:
        self.camera = camera
        self.tracker = ByteTracker(TrackerParams.from_config(config.tracker))
        self.analytics = CameraAnalytics.from_config(config, camera, class_names)
        self.sinks = list(sinks)
        self.status = status
        self.last_frame: Optional[np.ndarray] = None
        # Every detected or tracked box of the last frame, to pixelate people in snapshots.
        self.last_people: np.ndarray = np.zeros((0, 4), np.float32)
        # Published live each window (heartbeat) and on change; fed from the analysis thread.
        self._live = CameraLiveState(
            config.device_id,
            camera.id,
            config.detector.classes,
            [line.id for line in camera.lines],
            [zone.id for zone in camera.zones],
            heartbeat_s=config.counts.window_s,
        )
        self._live_lock = threading.Lock()
        self.counts: List[CountsWindow] = []  # every closed counts window, for summaries
        self.heatmaps: List[HeatmapWindow] = []
        self._final_closed = False

    def update(self, frame: Frame, detections: Detections, seconds: float) -> None:
        tracks = self.tracker.update(detections, frame.timestamp)
        height, width = frame.image.shape[:2]
        self.analytics.observe(frame.timestamp, seconds, (width, height), tracks)
        self.last_frame = frame.image
        track_boxes = np.array([t.box for t in tracks], np.float32).reshape(-1, 4)
        self.last_people = np.concatenate([detections.boxes.astype(np.float32), track_boxes])

    def poll(self, now: float, final: bool = False) -> None:
        """Hand closed windows to the sinks; `final` also closes the open windows (end of a
        file, or shutdown), labelled with their nominal bounds."""
        if final:
            if self._final_closed:
                return
            self._final_closed = True
            now = now + max(self.analytics.counts_window_s, self.analytics.heatmap_window_s)
        closed = self.analytics.close_due(now)
        status = self.status(self.camera.id) if self.status else WindowStatus(0.0, "", 0)
        with self._live_lock:
            for window in closed.counts:
                self._live.fold_window(window, now)
            self._live.observe(self.analytics.present_objects, self.analytics.present_zones, status.fps, status.tier)
        for window in closed.counts:
            self.counts.append(window)
            body = window.body(
                fps=status.fps,
                target_fps=self.camera.target_fps,
                tier=status.tier,
                dropped=status.dropped,
            )
            for sink in self.sinks:
                sink("counts", self.camera.id, window.window, body)
        for heatmap in closed.heatmaps:
            self.heatmaps.append(heatmap)
            for body in heatmap.bodies():
                for sink in self.sinks:
                    sink("heatmap", self.camera.id, heatmap.window, body)

    def live_state_due(self, now: float) -> Optional[CameraState]:
        """The live state to publish now, if any (see `edge.delivery.live_state`)."""
        with self._live_lock:
            return self._live.due(now)

    def line_totals(self) -> Dict[str, Dict[str, int]]:
        totals: Dict[str, Dict[str, int]] = {}
        for window in self.counts:
            for line_id, counts in window.lines.items():
                entry = totals.setdefault(line_id, {"in": 0, "out": 0})
                entry["in"] += counts.count_in
                entry["out"] += counts.count_out
        return totals

    def zone_entries(self) -> Dict[str, int]:
        totals: Dict[str, int] = {}
        for window in self.counts:
            for zone_id, counts in window.zones.items():
                totals[zone_id] = totals.get(zone_id, 0) + counts.entered
        return totals

    def heatmap_total(self) -> np.ndarray:
        grids = [h.grid for h in self.heatmaps]
        return np.sum(grids, axis=0) if grids else np.zeros((1, 1))
