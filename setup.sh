#!/usr/bin/env bash
# Provision video-analysis.
#
#   ./setup.sh local    this checkout: system packages, .venv, the package with the demo extra
#   ./setup.sh dev      as local, plus the test and lint tools
#   ./setup.sh device   a device: /opt/video-analysis, /etc/video-analysis, the systemd unit,
#                       the service user, and the engines/quantised models built for this device
#
# Idempotent: run it again after an upgrade. Needs root (or sudo) for system packages.
set -euo pipefail

MODE="${1:-local}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'setup.sh: error: %s\n' "$*" >&2; exit 2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        say "installing system packages: ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

make_venv() {
    local venv="$1"; shift
    local extra_flags=("$@")
    if [ ! -x "$venv/bin/python" ]; then
        say "creating virtual environment $venv"
        "$PYTHON" -m venv "${extra_flags[@]}" "$venv" || die "cannot create a virtual environment (apt-get install python3-venv)"
    fi
    "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
}

case "$MODE" in
    local|dev)
        # mosquitto: the demo's private broker and the tests' real broker.
        packages=(mosquitto python3-venv)
        if [ "$MODE" = dev ]; then
            # The tests lint the scripts (shellcheck) and verify the unit (systemd-analyze).
            packages+=(mosquitto-clients shellcheck openssl systemd)
            # The aggregator's PostgreSQL scale test and its dashboard test in a headless browser.
            packages+=(postgresql chromium chromium-driver)
        fi
        apt_install "${packages[@]}"
        # The broker is started privately by the demo and the tests, never as a system service.
        if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
            as_root systemctl disable --now mosquitto >/dev/null 2>&1 || true
        fi
        make_venv "$HERE/.venv"
        extras="demo"
        [ "$MODE" = dev ] && extras="demo,dev"
        say "installing video-analysis[$extras] into .venv"
        "$HERE/.venv/bin/pip" install -q -e "${HERE}[${extras}]"
        say "done: $HERE/.venv/bin/video-analysis"
        ;;
    device)
        PREFIX=/opt/video-analysis
        apt_install python3-venv
        # On a Jetson the system OpenCV (with GStreamer) and TensorRT are the ones to use.
        venv_flags=()
        if [ -f /etc/nv_tegra_release ]; then venv_flags=(--system-site-packages); fi
        as_root mkdir -p "$PREFIX" /etc/video-analysis
        id video-analysis >/dev/null 2>&1 || as_root useradd --system --home-dir /var/lib/video-analysis \
            --shell /usr/sbin/nologin --groups video video-analysis
        as_root rm -rf "$PREFIX/src"
        as_root cp -r "$HERE" "$PREFIX/src"
        as_root rm -rf "$PREFIX/src/.venv"
        make_venv "$PREFIX/venv" "${venv_flags[@]}"
        extras=""
        if [ -f /etc/nv_tegra_release ] || command -v nvidia-smi >/dev/null 2>&1; then extras="[tensorrt]"; fi
        as_root "$PREFIX/venv/bin/pip" install -q "$PREFIX/src$extras"
        if [ ! -f /etc/video-analysis/config.yaml ]; then
            as_root install -m 0640 -g video-analysis "$HERE/config.yaml" /etc/video-analysis/config.yaml
        fi
        as_root install -m 0644 "$HERE/systemd/video-analysis.service" /etc/systemd/system/video-analysis.service
        as_root install -d -o video-analysis -g video-analysis -m 0750 /var/lib/video-analysis
        say "checking the configuration"
        as_root "$PREFIX/venv/bin/video-analysis" check-config -c /etc/video-analysis/config.yaml >/dev/null
        say "building engines for this device (can take minutes on a Jetson)"
        as_root runuser -u video-analysis -- "$PREFIX/venv/bin/video-analysis" build-engine -c /etc/video-analysis/config.yaml \
            || say "build-engine failed; the daemon will fall back to the next tier"
        if [ -d /run/systemd/system ]; then
            as_root systemctl daemon-reload
            as_root systemctl enable video-analysis
            say "start it with: systemctl start video-analysis"
        fi
        ;;
    *)
        die "unknown mode '$MODE' (local, dev or device)"
        ;;
esac
