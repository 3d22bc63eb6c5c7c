"""The aggregator's configuration, CLI, service unit, deployment files and packaging."""

import ast
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from aggregator.config import AggregatorConfig
from aggregator.server import Server
from tests.mqtt_fixtures import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def cli(*args, env=None, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "aggregator.cli", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_check_config_accepts_the_shipped_example_with_its_credential(tmp_path):
    (tmp_path / "mqtt-password").write_text("secret\n")
    result = cli("check-config", "-c", str(ROOT / "deployment/aggregator.yaml"),
                 env=dict(os.environ, CREDENTIALS_DIRECTORY=str(tmp_path)))  # fmt: skip
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["mqtt"]["share_group"] == "aggregators" and printed["http"]["bind"] == "127.0.0.1"
    assert "secret" not in result.stdout


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mqtt: {hots: x}\n", "mqtt.hots: Extra inputs are not permitted"),
        ("mqtt: {port: 70000}\n", "mqtt.port:"),
        ("http: {bind: 0.0.0.0}\n", "not loopback) needs http.token_file"),
        ("mqtt: {password_file: /nonexistent/pw}\n", "mqtt.password_file: cannot read /nonexistent/pw"),
        ("mqtt: {share_group: 'a/b'}\n", "mqtt.share_group:"),
        ("mqtt: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_configuration_is_one_line_and_exit_code_2(tmp_path, text, message):
    path = tmp_path / "aggregator.yaml"
    path.write_text(text)
    result = cli("check-config", "-c", str(path))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and str(path) in result.stderr
    assert message in result.stderr, result.stderr


def test_usage_error_is_exit_code_2():
    assert cli("frobnicate").returncode == 2


@pytest.mark.slow
def test_run_logs_reconnect_attempts_and_stops_on_sigterm(tmp_path):
    path = tmp_path / "aggregator.yaml"
    path.write_text(yaml.safe_dump({
        "mqtt": {"host": "127.0.0.1", "port": free_port()},
        "database": {"url": f"sqlite://{tmp_path / 'a.sqlite'}"},
        "http": {"port": 0},
    }))  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "aggregator.cli", "run", "-c", str(path)], stderr=subprocess.PIPE, text=True
    )
    time.sleep(8)  # paho retries after 1, 2, 4... s
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert stderr.count("cannot reach broker 127.0.0.1") >= 2, stderr
    assert "Traceback" not in stderr


@pytest.mark.slow
def test_run_tells_systemd_ready_and_pings_the_watchdog(tmp_path, mosquitto_broker):
    path = tmp_path / "aggregator.yaml"
    path.write_text(yaml.safe_dump({
        "mqtt": {"host": mosquitto_broker.host, "port": mosquitto_broker.port},
        "database": {"url": f"sqlite://{tmp_path / 'a.sqlite'}"},
        "http": {"enabled": False},
    }))  # fmt: skip
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(20)
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify.sock"), WATCHDOG_USEC="1000000")
    process = subprocess.Popen([sys.executable, "-m", "aggregator.cli", "run", "-c", str(path)], env=env)
    try:
        seen = [notify.recv(100).decode() for _ in range(3)]
        assert seen[0] == "READY=1" and seen[1:] == ["WATCHDOG=1", "WATCHDOG=1"]
        process.send_signal(signal.SIGTERM)
        assert notify.recv(100).decode() == "STOPPING=1"
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        notify.close()


def test_the_api_needs_the_bearer_token_except_healthz(tmp_path, mosquitto_broker):
    (tmp_path / "token").write_text("s3cret-token")
    config = AggregatorConfig.model_validate({
        "mqtt": {"host": mosquitto_broker.host, "port": mosquitto_broker.port},
        "database": {"url": f"sqlite://{tmp_path / 'a.sqlite'}"},
        "http": {"port": 0, "token_file": str(tmp_path / "token")},
    })  # fmt: skip
    server = Server(config)
    server.start()
    try:
        assert server.ingest.wait_subscribed(10) and server.http is not None
        url = server.http.url

        def status(path, token=None):
            request = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {token}"} if token else {})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status
            except urllib.error.HTTPError as exc:
                return exc.code

        assert status("/api/devices") == 401 and status("/metrics") == 401
        assert status("/api/devices", "wrong") == 401
        assert status("/api/devices", "s3cret-token") == 200 and status("/metrics", "s3cret-token") == 200
        assert status("/healthz") == 200 and status("/") == 200 and status("/openapi.json") == 200
        assert status("/api/quarantine?limit=0", "s3cret-token") == 422
    finally:
        server.stop()


