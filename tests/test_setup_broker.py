"""deployment/mosquitto against a real mosquitto: add-device.sh gives a device credentials and its
ACL line; the shipped ACL lets the device publish only under its own prefix (and its Home
Assistant discovery node), the aggregator ack, and refuses another device's prefix."""

import subprocess
from pathlib import Path

from edge.delivery.publisher import Publisher
from edge.delivery.spool import Spool
from tests.mqtt_fixtures import counts_body, make_config, wait_for

ROOT = Path(__file__).resolve().parent.parent
ADD_DEVICE = ROOT / "deployment/mosquitto/add-device.sh"


def add_device(conf: Path, device: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ADD_DEVICE), "--conf-dir", str(conf), "--out", str(conf / device), *extra, device],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_add_device_is_idempotent_and_refuses_bad_ids(tmp_path: Path) -> None:
    (tmp_path / "video-analysis.acl").write_text((ROOT / "deployment/mosquitto/video-analysis.acl").read_text())
    first = add_device(tmp_path, "edge-a")
    assert first.returncode == 0, first.stderr
    password = (tmp_path / "edge-a/mqtt-password").read_text().strip()
    assert len(password) >= 20
    acl = (tmp_path / "video-analysis.acl").read_text()
    assert "user edge-a\ntopic write homeassistant/sensor/va_edge-a/#\n" in acl
    again = add_device(tmp_path, "edge-a")
    assert again.returncode == 0 and "password kept" in again.stdout
    assert (tmp_path / "video-analysis.acl").read_text() == acl
    assert (tmp_path / "edge-a/mqtt-password").read_text().strip() == password
    for bad in ("va/#", "aggregator", "x" * 65):
        refused = add_device(tmp_path, bad)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1


def test_shipped_acl_with_an_added_device(tmp_path: Path, mosquitto_factory, ingest_factory) -> None:
    conf = tmp_path / "mosquitto"
    conf.mkdir()
    (conf / "video-analysis.acl").write_text((ROOT / "deployment/mosquitto/video-analysis.acl").read_text())
    assert add_device(conf, "edge-a").returncode == 0
    passwd = conf / "video-analysis.passwd"
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "aggregator", "agg-secret"], check=True)
    broker = mosquitto_factory(password_file=passwd, acl_file=conf / "video-analysis.acl")
    ingest = ingest_factory(broker, username="aggregator", password="agg-secret")

    own = make_config(tmp_path, broker.port, device_id="edge-a", username="edge-a",
                      password_file=conf / "edge-a/mqtt-password")
    publisher = Publisher(own, Spool.from_config(own), "boot-1")
    publisher.start()
    seqs = [publisher.submit("counts", "cam1", (10.0 * i, 10.0 * i + 10), counts_body()) for i in range(3)]
    assert publisher.wait_drained(20), publisher.stats()
    assert publisher.stats().refused == 0
    publisher.stop()
    assert ingest.store.seqs("edge-a") == seqs  # delivered, and acked by the aggregator user

    other = make_config(tmp_path, broker.port, device_id="edge-b", username="edge-a",
                        password_file=conf / "edge-a/mqtt-password")
    spoofing = Publisher(other, Spool.from_config(other), "boot-1")
    spoofing.start()
    spoofing.submit("counts", "cam1", (0.0, 10.0), counts_body())
    wait_for(lambda: spoofing.stats().refused >= 1)
    spoofing.stop()
