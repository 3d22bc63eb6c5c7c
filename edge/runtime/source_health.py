"""Which cameras are "source down": no frame from the source for a while (pure, monotonic clock).

A camera is down when its source reports disconnected, or when neither its processed nor its
skipped frame count has moved for `down_after_s` (an RTSP stream that stalls without closing). A
down camera is reported in telemetry and the device's live state, its live state stops being
refreshed (so subscribers' `expire_after` marks it unavailable), and its target is left out of
what the tier policy expects, so a dead camera never reads as overload.
"""

import logging
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence

from edge.runtime.pipeline import CameraStats

log = logging.getLogger(__name__)

DEFAULT_DOWN_AFTER_S = 5.0


@dataclass
class _Seen:
    frames: int
    at: float
    down: bool = False


class SourceWatch:
    def __init__(self, monotonic: Callable[[], float], down_after_s: float = DEFAULT_DOWN_AFTER_S) -> None:
        self.monotonic = monotonic
        self.down_after_s = down_after_s
        self._seen: Dict[str, _Seen] = {}

    def update(self, stats: Sequence[CameraStats]) -> List[str]:
        """Feed the pipeline's counters (about once a second); returns the cameras down now."""
        now = self.monotonic()
        down = []
        for camera in stats:
            frames = camera.processed + camera.skipped
            seen = self._seen.get(camera.camera_id)
            if seen is None or frames != seen.frames:
                seen = self._seen[camera.camera_id] = _Seen(frames, now, seen.down if seen else False)
            is_down = not camera.connected or now - seen.at >= self.down_after_s
            if is_down != seen.down:
                seen.down = is_down
                if is_down:
                    log.warning("%s: source down (no frames for %.0f s)", camera.camera_id, now - seen.at)
                else:
                    log.info("%s: source delivers frames again", camera.camera_id)
            if is_down:
                down.append(camera.camera_id)
        return down
