"""A spool on a tiny filesystem filled to the brim, with a real mosquitto: delivery goes on, the
status says `degraded` while delivered records cannot be deleted, and everything recovers by
itself once space is freed, with nothing accepted lost."""

import json
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from contract import parse_data_message
from edge.delivery.publisher import Publisher
from edge.delivery.spool import Spool, SpoolError
from tests.mqtt_fixtures import Recorder, counts_body, make_config, wait_for

DISK_BYTES = 4 * 1024 * 1024


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(mount_point)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(path: Path) -> None:
    """Write `path` until the filesystem has not one byte left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        for chunk in (4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError:
                pass
    finally:
        os.close(fd)


def status_of(recorder: Recorder) -> dict:
    statuses = recorder.on("/status")
    return json.loads(statuses[-1].payload) if statuses else {}


@pytest.mark.slow
def test_full_disk_degrades_then_recovers_by_itself(tmp_path, tiny_disk, mosquitto_broker):
    config = make_config(
        tmp_path, mosquitto_broker.port, spool={"path": str(tiny_disk / "spool.sqlite")}, stall_timeout_s=1.0
    )
    assert config.mqtt.acks == "auto"  # no aggregator: PUBACK mode, records deleted once the broker has them
    spool = Spool.from_config(config)
    publisher = Publisher(config, spool, "boot-1")
    accepted = [publisher.submit("counts", "cam1", (float(i), i + 1.0), counts_body()) for i in range(20)]
    fill(tiny_disk / "filler")
    with pytest.raises(SpoolError, match="disk full, message not spooled"):
        publisher.submit("counts", "cam1", (20.0, 21.0), counts_body())
    recorder = Recorder(mosquitto_broker, ["va/edge-t/cam1/counts", "va/edge-t/status"])
    publisher.start()
    try:
        # Sending goes on although nothing can be deleted; the status says why delivery is stuck.
        wait_for(lambda: len(recorder.on("/counts")) >= 20)
        wait_for(lambda: status_of(recorder).get("state") == "degraded")
        assert "spool cannot delete" in status_of(recorder)["reason"]
        assert not publisher.healthy()
        assert spool.stats().depth == 20
        (tiny_disk / "filler").unlink()
        wait_for(lambda: spool.stats().depth == 0)
        wait_for(lambda: status_of(recorder).get("state") == "online")
        assert publisher.healthy()
        accepted.append(publisher.submit("counts", "cam1", (21.0, 22.0), counts_body()))
        wait_for(lambda: spool.stats().depth == 0 and len({m.payload for m in recorder.on("/counts")}) >= 21)
        received = {parse_data_message(m.topic, m.payload).envelope.seq for m in recorder.on("/counts")}
        assert set(accepted) <= received
        assert publisher.health().errors == {}  # the sender itself never failed
        assert publisher.health().undeleted == 0
    finally:
        publisher.stop()
        spool.close()
        recorder.close()


@pytest.mark.slow
def test_the_sender_survives_a_spool_that_cannot_be_read_and_resumes(tmp_path, mosquitto_broker, caplog):
    config = make_config(tmp_path, mosquitto_broker.port)
    spool = Spool.from_config(config)
    publisher = Publisher(config, spool, "boot-1")
    recorder = Recorder(mosquitto_broker, ["va/edge-t/cam1/counts"])
    broken = {"on": True}
    real_pending = spool.pending

    def pending(after_seq: int = 0, limit: int = 100):
        if broken["on"]:
            raise SpoolError(f"{spool.path}: spool error, spooled messages not read (disk I/O error)")
        return real_pending(after_seq, limit)

    spool.pending = pending  # type: ignore[method-assign]
    publisher.start()
    try:
        seq = publisher.submit("counts", "cam1", (0.0, 10.0), counts_body())
        wait_for(lambda: publisher.health().errors.get("sending spooled messages", 0) >= 2)
        assert publisher._sender is not None and publisher._sender.is_alive()
        assert caplog.text.count("sending spooled messages failed") == 1  # logged once, counted each time
        broken["on"] = False
        wait_for(lambda: len(recorder.on("/counts")) == 1 and spool.stats().depth == 0)
        message = recorder.on("/counts")[0]
        assert parse_data_message(message.topic, message.payload).envelope.seq == seq
    finally:
        publisher.stop()
        spool.close()
        recorder.close()