def test_compose_file_configures_two_replicas_on_one_share_group():
    compose = yaml.safe_load((ROOT / "deployment/compose.yaml").read_text())
    configs = [AggregatorConfig.model_validate(yaml.safe_load(c["content"])) for c in compose["configs"].values()]
    assert len(configs) == 2 and len({c.mqtt.client_id for c in configs}) == 2
    assert {c.mqtt.share_group for c in configs} == {"aggregators"}
    assert all(c.database.url.startswith("postgresql://") for c in configs)
    assert {"mosquitto", "postgres", "aggregator-1", "aggregator-2"} <= set(compose["services"])


def test_broker_config_is_sized_for_replays_and_binds_client_ids_to_usernames(tmp_path):
    conf = (ROOT / "deployment/mosquitto/mosquitto.conf").read_text()
    settings = dict(line.split(None, 1) for line in conf.splitlines() if line and not line.startswith("#"))
    assert settings["use_username_as_clientid"] == "true"
    assert int(settings["max_queued_messages"]) >= 100_000
    assert int(settings["max_packet_size"]) <= 1024 * 1024
    acl = (ROOT / "deployment/mosquitto/video-analysis.acl").read_text()
    assert "user aggregator-1" in acl and "user aggregator-2" in acl
    # mosquitto itself accepts these settings.
    kept = [f"{k} {v}" for k, v in settings.items() if k in ("use_username_as_clientid", "max_queued_messages",
                                                           "max_queued_bytes", "max_packet_size")]  # fmt: skip
    path = tmp_path / "m.conf"
    path.write_text("\n".join([f"listener {free_port()} 127.0.0.1", "allow_anonymous true", *kept]) + "\n")
    process = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(path)], stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    assert process.poll() is None, process.stderr.read() if process.stderr else ""
    process.terminate()
    process.wait(10)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is installed by ./setup.sh dev")
def test_service_unit_verifies_and_is_sandboxed(tmp_path):
    unit = (ROOT / "systemd/video-analysis-aggregator.service").read_text()
    installed = "/opt/video-analysis-aggregator/venv/bin/video-analysis-aggregator"
    unit = unit.replace(installed, str(BIN / "video-analysis-aggregator"))
    path = tmp_path / "video-analysis-aggregator.service"
    path.write_text(unit)
    verify = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(path)], capture_output=True, text=True
    )
    exposure = [line for line in security.stdout.splitlines() if "Overall exposure level" in line][0]
    assert float(exposure.split("level for")[1].split(":")[1].split()[0]) <= 3.0, exposure


def test_the_aggregator_imports_only_the_contract_and_itself():
    for path in (ROOT / "aggregator").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n == "edge" or n.startswith("edge.") for n in names), f"{path.name} imports {names}"


@pytest.mark.slow
def test_the_aggregator_distribution_resolves_without_the_edge_dependencies(tmp_path):
    """`pip install ./aggregator` (its own distribution) pulls none of onnxruntime, OpenCV or scipy."""
    source = tmp_path / "src"
    shutil.copytree(ROOT / "aggregator", source / "aggregator", ignore=shutil.ignore_patterns("__pycache__", "build"))
    shutil.copytree(ROOT / "contract", source / "contract", ignore=shutil.ignore_patterns("__pycache__"))
    report = tmp_path / "report.json"
    result = subprocess.run(
        [str(BIN / "pip"), "install", "-q", "--dry-run", "--ignore-installed", "--report", str(report),
         str(source / "aggregator")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert "video-analysis-aggregator" in names and {"fastapi", "psycopg", "paho-mqtt"} <= names
    heavy = {n for n in names if n.startswith(("onnxruntime", "opencv", "scipy", "onnx", "torch"))}
    assert not heavy, heavy
