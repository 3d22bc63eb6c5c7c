"""A real mosquitto for tests: started on a free loopback port with a temporary config.

Import the fixtures into a test module (`from tests.mqtt_fixtures import mosquitto_broker`), or
list this module in a conftest's `pytest_plugins`.
"""

import base64
import getpass
import shutil
import signal
import socket
import subprocess
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from aggregator.ingest import Ingest
from aggregator.sqlite_store import SqliteStore
from edge.config import Config, parse_config

MOSQUITTO = "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout_s: float = 20.0, interval_s: float = 0.05) -> Any:
    """Poll until `predicate()` is truthy; fail the test with the last value on timeout."""
    deadline = time.monotonic() + timeout_s
    value = predicate()
    while not value:
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s (last value {value!r})")
        time.sleep(interval_s)
        value = predicate()
    return value


@dataclass
class BrokerTls:
    ca_file: Path
    cert_file: Path
    key_file: Path
    require_certificate: bool = True


@dataclass
class Mosquitto:
    """One mosquitto process; `stop` and `start` again keep the port, like a broker restart."""

    workdir: Path
    port: int = field(default_factory=free_port)
    persistence: bool = False
    password_file: Optional[Path] = None
    acl_file: Optional[Path] = None
    tls: Optional[BrokerTls] = None
    host: str = "127.0.0.1"
    process: Optional["subprocess.Popen[bytes]"] = None

    @property
    def config_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    def write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Run as whoever runs the tests: as root mosquitto would switch to user "mosquitto",
        # which cannot write the log or persistence files in the test's temp directory.
        lines = [f"user {getpass.getuser()}", f"listener {self.port} {self.host}"]
        lines.append("allow_anonymous " + ("false" if self.password_file else "true"))
        if self.password_file:
            lines.append(f"password_file {self.password_file}")
        if self.acl_file:
            lines.append(f"acl_file {self.acl_file}")
        if self.tls:
            lines += [
                f"cafile {self.tls.ca_file}",
                f"certfile {self.tls.cert_file}",
                f"keyfile {self.tls.key_file}",
                f"require_certificate {'true' if self.tls.require_certificate else 'false'}",
            ]
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.workdir}/", "autosave_interval 1"]
        else:
            lines.append("persistence false")
        lines.append(f"log_dest file {self.workdir / 'mosquitto.log'}")
        lines.append("log_type all")
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        self.write_config()
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config_path)], stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.process.returncode}: {self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"mosquitto did not listen on {self.port}: {self.log_tail()}"
                    ) from None
                time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        self.process.send_signal(sig)
        self.process.wait(10)
        self.process = None

    def log_tail(self, lines: int = 20) -> str:
        path = self.workdir / "mosquitto.log"
        return "\n".join(path.read_text().splitlines()[-lines:]) if path.exists() else "(no log)"


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """Make (and start) brokers with options; all are stopped at the end of the test."""
    brokers: List[Mosquitto] = []

    def make(name: str = "broker", start: bool = True, **options: Any) -> Mosquitto:
        broker = Mosquitto(workdir=tmp_path / name, **options)
        brokers.append(broker)
        if start:
            broker.start()
        return broker

    yield make
    for broker in brokers:
        broker.stop(signal.SIGKILL)


@pytest.fixture
def mosquitto_broker(mosquitto_factory: Callable[..., Mosquitto]) -> Mosquitto:
    """A plain anonymous broker without persistence."""
    return mosquitto_factory()


def make_config(
    tmp_path: Path,
    port: int,
    device_id: str = "edge-t",
    cameras: Optional[List[Dict[str, Any]]] = None,
    spool: Optional[Dict[str, Any]] = None,
    **mqtt: Any,
) -> Config:
    """A Config for a broker on loopback, with fast timers for tests."""
    mqtt_section: Dict[str, Any] = {"host": "127.0.0.1", "port": port, "ack_timeout_s": 3.0}
    mqtt_section.update(mqtt)
    raw: Dict[str, Any] = {
        "device_id": device_id,
        "state_dir": str(tmp_path / f"state-{device_id}"),
        "cameras": cameras if cameras is not None else [{"id": "cam1", "source": "test.mp4"}],
        "mqtt": mqtt_section,
        "spool": spool or {},
    }
    return parse_config(raw)


