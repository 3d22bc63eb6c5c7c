"""The sender's failure handling without a broker: ack modes, checked acks, a spool that cannot
delete, stalls, faults logged once, a corrupt spool file, spool error texts (fake clock)."""

import logging
from typing import List

import pytest

from edge.commands.cli import main
from edge.core.errors import ConfigError
from edge.delivery.faults import Backoff, FaultLog
from edge.delivery.outbox import ACKS_AUTO, Outbox, publish_due
from edge.delivery.spool import Spool, SpoolError
from tests.mqtt_fixtures import make_config
from tests.test_outbox import BOOT, FakeClock, FakeSpool, FakeTransport, puback_all


class BrokenDeleteSpool(FakeSpool):
    """A spool on a full disk: reads work, deletes fail until `full` is cleared."""

    def __init__(self) -> None:
        super().__init__()
        self.full = False

    def ack_through(self, boot: str, seq: int) -> int:
        if self.full:
            raise SpoolError("spool.sqlite: disk full, delivered messages not deleted")
        return super().ack_through(boot, seq)

    def remove(self, seq: int) -> int:
        if self.full:
            raise SpoolError("spool.sqlite: disk full, delivered messages not deleted")
        return super().remove(seq)


def test_auto_mode_uses_pubacks_until_the_first_valid_aggregator_ack():
    spool, transport, clock = FakeSpool(), FakeTransport(), FakeClock()
    spool.add(6)
    remembered: List[bool] = []
    outbox = Outbox(spool, clock, 3, acks=ACKS_AUTO, on_aggregator=lambda: remembered.append(True))
    assert not outbox.stats().end_to_end and outbox.window == 3
    publish_due(outbox, transport)
    puback_all(outbox, transport.take_sent())
    assert sorted(spool.records) == [4, 5, 6]  # PUBACK mode: gone once the broker has them
    publish_due(outbox, transport)
    outbox.ack(BOOT, 4)  # an aggregator shows up
    assert remembered == [True] and outbox.stats().end_to_end and outbox.window == 30
    assert sorted(spool.records) == [5, 6]
    puback_all(outbox, transport.take_sent())
    assert sorted(spool.records) == [5, 6]  # end-to-end now: a PUBACK no longer deletes


def test_auto_mode_starts_end_to_end_when_an_aggregator_acked_before():
    spool, clock = FakeSpool(), FakeClock()
    outbox = Outbox(spool, clock, 3, acks=ACKS_AUTO, aggregator_seen=True)
    assert outbox.stats().end_to_end


def test_an_ack_beyond_what_was_sent_deletes_nothing_and_is_counted(caplog):
    spool = FakeSpool()
    spool.add(300)
    transport, clock = FakeTransport(), FakeClock()
    outbox = Outbox(spool, clock, 5, acks=True)
    publish_due(outbox, transport)  # seqs 1..5 sent
    with caplog.at_level(logging.WARNING):
        outbox.ack(BOOT, 1_000_000_000)  # forged: read the boot id from the status, ack everything
        outbox.ack("another-boot", 1)  # nothing of that boot was sent by this process
    assert len(spool.records) == 300
    assert outbox.stats().forged_acks == 2 and outbox.stats().delivered == 0
    assert "ignoring an ack" in caplog.text
    outbox.ack(BOOT, 5)  # a genuine ack still works
    assert len(spool.records) == 295


def test_a_forged_ack_does_not_switch_auto_mode_to_end_to_end():
    spool, transport, clock = FakeSpool(), FakeTransport(), FakeClock()
    spool.add(3)
    outbox = Outbox(spool, clock, 3, acks=ACKS_AUTO)
    publish_due(outbox, transport)
    outbox.ack(BOOT, 99)
    assert not outbox.stats().end_to_end and outbox.stats().forged_acks == 1


def test_a_spool_that_cannot_delete_keeps_sending_and_deletes_once_it_can():
    spool, transport, clock = BrokenDeleteSpool(), FakeTransport(), FakeClock()
    spool.add(4)
    outbox = Outbox(spool, clock, 2, acks=False, stall_s=60.0)
    spool.full = True
    for _ in range(2):
        publish_due(outbox, transport)
        puback_all(outbox, transport.sent[-2:])
    assert transport.seqs() == [1, 2, 3, 4]  # the failed deletions did not stop the sending
    assert outbox.stats().undeleted == 4 and len(spool.records) == 4
    spool.add(2)
    outbox.restart()  # a reconnect: the undeleted ones are not sent again, the new ones are
    transport.take_sent()
    publish_due(outbox, transport)
    assert transport.seqs() == [5, 6]
    puback_all(outbox, transport.take_sent())
    clock.now += 61.0
    assert "spool cannot delete" in (outbox.stalled() or "")
    spool.full = False  # space freed: the retry (after its back-off) deletes them
    publish_due(outbox, transport)
    assert spool.records == {} and outbox.stats().delivered == 6 and outbox.stats().undeleted == 0
    assert outbox.stalled() is None


