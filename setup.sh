#!/usr/bin/env bash
# Provision video-analysis. Run ./setup.sh --help for the modes and options.
#
# Every step checks before it acts, so a second run changes nothing and says so. A failed step
# stops the run with a one-line error naming it and a non-zero exit. The platform comes from the
# project's own hardware probe (edge/device/hardware.py, standard library only), run before
# anything is installed.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"
SERVICE_USER=video-analysis

usage() {
    cat <<'EOF'
Usage: ./setup.sh [MODE] [OPTIONS]

Modes:
  device      this machine as an appliance: a service user, /opt/video-analysis (a venv with the
              built wheel), /etc/video-analysis/config.yaml, the systemd unit, and the engines and
              INT8 models prepared for this device (default on a Jetson or a Raspberry Pi)
  local       this checkout: .venv with the package (editable) and the demo (default elsewhere)
  dev         as local, plus the test and lint tools
  aggregator  the server side: mosquitto with the production config, the aggregator in
              /opt/video-analysis-aggregator, its systemd unit

Options:
  --dry-run         print the plan (packages, user, directories, venv and extras, files, unit,
                    engine build) and change nothing
  --prefix DIR      install the whole tree under DIR (DIR/opt, DIR/etc, DIR/var/lib); no service
                    user, no systemctl: for testing and staging images
  --probe-root DIR  probe the platform from the device files under DIR instead of / (with
                    DIR/commands/<command>.out as recorded command output): for tests
  -h, --help        this text

Environment: PYTHON (interpreter for the venv, default python3; needs 3.8 or newer).
Exit codes: 0 done, 1 a step failed, 2 usage error or an unsupported platform.
EOF
}

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'setup.sh: error: %s\n' "$*" >&2; exit 2; }
fail_step() { printf 'setup.sh: error: step "%s" failed%s\n' "$1" "${2:+: $2}" >&2; exit 1; }

MODE=""
DRY_RUN=0
PREFIX=""
PROBE_ROOT=""
while [ "$#" -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --dry-run) DRY_RUN=1 ;;
        --prefix) [ "$#" -ge 2 ] || die "--prefix needs a directory"; PREFIX="$2"; shift ;;
        --prefix=*) PREFIX="${1#--prefix=}" ;;
        --probe-root) [ "$#" -ge 2 ] || die "--probe-root needs a directory"; PROBE_ROOT="$2"; shift ;;
        --probe-root=*) PROBE_ROOT="${1#--probe-root=}" ;;
        device|local|dev|aggregator)
            [ -z "$MODE" ] || die "two modes given ($MODE and $1)"
            MODE="$1" ;;
        *) die "unknown argument '$1' (see ./setup.sh --help)" ;;
    esac
    shift
