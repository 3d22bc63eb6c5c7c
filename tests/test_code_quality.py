"""Static checks that keep the codebase as the README promises: lint, the import layers
(import-linter contracts in pyproject.toml), types on every package (strict on the pure ones),
Python 3.8 compatibility of the edge package, shell scripts and the systemd unit."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PACKAGES = ["edge", "contract", "aggregator"]
# The wire contract and the pure core are held to --strict.
STRICT = ["contract", "edge/core"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True)


def test_ruff_clean() -> None:
    result = run(str(BIN / "ruff"), "check", ".")
    assert result.returncode == 0, result.stdout


def test_import_layers_hold() -> None:
    result = run(str(BIN / "lint-imports"))
    assert result.returncode == 0, result.stdout
    assert "0 broken" in result.stdout


def test_every_package_is_mypy_clean() -> None:
    result = run(str(BIN / "mypy"), *PACKAGES)
    assert result.returncode == 0, result.stdout


def test_pure_packages_are_mypy_strict() -> None:
    # A cache of its own: mypy discards a cache written with other options, so sharing one with
    # the non-strict run would recheck everything on every run.
    result = run(str(BIN / "mypy"), "--strict", "--cache-dir", ".mypy_cache/strict", *STRICT)
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
