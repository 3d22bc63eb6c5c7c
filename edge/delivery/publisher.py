"""The daemon's delivery face: spool data messages, publish them, status, telemetry, snapshots.

A thin composition of the parts that do the work: `Spool` (durable, the source of truth),
`Outbox` (the at-least-once state machine: cursor, in-flight and end-to-end windows, acks,
resend), `MqttTransport` (paho, TLS, v5 fallback, will) and the telemetry/snapshot schedules.

Threads: paho's network thread runs the connection; its callbacks only queue events and wake the
sender thread, which owns the delivery: it applies the events to the outbox and publishes what the
outbox says is due. The sender never dies: every exception of a step (events, sending, telemetry)
is counted by kind, logged once per kind (`edge.delivery.faults`) and the step retried with
back-off. When the outbox reports no progress for `mqtt.stall_timeout_s` while connected, the
retained status says `degraded` with the reason and `healthy()` turns false (the service then
stops feeding the systemd watchdog); it says `online` again once delivery moves.
The outbox is guarded by one lock (other threads read its counters for `stats()`), which is
never held across a paho call (see edge.delivery.mqtt).
"""

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from contract import Body, SpoolCounters, Status, Telemetry, Topics, build_data_payload, build_status, build_telemetry
from edge import __version__
from edge.delivery.faults import Backoff, FaultLog
from edge.delivery.homeassistant import ComponentStore, device_discovery
from edge.delivery.mqtt import (
    AckReceived,
    Connected,
    ConnectFailed,
    Disconnected,
    MqttTransport,
    Puback,
    RetainedMessage,
    TransportEvent,
)
from edge.delivery.outbox import Outbox, publish_due
from edge.delivery.schedules import SnapshotSchedule, TelemetrySchedule
from edge.delivery.spool import Spool, SpoolError, SpoolFullError

if TYPE_CHECKING:
    from edge.config import Config

log = logging.getLogger(__name__)

SENDER_TICK_S = 0.2
STOP_DRAIN_S = 2.0


@dataclass(frozen=True)
class DeliveryHealth:
    """The sender's own health, for telemetry: failures by kind, checked acks, the degraded reason."""

    errors: Dict[str, int]
    forged_acks: int
    undeleted: int
    end_to_end: bool
    degraded: Optional[str]
    spool_quarantined: Optional[str]

    def to_wire(self) -> Dict[str, Any]:
        return {
            "errors": dict(self.errors),
            "forged_acks": self.forged_acks,
            "undeleted": self.undeleted,
            "end_to_end": self.end_to_end,
            "degraded": self.degraded,
            "spool_quarantined": self.spool_quarantined,
        }


@dataclass(frozen=True)
class PublisherStats:
    connected: bool
    protocol: str
    spool_depth: int
    spool_bytes: int
    spool_max_bytes: int
    dropped: int
    refused: int
    delivered: int
    in_flight: int
    resent: int
    next_seq: int


