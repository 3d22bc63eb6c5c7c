"""The MQTT side of the daemon: status/LWT, publishing from the spool, end-to-end acks.

Threads: paho's network thread runs the connection (and reconnects with back-off); one sender
thread owns all publishing state. paho's callbacks only put events on a queue and wake the
sender, so no lock is ever held across a paho call (paho calls `on_publish` while holding its own
message lock, which would deadlock against a lock of ours held around `publish`).

The spool is the source of truth. The sender publishes oldest first, keeps at most
`mqtt.max_inflight` publishes waiting for their PUBACK and at most `E2E_WINDOW_FACTOR` times that
waiting for the aggregator's ack, and starts again from the oldest record after every reconnect
and whenever the oldest message has waited `mqtt.ack_timeout_s` for its ack. A record leaves the
spool only when the aggregator's ack covers it (or, with `mqtt.acks: false`, on a successful
PUBACK). A PUBACK with an MQTT v5 failure reason (0x87 Not authorized from an ACL) is counted and
logged as refused, never as delivered. MQTT 3.1.1 brokers drop ACL-denied publishes silently,
which only the end-to-end ack notices.
"""

import logging
import queue
import ssl
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional, Tuple, Union

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from contract.wire import (
    Status,
    Topics,
    build_data_payload,
    build_status,
    build_telemetry,
    parse_ack,
    with_floor,
)
from edge import __version__
from edge.config import read_secret
from edge.core.errors import ConfigError
from edge.delivery.homeassistant import ComponentStore, device_discovery
from edge.delivery.spool import Spool, SpoolFullError, SpoolRecord

if TYPE_CHECKING:
    from edge.config import Config

log = logging.getLogger(__name__)

E2E_WINDOW_FACTOR = 10
SENDER_TICK_S = 0.2
STOP_DRAIN_S = 2.0
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 10
# CONNACK codes with which an MQTT 3.1.1-only broker turns down a v5 CONNECT.
UNSUPPORTED_PROTOCOL_CODES = (1, 132)


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


@dataclass(frozen=True)
class _Connected:
    reason: str


@dataclass(frozen=True)
class _ConnectFailed:
    reason: str
    code: int


@dataclass(frozen=True)
class _Disconnected:
    reason: str


@dataclass(frozen=True)
class _Puback:
    mid: int
    reason: ReasonCode


@dataclass(frozen=True)
class _AckReceived:
    boot: str
    seq: int


_Event = Union[_Connected, _ConnectFailed, _Disconnected, _Puback, _AckReceived]


