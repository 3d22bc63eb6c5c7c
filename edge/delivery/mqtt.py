"""The MQTT transport: one paho client with TLS, credentials, the `offline` will, and a v5 → 3.1.1
fallback for brokers that turn v5 down.

paho runs the connection (and reconnects with back-off) on its network thread. Its callbacks
only turn what happened into an event for the sender thread (`on_event`), except on connect,
where the retained messages that must follow every (re)connect go out at once: `online` status,
the ack subscription and `retained_on_connect()` (Home Assistant discovery, snapshots kept while
offline). Before those, until each has been seen once, it subscribes to `restore_topics` (its own
retained live state): the broker sends the previous run's retained state before anything this run
publishes replaces it, and `on_restore` gets each once. No lock of ours is taken around a paho
call: paho calls `on_publish` while holding its own message lock, which would deadlock against a
lock of ours held around `publish`.
"""

import logging
import ssl
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Sequence, Set, Union

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from contract import Ack, Topics, parse_ack
from edge.config import read_secret
from edge.core.errors import ConfigError
from edge.delivery.outbox import Refusal

if TYPE_CHECKING:
    from edge.config import Config

log = logging.getLogger(__name__)

RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 10
# CONNACK codes with which an MQTT 3.1.1-only broker turns down a v5 CONNECT.
UNSUPPORTED_PROTOCOL_CODES = (1, 132)


@dataclass(frozen=True)
class Connected:
    reason: str


@dataclass(frozen=True)
class ConnectFailed:
    reason: str
    code: int


@dataclass(frozen=True)
class Disconnected:
    reason: str


@dataclass(frozen=True)
class Puback:
    mid: int
    refusal: Optional[Refusal]  # None: the broker accepted the message


@dataclass(frozen=True)
class AckReceived:
    ack: Ack


TransportEvent = Union[Connected, ConnectFailed, Disconnected, Puback, AckReceived]


@dataclass(frozen=True)
class RetainedMessage:
    topic: str
    payload: bytes


