"""The aggregator's ingest: subscribe to every device's data, store it, acknowledge it.

paho's network thread only queues received messages; a writer thread takes them in batches,
parses each strictly (a malformed payload is logged and counted, never fatal), stores the batch
in one committed transaction (idempotent by (device, boot, seq)), and then publishes
`{prefix}/{device}/ack` with the highest contiguous seq committed for each (device, boot) seen
in the batch, duplicates included, so a device that missed an ack hears it again.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from aggregator.store import IngestStore
from contract import (
    Ack,
    DataMessage,
    MessageError,
    ack_topic,
    build_ack,
    data_subscriptions,
    parse_data_message,
)

log = logging.getLogger(__name__)

BATCH_MAX = 500
BATCH_WAIT_S = 0.01


@dataclass(frozen=True)
class IngestTls:
    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None


@dataclass(frozen=True)
class IngestStats:
    received: int
    stored: int
    duplicates: int
    malformed: int
    acks_sent: int


@dataclass(frozen=True)
class _Received:
    topic: str
    payload: bytes


class Ingest:
    def __init__(
        self,
        store: IngestStore,
        host: str,
        port: int,
        prefix: str = "va",
        client_id: str = "va-aggregator",
        username: str | None = None,
        password: str | None = None,
        tls: IngestTls | None = None,
        shared_group: str | None = None,
    ) -> None:
        self.store = store
        self.host, self.port, self.prefix = host, port, prefix
        self.shared_group = shared_group
        self._queue: queue.SimpleQueue[_Received | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._received = self._stored = self._duplicates = self._malformed = self._acks = 0
        self._writer: threading.Thread | None = None
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
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
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._pending_subscriptions = 0
        self._subscribed = threading.Event()

    def start(self) -> None:
        self._writer = threading.Thread(target=self._run_writer, name="ingest-writer", daemon=True)
        self._writer.start()
        self._client.connect_async(self.host, self.port, keepalive=30, clean_start=True)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        self._queue.put(None)
        if self._writer is not None:
            self._writer.join(5.0)

    def wait_subscribed(self, timeout_s: float) -> bool:
        """Whether the broker has acknowledged every data subscription within `timeout_s`:
        messages published before that are not delivered to this session."""
        return self._subscribed.wait(timeout_s)

    def stats(self) -> IngestStats:
        with self._lock:
            return IngestStats(self._received, self._stored, self._duplicates, self._malformed, self._acks)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason: ReasonCode,
        props: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.error("ingest: broker refused the connection: %s", reason)
            return
        topics = data_subscriptions(self.prefix)
        with self._lock:
            self._pending_subscriptions = len(topics)
        for topic in topics:
            client.subscribe(f"$share/{self.shared_group}/{topic}" if self.shared_group else topic, qos=1)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: object, mid: int, reasons: list[ReasonCode], props: Properties | None
    ) -> None:
        if any(reason.is_failure for reason in reasons):
            log.error("ingest: broker refused a subscription: %s", reasons)
            return
        with self._lock:
            self._pending_subscriptions -= 1
            if self._pending_subscriptions == 0:
                self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        self._queue.put(_Received(message.topic, bytes(message.payload)))

    def _run_writer(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + BATCH_WAIT_S
            while len(batch) < BATCH_MAX:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
            self._ingest(batch)

    def _ingest(self, batch: list[_Received]) -> None:
        parsed: list[DataMessage] = []
        malformed = 0
        for item in batch:
            try:
                parsed.append(parse_data_message(item.topic, item.payload))
            except MessageError as exc:
                malformed += 1
                log.warning("ingest: dropping malformed message: %s", exc)
        result = self.store.store_batch(parsed, time.time()) if parsed else None
        acks = 0
        if result is not None:
            for (device, boot), seq in result.watermarks.items():
                if seq > 0:
                    self._client.publish(ack_topic(self.prefix, device), build_ack(Ack(boot, seq)), qos=1)
                    acks += 1
        with self._lock:
            self._received += len(batch)
            self._malformed += malformed
            if result is not None:
                self._stored += result.stored
                self._duplicates += result.duplicates
            self._acks += acks
