"""Broker security against a real mosquitto: the per-device ACL and mutual TLS."""

import logging
import subprocess

import pytest

from aggregator.ingest import IngestTls
from edge.core.errors import ConfigError
from edge.delivery.publisher import Publisher
from edge.delivery.spool import Spool
from tests.mqtt_fixtures import BrokerTls, counts_body, make_config, make_tls_material, wait_for

ACL = """\
user aggregator
topic read va/#
topic write va/+/ack

pattern write va/%u/#
pattern read va/%u/ack
"""


@pytest.fixture
def secured_broker(tmp_path, mosquitto_factory):
    passwords = tmp_path / "passwd"
    for i, (user, password) in enumerate((("edge-a", "a-secret"), ("aggregator", "agg-secret"))):
        flags = ["-b", "-c"] if i == 0 else ["-b"]
        subprocess.run(["mosquitto_passwd", *flags, str(passwords), user, password], check=True)
    (tmp_path / "acl").write_text(ACL)
    (tmp_path / "edge-a.password").write_text("a-secret\n")
    return mosquitto_factory(password_file=passwords, acl_file=tmp_path / "acl")


def submit_some(publisher, count=5):
    return [
        publisher.submit("counts", "cam1", (10.0 * i, 10.0 * i + 10), counts_body()) for i in range(count)
    ]


def test_publishing_under_another_devices_prefix_is_refused_and_counted(tmp_path, secured_broker, caplog):
    # Authenticated as edge-a, but configured as edge-b: every data topic is outside va/edge-a/#.
    config = make_config(
        tmp_path,
        secured_broker.port,
        device_id="edge-b",
        username="edge-a",
        password_file=tmp_path / "edge-a.password",
    )
    publisher = Publisher(config, Spool.from_config(config), "boot-1")
    with caplog.at_level(logging.ERROR, logger="edge.delivery.publisher"):
        publisher.start()
        submit_some(publisher)
        wait_for(lambda: publisher.stats().refused >= 5)
    stats = publisher.stats()
    publisher.stop()
    assert stats.delivered == 0 and stats.spool_depth == 5  # never reported delivered, kept
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refusals and "Not authorized" in refusals[0] and "0x87" in refusals[0]
    assert "va/edge-b/cam1/counts" in refusals[0]


def test_the_same_device_under_its_own_prefix_is_delivered(tmp_path, secured_broker, ingest_factory):
    ingest = ingest_factory(secured_broker, username="aggregator", password="agg-secret")
    config = make_config(
        tmp_path,
        secured_broker.port,
        device_id="edge-a",
        username="edge-a",
        password_file=tmp_path / "edge-a.password",
    )
    publisher = Publisher(config, Spool.from_config(config), "boot-1")
    publisher.start()
    seqs = submit_some(publisher)
    assert publisher.wait_drained(20), publisher.stats()
    stats = publisher.stats()
    publisher.stop()
    assert stats.refused == 0 and stats.delivered == 5
    assert ingest.store.seqs("edge-a") == seqs


@pytest.fixture(scope="module")
def tls_material(tmp_path_factory):
    return make_tls_material(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_broker(mosquitto_factory, tls_material):
    tls = BrokerTls(
        tls_material.ca_file, tls_material.server_cert, tls_material.server_key, require_certificate=True
    )
    return mosquitto_factory(tls=tls)


def tls_config(tmp_path, broker, material, ca_file=None):
    tls = {"ca_file": str(ca_file or material.ca_file)}
    tls.update(cert_file=str(material.client_cert), key_file=str(material.client_key))
    return make_config(tmp_path, broker.port, tls=tls)


def test_tls_with_client_certificates_delivers(tmp_path, tls_broker, tls_material, ingest_factory):
    ingest = ingest_factory(
        tls_broker, tls=IngestTls(tls_material.ca_file, tls_material.client_cert, tls_material.client_key)
    )
    config = tls_config(tmp_path, tls_broker, tls_material)
    publisher = Publisher(config, Spool.from_config(config), "boot-1")
    publisher.start()
    seqs = submit_some(publisher)
    assert publisher.wait_drained(20), publisher.stats()
    publisher.stop()
    assert ingest.store.seqs("edge-t") == seqs


def test_wrong_ca_is_a_one_line_error_naming_the_file(tmp_path, tls_broker, tls_material):
    config = tls_config(tmp_path, tls_broker, tls_material, ca_file=tls_material.other_ca_file)
    publisher = Publisher(config, Spool.from_config(config), "boot-1")
    with pytest.raises(ConfigError) as error:
        publisher.start()
    message = str(error.value)
    assert "\n" not in message and str(tls_material.other_ca_file) in message
    assert "certificate" in message


def test_missing_tls_file_is_a_config_error(tmp_path, tls_broker, tls_material):
    config = tls_config(tmp_path, tls_broker, tls_material, ca_file=tmp_path / "nope.crt")
    with pytest.raises(ConfigError, match="nope.crt: TLS file not found"):
        Publisher(config, Spool.from_config(config), "boot-1")
