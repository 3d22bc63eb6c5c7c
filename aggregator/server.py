"""The whole server in one process: the store, the ingest, the HTTP API (uvicorn on its own
thread) and the systemd watchdog; `local_server` is the small API the demo uses.

The watchdog is systemd's notify protocol, one datagram to `$NOTIFY_SOCKET`: written here
rather than pulling in a package for ten lines. It pings only while the ingest's writer is
alive and not stalled, so systemd restarts a wedged process.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from prometheus_client import CollectorRegistry

from aggregator.api import create_app
from aggregator.config import AggregatorConfig, read_secret
from aggregator.ingest import Ingest, IngestSettings, IngestTls
from aggregator.metrics import FleetCollector
from aggregator.store import Store, open_store

log = logging.getLogger(__name__)


def sd_notify(message: str) -> bool:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message.encode(), address)
    return True


def watchdog_interval_s() -> float | None:
    usec = os.environ.get("WATCHDOG_USEC")
    return int(usec) / 2e6 if usec and usec.isdigit() else None


@dataclass
class HttpServer:
    server: uvicorn.Server
    thread: threading.Thread
    url: str

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def start_http(app: object, host: str, port: int) -> HttpServer:
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, name="http", daemon=True)
    thread.start()
    started = threading.Event()
    while not started.wait(0.05):
        if server.started:
            started.set()
        elif not thread.is_alive():
            raise OSError(f"the HTTP server could not listen on {host}:{port}")
    bound = server.servers[0].sockets[0].getsockname()[1]
    return HttpServer(server, thread, f"http://{host}:{bound}")


class Server:
    def __init__(self, config: AggregatorConfig) -> None:
        self.config = config
        self.stop_event = threading.Event()
        mqtt = config.mqtt
        self.store: Store = open_store(config.database.url)
        registry = CollectorRegistry()
        registry.register(FleetCollector(self.store))
        tls = IngestTls(mqtt.tls.ca_file, mqtt.tls.cert_file, mqtt.tls.key_file) if mqtt.tls else None
        self.ingest = Ingest(
            self.store,
            mqtt.host,
            mqtt.port,
            prefix=mqtt.prefix,
            client_id=mqtt.client_id,
            username=mqtt.username,
            password=read_secret(mqtt.password_file, "mqtt.password_file") if mqtt.password_file else None,
            tls=tls,
            shared_group=mqtt.share_group,
            settings=IngestSettings(
                receive_maximum=mqtt.receive_maximum,
                max_packet_bytes=mqtt.max_packet_bytes,
                session_expiry_s=mqtt.session_expiry_s,
            ),
            registry=registry,
        )
        token = read_secret(config.http.token_file, "http.token_file") if config.http.token_file else None
        self.app = create_app(self.store, self.ingest, token)
        self.http: HttpServer | None = None

    def start(self) -> None:
        self.ingest.start()
        if self.config.http.enabled:
            self.http = start_http(self.app, self.config.http.bind, self.config.http.port)
            log.info("aggregator: HTTP API and dashboard on %s", self.http.url)

    def run_until_stopped(self) -> None:
        """Block until `stop_event`, pinging systemd's watchdog while the ingest makes progress."""
        sd_notify("READY=1")
        interval = watchdog_interval_s() or 5.0
        while not self.stop_event.wait(interval):
            health = self.ingest.health()
            if health.writer_alive and not health.stalled:
                sd_notify("WATCHDOG=1")
            else:
                log.error("aggregator: the ingest writer is not making progress; not pinging the watchdog")
        sd_notify("STOPPING=1")

    def stop(self) -> None:
        if self.http is not None:
            self.http.stop()
        self.ingest.stop()
        self.store.close()


@contextmanager
def local_server(broker_port: int, database: Path, broker_host: str = "127.0.0.1") -> Iterator[Server]:
    """The aggregator on SQLite with its HTTP API on a free loopback port (for the demo and
    tests); `server.http.url` is the dashboard's address. Yields once subscribed."""
    config = AggregatorConfig.model_validate(
        {
            "mqtt": {"host": broker_host, "port": broker_port, "client_id": "va-aggregator-local"},
            "database": {"url": f"sqlite://{database.resolve()}"},
            "http": {"bind": "127.0.0.1", "port": 0},
        }
    )
    server = Server(config)
    server.start()
    try:
        if not server.ingest.wait_subscribed(10):
            raise OSError(f"the aggregator could not subscribe on {broker_host}:{broker_port}")
        yield server
    finally:
        server.stop()