@dataclass
class _Sent:
    boot: str
    sent_at: float


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
    ) -> None:
        self.config = config
        self.mqtt_config = config.mqtt
        self.spool = spool
        self.boot_id = boot_id
        self.clock = clock
        self.telemetry_source = telemetry_source
        self.version = version
        self.topics = Topics(config.mqtt.prefix, config.device_id)
        self.acks = config.mqtt.acks
        self.max_inflight = config.mqtt.max_inflight
        self.window = self.max_inflight * E2E_WINDOW_FACTOR if self.acks else self.max_inflight

        self._events: queue.SimpleQueue[_Event] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._stats_lock = threading.Lock()
        self._protocol = MQTTProtocolVersion.MQTTv5
        self._client = self._make_client(self._protocol)
        self._sender: Optional[threading.Thread] = None
        self._connected = False
        self._refused = self._delivered = self._resent = 0
        # Sender-thread state.
        self._cursor = 0
        self._awaiting_puback: Dict[int, SpoolRecord] = {}  # by mid
        self._outstanding: Dict[int, _Sent] = {}  # seq -> sent, waiting for the end-to-end ack
        self._next_telemetry = time.monotonic() + config.mqtt.telemetry_interval_s
        self._snapshot_sent_at: Dict[str, float] = {}
        self._unsent_snapshots: Dict[str, bytes] = {}
        self._snapshot_lock = threading.Lock()
        self._unsent_states: Dict[str, bytes] = {}  # topic -> newest live state, kept while offline
        self._ha_store = ComponentStore.from_config(config)
        self._discovery = device_discovery(config, version, self._ha_store.load())
        self._discovery_saved = False

    # --- public API --------------------------------------------------------------------------

    def start(self) -> None:
        """Connect (one synchronous attempt, so TLS and address errors surface here as one-line
        ConfigErrors) and start the sender; an unreachable broker is retried in the background."""
        cfg = self.mqtt_config
        try:
            self._client.connect(cfg.host, cfg.port, cfg.keepalive_s, clean_start=True)
        except ssl.SSLCertVerificationError as exc:
            where = cfg.tls.ca_file if cfg.tls else "mqtt.tls"
            raise ConfigError(
                f"{where}: broker {cfg.host}:{cfg.port} certificate rejected ({exc.verify_message})"
            ) from None
        except ssl.SSLError as exc:
            raise ConfigError(
                f"mqtt: TLS handshake with {cfg.host}:{cfg.port} failed ({exc.reason})"
            ) from None
        except OSError as exc:
            log.warning("broker %s:%d unreachable (%s); spooling and retrying", cfg.host, cfg.port, exc)
            self._client.connect_async(cfg.host, cfg.port, cfg.keepalive_s, clean_start=True)
        self._client.loop_start()
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
        if self._connected:
            info = self._client.publish(self.topics.status, self._status("stopped"), qos=1, retain=True)
            try:
                info.wait_for_publish(timeout_s)
            except RuntimeError:
                log.warning("could not publish the stopped status")
        self._client.disconnect()
        self._client.loop_stop()

    def submit(
        self, kind: str, camera: str, window: Tuple[float, float], body: Mapping[str, Any]
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
        added under `spool`; False when not connected."""
        if not self._connected:
            return False
        stats = self.stats()
        message = dict(values)
        message.update({"device": self.config.device_id, "boot": self.boot_id, "ts": self.clock()})
        message["spool"] = {
            "depth": stats.spool_depth,
            "bytes": stats.spool_bytes,
            "max_bytes": stats.spool_max_bytes,
            "dropped": stats.dropped,
            "refused": stats.refused,
            "delivered": stats.delivered,
            "in_flight": stats.in_flight,
            "resent": stats.resent,
        }
        info = self._client.publish(self.topics.telemetry, build_telemetry(message), qos=0)
        return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    def snapshot_due(self, camera: str) -> bool:
        """Whether the pipeline should encode a snapshot of `camera` now (enabled, and none sent
        yet or the interval has passed)."""
        snapshot = self.mqtt_config.snapshot
        if not snapshot.enabled:
            return False
        with self._snapshot_lock:
            last = self._snapshot_sent_at.get(camera)
        return last is None or time.monotonic() - last >= snapshot.interval_min * 60.0

    def publish_snapshot(self, camera: str, jpeg: bytes) -> None:
        """Publish a retained JPEG reference frame (or keep it for the next connect)."""
        if not self.mqtt_config.snapshot.enabled:
            return
        with self._snapshot_lock:
            self._snapshot_sent_at[camera] = time.monotonic()
            if not self._connected:
                self._unsent_snapshots[camera] = jpeg
                return
        self._client.publish(self.topics.snapshot(camera), jpeg, qos=1, retain=True)

    def publish_state(self, topic: str, payload: bytes) -> None:
        """Publish a retained live-state message (`contract.state`) now, not spooled: only the
        newest matters. While disconnected the newest per topic is kept for the next connect."""
        with self._snapshot_lock:
            if not self._connected:
                self._unsent_states[topic] = payload
                return
        self._client.publish(topic, payload, qos=1, retain=True)

    def stats(self) -> PublisherStats:
        spool = self.spool.stats()
        with self._stats_lock:
            return PublisherStats(
                connected=self._connected,
                protocol="5" if self._protocol == MQTTProtocolVersion.MQTTv5 else "3.1.1",
                spool_depth=spool.depth,
                spool_bytes=spool.bytes,
                spool_max_bytes=spool.max_bytes,
                dropped=spool.dropped,
                refused=self._refused,
                delivered=self._delivered,
                in_flight=len(self._outstanding),
                resent=self._resent,
                next_seq=spool.next_seq,
            )

    def wait_drained(self, timeout_s: float) -> bool:
        """Block until the spool is empty (everything delivered) or `timeout_s` passes."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.spool.stats().depth == 0:
                return True
            time.sleep(0.05)
        return self.spool.stats().depth == 0

    # --- paho client and callbacks (paho's thread: only enqueue events) ---------------------

    def _make_client(self, protocol: MQTTProtocolVersion) -> mqtt.Client:
        cfg = self.mqtt_config
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id or self.config.device_id,
            protocol=protocol,
            clean_session=None if protocol == MQTTProtocolVersion.MQTTv5 else True,
        )
        client.max_inflight_messages_set(self.max_inflight)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.will_set(self.topics.status, self._status("offline"), qos=1, retain=True)
        if cfg.username:
            password = read_secret(cfg.password_file) if cfg.password_file else None
            client.username_pw_set(cfg.username, password)
        elif cfg.password_file:
            raise ConfigError("mqtt.password_file is set but mqtt.username is not")
        if cfg.tls:
            self._configure_tls(client)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _configure_tls(self, client: mqtt.Client) -> None:
        tls = self.mqtt_config.tls
        assert tls is not None
        for path in (tls.ca_file, tls.cert_file, tls.key_file):
            if path is not None and not path.is_file():
                raise ConfigError(f"{path}: TLS file not found (mqtt.tls)")
        if (tls.cert_file is None) != (tls.key_file is None):
            raise ConfigError("mqtt.tls: cert_file and key_file go together")
        try:
            client.tls_set(
                ca_certs=str(tls.ca_file),
                certfile=str(tls.cert_file) if tls.cert_file else None,
                keyfile=str(tls.key_file) if tls.key_file else None,
            )
        except ssl.SSLError as exc:
            raise ConfigError(
                f"{tls.ca_file}: cannot load the TLS CA/certificate/key ({exc.reason})"
            ) from None

    def _status(self, state: str) -> bytes:
        return build_status(Status(state=state, boot=self.boot_id, version=self.version, ts=self.clock()))

    def _event(self, event: _Event) -> None:
        self._events.put(event)
        self._wake.set()

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason: ReasonCode,
        properties: Optional[Properties],
    ) -> None:
        if reason.is_failure:
            self._event(_ConnectFailed(str(reason), reason.value))
            return
        client.subscribe(self.topics.ack, qos=1)
        client.publish(self.topics.status, self._status("online"), qos=1, retain=True)
        for message in self._discovery.messages:
            client.publish(message.topic, message.payload, qos=1, retain=True)
        if not self._discovery_saved:
            self._discovery_saved = True
            try:
                self._ha_store.save(self._discovery.components)
            except OSError as exc:
                log.warning("cannot save the Home Assistant component list (%s)", exc)
        with self._stats_lock:
            self._connected = True
        with self._snapshot_lock:
            unsent, self._unsent_snapshots = self._unsent_snapshots, {}
            states, self._unsent_states = self._unsent_states, {}
        for camera, jpeg in unsent.items():
            client.publish(self.topics.snapshot(camera), jpeg, qos=1, retain=True)
        for topic, payload in states.items():
            client.publish(topic, payload, qos=1, retain=True)
        self._event(_Connected(str(reason)))

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason: ReasonCode,
        properties: Optional[Properties],
    ) -> None:
        with self._stats_lock:
            self._connected = False
        self._event(_Disconnected(str(reason)))

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Optional[Properties],
    ) -> None:
        self._event(_Puback(mid, reason))

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic != self.topics.ack:
            return
        try:
            ack = parse_ack(bytes(message.payload), message.topic)
        except ValueError as exc:
            log.warning("ignoring malformed ack: %s", exc)
            return
        self._event(_AckReceived(ack.boot, ack.seq))

    # --- the sender thread ---------------------------------------------------------------------

    def _run_sender(self) -> None:
        stop_deadline: Optional[float] = None
        while True:
            self._wake.wait(SENDER_TICK_S)
            self._wake.clear()
            self._handle_events()
            if self._stopping.is_set():
                stop_deadline = stop_deadline or time.monotonic() + STOP_DRAIN_S
                if not self._awaiting_puback or time.monotonic() >= stop_deadline or not self._connected:
                    return
                continue
            if self._connected:
                self._resend_if_overdue()
                self._send_from_spool()
                self._telemetry_if_due()

    def _handle_events(self) -> None:
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return
            if isinstance(event, _Puback):
                self._handle_puback(event)
            elif isinstance(event, _AckReceived):
                self._handle_ack(event)
            elif isinstance(event, _Connected):
                log.info(
                    "connected to %s:%d (%s)", self.mqtt_config.host, self.mqtt_config.port, event.reason
                )
                self._restart_from_oldest()
            elif isinstance(event, _Disconnected):
                log.warning("disconnected from the broker (%s); spooling", event.reason)
                self._restart_from_oldest()
            elif isinstance(event, _ConnectFailed):
                self._handle_connect_failed(event)

    def _restart_from_oldest(self) -> None:
        # paho may still resend its own in-flight copies; their PUBACKs no longer match a mid
        # here and are ignored. The spool, not paho's queue, decides what is sent again.
        self._cursor = 0
        self._awaiting_puback.clear()
        with self._stats_lock:
            self._outstanding.clear()

    def _handle_connect_failed(self, event: _ConnectFailed) -> None:
        if self._protocol == MQTTProtocolVersion.MQTTv5 and event.code in UNSUPPORTED_PROTOCOL_CODES:
            log.warning("broker does not speak MQTT v5; falling back to 3.1.1 (ACL refusals go unseen)")
            self._client.loop_stop()
            self._protocol = MQTTProtocolVersion.MQTTv311
            self._client = self._make_client(self._protocol)
            cfg = self.mqtt_config
            self._client.connect_async(cfg.host, cfg.port, cfg.keepalive_s)
            self._client.loop_start()
            return
        log.error(
            "broker %s:%d refused the connection: %s",
            self.mqtt_config.host,
            self.mqtt_config.port,
            event.reason,
        )

    def _handle_puback(self, event: _Puback) -> None:
        record = self._awaiting_puback.pop(event.mid, None)
        if record is None:
            return  # a status/telemetry/snapshot publish, or a copy from before a reconnect
        if event.reason.is_failure:
            with self._stats_lock:
                self._refused += 1
            log.error(
                "broker refused seq %d on %s: %s (0x%02x); kept in the spool",
                record.seq,
                record.topic,
                event.reason,
                event.reason.value,
            )
            return
        if not self.acks:
            removed = self.spool.remove(record.seq)
            with self._stats_lock:
                self._delivered += removed
                self._outstanding.pop(record.seq, None)

    def _handle_ack(self, event: _AckReceived) -> None:
        if not self.acks:
            return
        removed = self.spool.ack_through(event.boot, event.seq)
        with self._stats_lock:
            self._delivered += removed
            covered = [
                s for s, sent in self._outstanding.items() if sent.boot == event.boot and s <= event.seq
            ]
            for seq in covered:
                del self._outstanding[seq]

    def _resend_if_overdue(self) -> None:
        if not self._outstanding:
            return
        oldest = next(iter(self._outstanding.values()))
        if time.monotonic() - oldest.sent_at < self.mqtt_config.ack_timeout_s:
            return
        log.warning(
            "no ack for %d message(s) after %.0f s; sending again from the oldest",
            len(self._outstanding),
            self.mqtt_config.ack_timeout_s,
        )
        with self._stats_lock:
            self._resent += len(self._outstanding)
            self._outstanding.clear()
        self._cursor = 0

    def _send_from_spool(self) -> None:
        budget = min(self.max_inflight - len(self._awaiting_puback), self.window - len(self._outstanding))
        if budget <= 0:
            return
        records = self.spool.pending(self._cursor, budget)
        if not records:
            return
        floors = self.spool.floors([record.boot for record in records])
        now = time.monotonic()
        for record in records:
            floor = floors.get(record.boot, record.seq)
            info = self._client.publish(record.topic, with_floor(record.payload, floor), qos=1)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return  # connection just dropped; the disconnect event restarts from the oldest
            self._awaiting_puback[info.mid] = record
            with self._stats_lock:
                self._outstanding[record.seq] = _Sent(record.boot, now)
            self._cursor = record.seq

    def _telemetry_if_due(self) -> None:
        now = time.monotonic()
        if now < self._next_telemetry:
            return
        self._next_telemetry = now + self.mqtt_config.telemetry_interval_s
        values: Mapping[str, Any] = {}
        if self.telemetry_source is not None:
            try:
                values = self.telemetry_source()
            except Exception:  # a broken telemetry callback must not stop data delivery
                log.exception("telemetry source failed")
        self.publish_telemetry(values)
