"""Poison records and database faults against a real mosquitto and the real edge publisher:
a refused record is quarantined and passed by the watermark; a full disk and a read-only
filesystem (a real tmpfs, remounted) stop storing without losing anything acknowledged, show in
the health state and /healthz, and storing resumes when the fault clears."""

import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from aggregator.api import create_app
from aggregator.ingest import Ingest, IngestSettings
from aggregator.server import start_http
from aggregator.sqlite_store import SqliteStore
from contract import parse_ack
from edge.delivery.publisher import Publisher
from edge.delivery.spool import Spool
from tests.mqtt_fixtures import Recorder, counts_body, make_config, wait_for
from tests.test_ingest_fuzz import raw_client


def counts(seq, boot="b1", **extra):
    body = {"v": 1, "device": "edge-t", "camera": "cam1", "boot": boot, "seq": seq, "window": [seq, seq + 1]}
    return json.dumps({**body, **counts_body(), **extra}).encode()


def test_a_poison_record_does_not_block_the_records_after_it(mosquitto_broker, ingest_factory):
    ingest = ingest_factory(mosquitto_broker)
    acks = Recorder(mosquitto_broker, ["va/edge-t/ack"])
    device = raw_client(mosquitto_broker, "edge-t")
    device.publish("va/edge-t/cam1/counts", counts(1), qos=1).wait_for_publish(5)
    # A device upgraded to a newer wire version, and a body with a key this server does not know.
    device.publish("va/edge-t/cam1/counts", counts(2, v=2), qos=1).wait_for_publish(5)
    device.publish("va/edge-t/cam1/counts", counts(3, mood="happy"), qos=1).wait_for_publish(5)
    device.publish("va/edge-t/cam1/counts", counts(4), qos=1).wait_for_publish(5)
    wait_for(lambda: ingest.store.seqs("edge-t") == [1, 4])
    wait_for(lambda: any(parse_ack(m.payload).seq == 4 for m in acks.on("/ack")))
    quarantined = sorted(ingest.store.quarantined(device="edge-t"), key=lambda q: q.seq)
    assert [(q.seq, q.reason) for q in quarantined] == [(2, "bad_version"), (3, "bad_body")]
    assert "mood" in quarantined[1].detail
    # Later records are stored and acknowledged too.
    device.publish("va/edge-t/cam1/counts", counts(5), qos=1).wait_for_publish(5)
    wait_for(lambda: any(parse_ack(m.payload).seq == 5 for m in acks.on("/ack")))
    device.disconnect()
    device.loop_stop()
    acks.close()


def test_the_edge_publisher_drains_past_a_poison_record(tmp_path, mosquitto_broker, ingest_factory):
    """The real device: a record the server refuses is settled, so the spool drains."""
    ingest = ingest_factory(mosquitto_broker)
    config = make_config(tmp_path, mosquitto_broker.port, acks=True)
    publisher = Publisher(config, Spool.from_config(config), "boot-1")
    poisoned = {**counts_body(), "lines": {"door": {"in": 1, "out": 0, "sideways": 3}}}
    seqs = [publisher.submit("counts", "cam1", (i, i + 1.0), poisoned if i == 1 else counts_body()) for i in range(4)]
    publisher.start()
    assert publisher.wait_drained(20), publisher.stats()
    publisher.stop()
    assert ingest.store.seqs("edge-t") == [seqs[0], seqs[2], seqs[3]]
    assert [q.seq for q in ingest.store.quarantined(device="edge-t")] == [seqs[1]]


@pytest.fixture
def small_fs(tmp_path):
    """A 4 MB tmpfs of its own, so the test can fill it up or remount it read-only."""
    mount = tmp_path / "fs"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path) -> Path:
    """Fill the filesystem holding `path` until a write fails."""
    filler = path / "filler"
    with open(filler, "wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return filler


def start_ingest(broker, db: Path) -> Ingest:
    ingest = Ingest(
        SqliteStore(db), broker.host, broker.port, client_id="aggregator", settings=IngestSettings(retry_max_s=0.5)
    )
    ingest.start()
    assert ingest.wait_subscribed(10)
    return ingest


def healthz(url: str):
    """(HTTP status, database_ok) of the aggregator's /healthz."""
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=10) as response:
            return response.status, json.loads(response.read())["database_ok"]
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())["database_ok"]


def run_fault(tmp_path, broker, small_fs, make_fault, clear_fault, holder=None):
    ingest = start_ingest(broker, small_fs / "aggregator.sqlite")
    http = start_http(create_app(ingest.store, ingest, None), "127.0.0.1", 0)
    if holder is not None:
        holder["ingest"] = ingest
    config = make_config(tmp_path, broker.port, ack_timeout_s=1.0, acks=True)
    publisher = Publisher(config, Spool.from_config(config), "boot-1")
    publisher.start()
    try:
        before = [publisher.submit("counts", "cam1", (i, i + 1.0), counts_body()) for i in range(5)]
        assert publisher.wait_drained(20)
        fault = make_fault()
        during = [publisher.submit("counts", "cam1", (i, i + 1.0), counts_body(frames=5000)) for i in range(5, 40)]
        health = wait_for(lambda: (h := ingest.health()) and not h.database_ok and h)
        assert health.database_error and not health.ok and health.writer_alive
        assert ingest.stats().db_errors >= 1
        assert healthz(http.url) == (503, False)
        # Nothing acknowledged while the database is down: the device keeps it all.
        assert publisher.stats().spool_depth == len(during)
        clear_fault(fault)
        assert publisher.wait_drained(30), publisher.stats()
        wait_for(lambda: ingest.health().database_ok)
        assert ingest.store.seqs("edge-t") == before + during
        assert healthz(http.url) == (200, True)
    finally:
        http.stop()
        publisher.stop()
        ingest.stop()
        ingest.store.close()


def test_a_full_disk_loses_nothing_and_storing_resumes(tmp_path, mosquitto_broker, small_fs):
    run_fault(tmp_path, mosquitto_broker, small_fs, lambda: fill(small_fs), lambda filler: filler.unlink())


def test_a_read_only_database_loses_nothing_and_storing_resumes(tmp_path, mosquitto_broker, small_fs):
    """SQLITE_READONLY on the writer connection. A filesystem with the database open for writing
    cannot be remounted read-only here (EBUSY), so `PRAGMA query_only` makes SQLite itself refuse
    every write with the same error a read-only database gives."""
    holder = {}

    def set_query_only(on: bool):
        store = holder["ingest"].store
        with store._write_lock:
            store._db.execute(f"PRAGMA query_only={int(on)}")

    run_fault(
        tmp_path, mosquitto_broker, small_fs, lambda: set_query_only(True), lambda _: set_query_only(False), holder
    )

