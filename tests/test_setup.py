"""setup.sh without installing anything: --help, golden --dry-run plans against the probe's
platform fixtures, one-line refusals of unsupported platforms, shellcheck, and the systemd
units (verify, sandbox exposure). The real install is tests/test_setup_install.py (slow)."""

import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLATFORMS = ROOT / "tests/fixtures/platforms"
SETUP_FIXTURES = ROOT / "tests/fixtures/setup"
UNITS = {
    "video-analysis.service": "/opt/video-analysis/venv/bin/video-analysis",
    "video-analysis-aggregator.service": "/opt/video-analysis-aggregator/venv/bin/video-analysis-aggregator",
}


def setup_sh(*args: str, python: str = sys.executable) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "PYTHON": python}
    return subprocess.run(
        ["bash", str(ROOT / "setup.sh"), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_help_lists_modes_and_options() -> None:
    done = setup_sh("--help")
    assert done.returncode == 0, done.stderr
    for word in ("device", "local", "dev", "aggregator", "--dry-run", "--prefix", "--probe-root"):
        assert word in done.stdout


@pytest.mark.parametrize("platform", ["jetson-agx-orin", "jetson-nano", "rpi-5", "x86-rtx"])
def test_dry_run_plan_matches_golden(platform: str) -> None:
    done = setup_sh("device", "--dry-run", "--probe-root", str(PLATFORMS / platform))
    assert done.returncode == 0, done.stderr
    assert done.stdout == (SETUP_FIXTURES / "plans" / f"{platform}.txt").read_text()


def test_dry_run_plan_follows_the_prefix(tmp_path: Path) -> None:
    done = setup_sh("device", "--dry-run", "--prefix", str(tmp_path), "--probe-root", str(PLATFORMS / "rpi-5"))
    assert done.returncode == 0, done.stderr
    assert f"dirs:      {tmp_path}/opt/video-analysis {tmp_path}/etc/video-analysis" in done.stdout
    assert "systemd:" not in done.stdout and "user:      none" in done.stdout
    assert not any(tmp_path.iterdir()), "a dry run created files"


def test_mode_defaults_to_device_on_a_device_and_local_elsewhere() -> None:
    on_pi = setup_sh("--dry-run", "--probe-root", str(PLATFORMS / "rpi-5"))
    assert on_pi.returncode == 0 and "mode:      device" in on_pi.stdout
    on_desktop = setup_sh("--dry-run", "--probe-root", str(PLATFORMS / "x86-rtx"))
    assert on_desktop.returncode == 0 and "mode:      local" in on_desktop.stdout


def test_checkout_and_aggregator_plans() -> None:
    dev = setup_sh("dev", "--dry-run", "--probe-root", str(PLATFORMS / "this-machine"))
    assert dev.returncode == 0 and "python3-seccomp" in dev.stdout and "[opencv,demo,dev]" in dev.stdout
    server = setup_sh("aggregator", "--dry-run", "--probe-root", str(PLATFORMS / "this-machine"))
    assert server.returncode == 0, server.stderr
    assert "video-analysis.acl" in server.stdout and "[aggregator]" in server.stdout


def test_32_bit_raspberry_pi_os_is_refused_in_one_line() -> None:
    done = setup_sh("device", "--dry-run", "--probe-root", str(SETUP_FIXTURES / "rpi-4-armhf"))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "64-bit Raspberry Pi OS" in done.stderr


def test_python_older_than_3_8_is_refused_in_one_line(tmp_path: Path) -> None:
    """JetPack 4.6 (Jetson Nano) ships Python 3.6: refused before anything happens, with the route."""
    fake = tmp_path / "python3"
    fake.write_text("#!/bin/sh\necho 3.6\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    done = setup_sh("device", "--dry-run", "--probe-root", str(PLATFORMS / "jetson-nano"), python=str(fake))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "Python 3.6" in done.stderr and "PYTHON=python3.8" in done.stderr


def test_usage_errors_exit_2() -> None:
    assert setup_sh("sideways").returncode == 2
    assert setup_sh("device", "local", "--dry-run").returncode == 2
    assert "--prefix needs a directory" in setup_sh("device", "--prefix").stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is installed by ./setup.sh dev")
def test_setup_scripts_pass_shellcheck() -> None:
    scripts = ["setup.sh", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "deployment").rglob("*.sh"))]
    done = subprocess.run(["shellcheck", *scripts], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def _exposure(unit: Path) -> float:
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(unit)], capture_output=True, text=True
    )
    assert security.returncode == 0, security.stderr
    line = [text for text in security.stdout.splitlines() if "Overall exposure level" in text][0]
    return float(line.split(":")[1].split()[0])


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is installed by ./setup.sh dev")
@pytest.mark.parametrize("name", sorted(UNITS))
def test_units_verify_with_their_paths_pointed_at_an_install(name: str, tmp_path: Path) -> None:
    source = ROOT / "systemd" / name
    if not source.exists():
        pytest.skip(f"{name} is written in the aggregator's branch")
    # ExecStart must exist for verify: point it at this venv's entry point, as a prefix install does.
    executable = Path(sys.executable).parent / Path(UNITS[name]).name
    unit = tmp_path / name
    unit.write_text(source.read_text().replace(UNITS[name], str(executable)))
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    if name == "video-analysis.service":
        assert _exposure(unit) <= 1.5


def test_daemon_unit_stops_on_config_and_model_errors() -> None:
    unit = (ROOT / "systemd/video-analysis.service").read_text()
    for line in (
        "SystemCallErrorNumber=EPERM",
        "RestartPreventExitStatus=2 3",
        "DevicePolicy=closed",
        "ProtectProc=invisible",
        "PrivateMounts=yes",
        "RemoveIPC=yes",
        "check-config --quiet",
    ):
        assert line in unit


SYSTEM_PYTHON = "/usr/bin/python3"


def _has_system_seccomp() -> bool:
    check = subprocess.run([SYSTEM_PYTHON, "-c", "import seccomp"], capture_output=True)
    return check.returncode == 0 and shutil.which("systemd-analyze") is not None


@pytest.mark.skipif(not _has_system_seccomp(), reason="needs python3-seccomp (apt) and systemd-analyze")
def test_unit_system_call_filter_lets_numpy_import_and_would_kill_without_an_error_number(tmp_path: Path) -> None:
    """OpenBLAS calls mbind (@resources) at `import numpy`: EPERM is survivable, SIGSYS is not."""
    unit = ROOT / "systemd/video-analysis.service"
    command = [sys.executable, "-c", "import numpy, onnxruntime, cv2; print('imported')"]
    wrapper = [SYSTEM_PYTHON, str(ROOT / "tests/systemd_seccomp.py")]
    filtered = subprocess.run([*wrapper, str(unit), "--", *command], capture_output=True, text=True, timeout=120)
    assert filtered.returncode == 0 and "imported" in filtered.stdout, filtered.stderr
    killing = tmp_path / "no-errno.service"
    killing.write_text(
        "\n".join(line for line in unit.read_text().splitlines() if not line.startswith("SystemCallErrorNumber="))
    )
    killed = subprocess.run([*wrapper, str(killing), "--", *command], capture_output=True, text=True, timeout=120)
    assert killed.returncode == -31  # SIGSYS, "Bad system call"
