"""No secret is ever printed: every line `run` and `check-config` write (an RTSP URL holding a
password, an RTSP credentials file, an MQTT password file) is searched for the secrets. Also the
masking itself, and the RTSP credentials file."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml

from edge.config import PLATFORM_CLASSES, mask_urls, parse_config
from edge.core.errors import ConfigError
from tests.mqtt_fixtures import wait_for

SECRETS = ("S3cretUrlPw", "CamFileS3cret", "MqttS3cret")
FP32_ONLY = [{"model": "ssdlite-mobilenetv2-pedestrian", "precision": "fp32", "input": 300}]


def _config(tmp_path: Path, port: int) -> Dict[str, Any]:
    (tmp_path / "mqtt-password").write_text("MqttS3cret\n")
    (tmp_path / "camera-b").write_text("viewer:CamFileS3cret\n")
    return {
        "device_id": "secret-test",
        "state_dir": str(tmp_path / "state"),
        "log_level": "debug",
        "cameras": [
            {"id": "a", "source": "rtsp://admin:S3cretUrlPw@127.0.0.1:9/stream1"},
            {"id": "b", "source": "rtsp://127.0.0.1:9/stream2", "credentials_file": str(tmp_path / "camera-b")},
        ],
        "mqtt": {
            "host": "127.0.0.1",
            "port": port,
            "username": "secret-test",
            "password_file": str(tmp_path / "mqtt-password"),
        },
        # FP32 only: no INT8 calibration, so the daemon is up in seconds.
        "policy": {"tiers": {name: FP32_ONLY for name in PLATFORM_CLASSES}},
    }


def _cli(*args: str, env: Dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edge.commands.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


def _assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret} printed:\n{text}"


@pytest.mark.slow
def test_nothing_secret_in_what_run_and_check_config_print(tmp_path: Path, mosquitto_broker) -> None:
    path = tmp_path / "config.yaml"
    config = _config(tmp_path, mosquitto_broker.port)
    path.write_text(yaml.safe_dump(config))
    env = dict(os.environ)

    printed = _cli("check-config", "-c", str(path), env=env)
    assert printed.returncode == 0, printed.stderr
    assert "rtsp://admin:***@127.0.0.1:9/stream1" in printed.stdout
    _assert_no_secret(printed.stdout + printed.stderr)
    quiet = _cli("--debug", "check-config", "-q", "-c", str(path), env=env)
    assert quiet.returncode == 0 and quiet.stdout == ""
    _assert_no_secret(quiet.stderr)

    missing = dict(config, mqtt=dict(config["mqtt"], password_file=str(tmp_path / "absent")))
    path.write_text(yaml.safe_dump(missing))
    refused = _cli("check-config", "-c", str(path), env=env)
    assert refused.returncode == 2 and "absent: cannot read secret" in refused.stderr and refused.stdout == ""
    path.write_text(yaml.safe_dump(config))

    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.setblocking(False)
    seen: List[str] = []

    def notified(word: str) -> bool:
        while True:
            try:
                seen.append(notify.recv(4096).decode())
            except BlockingIOError:
                return any(word in message for message in seen)

    log_path = tmp_path / "daemon.log"
    with open(log_path, "w") as log_file:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "edge.commands.cli", "--debug", "run", "-c", str(path)],
            env=dict(env, NOTIFY_SOCKET=str(tmp_path / "notify.sock")),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        assert wait_for(lambda: notified("READY=1"), 120)
        # Both cameras fail to connect (port 9) and say so.
        wait_for(lambda: log_path.read_text().count("cannot open rtsp source") >= 2, 30)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(60) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
        notify.close()
    output = log_path.read_text()
    assert "a: rtsp://admin:***@127.0.0.1:9/stream1: cannot open rtsp source" in output, output
    assert "b: rtsp://viewer:***@127.0.0.1:9/stream2: cannot open rtsp source" in output, output
    assert any("EXTEND_TIMEOUT_USEC=" in message for message in seen)
    _assert_no_secret(output)


def test_mask_urls() -> None:
    assert mask_urls("rtsp://admin:pw@cam/s") == "rtsp://admin:***@cam/s"
    # A password holding '@' or '/' is masked whole, not cut at its first '@'.
    assert mask_urls("open rtsp://u:p@ss/w@cam:554/s now") == "open rtsp://u:***@cam:554/s now"
    assert mask_urls("rtsp://token@cam/s") == "rtsp://***@cam/s"
    assert mask_urls("http://cam/snap?user=a&password=pw&x=1") == "http://cam/snap?user=a&password=***&x=1"
    assert mask_urls("/dev/video0 and rtsp://cam/s") == "/dev/video0 and rtsp://cam/s"


def test_rtsp_credentials_file(tmp_path: Path) -> None:
    secret = tmp_path / "cam"
    secret.write_text("ad@min:p:w/1\n")
    camera = {"id": "c", "source": "rtsp://cam.local/s1", "credentials_file": str(secret)}
    assert parse_config({"cameras": [camera]}).cameras[0].source_url() == "rtsp://ad%40min:p%3Aw%2F1@cam.local/s1"
    with pytest.raises(ConfigError, match="needs an rtsp://"):
        parse_config({"cameras": [dict(camera, source="/dev/video0")]})
    with pytest.raises(ConfigError, match="holds credentials too"):
        parse_config({"cameras": [dict(camera, source="rtsp://u:p@cam.local/s1")]})
    secret.write_text("no-colon\n")
    with pytest.raises(ConfigError, match="expected 'user:password'"):
        parse_config({"cameras": [camera]}).cameras[0].source_url()


def test_systemd_credential_name_is_read_from_the_credentials_directory(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "camera-a").write_text("u:pw\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    camera = {"id": "c", "source": "rtsps://cam/s", "credentials_file": "camera-a"}
    assert parse_config({"cameras": [camera]}).cameras[0].source_url() == "rtsps://u:pw@cam/s"
