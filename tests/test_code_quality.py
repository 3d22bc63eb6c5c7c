"""Static checks that keep the codebase as the README promises: lint, types on the pure
modules, Python 3.8 compatibility of the edge package, shell scripts and the systemd unit."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PURE = [
    "edge/core/tracking.py",
    "edge/core/analytics.py",
    "edge/core/policy.py",
    "contract/wire.py",
    "edge/detection/nms.py",
    "edge/detection/families/ssd.py",
    "edge/detection/families/yolo.py",
    "edge/devkit/synthetic.py",
    "edge/runtime/analysis.py",
    "edge/config.py",
    "edge/device/tiers.py",
    "edge/core/accuracy.py",
]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True)


def test_ruff_clean() -> None:
    result = run(str(BIN / "ruff"), "check", ".")
    assert result.returncode == 0, result.stdout


def test_pure_modules_are_mypy_clean() -> None:
    result = run(str(BIN / "mypy"), "--follow-imports=silent", *PURE)
    assert result.returncode == 0, result.stdout


def test_edge_keeps_to_python_3_8() -> None:
    result = run(str(BIN / "vermin"), "--target=3.8-", "--violations", "--no-tips", "edge/")
    assert result.returncode == 0, result.stdout


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is installed by ./setup.sh dev")
def test_shell_scripts_pass_shellcheck() -> None:
    result = run("shellcheck", "setup.sh", ".ci/run")
    assert result.returncode == 0, result.stdout


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is installed by ./setup.sh dev")
def test_systemd_unit_verifies_and_is_sandboxed(tmp_path: Path) -> None:
    # The unit names the installed paths; point them at this checkout's executable to verify it here.
    unit = (ROOT / "systemd/video-analysis.service").read_text()
    unit = unit.replace("/opt/video-analysis/venv/bin/video-analysis", str(BIN / "video-analysis"))
    path = tmp_path / "video-analysis.service"
    path.write_text(unit)
    verify = run("systemd-analyze", "verify", str(path))
    assert verify.returncode == 0, verify.stderr
    security = run("systemd-analyze", "security", "--offline=yes", str(path))
    assert security.returncode == 0, security.stderr
    exposure = [line for line in security.stdout.splitlines() if "Overall exposure level" in line][0]
    assert float(exposure.split("level for")[1].split(":")[1].split()[0]) <= 3.0, exposure