def test_end_to_end_acks_whose_deletion_fails_are_retried_with_back_off():
    spool, transport, clock = BrokenDeleteSpool(), FakeTransport(), FakeClock()
    spool.add(3)
    outbox = Outbox(spool, clock, 3, acks=True)
    publish_due(outbox, transport)
    puback_all(outbox, transport.take_sent())
    spool.full = True
    outbox.ack(BOOT, 3)
    assert outbox.stats().in_flight == 0 and outbox.stats().undeleted == 1
    spool.full = False
    publish_due(outbox, transport)  # within the back-off: no retry yet
    assert len(spool.records) == 3
    clock.now += 1.0
    publish_due(outbox, transport)
    assert spool.records == {} and outbox.stats().delivered == 3
    assert transport.seqs() == []  # acknowledged records were never sent twice


def test_no_progress_while_messages_wait_is_a_stall_and_a_reconnect_restarts_the_count():
    spool, transport, clock = FakeSpool(), FakeTransport(), FakeClock()
    spool.add(3)
    outbox = Outbox(spool, clock, 3, acks=True, ack_timeout_s=1000.0, stall_s=120.0)
    publish_due(outbox, transport)
    clock.now += 119.0
    assert outbox.stalled() is None
    clock.now += 1.0
    assert "no acknowledgement from the aggregator for 120 s" in (outbox.stalled() or "")
    outbox.restart()  # disconnected: nothing is expected of the broker meanwhile
    assert outbox.stalled() is None
    clock.now += 10.0
    outbox.ack(BOOT, 3)
    clock.now += 500.0
    publish_due(outbox, transport)  # nothing waits: idle is not a stall
    assert outbox.stalled() is None


def test_an_idle_outbox_never_stalls():
    spool, transport, clock = FakeSpool(), FakeTransport(), FakeClock()
    outbox = Outbox(spool, clock, 3, acks=ACKS_AUTO, stall_s=10.0)
    clock.now += 100.0
    publish_due(outbox, transport)
    assert outbox.stalled() is None


def test_fault_log_logs_a_kind_once_until_it_works_again(caplog):
    faults = FaultLog()
    with caplog.at_level(logging.INFO):
        for _ in range(5):
            faults.failed("sending", OSError("boom"))
        faults.failed("telemetry", ValueError("bad"))
        faults.worked("sending")
        faults.failed("sending", OSError("boom"))
    assert caplog.text.count("sending failed: boom") == 2
    assert "works again after 5 failed attempt(s)" in caplog.text
    assert faults.counts == {"sending": 6, "telemetry": 1}


def test_backoff_doubles_up_to_its_maximum():
    clock = FakeClock()
    backoff = Backoff(clock, min_s=1.0, max_s=4.0)
    delays = []
    for _ in range(4):
        backoff.failed()
        start = clock.now
        while not backoff.ready():
            clock.now += 0.5
        delays.append(clock.now - start)
    assert delays == [1.0, 2.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.ready()


def test_a_corrupt_spool_is_moved_aside_and_a_new_one_started(tmp_path, caplog):
    path = tmp_path / "spool.sqlite"
    path.write_bytes(b"this is not an SQLite database" * 100)
    with caplog.at_level(logging.ERROR):
        spool = Spool(path, 1_000_000, clock=lambda: 1700000000.0)
    assert spool.quarantined == tmp_path / "spool.sqlite.corrupt-1700000000"
    assert spool.quarantined.read_bytes().startswith(b"this is not")  # kept for inspection
    assert "spool is corrupt" in caplog.text and "moved aside" in caplog.text
    assert spool.append("counts", "va/d/c/counts", "b", b"{}") == 1
    spool.close()


def test_a_failed_delete_says_so(tmp_path):
    spool = Spool(tmp_path / "spool.sqlite", 1_000_000)
    spool.append("counts", "va/d/c/counts", "b", b"{}")
    spool._db.execute("PRAGMA query_only = ON")  # stands in for a disk that refuses writes
    with pytest.raises(SpoolError) as raised:
        spool.remove(1)
    message = str(raised.value)
    assert "delivered messages not deleted" in message and "not spooled" not in message
    spool.close()


def test_the_aggregator_flag_survives_a_restart(tmp_path):
    spool = Spool(tmp_path / "spool.sqlite", 1_000_000)
    assert not spool.aggregator_seen
    spool.mark_aggregator_seen()
    spool.close()
    reopened = Spool(tmp_path / "spool.sqlite", 1_000_000)
    assert reopened.aggregator_seen
    reopened.close()


@pytest.mark.parametrize("value", ["auto", True, False])
def test_acks_config_accepts_auto_true_false(tmp_path, value):
    assert make_config(tmp_path, 1883, acks=value).mqtt.acks == value


def test_acks_config_rejects_anything_else_in_one_line(tmp_path):
    with pytest.raises(ConfigError) as raised:
        make_config(tmp_path, 1883, acks="sometimes")
    assert "mqtt.acks" in str(raised.value) and "\n" not in str(raised.value)



@pytest.mark.parametrize(
    "mqtt_yaml, names",
    [("acks: sometimes", "mqtt.acks"), ("stall_timeout_s: 0", "mqtt.stall_timeout_s")],
)
def test_check_config_refuses_bad_delivery_settings_with_exit_2(tmp_path, capsys, mqtt_yaml, names):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"cameras:\n  - id: cam\n    source: x.mp4\nmqtt:\n  {mqtt_yaml}\n")
    assert main(["check-config", "-c", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and names in err and str(bad) in err
