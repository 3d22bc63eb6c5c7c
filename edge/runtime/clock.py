"""The appliance's time: a steady clock for everything that waits or paces, the wall clock only to
stamp windows, and the detection of wall-clock steps (an NTP correction, a wrong RTC at boot).

`pipeline_time()` is wall time as it was at start plus the monotonic seconds since: it never
jumps, so frame pacing, window closing and timeouts go on through any wall-clock step. `check()`
(once a second) compares it, plus the steps already taken, with the real wall clock; a
difference over `STEP_THRESHOLD_S` is a step: it is logged and returned, and `offset` (what to
add to pipeline time to get wall time) takes it in. Windows are stamped `pipeline time + offset`
(`edge.runtime.analysis`), so after a step they carry the corrected wall time again.
"""

import logging
import threading
import time
from typing import Callable, Optional

log = logging.getLogger(__name__)

STEP_THRESHOLD_S = 2.0


class StampClock:
    def __init__(
        self, wall: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.wall = wall
        self.monotonic = monotonic
        self._anchor_wall = wall()
        self._anchor_mono = monotonic()
        self._lock = threading.Lock()  # offset: written by the main loop, read by the analysis
        self._offset = 0.0

    def pipeline_time(self) -> float:
        return self._anchor_wall + (self.monotonic() - self._anchor_mono)

    @property
    def offset(self) -> float:
        with self._lock:
            return self._offset

    def check(self) -> Optional[float]:
        """The wall-clock step since the last check, if one happened (seconds, signed)."""
        expected = self.pipeline_time() + self.offset
        step = self.wall() - expected
        if abs(step) < STEP_THRESHOLD_S:
            return None
        with self._lock:
            self._offset += step
        log.warning(
            "wall clock stepped by %+.1f s; closing the open windows and stamping the next ones with the new time",
            step,
        )
        return step