def counts_body(frames: int = 100, people: int = 3) -> Dict[str, Any]:
    """A counts body shaped as DESIGN.md describes (what CountsWindow.body() returns)."""
    return {
        "fps": 9.8,
        "target_fps": 10.0,
        "tier": "ssdlite-int8-300-skip1",
        "frames": frames,
        "dropped": 0,
        "objects": {"person": {"now": people, "max": people + 1, "mean": people - 0.5, "unique": people + 2}},
        "lines": {"door": {"in": 2, "out": 1}},
        "zones": {"queue": {"now": 1, "max": 2, "mean": 0.7, "entered": 3, "dwell_mean_s": 4.2}},
    }


def heatmap_body(tile: tuple = (1, 0), size: tuple = (16, 12), seed: int = 0) -> Dict[str, Any]:
    """A heatmap tile body shaped as DESIGN.md describes (what HeatmapTile.body() returns)."""
    cells = np.random.default_rng(seed).integers(0, 500, size=(size[1], size[0]), dtype=np.uint16)
    return {
        "grid": [64, 36],
        "tile": list(tile),
        "tile_size": list(size),
        "unit": "person_seconds",
        "scale": 0.01,
        "dtype": "uint16",
        "encoding": "zlib+base64",
        "data": base64.b64encode(zlib.compress(cells.tobytes())).decode("ascii"),
    }


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool


class Recorder:
    """A plain MQTT subscriber that records everything it receives, in order."""

    def __init__(
        self, broker: Mosquitto, topics: List[str], client_id: str = "recorder", **tls_and_auth: Any
    ):
        self.messages: List[Received] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        self.topics = topics
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p: [c.subscribe(t, qos=1) for t in self.topics]
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Received(message.topic, bytes(message.payload), bool(message.retain)))

    def on(self, topic_suffix: str) -> List[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic.endswith(topic_suffix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@dataclass
class TlsMaterial:
    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_file: Path


def make_tls_material(directory: Path) -> TlsMaterial:
    """A CA, a server certificate for 127.0.0.1/localhost, a client certificate, and an unrelated
    second CA (the "wrong CA"), made with the openssl CLI."""
    directory.mkdir(parents=True, exist_ok=True)
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed")
    for ca in ("ca", "other-ca"):
        openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=test {ca}",
            "-keyout", f"{ca}.key", "-out", f"{ca}.crt", cwd=directory,
        )  # fmt: skip
    (directory / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, subject, ext in (
        ("server", "/CN=localhost", ["-extfile", "server.ext"]),
        ("client", "/CN=edge-t", []),
    ):
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            subject,
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            cwd=directory,
        )
        openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-out", f"{name}.crt", *ext, cwd=directory,
        )  # fmt: skip
    return TlsMaterial(
        ca_file=directory / "ca.crt",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
        other_ca_file=directory / "other-ca.crt",
    )


@pytest.fixture
def ingest_factory(tmp_path: Path) -> Iterator[Callable[..., Ingest]]:
    """Start the aggregator's acking ingest against a broker; stopped at the end of the test."""
    started: List[Ingest] = []

    def make(broker: Mosquitto, name: str = "aggregator", **options: Any) -> Ingest:
        ingest = Ingest(
            SqliteStore(tmp_path / f"{name}.sqlite"), broker.host, broker.port, client_id=name, **options
        )
        ingest.start()
        started.append(ingest)
        # Tests publish right away; before the SUBACK the broker would not deliver to it.
        assert ingest.wait_subscribed(10), "ingest did not subscribe"
        return ingest

    yield make
    for ingest in started:
        ingest.stop()
        ingest.store.close()


def door_camera(video: Path, zone: bool = False) -> Dict[str, Any]:
    """The camera of the daemon end-to-end tests: the first synthetic scene, looped, with its door
    line (and, with `zone`, a zone over the whole frame)."""
    camera: Dict[str, Any] = {
        "id": "door-cam",
        "source": str(video),
        "target_fps": 10,
        "loop": True,
        "lines": [{"id": "door", "points": [[0.5, 0.35], [0.5, 1.0]]}],
    }
    if zone:
        camera["zones"] = [{"id": "hall", "polygon": [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]}]
    return camera
