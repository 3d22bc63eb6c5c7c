"""End to end: the daemon (`video-analysis run`, a real process on a generated scene) → a real
mosquitto → the aggregator (SQLite, HTTP on loopback) → the API: counts and heatmap totals read
through the API equal what the daemon published."""

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml

from aggregator.server import local_server
from aggregator.validate import decode_tile
from edge.devkit.synthetic import standard_scenes, write_scene
from tests.mqtt_fixtures import Recorder, door_camera, wait_for


def get(url: str):
    with urllib.request.urlopen(url, timeout=30) as response:
        body = response.read()
        return json.loads(body) if response.headers.get_content_type() == "application/json" else body


@pytest.mark.slow
def test_daemon_to_api_totals_match_what_was_published(tmp_path: Path, mosquitto_broker) -> None:
    scene = standard_scenes()[0]
    video = write_scene(scene, tmp_path / "scene")
    config = {
        "device_id": "edge-e2e",
        "state_dir": str(tmp_path / "state"),
        "cameras": [door_camera(video, zone=True)],
        "counts": {"window_s": 2},
        "heatmap": {"window_s": 4},
        "mqtt": {"host": "127.0.0.1", "port": mosquitto_broker.port, "telemetry_interval_s": 2},
    }
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    published = Recorder(mosquitto_broker, ["va/edge-e2e/+/counts", "va/edge-e2e/+/heatmap"], client_id="witness")
    with local_server(mosquitto_broker.port, tmp_path / "aggregator.sqlite") as server:
        url = server.http.url
        daemon = subprocess.Popen(
            [sys.executable, "-m", "edge.commands.cli", "run", "-c", str(config_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            wait_for(lambda: len(published.on("/heatmap")) >= 3 and len(published.on("/counts")) >= 8, 150)
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(60) == 0
        finally:
            if daemon.poll() is None:
                daemon.kill()
        output = daemon.stdout.read() if daemon.stdout else ""
        assert "Traceback" not in output, output
        counts = {}
        tiles = {}
        for message in published.messages:
            body = json.loads(message.payload)
            key = (body["boot"], body["seq"])
            (counts if message.topic.endswith("/counts") else tiles)[key] = body
        expected_lines = {"in": sum(b["lines"]["door"]["in"] for b in counts.values())}
        expected_lines["out"] = sum(b["lines"]["door"]["out"] for b in counts.values())
        expected_entered = sum(b["zones"]["hall"]["entered"] for b in counts.values())
        expected_heat = sum(
            float(np.frombuffer(decode_tile(b), dtype="<u2").sum(dtype=np.float64)) * b["scale"] for b in tiles.values()
        )
        base = f"{url}/api/cameras/edge-e2e/door-cam"
        wait_for(lambda: get(f"{base}/totals")["windows"] == len(counts), 30)
        assert get(f"{url}/api/quarantine") == []
        totals = get(f"{base}/totals")
        assert totals["lines"]["door"] == expected_lines
        assert totals["zones"]["hall"]["entered"] == expected_entered
        assert expected_lines["in"] + expected_lines["out"] > 0
        heat = get(f"{base}/heatmap.json")
        assert heat["tiles"] == len(tiles) and heat["total_person_seconds"] == pytest.approx(expected_heat, rel=1e-6)
        assert expected_heat > 0
        buckets = get(f"{base}/counts?bucket=hour")
        assert sum(b["lines"]["door"]["in"] for b in buckets) == expected_lines["in"]
        devices = get(f"{url}/api/devices")
        assert [d["device"] for d in devices] == ["edge-e2e"] and devices[0]["cameras"] == ["door-cam"]
        assert devices[0]["state"] == "stopped"
        png = get(f"{base}/heatmap.png")
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
        metrics = get(f"{url}/metrics").decode()
        assert f"va_messages_stored_total {float(len(counts) + len(tiles))}" in metrics
        assert get(f"{url}/healthz")["status"] == "ok"
    published.close()