class MqttTransport:
    """See the module docstring. `status(state)` builds the retained status payload."""

    def __init__(
        self,
        config: "Config",
        topics: Topics,
        status: Callable[[str], bytes],
        on_event: Callable[[TransportEvent], None],
        retained_on_connect: Callable[[], Iterable[RetainedMessage]],
        restore_topics: Sequence[str] = (),
        on_restore: Optional[Callable[[str, bytes], None]] = None,
    ) -> None:
        self.config = config
        self.mqtt_config = config.mqtt
        self.topics = topics
        self.status = status
        self.on_event = on_event
        self.retained_on_connect = retained_on_connect
        self.on_restore = on_restore
        # Topics whose retained message has not been seen yet (paho's thread only).
        self._restore_pending: Set[str] = set(restore_topics) if on_restore is not None else set()
        self._connected = threading.Event()
        self._protocol = MQTTProtocolVersion.MQTTv5
        self._client = self._make_client(self._protocol)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def protocol(self) -> str:
        return "5" if self._protocol == MQTTProtocolVersion.MQTTv5 else "3.1.1"

    def connect(self) -> None:
        """One synchronous attempt, so TLS and address errors surface here as one-line
        ConfigErrors; an unreachable broker is retried in the background."""
        cfg = self.mqtt_config
        try:
            self._client.connect(cfg.host, cfg.port, cfg.keepalive_s, clean_start=True)
        except ssl.SSLCertVerificationError as exc:
            where = cfg.tls.ca_file if cfg.tls else "mqtt.tls"
            raise ConfigError(
                f"{where}: broker {cfg.host}:{cfg.port} certificate rejected ({exc.verify_message})"
            ) from None
        except ssl.SSLError as exc:
            raise ConfigError(f"mqtt: TLS handshake with {cfg.host}:{cfg.port} failed ({exc.reason})") from None
        except OSError as exc:
            log.warning("broker %s:%d unreachable (%s); spooling and retrying", cfg.host, cfg.port, exc)
            self._client.connect_async(cfg.host, cfg.port, cfg.keepalive_s, clean_start=True)
        self._client.loop_start()

    def publish(self, topic: str, payload: bytes) -> Optional[int]:
        """A QoS 1 data message; its message id, or None when paho did not take it."""
        info = self._client.publish(topic, payload, qos=1)
        return info.mid if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS else None

    def publish_other(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> bool:
        """Telemetry, snapshots: not tracked by the outbox. Whether paho took it."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    def connect_failed(self, event: ConnectFailed) -> None:
        """On the sender thread: fall back to MQTT 3.1.1 when the broker does not speak v5."""
        cfg = self.mqtt_config
        if self._protocol == MQTTProtocolVersion.MQTTv5 and event.code in UNSUPPORTED_PROTOCOL_CODES:
            log.warning("broker does not speak MQTT v5; falling back to 3.1.1 (ACL refusals go unseen)")
            self._client.loop_stop()
            self._protocol = MQTTProtocolVersion.MQTTv311
            self._client = self._make_client(self._protocol)
            self._client.connect_async(cfg.host, cfg.port, cfg.keepalive_s)
            self._client.loop_start()
            return
        log.error("broker %s:%d refused the connection: %s", cfg.host, cfg.port, event.reason)

    def close(self, timeout_s: float) -> None:
        """Publish retained `stopped` (waiting up to `timeout_s`) and disconnect cleanly, so the
        broker does not send the `offline` will."""
        if self.connected:
            info = self._client.publish(self.topics.status, self.status("stopped"), qos=1, retain=True)
            try:
                info.wait_for_publish(timeout_s)
            except RuntimeError:
                log.warning("could not publish the stopped status")
        self._client.disconnect()
        self._client.loop_stop()

    # --- the paho client and its callbacks (paho's thread) -------------------------------------

    def _make_client(self, protocol: MQTTProtocolVersion) -> mqtt.Client:
        cfg = self.mqtt_config
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id or self.config.device_id,
            protocol=protocol,
            clean_session=None if protocol == MQTTProtocolVersion.MQTTv5 else True,
        )
        client.max_inflight_messages_set(cfg.max_inflight)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.will_set(self.topics.status, self.status("offline"), qos=1, retain=True)
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
            raise ConfigError(f"{tls.ca_file}: cannot load the TLS CA/certificate/key ({exc.reason})") from None

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason: ReasonCode,
        properties: Optional[Properties],
    ) -> None:
        if reason.is_failure:
            self.on_event(ConnectFailed(str(reason), reason.value))
            return
        client.subscribe(self.topics.ack, qos=1)
        if self._restore_pending:
            # no_local: our own state publishes are not echoed back (MQTT v5 only; on 3.1.1 an
            # echo is not retained and just ends the wait for that topic).
            pending = sorted(self._restore_pending)
            if self._protocol == MQTTProtocolVersion.MQTTv5:
                client.subscribe([(topic, SubscribeOptions(qos=1, noLocal=True)) for topic in pending])
            else:
                client.subscribe([(topic, 1) for topic in pending])
        client.publish(self.topics.status, self.status("online"), qos=1, retain=True)
        self._connected.set()
        for message in self.retained_on_connect():
            client.publish(message.topic, message.payload, qos=1, retain=True)
        self.on_event(Connected(str(reason)))

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason: ReasonCode,
        properties: Optional[Properties],
    ) -> None:
        self._connected.clear()
        self.on_event(Disconnected(str(reason)))

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Optional[Properties],
    ) -> None:
        refusal = Refusal(str(reason), reason.value) if reason.is_failure else None
        self.on_event(Puback(mid, refusal))

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic in self._restore_pending:
            self._restore_pending.discard(message.topic)
            client.unsubscribe(message.topic)
            if message.retain and self.on_restore is not None:
                self.on_restore(message.topic, bytes(message.payload))
            return
        if message.topic != self.topics.ack:
            return
        try:
            ack = parse_ack(bytes(message.payload), message.topic)
        except ValueError as exc:
            log.warning("ignoring malformed ack: %s", exc)
            return
        self.on_event(AckReceived(ack))