done
if [ -n "$PREFIX" ]; then
    case "$PREFIX" in /*) ;; *) PREFIX="$(pwd)/$PREFIX" ;; esac
    PREFIX="${PREFIX%/}"
fi
if [ -n "$PROBE_ROOT" ] && [ ! -d "$PROBE_ROOT" ]; then die "--probe-root $PROBE_ROOT: no such directory"; fi

# --- preflight: interpreter and platform ---------------------------------------------------------
command -v "$PYTHON" >/dev/null 2>&1 || die "no Python interpreter '$PYTHON' (apt-get install python3, or set PYTHON)"
PY_VERSION="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" \
    || die "'$PYTHON' does not run"
PY_MINOR="${PY_VERSION#*.}"
if [ "${PY_VERSION%%.*}" -lt 3 ] || { [ "${PY_VERSION%%.*}" -eq 3 ] && [ "$PY_MINOR" -lt 8 ]; }; then
    die "Python $PY_VERSION ('$PYTHON') is too old: video-analysis needs 3.8 or newer; on JetPack 4.6 (Jetson Nano) install python3.8 and python3.8-venv and run PYTHON=python3.8 ./setup.sh (docs/platforms.md)"
fi

# The probe prints shell-safe KEY=VALUE lines. Under --probe-root, commands answer from the
# recorded output and no platform package is importable, so a plan depends only on the fixture.
probe_platform() {
    PYTHONPATH="$HERE" "$PYTHON" - "$PROBE_ROOT" <<'EOF'
import shlex
import sys
from pathlib import Path

from edge.device.hardware import import_optional, probe, run_command

root = sys.argv[1]
if root:
    def run(args):
        path = Path(root) / "commands" / (Path(args[0]).name + ".out")
        return path.read_text() if path.is_file() else None

    def importer(name):
        return None

    profile = probe(Path(root), run, importer)
else:
    run, importer = run_command, import_optional
    profile = probe()
userland = (run(["dpkg", "--print-architecture"]) or "").strip()
if not userland:
    userland = {"x86_64": "amd64", "aarch64": "arm64"}.get(profile.arch, profile.arch)
facts = {
    "PLATFORM": profile.platform,
    "MODEL": profile.model,
    "USERLAND": userland,
    "L4T": profile.l4t or "",
    "JETPACK": profile.jetpack or "",
    "GPU": profile.gpus[0].name if profile.gpus else "",
}
for key, value in facts.items():
    print(f"P_{key}={shlex.quote(value)}")
EOF
}
PROBE_OUTPUT="$(probe_platform)" || fail_step "probe" "the hardware probe did not run (PYTHONPATH=$HERE $PYTHON -m edge.commands.cli probe)"
P_PLATFORM="" P_MODEL="" P_USERLAND="" P_L4T="" P_JETPACK="" P_GPU=""
eval "$PROBE_OUTPUT"

IS_JETSON=0
case "$P_PLATFORM" in jetson-*) IS_JETSON=1 ;; esac
if [ -z "$MODE" ]; then
    case "$P_PLATFORM" in jetson-*|rpi-*) MODE=device ;; *) MODE=local ;; esac
fi

# --- plan and execution helpers --------------------------------------------------------------------
CHANGED=0
plan() { printf '%-10s %s\n' "$1:" "$2"; }
changed() { CHANGED=1; say "$*"; }
# System changes need root; a --prefix install writes only under the prefix, as the caller.
as_root() {
    if [ "$(id -u)" -eq 0 ] || [ -n "$PREFIX" ]; then "$@"; else sudo "$@"; fi
}
# Run a step's command; on failure stop with the step's name.
run_step() {
    local name="$1"; shift
    "$@" || fail_step "$name" "exit $?"
}

# Run a noisy step (pip) with its output in a log file, shown by name when it fails.
run_logged() {
    local name="$1" log; shift
    log="$(mktemp -t "video-analysis-setup.XXXXXX.log")"
    if "$@" >"$log" 2>&1; then
        rm -f "$log"
    else
        fail_step "$name" "exit $?; its output is in $log"
    fi
}

apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        changed "installing system packages: ${missing[*]}"
        run_step "apt-get update" as_root apt-get update -qq
        run_step "apt-get install ${missing[*]}" \
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
}

make_venv() {
    local venv="$1"; shift
    if [ ! -x "$venv/bin/python" ]; then
        changed "creating virtual environment $venv"
        run_step "venv $venv" "$PYTHON" -m venv "$@" "$venv"
        run_logged "pip upgrade" "$venv/bin/python" -m pip install -q --upgrade pip
    fi
}

# Copy a file only when its contents differ (mode and owner applied on copy).
install_file() {
    local mode="$1" src="$2" dst="$3"
    if [ -f "$dst" ] && cmp -s "$src" "$dst"; then return 0; fi
    changed "installing $dst"
    run_step "install $dst" as_root install -D -m "$mode" "$src" "$dst"
}

ensure_dir() {
    local mode="$1" dir="$2" owner="${3:-}"
    if [ ! -d "$dir" ]; then
        changed "creating $dir"
        run_step "mkdir $dir" as_root install -d -m "$mode" "$dir"
    fi
    if [ -n "$owner" ] && [ "$(stat -c %U "$dir")" != "$owner" ]; then
        changed "$dir: owner $owner"
        run_step "chown $dir" as_root chown "$owner:$owner" "$dir"
    fi
}

# What the package's wheel is built from: a second run with the same sources installs nothing.
source_fingerprint() {
    (cd "$HERE" && find edge contract aggregator pyproject.toml -type f -not -path '*/__pycache__/*' \
        -not -name '*.pyc' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
}

# Build the wheel from this checkout (with its package data) and install it into a venv.
install_wheel() {
    local venv="$1" extras="$2" stamp="$1/.video-analysis-install" spec wheel_dir
    spec="$(source_fingerprint) [$extras]"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$spec" ]; then
        say "video-analysis [$extras] in $venv: unchanged"
        return 0
    fi
    changed "building the video-analysis wheel and installing it into $venv with [$extras]"
    wheel_dir="$(mktemp -d)"
    run_logged "build wheel" "$venv/bin/pip" wheel -q --no-deps -w "$wheel_dir" "$HERE"
    local wheels=("$wheel_dir"/video_analysis-*.whl)
    [ -f "${wheels[0]}" ] || fail_step "build wheel" "no wheel in $wheel_dir"
    run_logged "pip install" "$venv/bin/pip" install -q --force-reinstall --no-deps "${wheels[0]}"
    run_logged "pip install dependencies" "$venv/bin/pip" install -q "${wheels[0]}${extras:+[$extras]}"
    rm -rf "$wheel_dir"
    printf '%s\n' "$spec" >"$stamp"
}

# --- device ---------------------------------------------------------------------------------------
device_mode() {
    case "$P_PLATFORM" in
        rpi-*)
            case "$P_USERLAND" in
                arm64) ;;
                *) die "Raspberry Pi with a $P_USERLAND userland: video-analysis needs the 64-bit Raspberry Pi OS (arm64; no onnxruntime wheels for 32-bit ARM)" ;;
            esac ;;
    esac
    case "$P_USERLAND" in
        amd64|arm64) ;;
        *) die "$P_USERLAND userland: video-analysis runs on amd64 or arm64 only" ;;
    esac

    local opt="$PREFIX/opt/video-analysis" etc="$PREFIX/etc/video-analysis" state="$PREFIX/var/lib/video-analysis"
    local units="$PREFIX/etc/systemd/system" venv_flags=() extras apt_packages=(python3-venv) venv_note
    local route engines_note jetpack_bindings=0
    extras="opencv"
    venv_note="its own OpenCV (opencv-python-headless: files, RTSP, V4L2; no GStreamer)"
    route="ONNX Runtime INT8 on the CPU"
    if [ "$IS_JETSON" -eq 1 ]; then
        case "$P_JETPACK" in
            4.*)
                # JetPack 4's TensorRT and GStreamer OpenCV are built for its Python 3.6, which
                # this project cannot run: a newer Python venv runs the CPU path only.
                route="ONNX Runtime INT8 on the CPU (JetPack $P_JETPACK's TensorRT and GStreamer OpenCV are built for its Python 3.6, which this project cannot run; no csi:// sources)"
                ;;
            *)
                jetpack_bindings=1
                venv_flags=(--system-site-packages)
                extras="jetson"
                venv_note="--system-site-packages: JetPack's OpenCV (with GStreamer, for csi:// and gst: sources) and TensorRT"
                route="TensorRT on the GPU (JetPack ${P_JETPACK:-unknown}), ONNX Runtime on the CPU as the last tiers"
                ;;
        esac
    elif [ "$P_PLATFORM" = x86-nvidia ]; then
        extras="opencv,tensorrt"
        route="TensorRT on ${P_GPU:-the NVIDIA GPU} (PyPI tensorrt), ONNX Runtime on the CPU as the last tiers"
    fi
    engines_note="video-analysis build-engine: INT8 calibration with the accuracy guard"
    case "$route" in TensorRT*) engines_note="$engines_note and TensorRT engines" ;; esac

    if [ "$DRY_RUN" -eq 1 ]; then
        echo "video-analysis setup plan (dry run: nothing is changed)"
        plan mode "device${PREFIX:+ under $PREFIX}"
        plan platform "$P_PLATFORM ($P_MODEL)${P_L4T:+, L4T $P_L4T}${P_JETPACK:+, JetPack $P_JETPACK}"
        plan route "$route"
        plan apt "${apt_packages[*]}"
        if [ -n "$PREFIX" ]; then
            plan user "none (--prefix: the installed tools run as the calling user)"
        else
            plan user "$SERVICE_USER (system user, home $state, groups video render)"
        fi
        plan dirs "$opt $etc $state"
        plan venv "$opt/venv (${venv_note})"
        plan wheel "video-analysis built from this checkout (package data included) into the venv with [$extras]"
        case "$route" in
            TensorRT*)
                plan pycuda "optional: built into the venv when nvcc (/usr/local/cuda/bin) exists; without it the TensorRT tiers are dropped with a logged reason and ONNX Runtime runs" ;;
        esac
        plan files "$etc/config.yaml (kept when present), $opt/share/doc/{README.md,platforms.md}"
        plan unit "$units/video-analysis.service"
        if [ "$jetpack_bindings" -eq 1 ]; then
            plan drop-in "$units/video-analysis.service.d/jetson.conf (BindPaths=/tmp/argus_socket for nvarguscamerasrc; DeviceAllow= for the /dev/nv* nodes present)"
        fi
        plan check "video-analysis check-config --quiet -c $etc/config.yaml"
        plan engines "$engines_note, cached in $state/cache"
        if [ -z "$PREFIX" ]; then
            plan systemd "daemon-reload, enable video-analysis (start it with systemctl start video-analysis)"
        fi
        return 0
    fi

    say "platform: $P_PLATFORM ($P_MODEL); $route"
    apt_install "${apt_packages[@]}"
    local run_as=()
    if [ -z "$PREFIX" ]; then
        if ! id "$SERVICE_USER" >/dev/null 2>&1; then
            changed "creating the system user $SERVICE_USER"
            local groups=video
            getent group render >/dev/null 2>&1 && groups="video,render"
            run_step "useradd $SERVICE_USER" as_root useradd --system --home-dir "$state" \
                --shell /usr/sbin/nologin --groups "$groups" "$SERVICE_USER"
        fi
        run_as=(runuser -u "$SERVICE_USER" --)
        [ "$(id -u)" -eq 0 ] || run_as=(sudo -u "$SERVICE_USER" --)
        ensure_dir 0755 "$opt"
        ensure_dir 0750 "$etc"
        ensure_dir 0750 "$state" "$SERVICE_USER"
    else
        ensure_dir 0755 "$opt"
        ensure_dir 0750 "$etc"
        ensure_dir 0750 "$state"
    fi
    make_venv "$opt/venv" "${venv_flags[@]}"
    install_wheel "$opt/venv" "$extras"
    case "$route" in
        TensorRT*)
            if ! "$opt/venv/bin/python" -c 'import pycuda' >/dev/null 2>&1; then
                if [ -x /usr/local/cuda/bin/nvcc ]; then
                    changed "building pycuda (optional) against /usr/local/cuda"
                    PATH="/usr/local/cuda/bin:$PATH" "$opt/venv/bin/pip" install -q pycuda \
                        || say "pycuda did not build: the TensorRT tiers are dropped and ONNX Runtime runs (docs/platforms.md)"
                else
                    say "pycuda not installed (no nvcc in /usr/local/cuda/bin): the TensorRT tiers are dropped and ONNX Runtime runs (docs/platforms.md)"
                fi
            fi ;;
    esac

    local config_tmp unit_tmp
    if [ ! -f "$etc/config.yaml" ]; then
        config_tmp="$(mktemp)"
        sed "s|^state_dir: /var/lib/video-analysis|state_dir: $state|" "$HERE/config.yaml" >"$config_tmp"
        install_file 0640 "$config_tmp" "$etc/config.yaml"
        rm -f "$config_tmp"
        if [ -z "$PREFIX" ]; then run_step "chgrp config" as_root chgrp "$SERVICE_USER" "$etc/config.yaml"; fi
    fi
    install_file 0644 "$HERE/README.md" "$opt/share/doc/README.md"
    install_file 0644 "$HERE/docs/platforms.md" "$opt/share/doc/platforms.md"
    unit_tmp="$(mktemp)"
    sed -e "s|/opt/video-analysis|$opt|g" -e "s|/etc/video-analysis|$etc|g" \
        "$HERE/systemd/video-analysis.service" >"$unit_tmp"
    local unit_before=""
    [ -f "$units/video-analysis.service" ] && unit_before="$(sha256sum <"$units/video-analysis.service")"
    install_file 0644 "$unit_tmp" "$units/video-analysis.service"
    rm -f "$unit_tmp"
    if [ "$jetpack_bindings" -eq 1 ]; then
        local dropin_tmp
        dropin_tmp="$(mktemp)"
        {
            printf '%s\n' "# Written by setup.sh: nvarguscamerasrc (csi:// sources) talks to nvargus-daemon" \
                "# through /tmp/argus_socket, which PrivateTmp= would hide; the GPU, DLA and" \
                "# multimedia nodes of this JetPack, as found at install time." \
                "[Unit]" "After=nvargus-daemon.service" \
                "[Service]" "BindPaths=-/tmp/argus_socket"
            local node
            for node in /dev/nvhost-* /dev/nvmap /dev/nvgpu/*/* /dev/nvidia* /dev/host1x-fence /dev/nvsciipc; do
                if [ -c "$node" ]; then printf 'DeviceAllow=%s rw\n' "$node"; fi
            done
        } >"$dropin_tmp"
        install_file 0644 "$dropin_tmp" "$units/video-analysis.service.d/jetson.conf"
        rm -f "$dropin_tmp"
    fi
    local unit_after
    unit_after="$(sha256sum <"$units/video-analysis.service")"

    say "checking the configuration"
    run_step "check-config" "${run_as[@]}" "$opt/venv/bin/video-analysis" check-config --quiet -c "$etc/config.yaml"

    # Engines and INT8 models: prepared now (minutes on a Pi or a Jetson) so the first start is
    # fast; skipped when this install and configuration were prepared already.
    local engines_stamp="$state/.setup-engines" engines_spec
    engines_spec="$(cat "$opt/venv/.video-analysis-install") $(sha256sum <"$etc/config.yaml" | cut -c1-16)"
    if [ -f "$engines_stamp" ] && [ "$(cat "$engines_stamp")" = "$engines_spec" ]; then
        say "engines and INT8 models: prepared for this install (unchanged)"
    else
        changed "preparing engines and INT8 models for this device (progress below; minutes on a Pi or a Jetson)"
        run_step "build-engine" "${run_as[@]}" "$opt/venv/bin/video-analysis" build-engine -c "$etc/config.yaml"
        printf '%s\n' "$engines_spec" | as_root tee "$engines_stamp" >/dev/null || fail_step "engines stamp"
    fi

    if [ -z "$PREFIX" ] && [ -d /run/systemd/system ]; then
        if [ "$unit_before" != "$unit_after" ]; then run_step "daemon-reload" as_root systemctl daemon-reload; fi
        if ! systemctl is-enabled --quiet video-analysis 2>/dev/null; then
            changed "enabling video-analysis"
            run_step "enable" as_root systemctl enable --quiet video-analysis
        fi
    fi
    if [ "$CHANGED" -eq 0 ]; then
        say "nothing to do: video-analysis is installed and unchanged"
    elif [ -z "$PREFIX" ]; then
        say "done: start it with systemctl start video-analysis; logs: journalctl -u video-analysis"
    else
        say "done: $opt/venv/bin/video-analysis run -c $etc/config.yaml"
    fi
}