class Publisher:
    """Publishes one device's data, status, telemetry and snapshots. See the module docstring."""

    def __init__(
        self,
        config: "Config",
        spool: Spool,
        boot_id: str,
        clock: Callable[[], float] = time.time,
        telemetry_source: Optional[Callable[[], Mapping[str, Any]]] = None,
        version: str = __version__,
        monotonic: Callable[[], float] = time.monotonic,
        restore_topics: Sequence[str] = (),
        on_restore: Optional[Callable[[str, bytes], None]] = None,
    ) -> None:
        """`on_restore(topic, payload)` gets the retained message of each of `restore_topics`
        found on the broker at the first connect (the previous run's live state)."""
        self.config = config
        self.spool = spool
        self.boot_id = boot_id
        self.clock = clock
        self.telemetry_source = telemetry_source
        self.version = version
        self.topics = Topics(config.mqtt.prefix, config.device_id)
        cfg = config.mqtt
        self.monotonic = monotonic
        self._lock = threading.Lock()  # guards the outbox, the fault log and the degraded reason
        self._outbox = Outbox(
            spool,
            monotonic,
            cfg.max_inflight,
            cfg.acks,
            cfg.ack_timeout_s,
            aggregator_seen=spool.aggregator_seen,
            on_aggregator=self._remember_aggregator,
            stall_s=cfg.stall_timeout_s,
        )
        self._faults = FaultLog()
        self._backoff = Backoff(monotonic)
        self._degraded: Optional[str] = None
        self._telemetry = TelemetrySchedule(cfg.telemetry_interval_s, monotonic)
        self._snapshots = SnapshotSchedule(cfg.snapshot.enabled, cfg.snapshot.interval_min * 60.0, monotonic)
        self._snapshot_lock = threading.Lock()  # guards the snapshot schedule and the unsent ones
        self._unsent_snapshots: Dict[str, bytes] = {}
        self._events: queue.SimpleQueue[TransportEvent] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._sender: Optional[threading.Thread] = None
        self._unsent_states: Dict[str, bytes] = {}  # topic -> newest live state, kept while offline
        self._ha_store = ComponentStore.from_config(config)
        self._discovery = device_discovery(config, version, self._ha_store.load())
        self._discovery_saved = False
        self._transport = MqttTransport(
            config, self.topics, self._status, self._event, self._retained_on_connect, restore_topics, on_restore
        )

    # --- public API --------------------------------------------------------------------------

    def start(self) -> None:
        """Connect (one synchronous attempt, so TLS and address errors surface here as one-line
        ConfigErrors) and start the sender; an unreachable broker is retried in the background."""
        self._transport.connect()
        self._sender = threading.Thread(target=self._run_sender, name="mqtt-sender", daemon=True)
        self._sender.start()

    def stop(self, timeout_s: float = STOP_DRAIN_S) -> None:
        """Stop sending, wait up to `timeout_s` for publishes in flight, publish retained
        `stopped` and disconnect cleanly (so the broker does not send the `offline` will).
        Unacknowledged records stay in the spool for the next start."""
        self._stopping.set()
        self._wake.set()
        if self._sender is not None:
            self._sender.join(timeout_s + 1.0)
        self._transport.close(timeout_s)

    def submit(
        self, kind: str, camera: str, window: Tuple[float, float], body: Union[Body, Mapping[str, Any]]
    ) -> Optional[int]:
        """Spool one counts/heatmap message (committed to disk) and wake the sender. Returns its
        seq, or None when the spool is full with reject_new (counted as dropped). Raises
        edge.delivery.spool.SpoolError when the spool cannot be written (disk full)."""
        topic = self.topics.data(kind, camera)
        device, boot = self.config.device_id, self.boot_id

        def payload(seq: int) -> bytes:
            return build_data_payload(kind, device, camera, boot, seq, window, body)

        try:
            seq = self.spool.append(kind, topic, boot, payload)
        except SpoolFullError as exc:
            log.warning("%s", exc)
            return None
        self._wake.set()
        return seq

    def publish_telemetry(self, values: Mapping[str, Any]) -> bool:
        """Publish one telemetry message (QoS 0, not spooled) with the publisher's own counters
        added under `spool` and its health under `delivery`; False when not connected."""
        if not self._transport.connected:
            return False
        stats = self.stats()
        counters = SpoolCounters(
            depth=stats.spool_depth,
            bytes=stats.spool_bytes,
            max_bytes=stats.spool_max_bytes,
            dropped=stats.dropped,
            refused=stats.refused,
            delivered=stats.delivered,
            in_flight=stats.in_flight,
            resent=stats.resent,
        )
        extra = dict(values)
        extra["delivery"] = self.health().to_wire()
        message = Telemetry(self.config.device_id, self.boot_id, self.clock(), counters, extra)
        return self._transport.publish_other(self.topics.telemetry, build_telemetry(message), qos=0)

    def snapshot_due(self, camera: str) -> bool:
        """Whether the pipeline should encode a snapshot of `camera` now (enabled, and none sent
        yet or the interval has passed)."""
        with self._snapshot_lock:
            return self._snapshots.due(camera)

    def publish_snapshot(self, camera: str, jpeg: bytes) -> None:
        """Publish a retained JPEG reference frame (or keep it for the next connect)."""
        if not self._snapshots.enabled:
            return
        with self._snapshot_lock:
            self._snapshots.taken(camera)
            if not self._transport.connected:
                self._unsent_snapshots[camera] = jpeg
                return
        self._transport.publish_other(self.topics.snapshot(camera), jpeg, qos=1, retain=True)

    def publish_state(self, topic: str, payload: bytes) -> None:
        """Publish a retained live-state message (`contract.state`) now, not spooled: only the
        newest matters. While disconnected the newest per topic is kept for the next connect."""
        with self._snapshot_lock:
            if not self._transport.connected:
                self._unsent_states[topic] = payload
                return
        self._transport.publish_other(topic, payload, qos=1, retain=True)

    def stats(self) -> PublisherStats:
        spool = self.spool.stats()
        with self._lock:
            outbox = self._outbox.stats()
        return PublisherStats(
            connected=self._transport.connected,
            protocol=self._transport.protocol,
            spool_depth=spool.depth,
            spool_bytes=spool.bytes,
            spool_max_bytes=spool.max_bytes,
            dropped=spool.dropped,
            refused=outbox.refused,
            delivered=outbox.delivered,
            in_flight=outbox.in_flight,
            resent=outbox.resent,
            next_seq=spool.next_seq,
        )

    def health(self) -> DeliveryHealth:
        with self._lock:
            outbox = self._outbox.stats()
            errors, degraded = dict(self._faults.counts), self._degraded
        quarantined = str(self.spool.quarantined) if self.spool.quarantined is not None else None
        return DeliveryHealth(errors, outbox.forged_acks, outbox.undeleted, outbox.end_to_end, degraded, quarantined)

    def healthy(self) -> bool:
        """False while delivery is degraded or the sender thread has gone (feed no watchdog)."""
        with self._lock:
            degraded = self._degraded
        sender_alive = self._sender is None or self._sender.is_alive()
        return degraded is None and sender_alive

    def wait_drained(self, timeout_s: float) -> bool:
        """Block until the spool is empty (everything delivered) or `timeout_s` passes."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.spool.stats().depth == 0:
                return True
            time.sleep(0.05)
        return self.spool.stats().depth == 0

    # --- transport callbacks (paho's thread) ---------------------------------------------------

    def _status(self, state: str) -> bytes:
        reason = None
        if state == "online":
            with self._lock:
                reason = self._degraded
            state = "degraded" if reason is not None else state
        status = Status(state=state, boot=self.boot_id, version=self.version, ts=self.clock(), reason=reason)
        return build_status(status)

    def _remember_aggregator(self) -> None:
        try:
            self.spool.mark_aggregator_seen()
        except SpoolError as exc:
            log.warning("%s; end-to-end acks for this run only", exc)

    def _event(self, event: TransportEvent) -> None:
        self._events.put(event)
        self._wake.set()

    def _retained_on_connect(self) -> List[RetainedMessage]:
        messages = [RetainedMessage(m.topic, m.payload) for m in self._discovery.messages]
        with self._snapshot_lock:
            unsent, self._unsent_snapshots = self._unsent_snapshots, {}
            states, self._unsent_states = self._unsent_states, {}
        messages += [RetainedMessage(self.topics.snapshot(camera), jpeg) for camera, jpeg in unsent.items()]
        return messages + [RetainedMessage(topic, payload) for topic, payload in states.items()]

    # --- the sender thread ---------------------------------------------------------------------

    def _run_sender(self) -> None:
        stop_deadline: Optional[float] = None
        while True:
            self._wake.wait(SENDER_TICK_S)
            self._wake.clear()
            self._step("handling broker events", self._handle_events)
            if self._stopping.is_set():
                stop_deadline = stop_deadline or time.monotonic() + STOP_DRAIN_S
                with self._lock:
                    drained = self._outbox.awaiting_puback == 0
                if drained or time.monotonic() >= stop_deadline or not self._transport.connected:
                    return
                continue
            if self._transport.connected:
                if self._backoff.ready():
                    self._step("sending spooled messages", self._send_due)
                self._step("checking delivery progress", self._check_progress)
                if self._telemetry.take():
                    self._step("publishing telemetry", self._publish_telemetry_values)

    def _step(self, kind: str, action: Callable[[], None]) -> None:
        """Run one step of the sender; any exception is counted, logged once per kind, and the
        sending backs off (the thread itself never dies)."""
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - the sender must outlive every failure
            with self._lock:
                self._faults.failed(kind, exc)
            self._backoff.failed()
            return
        with self._lock:
            self._faults.worked(kind)

    def _send_due(self) -> None:
        publish_due(self._outbox, self._transport, self._lock)
        self._backoff.reset()

    def _check_progress(self) -> None:
        with self._lock:
            reason = self._outbox.stalled()
            changed = reason != self._degraded
            self._degraded = reason
        if not changed:
            return
        if reason is not None:
            log.error("delivery degraded: %s", reason)
        else:
            log.info("delivery makes progress again")
        self._transport.publish_other(self.topics.status, self._status("online"), qos=1, retain=True)

    def _handle_events(self) -> None:
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return
            if isinstance(event, ConnectFailed):
                self._transport.connect_failed(event)
                continue
            if isinstance(event, Connected):
                cfg = self.config.mqtt
                log.info("connected to %s:%d (%s)", cfg.host, cfg.port, event.reason)
                self._save_discovery()
            elif isinstance(event, Disconnected):
                log.warning("disconnected from the broker (%s); spooling", event.reason)
            with self._lock:
                if isinstance(event, Puback):
                    self._outbox.puback(event.mid, event.refusal)
                elif isinstance(event, AckReceived):
                    self._outbox.ack(event.ack.boot, event.ack.seq)
                else:
                    self._outbox.restart()

    def _save_discovery(self) -> None:
        """After the first connect published the discovery: remember its components, so the next
        start clears those that are gone (removed lines, zones, cameras)."""
        if self._discovery_saved:
            return
        self._discovery_saved = True
        try:
            self._ha_store.save(self._discovery.components)
        except OSError as exc:
            log.warning("cannot save the Home Assistant component list (%s)", exc)

    def _publish_telemetry_values(self) -> None:
        values: Mapping[str, Any] = {}
        if self.telemetry_source is not None:
            try:
                values = self.telemetry_source()
            except Exception:  # a broken telemetry callback must not stop data delivery
                log.exception("telemetry source failed")
        self.publish_telemetry(values)
