"""`./setup.sh device --prefix TMP` for real on this machine (apt packages aside, nothing changes
outside TMP), then the installed daemon started from TMP as systemd would start it: under the
unit's system call filter (emulated with libseccomp, tests/systemd_seccomp.py) and a real
NOTIFY_SOCKET. READY arrives, counts reach a real broker, SIGTERM gives STOPPING and exit 0; a
second setup run changes nothing; with a model file missing, check-config and run exit 3."""

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest
import yaml

from edge.devkit.synthetic import standard_scenes, write_scene
from tests.mqtt_fixtures import Recorder, wait_for

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        subprocess.run([SYSTEM_PYTHON, "-c", "import seccomp"], capture_output=True).returncode != 0,
        reason="needs Debian's python3-seccomp (./setup.sh dev installs it)",
    ),
]


def _setup(prefix: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable)
    return subprocess.run(
        ["bash", str(ROOT / "setup.sh"), "device", "--prefix", str(prefix)],
        capture_output=True, text=True, env=env, timeout=900,
    )


def _tree_state(prefix: Path) -> Dict[str, float]:
    return {str(p): p.stat().st_mtime for p in prefix.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def _notifications(sock: socket.socket, seen: List[str]) -> List[str]:
    while True:
        try:
            seen.append(sock.recv(4096).decode())
        except BlockingIOError:
            return seen


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    prefix = tmp_path_factory.mktemp("prefix")
    first = _setup(prefix)
    assert first.returncode == 0, first.stderr[-3000:]
    return prefix


def test_second_run_changes_nothing_and_says_so(installed: Path) -> None:
    before = _tree_state(installed)
    again = _setup(installed)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "nothing to do" in again.stderr
    assert _tree_state(installed) == before


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_installed_unit_verifies(installed: Path) -> None:
    unit = installed / "etc/systemd/system/video-analysis.service"
    assert f"ExecStart={installed}/opt/video-analysis/venv/bin/video-analysis run" in unit.read_text()
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr


def _daemon_config(prefix: Path, tmp_path: Path, port: int, **extra: object) -> Path:
    video = write_scene(standard_scenes()[0], tmp_path / "scene")
    config = {
        "device_id": "edge-installed",
        "state_dir": str(prefix / "var/lib/video-analysis"),  # where setup prepared the engines
        "cameras": [
            {
                "id": "door-cam",
                "source": str(video),
                "loop": True,
                "lines": [{"id": "door", "points": [[0.5, 0.35], [0.5, 1.0]]}],
            }
        ],
        "counts": {"window_s": 2},
        "mqtt": {"host": "127.0.0.1", "port": port},
        **extra,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _filtered(prefix: Path, *args: str) -> List[str]:
    unit = prefix / "etc/systemd/system/video-analysis.service"
    daemon = prefix / "opt/video-analysis/venv/bin/video-analysis"
    return [SYSTEM_PYTHON, str(ROOT / "tests/systemd_seccomp.py"), str(unit), "--", str(daemon), *args]


def test_installed_daemon_runs_under_the_unit_filter(installed: Path, tmp_path: Path, mosquitto_broker) -> None:
    config = _daemon_config(installed, tmp_path, mosquitto_broker.port)
    recorder = Recorder(mosquitto_broker, ["va/edge-installed/+/counts"])
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.setblocking(False)
    seen: List[str] = []
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify.sock"))
    env.pop("PYTHONPATH", None)
    log_path = tmp_path / "daemon.log"
    with open(log_path, "w") as log_file:
        daemon = subprocess.Popen(
            _filtered(installed, "run", "-c", str(config)), env=env, stdout=log_file, stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        wait_for(lambda: any("READY=1" in m for m in _notifications(notify, seen)), 120)
        wait_for(lambda: recorder.on("/counts"), 60)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(60) == 0, log_path.read_text()
        assert any("STOPPING=1" in m for m in _notifications(notify, seen))
    finally:
        if daemon.poll() is None:
            daemon.kill()
        recorder.close()
        notify.close()
    output = log_path.read_text()
    assert "Traceback" not in output and "Bad system call" not in output, output
    # Prepared at install time: the daemon reuses the cached INT8 model instead of quantising again.
    assert "INT8 model reused" in output and "quantising" not in output, output


def test_missing_model_exits_3_in_check_config_and_run(installed: Path, tmp_path: Path) -> None:
    python = installed / "opt/video-analysis/venv/bin/python"
    shipped = subprocess.run(
        [str(python), "-c", "from edge.detection.manifest import DEFAULT_MODELS_DIR as d; print(d)"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    ).stdout.strip()
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(Path(shipped) / "manifest.json", models / "manifest.json")  # the manifest, no model files
    config = _daemon_config(installed, tmp_path, 9, models_dir=str(models))
    check = subprocess.run(_filtered(installed, "check-config", "-q", "-c", str(config)),
                           capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert check.returncode == 3 and "model file missing" in check.stderr, check.stderr
    run = subprocess.run(_filtered(installed, "run", "-c", str(config)),
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 3 and "model file missing" in run.stderr, run.stderr
