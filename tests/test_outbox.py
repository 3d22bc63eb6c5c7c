"""The delivery state machine without a broker: a fake spool, a fake transport, a fake clock."""

import json
import logging
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import pytest

from contract import build_data_payload
from edge.delivery.outbox import E2E_WINDOW_FACTOR, Outbox, Refusal, publish_due
from edge.delivery.schedules import SnapshotSchedule, TelemetrySchedule
from tests.mqtt_fixtures import counts_body

BOOT = "boot-1"


@dataclass(frozen=True)
class Record:
    seq: int
    boot: str
    topic: str
    payload: bytes


class FakeSpool:
    """The spool's contract in memory: seqs keep increasing, drops remove the oldest."""

    def __init__(self) -> None:
        self.records: Dict[int, Record] = {}
        self.next_seq = 1

    def add(self, count: int, boot: str = BOOT) -> List[int]:
        seqs = []
        for _ in range(count):
            seq = self.next_seq
            self.next_seq += 1
            payload = build_data_payload("counts", "dev1", "cam1", boot, seq, (0.0, 10.0), counts_body())
            self.records[seq] = Record(seq, boot, "va/dev1/cam1/counts", payload)
            seqs.append(seq)
        return seqs

    def drop_oldest(self, count: int) -> None:
        for seq in sorted(self.records)[:count]:
            del self.records[seq]

    def pending(self, after_seq: int, limit: int) -> List[Record]:
        return [self.records[s] for s in sorted(self.records) if s > after_seq][:limit]

    def floors(self, boots: List[str]) -> Dict[str, int]:
        result: Dict[str, int] = {}
        for record in sorted(self.records.values(), key=lambda r: r.seq):
            result.setdefault(record.boot, record.seq)
        return {boot: seq for boot, seq in result.items() if boot in boots}

    def ack_through(self, boot: str, seq: int) -> int:
        doomed = [s for s, r in self.records.items() if r.boot == boot and s <= seq]
        for s in doomed:
            del self.records[s]
        return len(doomed)

    def remove(self, seq: int) -> int:
        return 1 if self.records.pop(seq, None) is not None else 0


class FakeTransport:
    """Takes publishes while `up`; remembers (mid, seq, floor) of each."""

    def __init__(self) -> None:
        self.up = True
        self.sent: List[Tuple[int, int, int]] = []
        self._mid = 0

    def publish(self, topic: str, payload: bytes) -> Optional[int]:
        if not self.up:
            return None
        self._mid += 1
        obj = json.loads(payload)
        self.sent.append((self._mid, obj["seq"], obj["floor"]))
        return self._mid

    def seqs(self) -> List[int]:
        return [seq for _, seq, _ in self.sent]

    def take_sent(self) -> List[Tuple[int, int, int]]:
        sent, self.sent = self.sent, []
        return sent


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(max_inflight: int = 3, acks: bool = True, ack_timeout_s: float = 30.0, records: int = 10):
    spool, transport, clock = FakeSpool(), FakeTransport(), FakeClock()
    spool.add(records)
    outbox = Outbox(spool, clock, max_inflight, acks=acks, ack_timeout_s=ack_timeout_s)
    return outbox, spool, transport, clock


def puback_all(outbox: Outbox, sent: List[Tuple[int, int, int]]) -> None:
    for mid, _, _ in sent:
        outbox.puback(mid)


def test_sends_in_order_within_the_inflight_bound():
    outbox, _, transport, _ = make(max_inflight=3)
    assert publish_due(outbox, transport) == 3
    assert transport.seqs() == [1, 2, 3]
    assert publish_due(outbox, transport) == 0  # three PUBACKs outstanding
    outbox.puback(transport.sent[0][0])
    assert publish_due(outbox, transport) == 1
    assert transport.seqs() == [1, 2, 3, 4]
    assert outbox.stats().in_flight == 4


def test_outage_restarts_from_the_oldest_and_loses_nothing():
    outbox, spool, transport, _ = make(max_inflight=4, records=20)
    publish_due(outbox, transport)
    outbox.ack(BOOT, 2)  # the aggregator has 1 and 2; 3 and 4 were in flight when the link dropped
    transport.up = False
    assert publish_due(outbox, transport) == 0
    outbox.restart()  # disconnect
    spool.add(5)  # spooled during the outage
    transport.up = True
    outbox.restart()  # reconnect
    transport.take_sent()
    delivered: List[int] = []
    while spool.records:
        sent = transport.take_sent() if publish_due(outbox, transport) else []
        assert sent, "stalled with records left"
        puback_all(outbox, sent)
        delivered += [seq for _, seq, _ in sent]
        outbox.ack(BOOT, max(delivered))
    assert delivered == list(range(3, 26))  # from the oldest unacknowledged, in order, nothing lost
    assert outbox.stats().delivered == 25


def test_resend_from_the_oldest_after_the_ack_timeout():
    outbox, _, transport, clock = make(max_inflight=2, ack_timeout_s=30.0, records=5)
    publish_due(outbox, transport)
    puback_all(outbox, transport.take_sent())
    publish_due(outbox, transport)
    puback_all(outbox, transport.take_sent())
    clock.now += 29.0
    publish_due(outbox, transport)
    assert transport.seqs() == [5]  # still waiting: no resend yet
    puback_all(outbox, transport.take_sent())
    clock.now += 1.0  # seq 1 has now waited 30 s for its ack
    publish_due(outbox, transport)
    assert transport.seqs() == [1, 2]
    assert outbox.stats().resent == 5


