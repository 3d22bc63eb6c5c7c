"""The at-least-once delivery state machine between the spool and the broker (pure).

No paho, no threads, no clock of its own: the spool and the clock are injected, and what to
publish is handed back to the caller (`due`), who publishes it and reports the message id
(`sent`), so the machine is testable with a fake spool, a fake transport and a fake clock.

The spool is the source of truth. The outbox publishes oldest first, keeps at most
`max_inflight` publishes waiting for their PUBACK and at most `E2E_WINDOW_FACTOR` times that
waiting for the aggregator's ack, and starts again from the oldest record after every reconnect
(and disconnect) and whenever the oldest message has waited `ack_timeout_s` for its ack. A record
leaves the spool only when the aggregator's ack covers it (highest contiguous seq of one boot),
or, with acks off, on a successful PUBACK. A PUBACK with an MQTT v5 failure reason (0x87 Not
authorized from an ACL) is counted and logged as refused, never as delivered, and the record
stays spooled. Every payload goes out with `floor` = the oldest seq of its boot still spooled,
so records the full spool dropped never stall the aggregator's acknowledgements.
"""

import logging
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, ContextManager, Dict, List, Optional, Protocol, Sequence

from contract import with_floor

log = logging.getLogger(__name__)

E2E_WINDOW_FACTOR = 10


class Record(Protocol):
    """A spooled data message (edge.delivery.spool.SpoolRecord is one)."""

    @property
    def seq(self) -> int: ...

    @property
    def boot(self) -> str: ...

    @property
    def topic(self) -> str: ...

    @property
    def payload(self) -> bytes: ...


class OutboxSpool(Protocol):
    """What the outbox needs of the spool."""

    def pending(self, after_seq: int, limit: int) -> Sequence[Record]: ...

    def floors(self, boots: List[str]) -> Dict[str, int]: ...

    def ack_through(self, boot: str, seq: int) -> int: ...

    def remove(self, seq: int) -> int: ...


class Transport(Protocol):
    """Publishes one QoS 1 data message; returns its message id, or None when the transport did
    not take it (the connection just dropped: a disconnect event follows)."""

    def publish(self, topic: str, payload: bytes) -> Optional[int]: ...


@dataclass(frozen=True)
class Outgoing:
    """One record to publish now, with its send-time `floor` already in the payload."""

    record: Record
    payload: bytes


@dataclass(frozen=True)
class Refusal:
    """A failed PUBACK (MQTT v5 reason code >= 0x80)."""

    reason: str
    code: int


@dataclass(frozen=True)
class OutboxStats:
    refused: int
    delivered: int
    in_flight: int  # sent, waiting for the end-to-end ack (or the PUBACK with acks off)
    resent: int


@dataclass(frozen=True)
class _Sent:
    boot: str
    sent_at: float


class Outbox:
    """See the module docstring. Not thread-safe: one thread drives it (or callers guard it)."""

    def __init__(
        self,
        spool: OutboxSpool,
        clock: Callable[[], float],
        max_inflight: int,
        acks: bool = True,
        ack_timeout_s: float = 30.0,
    ) -> None:
        self.spool = spool
        self.clock = clock
        self.max_inflight = max_inflight
        self.acks = acks
        self.ack_timeout_s = ack_timeout_s
        self.window = max_inflight * E2E_WINDOW_FACTOR if acks else max_inflight
        self._cursor = 0
        self._awaiting_puback: Dict[int, Record] = {}  # by message id
        self._outstanding: Dict[int, _Sent] = {}  # by seq, oldest first
        self._refused = self._delivered = self._resent = 0

    @property
    def awaiting_puback(self) -> int:
        return len(self._awaiting_puback)

    def stats(self) -> OutboxStats:
        return OutboxStats(self._refused, self._delivered, len(self._outstanding), self._resent)

    def restart(self) -> None:
        """After a reconnect or a disconnect: send again from the oldest spooled record. The
        transport may still resend its own in-flight copies; their PUBACKs no longer match a
        message id here and are ignored. The spool, not the transport's queue, decides."""
        self._cursor = 0
        self._awaiting_puback.clear()
        self._outstanding.clear()

    def due(self) -> List[Outgoing]:
        """What to publish now, oldest first, within the PUBACK and end-to-end windows; first
        starts again from the oldest if the oldest unacknowledged message is overdue."""
        self._resend_if_overdue()
        budget = min(self.max_inflight - len(self._awaiting_puback), self.window - len(self._outstanding))
        if budget <= 0:
            return []
        records = self.spool.pending(self._cursor, budget)
        if not records:
            return []
        floors = self.spool.floors([record.boot for record in records])
        return [Outgoing(record, with_floor(record.payload, floors.get(record.boot, record.seq))) for record in records]

    def sent(self, outgoing: Outgoing, mid: int) -> None:
        """The transport took `outgoing` as message `mid`."""
        record = outgoing.record
        self._awaiting_puback[mid] = record
        self._outstanding[record.seq] = _Sent(record.boot, self.clock())
        self._cursor = record.seq

    def puback(self, mid: int, refusal: Optional[Refusal] = None) -> None:
        record = self._awaiting_puback.pop(mid, None)
        if record is None:
            return  # a status/telemetry/snapshot publish, or a copy from before a reconnect
        if refusal is not None:
            self._refused += 1
            log.error(
                "broker refused seq %d on %s: %s (0x%02x); kept in the spool",
                record.seq,
                record.topic,
                refusal.reason,
                refusal.code,
            )
            return
        if not self.acks:
            self._delivered += self.spool.remove(record.seq)
            self._outstanding.pop(record.seq, None)

    def ack(self, boot: str, seq: int) -> None:
        """The aggregator committed every message of `boot` up to `seq`."""
        if not self.acks:
            return
        self._delivered += self.spool.ack_through(boot, seq)
        covered = [s for s, sent in self._outstanding.items() if sent.boot == boot and s <= seq]
        for covered_seq in covered:
            del self._outstanding[covered_seq]

    def _resend_if_overdue(self) -> None:
        if not self._outstanding:
            return
        oldest = next(iter(self._outstanding.values()))
        if self.clock() - oldest.sent_at < self.ack_timeout_s:
            return
        log.warning(
            "no ack for %d message(s) after %.0f s; sending again from the oldest",
            len(self._outstanding),
            self.ack_timeout_s,
        )
        self._resent += len(self._outstanding)
        self._outstanding.clear()
        self._cursor = 0


def publish_due(outbox: Outbox, transport: Transport, guard: Optional[ContextManager[object]] = None) -> int:
    """Publish what the outbox says is due; returns how many the transport took. `guard` (the
    caller's lock) is held around the outbox's calls but never around `transport.publish`,
    because paho calls back into its users while holding its own lock."""
    lock = guard if guard is not None else nullcontext()
    with lock:
        batch = outbox.due()
    taken = 0
    for outgoing in batch:
        mid = transport.publish(outgoing.record.topic, outgoing.payload)
        if mid is None:
            return taken  # the connection just dropped; the disconnect event restarts from the oldest
        with lock:
            outbox.sent(outgoing, mid)
        taken += 1
    return taken
