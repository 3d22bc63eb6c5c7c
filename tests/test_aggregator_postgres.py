"""The aggregator on a real PostgreSQL (Debian's package, started here by initdb + pg_ctl in a
temporary directory as a non-root user on a free loopback port): the store's contract, and the
scale test: two replica processes on one shared subscription, 20 devices x 500 messages, one
replica SIGKILLed mid-run (and restarted, as systemd would); every message stored exactly once.
"""

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import pytest
import yaml

from aggregator.postgres_store import PostgresStore
from aggregator.validate import validate_message
from contract import build_data_payload, with_floor
from edge.delivery.publisher import Publisher
from edge.delivery.spool import Spool
from tests.mqtt_fixtures import Mosquitto, counts_body, free_port, make_config, wait_for

PG_BINARIES = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


@dataclass
class Postgres:
    url: str
    directory: Path


def _as_postgres_user(command):
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def postgres_unavailable() -> Optional[str]:
    """Why a PostgreSQL server cannot be started here, or None."""
    if not PG_BINARIES:
        return "PostgreSQL server binaries not installed (Debian: apt-get install postgresql)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: cannot start PostgreSQL as a non-root user"
    return None


@contextmanager
def running_postgres() -> Iterator[Postgres]:
    """initdb + pg_ctl in a temporary directory, as user postgres when run as root."""
    bin_dir = Path(PG_BINARIES[-1])
    directory = Path(tempfile.mkdtemp(prefix="va-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres")
    data, port = directory / "data", free_port()
    user = "va"
    subprocess.run(
        _as_postgres_user([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", user, "--no-sync"]),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
    subprocess.run(
        _as_postgres_user(
            [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(directory / "log"), "-o", options, "-w", "start"]
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield Postgres(f"postgresql://{user}@127.0.0.1:{port}/postgres", directory)
    finally:
        stop = [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]
        subprocess.run(_as_postgres_user(stop), capture_output=True)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres():
    reason = postgres_unavailable()
    if reason:
        pytest.skip(reason)
    with running_postgres() as server:
        yield server


@pytest.fixture
def pg_store(postgres):
    store = PostgresStore(postgres.url)
    with store.transaction() as tx:
        for table in ("messages", "progress", "quarantine", "devices", "snapshots"):
            tx.execute(f"DELETE FROM {table}")
    yield store
    store.close()


def message(seq, device="d1", boot="b1", floor=None):
    window = (seq * 10.0, seq * 10.0 + 10)
    payload = build_data_payload("counts", device, "cam1", boot, seq, window, counts_body())
    return validate_message(f"va/{device}/cam1/counts", with_floor(payload, floor) if floor else payload)


def test_postgres_store_is_idempotent_and_walks_the_watermark(pg_store):
    assert pg_store.schema_version() == 1
    first = pg_store.store_batch([message(1), message(2), message(4)], [], 100.0)
    assert (first.stored, first.duplicates, first.watermarks) == (3, 0, {("d1", "b1"): 2})
    poison = validate_message("va/d1/cam1/counts", b'{"v":2,"boot":"b1","seq":3}')
    again = pg_store.store_batch([message(2)], [poison], 101.0)
    assert (again.stored, again.duplicates, again.quarantined, again.watermarks) == (0, 1, 1, {("d1", "b1"): 4})
    assert pg_store.seqs("d1") == [1, 2, 4]
    assert [q.seq for q in pg_store.quarantined("d1")] == [3]
    assert pg_store.store_batch([message(9, floor=9)], [], 102.0).watermarks == {("d1", "b1"): 9}
    assert [d.device for d in pg_store.devices()] == ["d1"]


class QueueBroker(Mosquitto):
    """mosquitto with the deployment's queue for the aggregator (fleet replays)."""

    def write_config(self) -> None:
        super().write_config()
        with open(self.config_path, "a") as config:
            config.write("max_queued_messages 20000\n")


def start_replica(tmp_path: Path, name: str, broker: Mosquitto, url: str) -> subprocess.Popen:
    config = {
        "mqtt": {"host": broker.host, "port": broker.port, "client_id": name, "share_group": "aggregators"},
        "database": {"url": url},
        "http": {"enabled": False},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    log = open(tmp_path / f"{name}.log", "a")
    return subprocess.Popen([sys.executable, "-m", "aggregator.cli", "run", "-c", str(path)], stdout=log, stderr=log)


@pytest.mark.slow
def test_two_replicas_on_postgres_store_every_message_exactly_once(tmp_path, postgres, pg_store):
    devices, per_device = 20, 500
    broker = QueueBroker(workdir=tmp_path / "broker")
    broker.start()
    replicas = {}
    publishers = []
    # The devices' spools on tmpfs: 10,000 durable submits on disk would dominate the run.
    spools = Path(tempfile.mkdtemp(prefix="va-spools-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    try:
        for name in ("agg-1", "agg-2"):
            replicas[name] = start_replica(tmp_path, name, broker, postgres.url)
        expected = {}
        for d in range(devices):
            config = make_config(
                spools, broker.port, device_id=f"dev-{d:02d}", ack_timeout_s=5.0, max_inflight=50, acks=True
            )
            publisher = Publisher(config, Spool.from_config(config), f"boot{d}")
            expected[config.device_id] = [
                publisher.submit("counts", "cam1", (10.0 * i, 10.0 * i + 10), counts_body(frames=i))
                for i in range(per_device)
            ]
            publishers.append(publisher)
        time.sleep(2.0)  # both replicas subscribed
        started = time.monotonic()
        for publisher in publishers:
            publisher.start()
        wait_for(lambda: pg_store.count_messages() >= devices * per_device // 3, 60)
        replicas["agg-1"].send_signal(signal.SIGKILL)
        replicas["agg-1"].wait(10)
        killed_at = pg_store.count_messages()
        time.sleep(1.0)
        replicas["agg-1"] = start_replica(tmp_path, "agg-1", broker, postgres.url)
        for publisher in publishers:
            assert publisher.wait_drained(max(1.0, 80 - (time.monotonic() - started))), publisher.stats()
        elapsed = time.monotonic() - started
        assert killed_at < devices * per_device
        for device, seqs in expected.items():
            assert pg_store.seqs(device) == seqs, device
        assert pg_store.count_messages() == devices * per_device
        print(f"stored {devices * per_device} messages through 2 replicas in {elapsed:.1f} s")
    finally:
        for publisher in publishers:
            publisher.stop(timeout_s=1.0)
        for process in replicas.values():
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        broker.stop(signal.SIGKILL)
        shutil.rmtree(spools, ignore_errors=True)
    for name in replicas:
        log = (tmp_path / f"{name}.log").read_text()
        assert "Traceback" not in log, log[-3000:]

