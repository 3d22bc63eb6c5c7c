"""The aggregator's ingest: subscribe to every device's data, store it, acknowledge it.

paho's network thread only queues what it receives; one writer thread takes batches and:
1. validates each message strictly (`aggregator.validate`, which never raises): a refused one is
   counted by reason and logged on one line (rate-limited, payload cut short); when its
   (device, boot, seq) is trustworthy it is quarantined, so the watermark passes it;
2. stores the batch in one transaction. "The database is unavailable" (full, read-only, locked,
   connection lost) is retried with back-off, without acknowledging anything, and shows in the
   health state and metrics; any other storage error is the record's fault: the batch is split
   and the record the database refuses alone is quarantined;
3. only after the commit, PUBACKs the MQTT messages (manual acknowledgement, so a crash means the
   broker redelivers) and publishes `{prefix}/{device}/ack` with each (device, boot)'s watermark.

The broker never has more than `receive_maximum` unacknowledged messages out to this client
(MQTT v5 Receive Maximum), which bounds the memory the queue can take while the database is
down; `max_packet_bytes` (Maximum Packet Size) makes the broker drop anything larger.
Data subscriptions use `$share/{group}/...` when a share group is set, so replicas split the load;
status, telemetry and snapshots (small, retained) are subscribed by every replica.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from prometheus_client import CollectorRegistry

from aggregator.device_topics import DEVICE_TOPIC_KINDS, parse_device_topic
from aggregator.metrics import IngestMetrics, RateLimitedLog
from aggregator.store import BatchResult, DeviceUpdate, Snapshot, Store, StoreUnavailable
from aggregator.validate import STORE_REFUSED, RecordKey, Rejection, short, validate_message
from contract import DATA_KINDS, Ack, DataMessage, ack_topic, build_ack, data_subscriptions

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class IngestTls:
    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None


@dataclass(frozen=True)
class IngestSettings:
    batch_max: int = 500
    batch_wait_s: float = 0.01
    receive_maximum: int = 1000
    max_packet_bytes: int = 1024 * 1024
    session_expiry_s: int = 3600
    retry_initial_s: float = 0.2
    retry_max_s: float = 10.0
    stall_after_s: float = 30.0


@dataclass(frozen=True)
class IngestStats:
    received: int
    stored: int
    duplicates: int
    malformed: int  # every refused message, whatever the reason
    acks_sent: int
    quarantined: int
    db_errors: int


@dataclass(frozen=True)
class IngestHealth:
    connected: bool
    writer_alive: bool
    stalled: bool
    database_ok: bool
    database_error: str | None
    backlog: int

    @property
    def ok(self) -> bool:
        return self.connected and self.writer_alive and not self.stalled and self.database_ok


@dataclass(frozen=True)
class _Received:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int


class Ingest:
    def __init__(
        self,
        store: Store,
        host: str,
        port: int,
        prefix: str = "va",
        client_id: str = "va-aggregator",
        username: str | None = None,
        password: str | None = None,
        tls: IngestTls | None = None,
        shared_group: str | None = None,
        settings: IngestSettings | None = None,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.host, self.port, self.prefix = host, port, prefix
        self.shared_group = shared_group
        self.settings = settings or IngestSettings()
        self.clock = clock
        self.metrics = IngestMetrics(registry or CollectorRegistry())
        self._rejections_log = RateLimitedLog(log)
        self._queue: queue.SimpleQueue[_Received | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._counts = {"received": 0, "stored": 0, "duplicates": 0, "malformed": 0, "acks": 0, "quarantined": 0}
        self._db_errors = 0
        self._db_error: str | None = None
        self._heartbeat = time.monotonic()
        self._stopping = threading.Event()
        self._writer: threading.Thread | None = None
        self._generation = 0
        self._connected = False
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5, manual_ack=True
        )
        self._client.reconnect_delay_set(1, 5)
        if username:
            self._client.username_pw_set(username, password)
        if tls:
            self._client.tls_set(
                ca_certs=str(tls.ca_file),
                certfile=str(tls.cert_file) if tls.cert_file else None,
                keyfile=str(tls.key_file) if tls.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._data_mids: set[int] = set()
        self._subscribed = threading.Event()

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._writer = threading.Thread(target=self._run_writer, name="ingest-writer", daemon=True)
        self._writer.start()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.settings.session_expiry_s
        props.ReceiveMaximum = self.settings.receive_maximum
        props.MaximumPacketSize = self.settings.max_packet_bytes
        log.info("ingest: connecting to %s:%d", self.host, self.port)
        self._client.connect_async(self.host, self.port, keepalive=30, clean_start=False, properties=props)
        self._client.loop_start()

    def stop(self) -> None:
        self._stopping.set()
        self._client.disconnect()
        self._client.loop_stop()
        self._queue.put(None)
        if self._writer is not None:
            self._writer.join(10.0)

    def wait_subscribed(self, timeout_s: float) -> bool:
        """Whether the broker has acknowledged every data subscription within `timeout_s`:
        messages published before that are not delivered to this session."""
        return self._subscribed.wait(timeout_s)

    def stats(self) -> IngestStats:
        with self._lock:
            c = self._counts
            return IngestStats(
                c["received"],
                c["stored"],
                c["duplicates"],
                c["malformed"],
                c["acks"],
                c["quarantined"],
                self._db_errors,
            )

    def health(self) -> IngestHealth:
        with self._lock:
            error = self._db_error
            heartbeat = self._heartbeat
            connected = self._connected
        alive = self._writer is not None and self._writer.is_alive()
        return IngestHealth(
            connected=connected,
            writer_alive=alive,
            stalled=time.monotonic() - heartbeat > self.settings.stall_after_s,
            database_ok=error is None,
            database_error=error,
            backlog=self._queue.qsize(),
        )

    # --- MQTT callbacks (paho's thread) ---------------------------------------------------
    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: ReasonCode, props: Properties | None
    ) -> None:
        if reason.is_failure:
            log.error("ingest: broker %s:%d refused the connection: %s", self.host, self.port, reason)
            return
        log.info("ingest: connected to %s:%d", self.host, self.port)
        with self._lock:
            self._generation += 1
            self._connected = True
        data = data_subscriptions(self.prefix)
        shared = [f"$share/{self.shared_group}/{t}" if self.shared_group else t for t in data]
        mids = {mid for _, mid in (client.subscribe(topic, qos=1) for topic in shared) if mid is not None}
        with self._lock:
            self._data_mids = mids
        for kind in DEVICE_TOPIC_KINDS:
            client.subscribe(kind.filter(self.prefix), qos=1)

    def _on_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        log.warning("ingest: cannot reach broker %s:%d, retrying", self.host, self.port)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: ReasonCode, props: Properties | None
    ) -> None:
        with self._lock:
            self._connected = False
        if not self._stopping.is_set():
            log.warning("ingest: disconnected from %s:%d (%s), reconnecting", self.host, self.port, reason)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: object, mid: int, reasons: list[ReasonCode], props: Properties | None
    ) -> None:
        if any(reason.is_failure for reason in reasons):
            log.error("ingest: broker refused a subscription: %s", reasons)
            return
        with self._lock:
            self._data_mids.discard(mid)
            if not self._data_mids:
                self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            generation = self._generation
        self._queue.put(_Received(message.topic, bytes(message.payload), message.mid, message.qos, generation))

    # --- the writer -----------------------------------------------------------------------
    def _beat(self) -> None:
        with self._lock:
            self._heartbeat = time.monotonic()

    def _run_writer(self) -> None:
        while True:
            self._beat()
            try:
                first = self._queue.get(timeout=1.0)
            except queue.Empty:
                continue
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self.settings.batch_wait_s
            while len(batch) < self.settings.batch_max:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
            self.metrics.backlog.set(self._queue.qsize())
            try:
                self._ingest(batch)
            except Exception:
                # A bug here must not end the writer: the batch stays unacknowledged (redelivered
                # after a reconnect, resent by the devices), and the next batch is tried.
                log.exception("ingest: unexpected error on a batch of %d messages", len(batch))

    def _ingest(self, batch: list[_Received]) -> None:
        now = self.clock()
        accepted: list[DataMessage] = []
        rejected: list[Rejection] = []
        updates: list[DeviceUpdate] = []
        snapshots: list[Snapshot] = []
        verdict: DataMessage | Rejection | DeviceUpdate | Snapshot
        for item in batch:
            kind = item.topic.rsplit("/", 1)[-1]
            if kind in DATA_KINDS and item.topic.count("/") == 3:
                verdict = validate_message(item.topic, item.payload)
            else:
                verdict = parse_device_topic(item.topic, item.payload, now)
            if isinstance(verdict, DataMessage):
                accepted.append(verdict)
            elif isinstance(verdict, Rejection):
                rejected.append(verdict)
                self._log_rejection(verdict)
            elif isinstance(verdict, Snapshot):
                snapshots.append(verdict)
            else:
                updates.append(verdict)
        result = self._retrying(lambda: self._store_data(accepted, rejected, now))
        if result is None:
            return  # stopping while the database was down: nothing acknowledged, redelivered later
        if (updates or snapshots) and self._retrying(lambda: self.store.record_devices(updates, snapshots)) is None:
            return
        self._acknowledge(batch, result)
        self.metrics.received.inc(len(batch))
        self.metrics.stored.inc(result.stored)
        self.metrics.duplicates.inc(result.duplicates)
        self.metrics.quarantined.inc(result.quarantined)
        for rejection in rejected:
            self.metrics.rejected.labels(rejection.reason).inc()
        with self._lock:
            c = self._counts
            c["received"] += len(batch)
            c["stored"] += result.stored
            c["duplicates"] += result.duplicates
            c["malformed"] += len(rejected)
            c["quarantined"] += result.quarantined

    def _log_rejection(self, rejection: Rejection) -> None:
        self._rejections_log.warning(
            rejection.reason,
            f"ingest: refused {rejection.topic}: {rejection.reason}: {rejection.detail} "
            f"(payload {short(rejection.payload_head, 120)})",
        )

    def _store_data(self, accepted: list[DataMessage], rejected: list[Rejection], now: float) -> BatchResult:
        try:
            return self.store.store_batch(accepted, rejected, now)
        except StoreUnavailable:
            raise
        except Exception as exc:
            log.warning("ingest: the database refused a batch (%s); storing its records one by one", short(str(exc)))
        results = [self._store_alone(message, now) for message in accepted]
        results.append(self.store.store_batch([], rejected, now))
        watermarks: dict[tuple[str, str], int] = {}
        for result in results:
            for key, mark in result.watermarks.items():
                watermarks[key] = max(watermarks.get(key, 0), mark)
        return BatchResult(
            stored=sum(r.stored for r in results),
            duplicates=sum(r.duplicates for r in results),
            quarantined=sum(r.quarantined for r in results),
            watermarks=watermarks,
        )

    def _store_alone(self, message: DataMessage, now: float) -> BatchResult:
        try:
            return self.store.store_batch([message], [], now)
        except StoreUnavailable:
            raise
        except Exception as exc:
            env = message.envelope
            rejection = Rejection(
                topic=f"{self.prefix}/{env.device}/{env.camera}/{message.kind}",
                reason=STORE_REFUSED,
                detail=short(f"{exc.__class__.__name__}: {exc}"),
                payload_head=short(str(message.body), 300),
                key=RecordKey(env.device, env.boot, env.seq),
                camera=env.camera,
                kind=message.kind,
            )
            self._log_rejection(rejection)
            return self.store.store_batch([], [rejection], now)

    def _retrying(self, attempt: Callable[[], T]) -> T | None:
        """`attempt()` (which never returns None) until the database takes it; None when the
        ingest stops first."""
        delay = self.settings.retry_initial_s
        failures = 0
        while True:
            try:
                result = attempt()
            except StoreUnavailable as exc:
                failures += 1
                self.metrics.db_errors.inc()
                self.metrics.db_failing.set(1)
                with self._lock:
                    self._db_errors += 1
                    self._db_error = short(str(exc))
                if failures == 1 or failures % 10 == 0:
                    log.error("ingest: database unavailable (%s); retrying in %.1f s, nothing acknowledged", exc, delay)
                if self._stopping.wait(delay):
                    return None
                self._beat()
                delay = min(delay * 2, self.settings.retry_max_s)
                continue
            if failures:
                log.info("ingest: database writable again after %d failed attempts", failures)
                self.metrics.db_failing.set(0)
                with self._lock:
                    self._db_error = None
            return result

    def _acknowledge(self, batch: list[_Received], result: BatchResult) -> None:
        with self._lock:
            generation = self._generation
        for item in batch:
            # A message received on an earlier connection is redelivered on this one: its old
            # packet id means nothing now.
            if item.qos > 0 and item.generation == generation:
                self._client.ack(item.mid, item.qos)
        acks = 0
        for (device, boot), seq in result.watermarks.items():
            if seq > 0:
                self._client.publish(ack_topic(self.prefix, device), build_ack(Ack(boot, seq)), qos=1)
                acks += 1
        self.metrics.acks.inc(acks)
        with self._lock:
            self._counts["acks"] += acks