def test_the_end_to_end_window_bounds_what_waits_for_acks():
    outbox, _, transport, _ = make(max_inflight=2, records=100)
    window = 2 * E2E_WINDOW_FACTOR
    for _ in range(window):  # PUBACKs come back, the aggregator stays silent
        publish_due(outbox, transport)
        puback_all(outbox, transport.sent[-2:])
    assert transport.seqs() == list(range(1, window + 1))
    assert publish_due(outbox, transport) == 0
    outbox.ack(BOOT, 5)
    assert publish_due(outbox, transport) == 2  # the PUBACK bound still applies within the window
    assert transport.seqs()[-2:] == [window + 1, window + 2]


def test_an_ack_covers_everything_of_its_boot_through_its_seq():
    outbox, spool, transport, _ = make(max_inflight=10)
    publish_due(outbox, transport)
    puback_all(outbox, transport.sent)
    outbox.ack(BOOT, 6)
    assert sorted(spool.records) == [7, 8, 9, 10]
    assert (outbox.stats().delivered, outbox.stats().in_flight) == (6, 4)
    outbox.ack(BOOT, 6)  # a repeated ack removes nothing more
    assert outbox.stats().delivered == 6


def test_acks_for_another_boot_leave_this_boots_records():
    spool, transport, clock = FakeSpool(), FakeTransport(), FakeClock()
    spool.add(3, boot="old")
    spool.add(3, boot=BOOT)
    outbox = Outbox(spool, clock, 10)
    publish_due(outbox, transport)
    outbox.ack(BOOT, 5)
    assert sorted(spool.records) == [1, 2, 3, 6]
    outbox.ack("other", 100)
    assert sorted(spool.records) == [1, 2, 3, 6]
    assert outbox.stats().in_flight == 4


def test_every_payload_carries_the_floor_of_its_boot_and_spool_drops_move_it():
    spool, transport, clock = FakeSpool(), FakeTransport(), FakeClock()
    spool.add(2, boot="old")
    spool.add(4, boot=BOOT)
    outbox = Outbox(spool, clock, 2)
    publish_due(outbox, transport)
    assert [(seq, floor) for _, seq, floor in transport.take_sent()] == [(1, 1), (2, 1)]
    spool.drop_oldest(4)  # the full spool dropped 1..4: the aggregator must not wait for 3 and 4
    outbox.restart()
    publish_due(outbox, transport)
    assert [(seq, floor) for _, seq, floor in transport.take_sent()] == [(5, 5), (6, 5)]


def test_a_refused_publish_is_counted_and_stays_in_the_spool(caplog):
    outbox, spool, transport, _ = make(max_inflight=2, records=2)
    publish_due(outbox, transport)
    with caplog.at_level(logging.ERROR):
        outbox.puback(transport.sent[0][0], Refusal("Not authorized", 0x87))
    assert "refused seq 1" in caplog.text and "0x87" in caplog.text
    assert outbox.stats().refused == 1 and outbox.stats().delivered == 0
    assert sorted(spool.records) == [1, 2]


def test_puback_mode_removes_on_puback_and_ignores_acks():
    outbox, spool, transport, _ = make(max_inflight=3, acks=False, records=5)
    assert outbox.window == 3
    publish_due(outbox, transport)
    outbox.ack(BOOT, 5)
    assert len(spool.records) == 5
    puback_all(outbox, transport.take_sent())
    assert sorted(spool.records) == [4, 5]
    assert (outbox.stats().delivered, outbox.stats().in_flight) == (3, 0)
    publish_due(outbox, transport)
    assert transport.seqs() == [4, 5]


def test_pubacks_from_before_a_reconnect_are_ignored():
    outbox, spool, transport, _ = make(max_inflight=2, acks=False, records=2)
    publish_due(outbox, transport)
    stale = transport.take_sent()
    outbox.restart()
    puback_all(outbox, stale)
    assert len(spool.records) == 2 and outbox.stats().delivered == 0


def test_the_guard_is_never_held_across_a_publish():
    class Guard:
        held = False

        def __enter__(self) -> "Guard":
            self.held = True
            return self

        def __exit__(self, *exc: object) -> None:
            self.held = False

    guard = Guard()

    class CheckingTransport(FakeTransport):
        def publish(self, topic: str, payload: bytes) -> Optional[int]:
            assert not guard.held
            return super().publish(topic, payload)

    outbox, _, _, _ = make(max_inflight=3)
    transport = CheckingTransport()
    assert publish_due(outbox, transport, guard) == 3


def test_telemetry_schedule_is_due_once_per_interval():
    clock = FakeClock()
    schedule = TelemetrySchedule(5.0, clock)
    assert not schedule.take()
    clock.now += 5.0
    assert schedule.take() and not schedule.take()
    clock.now += 4.9
    assert not schedule.take()


@pytest.mark.parametrize("enabled", [True, False])
def test_snapshot_schedule_per_camera(enabled):
    clock = FakeClock()
    schedule = SnapshotSchedule(enabled, 60.0, clock)
    assert schedule.due("cam1") is enabled
    schedule.taken("cam1")
    clock.now += 59.0
    assert not schedule.due("cam1")
    assert schedule.due("cam2") is enabled
    clock.now += 1.0
    assert schedule.due("cam1") is enabled
