"""Prometheus metrics of one aggregator process (prometheus_client, one registry per process
part so tests can run several ingests side by side), and a rate-limited log for rejections:
a flood of hostile payloads must not become a flood of log lines.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from aggregator.store import DeviceRow, Store

OFFLINE_AFTER_S = 120.0


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.received = Counter("va_messages_received", "MQTT messages received", registry=registry)
        self.stored = Counter("va_messages_stored", "data messages stored", registry=registry)
        self.duplicates = Counter("va_messages_duplicate", "data messages already stored", registry=registry)
        self.rejected = Counter(
            "va_messages_rejected", "messages refused, by reason", ["reason"], registry=registry
        )
        self.quarantined = Counter("va_messages_quarantined", "refused records kept in quarantine", registry=registry)
        self.db_errors = Counter("va_database_errors", "failed database writes (retried)", registry=registry)
        self.acks = Counter("va_acks_sent", "acknowledgements published to devices", registry=registry)
        self.db_failing = Gauge("va_database_failing", "1 while database writes are failing", registry=registry)
        self.backlog = Gauge("va_ingest_backlog", "messages received, not yet processed", registry=registry)


def is_online(device: DeviceRow, now: float) -> bool:
    """Online: connected by its last status (`degraded` is connected, delivery stalled) and heard
    from recently."""
    recent = device.last_seen is not None and now - device.last_seen < OFFLINE_AFTER_S
    return recent and device.state in (None, "online", "degraded")


class FleetCollector(Collector):
    """Per-device delivery lag and the number of offline devices, read from the store at scrape."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store, self.clock = store, clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self.clock()
        devices = self.store.devices()
        lag = GaugeMetricFamily(
            "va_device_lag_seconds", "now minus the end of the newest stored window", labels=["device"]
        )
        for device in devices:
            if device.last_window_end is not None:
                lag.add_metric([device.device], max(0.0, now - device.last_window_end))
        offline = GaugeMetricFamily("va_devices_offline", "devices not online")
        offline.add_metric([], sum(not is_online(d, now) for d in devices))
        total = GaugeMetricFamily("va_devices", "devices known")
        total.add_metric([], len(devices))
        yield lag
        yield offline
        yield total


class RateLimitedLog:
    """At most `burst` lines per `period_s` per key; the number held back is logged with the
    next line that gets through."""

    def __init__(
        self,
        logger: logging.Logger,
        burst: int = 10,
        period_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger, self.burst, self.period_s, self.clock = logger, burst, period_s, clock
        self._windows: dict[str, tuple[float, int, int]] = {}  # key -> (window start, logged, held back)

    def warning(self, key: str, message: str) -> bool:
        now = self.clock()
        start, logged, held = self._windows.get(key, (now, 0, 0))
        if now - start >= self.period_s:
            start, logged = now, 0
        if logged >= self.burst:
            self._windows[key] = (start, logged, held + 1)
            return False
        suffix = f" ({held} similar lines held back)" if held else ""
        self.logger.warning("%s%s", message, suffix)
        self._windows[key] = (start, logged + 1, 0)
        return True
