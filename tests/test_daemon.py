"""`video-analysis run` as systemd runs it: a real process on a file camera, a real mosquitto,
the aggregator's ingest acking; sd_notify READY/RELOADING/STOPPING, SIGHUP reload, SIGTERM."""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
import yaml

from contract.state import parse_camera_state, parse_device_state
from edge.devkit.synthetic import standard_scenes, write_scene
from tests.mqtt_fixtures import Recorder, door_camera, wait_for

pytestmark = pytest.mark.slow  # integration: more than a few seconds


def _notifications(sock: socket.socket) -> List[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


def test_run_under_systemd_protocol(tmp_path: Path, mosquitto_broker, ingest_factory) -> None:
    scene = standard_scenes()[0]
    video = write_scene(scene, tmp_path / "scene")
    config = {
        "device_id": "edge-run",
        "state_dir": str(tmp_path / "state"),
        "cameras": [door_camera(video)],
        "counts": {"window_s": 2},
        "mqtt": {"host": "127.0.0.1", "port": mosquitto_broker.port, "telemetry_interval_s": 2},
    }
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    ingest = ingest_factory(mosquitto_broker)
    recorder = Recorder(
        mosquitto_broker, ["va/edge-run/status", "va/edge-run/telemetry", "va/edge-run/state", "va/edge-run/+/state"]
    )
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.setblocking(False)
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify.sock"), WATCHDOG_USEC="2000000")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "edge.commands.cli", "run", "-c", str(config_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: List[str] = []
    try:
        wait_for(lambda: seen.extend(_notifications(notify)) or any("READY=1" in m for m in seen), 120)
        wait_for(lambda: ingest.stats().stored >= 2, 60)
        wait_for(lambda: seen.extend(_notifications(notify)) or any("WATCHDOG=1" in m for m in seen), 10)
        online = json.loads(recorder.on("/status")[-1].payload)
        assert online["state"] == "online"
        assert wait_for(lambda: recorder.on("/telemetry"), 10)
        telemetry = json.loads(recorder.on("/telemetry")[-1].payload)
        assert telemetry["precision"]["chosen"] in ("int8", "fp32") and "spool" in telemetry
        # live state beside the window stream: retained, with today's totals of the configured line
        camera_state = parse_camera_state(wait_for(lambda: recorder.on("/door-cam/state"), 30)[-1].payload)
        assert camera_state.window > 0 and set(camera_state.lines) == {"door"}
        assert parse_device_state(wait_for(lambda: recorder.on("/edge-run/state"), 30)[-1].payload).cameras == [
            "door-cam"
        ]

        config["counts"]["window_s"] = 3
        config_path.write_text(yaml.safe_dump(config))
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: seen.extend(_notifications(notify)) or any("RELOADING=1" in m for m in seen), 60)
        ready_count = lambda: sum("READY=1" in m for m in seen)  # noqa: E731
        wait_for(lambda: seen.extend(_notifications(notify)) or ready_count() >= 2, 120)

        stopping_before = sum("STOPPING=1" in m for m in seen)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(60) == 0
        seen.extend(_notifications(notify))
        assert sum("STOPPING=1" in m for m in seen) == stopping_before + 1
    finally:
        if daemon.poll() is None:
            daemon.kill()
        output = daemon.stdout.read() if daemon.stdout else ""
        recorder.close()
        notify.close()
    assert "Traceback" not in output, output
    assert json.loads(recorder.on("/status")[-1].payload)["state"] == "stopped"
    stored = ingest.store.messages(device="edge-run", kind="counts")
    seqs = sorted(m.seq for m in ingest.store.messages(device="edge-run"))
    assert len(seqs) == len(set(seqs)) and stored
