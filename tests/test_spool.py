import sqlite3
import threading

import pytest

from edge.delivery.spool import ROW_OVERHEAD_BYTES, Spool, SpoolError, SpoolFullError

TOPIC = "va/d/c/counts"


def record_size(payload: bytes) -> int:
    return len(payload) + len(TOPIC) + ROW_OVERHEAD_BYTES


def test_seq_is_assigned_committed_and_continues_after_reopen(tmp_path):
    spool = Spool(tmp_path / "s.sqlite", 1 << 20)
    seqs = [spool.append("counts", TOPIC, "b1", lambda seq: b"payload %d" % seq) for _ in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    assert spool.ack_through("b1", 5) == 5
    spool.close()
    # A second connection sees every committed record without the first being closed cleanly.
    reopened = Spool(tmp_path / "s.sqlite", 1 << 20)
    assert reopened.append("counts", TOPIC, "b2", b"x") == 6
    assert [r.payload for r in reopened.pending()] == [b"x"]


def test_pending_pages_oldest_first(tmp_path):
    spool = Spool(tmp_path / "s.sqlite", 1 << 20)
    for i in range(10):
        spool.append("counts", TOPIC, "b1", b"%d" % i)
    page = spool.pending(after_seq=3, limit=4)
    assert [r.seq for r in page] == [4, 5, 6, 7]
    assert page[0].payload == b"3" and page[0].boot == "b1" and page[0].topic == TOPIC


def test_ack_through_only_removes_its_boot(tmp_path):
    spool = Spool(tmp_path / "s.sqlite", 1 << 20)
    for boot in ("b1", "b1", "b2", "b2"):
        spool.append("counts", TOPIC, boot, b"p")
    assert spool.ack_through("b2", 2) == 0  # seqs 1 and 2 are b1's: b2's ack does not cover them
    assert spool.floors(["b1", "b2"]) == {"b1": 1, "b2": 3}
    assert spool.ack_through("b1", 10) == 2
    assert spool.floors(["b1", "b2"]) == {"b2": 3}
    assert spool.remove(4) == 1 and spool.remove(4) == 0
    assert spool.stats().depth == 1 and spool.stats().bytes == record_size(b"p")


def test_drop_oldest_counts_every_drop_and_persists_the_count(tmp_path):
    payload = b"x" * 100
    cap = record_size(payload) * 5
    spool = Spool(tmp_path / "s.sqlite", cap, "drop_oldest")
    for _ in range(8):
        spool.append("counts", TOPIC, "b1", payload)
    stats = spool.stats()
    assert [r.seq for r in spool.pending(limit=100)] == [4, 5, 6, 7, 8]
    assert (stats.dropped, stats.depth, stats.bytes) == (3, 5, cap)
    spool.close()
    assert Spool(tmp_path / "s.sqlite", cap).stats().dropped == 3


def test_reject_new_keeps_the_old_and_counts(tmp_path):
    payload = b"x" * 100
    spool = Spool(tmp_path / "s.sqlite", record_size(payload) * 2, "reject_new")
    spool.append("counts", TOPIC, "b1", payload)
    spool.append("counts", TOPIC, "b1", payload)
    with pytest.raises(SpoolFullError, match="reject_new"):
        spool.append("counts", TOPIC, "b1", payload)
    assert [r.seq for r in spool.pending()] == [1, 2]
    assert spool.stats().dropped == 1
    # The refused record's seq is not reused: seqs stay strictly increasing.
    spool.ack_through("b1", 2)
    assert spool.append("counts", TOPIC, "b1", payload) == 3


def test_disk_full_is_a_clear_error_and_keeps_accepted_records(tmp_path):
    path = tmp_path / "s.sqlite"
    spool = Spool(path, 1 << 30)
    accepted = [spool.append("counts", TOPIC, "b1", b"y" * 1000) for _ in range(3)]
    # SQLite reports a page-count limit exactly like a full disk (SQLITE_FULL).
    pages = spool._db.execute("PRAGMA page_count").fetchone()[0]
    spool._db.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(SpoolError, match="disk full"):
        for _ in range(100):
            spool.append("counts", TOPIC, "b1", b"z" * 5000)
    spool.close()
    db = sqlite3.connect(str(path))
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    kept = [row[0] for row in db.execute("SELECT seq FROM outbox ORDER BY seq")]
    assert kept[: len(accepted)] == accepted


def test_concurrent_append_and_remove(tmp_path):
    spool = Spool(tmp_path / "s.sqlite", 1 << 24)
    done = threading.Event()
    removed = []

    def consumer():
        while not done.is_set() or spool.stats().depth:
            for record in spool.pending(limit=10):
                removed.append(spool.remove(record.seq))

    thread = threading.Thread(target=consumer)
    thread.start()
    seqs = [spool.append("counts", TOPIC, "b1", b"p") for _ in range(200)]
    done.set()
    thread.join(20)
    assert seqs == list(range(1, 201))
    assert sum(removed) == 200 and spool.stats().depth == 0
