"""When to publish telemetry and snapshots (pure: the monotonic clock is injected)."""

from typing import Callable, Dict


class TelemetrySchedule:
    """Due every `interval_s`, first one interval after construction."""

    def __init__(self, interval_s: float, monotonic: Callable[[], float]) -> None:
        self.interval_s = interval_s
        self.monotonic = monotonic
        self._next = monotonic() + interval_s

    def take(self) -> bool:
        """Whether telemetry is due now; if so, the next one is one interval from now."""
        now = self.monotonic()
        if now < self._next:
            return False
        self._next = now + self.interval_s
        return True


class SnapshotSchedule:
    """Per camera: a snapshot is due when enabled and none was sent yet or `interval_s` passed."""

    def __init__(self, enabled: bool, interval_s: float, monotonic: Callable[[], float]) -> None:
        self.enabled = enabled
        self.interval_s = interval_s
        self.monotonic = monotonic
        self._sent_at: Dict[str, float] = {}

    def due(self, camera: str) -> bool:
        if not self.enabled:
            return False
        last = self._sent_at.get(camera)
        return last is None or self.monotonic() - last >= self.interval_s

    def taken(self, camera: str) -> None:
        """A snapshot of `camera` was just published (or kept for the next connect)."""
        self._sent_at[camera] = self.monotonic()