# --- local / dev ----------------------------------------------------------------------------------
checkout_mode() {
    # mosquitto: the demo's private broker and the tests' real broker.
    local packages=(mosquitto python3-venv) extras="opencv,demo"
    if [ "$MODE" = dev ]; then
        # The tests lint the scripts (shellcheck), verify the units (systemd-analyze) and apply
        # the unit's system call filter (python3-seccomp).
        packages+=(mosquitto-clients shellcheck openssl systemd python3-seccomp)
        extras="opencv,demo,dev"
    fi
    if [ "$DRY_RUN" -eq 1 ]; then
        echo "video-analysis setup plan (dry run: nothing is changed)"
        plan mode "$MODE"
        plan apt "${packages[*]}"
        plan venv "$HERE/.venv"
        plan package "this checkout, editable, with [$extras]"
        return 0
    fi
    apt_install "${packages[@]}"
    # The broker is started privately by the demo and the tests, never as a system service.
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        as_root systemctl disable --now mosquitto >/dev/null 2>&1 || true
    fi
    make_venv "$HERE/.venv"
    say "installing video-analysis[$extras] into .venv (editable)"
    run_step "pip install -e" "$HERE/.venv/bin/pip" install -q -e "${HERE}[${extras}]"
    say "done: $HERE/.venv/bin/video-analysis"
}

