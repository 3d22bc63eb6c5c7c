"""Failures of the sender, counted by kind and logged once per kind, and the back-off between retries.

The sender thread must never die and must never flood the journal: a failing disk or a broken
connection would otherwise log the same traceback every 200 ms. `FaultLog` logs the first
failure of a kind (and its recovery), counts every one for telemetry; `Backoff` spaces retries
from `min_s` doubling up to `max_s`. Pure: the monotonic clock is injected.
"""

import logging
from typing import Callable, Dict

log = logging.getLogger(__name__)


class FaultLog:
    """Failure counts by kind; a kind is logged when it starts failing and when it works again."""

    def __init__(self) -> None:
        self.counts: Dict[str, int] = {}
        self._failing: Dict[str, int] = {}  # kind -> failures since it last worked

    def failed(self, kind: str, error: BaseException) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if kind not in self._failing:
            log.error("%s failed: %s (retrying with back-off; logged once until it works again)", kind, error)
            self._failing[kind] = 0
        self._failing[kind] += 1

    def worked(self, kind: str) -> None:
        failures = self._failing.pop(kind, None)
        if failures is not None:
            log.info("%s works again after %d failed attempt(s)", kind, failures)

    @property
    def failing(self) -> Dict[str, int]:
        return dict(self._failing)


class Backoff:
    """When the next retry may run: `min_s` after a first failure, doubling up to `max_s`."""

    def __init__(self, monotonic: Callable[[], float], min_s: float = 0.5, max_s: float = 30.0) -> None:
        self.monotonic = monotonic
        self.min_s = min_s
        self.max_s = max_s
        self._delay = 0.0
        self._next = 0.0

    def ready(self) -> bool:
        return self.monotonic() >= self._next

    def failed(self) -> None:
        self._delay = self.min_s if self._delay == 0.0 else min(self._delay * 2.0, self.max_s)
        self._next = self.monotonic() + self._delay

    def reset(self) -> None:
        self._delay = 0.0
        self._next = 0.0
