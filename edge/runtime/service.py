"""The daemon under systemd: READY once the pipeline runs, WATCHDOG pings from the main loop (a
hung pipeline stops them and systemd restarts us), STOPPING on SIGTERM, and SIGHUP reloads the
configuration (the appliance is rebuilt; the spool and its seq counter survive, so nothing
accepted is lost). While the appliance prepares (probe, tier measurement, INT8 quantisation: a
minute or more on a Pi or a Nano when install time did not prepare it), EXTEND_TIMEOUT_USEC
keeps pushing systemd's start timeout ahead, so a slow first start is not killed.

sd_notify is a datagram on $NOTIFY_SOCKET: written here in a few lines rather than adding
python-systemd, which needs libsystemd headers to build on a device.
"""

import logging
import os
import signal
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from edge.config import Config, load_config
from edge.core.errors import ConfigError, VideoAnalysisError
from edge.runtime.appliance import build_appliance

log = logging.getLogger(__name__)


def sd_notify(message: str) -> bool:
    """Send a notification to systemd; False when not running under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(message.encode())
    return True


# Every EXTEND_PERIOD_S while preparing, ask for EXTEND_BY_S more: a preparation that hangs still
# times out EXTEND_BY_S after its last sign of life.
EXTEND_PERIOD_S = 10.0
EXTEND_BY_S = 30.0


@contextmanager
def extending_start_timeout(status: str, period_s: float = EXTEND_PERIOD_S) -> Iterator[None]:
    """Send STATUS once and EXTEND_TIMEOUT_USEC now and every `period_s` until the block ends."""
    if not sd_notify(f"STATUS={status}\nEXTEND_TIMEOUT_USEC={int(EXTEND_BY_S * 1e6)}"):
        yield
        return
    done = threading.Event()

    def extend() -> None:
        while not done.wait(period_s):
            sd_notify(f"EXTEND_TIMEOUT_USEC={int(EXTEND_BY_S * 1e6)}")

    thread = threading.Thread(target=extend, name="extend-timeout", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


class _Signals:
    def __init__(self) -> None:
        self.stop = threading.Event()
        self.reload = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: self.stop.set())
        signal.signal(signal.SIGINT, lambda *_: self.stop.set())
        signal.signal(signal.SIGHUP, lambda *_: self.reload.set())


def run_daemon(config: Config, config_path: Optional[Path] = None) -> int:
    """The service main loop (foreground)."""
    signals = _Signals()
    watchdog_usec = int(os.environ.get("WATCHDOG_USEC", "0"))
    ping_every = watchdog_usec / 2e6 if watchdog_usec else 0.0
    while True:
        with extending_start_timeout("preparing: probe, tier measurement, INT8 calibration"):
            appliance = build_appliance(config)
        appliance.start()
        sd_notify(f"READY=1\nSTATUS=running tier {appliance.parts.controller.tier.name}")
        log.info("running: device %s, %d camera(s)", config.device_id, len(config.cameras))
        last_ping = 0.0
        try:
            while not signals.stop.is_set() and not signals.reload.is_set():
                signals.stop.wait(1.0)
                if appliance.pipeline.error is not None:
                    raise VideoAnalysisError(f"inference failed: {appliance.pipeline.error}")
                if not appliance.pipeline.running:
                    log.info("every source has ended")
                    signals.stop.set()
                    break
                appliance.tick()
                due = ping_every and time.monotonic() - last_ping >= ping_every
                if due and appliance.pipeline.running and appliance.healthy():
                    sd_notify("WATCHDOG=1")
                    last_ping = time.monotonic()
        finally:
            sd_notify("STOPPING=1")
            appliance.stop()
        if signals.stop.is_set() or config_path is None:
            return 0
        signals.reload.clear()
        sd_notify("RELOADING=1")
        try:
            config = load_config(config_path)
            log.info("configuration reloaded from %s", config_path)
        except ConfigError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
