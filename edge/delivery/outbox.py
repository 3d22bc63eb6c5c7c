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

Ack modes (`mqtt.acks`): `True` end-to-end, `False` PUBACK, `"auto"` PUBACK until the first valid
aggregator ack for this device, end-to-end from then on (`on_aggregator` persists that fact, so a
restart keeps the mode). A device with Home Assistant only therefore never stalls on acks nobody
sends.

Checked acks: an ack is valid only for a boot this process has sent and a seq it has sent of that
boot; anything else (a forged ack, a stale one from another device's aggregator) deletes nothing
and is counted in `forged_acks`.

A spool that cannot delete (disk full) does not stop delivery: the delivered seqs are remembered,
skipped when sending, and their deletion retried with back-off; duplicates after a restart are
the aggregator's to drop. `stalled()` names why delivery has made no progress for `stall_s` while
something waits to be delivered (the caller decides whether the broker is reachable).
"""

import logging
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, ContextManager, Dict, List, Optional, Protocol, Sequence, Set, Union

from contract import with_floor
from edge.delivery.errors import SpoolError
from edge.delivery.faults import Backoff

log = logging.getLogger(__name__)

E2E_WINDOW_FACTOR = 10
ACKS_AUTO = "auto"
AckMode = Union[bool, str]  # True, False or ACKS_AUTO


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
    forged_acks: int = 0  # acks for a boot or seq this process has not sent: ignored
    undeleted: int = 0  # delivered, but the spool could not delete them yet
    end_to_end: bool = True  # whether records wait for the aggregator's ack now


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
        acks: AckMode = True,
        ack_timeout_s: float = 30.0,
        aggregator_seen: bool = False,
        on_aggregator: Optional[Callable[[], None]] = None,
        stall_s: float = 300.0,
    ) -> None:
        if acks not in (True, False, ACKS_AUTO):
            raise ValueError(f"acks must be true, false or {ACKS_AUTO!r}, got {acks!r}")
        self.spool = spool
        self.clock = clock
        self.max_inflight = max_inflight
        self.ack_mode = acks
        self.acks = acks is True or (acks == ACKS_AUTO and aggregator_seen)
        self.ack_timeout_s = ack_timeout_s
        self.stall_s = stall_s
        self._on_aggregator = on_aggregator
        self._cursor = 0
        self._awaiting_puback: Dict[int, Record] = {}  # by message id
        self._outstanding: Dict[int, _Sent] = {}  # by seq, oldest first
        self._refused = self._delivered = self._resent = self._forged = 0
        self._sent_through: Dict[str, int] = {}  # boot -> highest seq sent by this process
        self._undeleted: Set[int] = set()  # PUBACK mode: delivered, delete failed
        self._acked_through: Dict[str, int] = {}  # end-to-end: acked, delete failed
        self._delete_error: Optional[str] = None
        self._delete_backoff = Backoff(clock)
        self._progress_at = clock()

    @property
    def window(self) -> int:
        return self.max_inflight * E2E_WINDOW_FACTOR if self.acks else self.max_inflight

    @property
    def awaiting_puback(self) -> int:
        return len(self._awaiting_puback)

    def stats(self) -> OutboxStats:
        undeleted = len(self._undeleted) + len(self._acked_through)
        return OutboxStats(
            self._refused, self._delivered, len(self._outstanding), self._resent, self._forged, undeleted, self.acks
        )

    def restart(self) -> None:
        """After a reconnect or a disconnect: send again from the oldest spooled record. The
        transport may still resend its own in-flight copies; their PUBACKs no longer match a
        message id here and are ignored. The spool, not the transport's queue, decides."""
        self._cursor = 0
        self._awaiting_puback.clear()
        self._outstanding.clear()
        self._progress_at = self.clock()  # no progress is expected while disconnected

    def due(self) -> List[Outgoing]:
        """What to publish now, oldest first, within the PUBACK and end-to-end windows; first
        retries failed deletions (with back-off) and starts again from the oldest if the oldest
        unacknowledged message is overdue. Raises SpoolError when the spool cannot be read."""
        self._retry_deletes()
        self._resend_if_overdue()
        budget = min(self.max_inflight - len(self._awaiting_puback), self.window - len(self._outstanding))
        if budget <= 0:
            return []
        while True:
            records = self.spool.pending(self._cursor, budget)
            if not records:
                if not self._outstanding and not self._awaiting_puback and not self._pending_delete():
                    self._progress_at = self.clock()  # idle: nothing waits to be delivered
                return []
            fresh = [record for record in records if not self._delivered_already(record)]
            if fresh:
                break
            self._cursor = records[-1].seq  # all delivered, only their deletion failed
        floors = self.spool.floors([record.boot for record in fresh])
        return [Outgoing(record, with_floor(record.payload, floors.get(record.boot, record.seq))) for record in fresh]

    def sent(self, outgoing: Outgoing, mid: int) -> None:
        """The transport took `outgoing` as message `mid`."""
        record = outgoing.record
        self._awaiting_puback[mid] = record
        self._outstanding[record.seq] = _Sent(record.boot, self.clock())
        self._cursor = record.seq
        if record.seq > self._sent_through.get(record.boot, 0):
            self._sent_through[record.boot] = record.seq

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
            self._outstanding.pop(record.seq, None)
            self._undeleted.add(record.seq)
            self._delete_now()

    def ack(self, boot: str, seq: int) -> None:
        """The aggregator committed every message of `boot` up to `seq`. Ignored (and counted)
        unless this process has sent that boot's messages through `seq`. In `auto` mode the first
        valid ack switches to end-to-end acks for good."""
        if self.ack_mode is False:
            return
        sent_through = self._sent_through.get(boot)
        if sent_through is None or seq > sent_through:
            self._forged += 1
            log.warning(
                "ignoring an ack for %s seq %d: this process sent %s",
                boot,
                seq,
                f"that boot through seq {sent_through}" if sent_through is not None else "nothing of that boot",
            )
            return
        if not self.acks:
            self.acks = True
            log.info("the aggregator acknowledges: keeping messages until its ack from now on")
            if self._on_aggregator is not None:
                self._on_aggregator()
        if seq > self._acked_through.get(boot, 0):
            self._acked_through[boot] = seq
        covered = [s for s, sent in self._outstanding.items() if sent.boot == boot and s <= seq]
        for covered_seq in covered:
            del self._outstanding[covered_seq]
        self._delete_now()

    def stalled(self) -> Optional[str]:
        """Why delivery has made no progress for `stall_s` while messages wait, else None."""
        if self.clock() - self._progress_at < self.stall_s:
            return None
        if self._delete_error is not None:
            return f"spool cannot delete delivered messages: {self._delete_error}"
        what = "acknowledgement from the aggregator" if self.acks else "PUBACK from the broker"
        return f"no {what} for {self.stall_s:.0f} s with messages waiting"

    # --- deletions ---

    def _pending_delete(self) -> bool:
        return bool(self._undeleted or self._acked_through)

    def _delivered_already(self, record: Record) -> bool:
        return record.seq in self._undeleted or record.seq <= self._acked_through.get(record.boot, 0)

    def _delete_now(self) -> None:
        """Delete at once, unless the spool is failing: then the back-off decides when to retry
        (each PUBACK must not be one more failed attempt that pushes the retry further away)."""
        if self._delete_error is None:
            self._delete_delivered()

    def _retry_deletes(self) -> None:
        if self._pending_delete() and self._delete_backoff.ready():
            self._delete_delivered()

    def _delete_delivered(self) -> None:
        """Delete what was delivered; on a spool error keep it for a retry and go on sending."""
        try:
            for boot, seq in sorted(self._acked_through.items()):
                self._delivered += self.spool.ack_through(boot, seq)
                del self._acked_through[boot]
            for seq in sorted(self._undeleted):
                self._delivered += self.spool.remove(seq)
                self._undeleted.discard(seq)
        except SpoolError as exc:
            if self._delete_error is None:
                log.error("%s; delivery goes on, the deletion is retried", exc)
            self._delete_error = str(exc)
            self._delete_backoff.failed()
            return
        if self._delete_error is not None:
            log.info("the spool deletes again")
        self._delete_error = None
        self._delete_backoff.reset()
        self._progress_at = self.clock()

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