# --- aggregator -----------------------------------------------------------------------------------
aggregator_mode() {
    local opt="$PREFIX/opt/video-analysis-aggregator" units="$PREFIX/etc/systemd/system"
    local mosq="$PREFIX/etc/mosquitto" unit_src="$HERE/systemd/video-analysis-aggregator.service"
    if [ "${PY_VERSION%%.*}" -eq 3 ] && [ "$PY_MINOR" -lt 10 ]; then
        die "Python $PY_VERSION: the aggregator needs 3.10 or newer (set PYTHON)"
    fi
    if [ "$DRY_RUN" -eq 1 ]; then
        echo "video-analysis setup plan (dry run: nothing is changed)"
        plan mode "aggregator${PREFIX:+ under $PREFIX}"
        plan apt "mosquitto mosquitto-clients python3-venv"
        plan venv "$opt/venv"
        plan wheel "video-analysis built from this checkout into the venv with [aggregator]"
        plan files "$mosq/conf.d/video-analysis.conf, $mosq/video-analysis.acl (passwords: deployment/mosquitto/add-device.sh)"
        plan unit "$units/video-analysis-aggregator.service"
        return 0
    fi
    apt_install mosquitto mosquitto-clients python3-venv
    ensure_dir 0755 "$opt"
    make_venv "$opt/venv"
    install_wheel "$opt/venv" aggregator
    install_file 0644 "$HERE/deployment/mosquitto/mosquitto.conf" "$mosq/conf.d/video-analysis.conf"
    # The ACL grows with add-device.sh: installed once, never overwritten.
    if [ ! -f "$mosq/video-analysis.acl" ]; then
        install_file 0644 "$HERE/deployment/mosquitto/video-analysis.acl" "$mosq/video-analysis.acl"
    fi
    [ -f "$unit_src" ] || fail_step "aggregator unit" "$unit_src is missing"
    local unit_tmp
    unit_tmp="$(mktemp)"
    sed -e "s|/opt/video-analysis-aggregator|$opt|g" "$unit_src" >"$unit_tmp"
    install_file 0644 "$unit_tmp" "$units/video-analysis-aggregator.service"
    rm -f "$unit_tmp"
    if [ "$CHANGED" -eq 0 ]; then say "nothing to do: the aggregator is installed and unchanged"; else say "done"; fi
}

case "$MODE" in
    device) device_mode ;;
    local|dev) checkout_mode ;;
    aggregator) aggregator_mode ;;
esac
