#!/usr/bin/env bash
# Add a device to the production broker: a random password in mosquitto's password file, the
# device's ACL line (its Home Assistant discovery node; va/<device>/# is the ACL's pattern), a
# password file for the device, and with --cert a client certificate signed by the broker's CA.
# Idempotent per device: an existing device keeps its password (use --rotate to replace it).
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: add-device.sh [--conf-dir DIR] [--out DIR] [--cert] [--rotate] DEVICE_ID

  --conf-dir DIR  mosquitto's directory (default /etc/mosquitto): video-analysis.passwd,
                  video-analysis.acl, certs/ca.crt and certs/ca.key
  --out DIR       where the device's files go (default ./DEVICE_ID): mqtt-password, and with
                  --cert client.crt, client.key and ca.crt; copy them to the device's
                  /etc/video-analysis/ and name them in its config.yaml (mqtt.password_file, mqtt.tls)
  --cert          also issue a client certificate (the TLS listener requires one)
  --rotate        replace the password of a device that exists
Then reload the broker: systemctl reload mosquitto (or kill -HUP its pid).
USAGE
}

die() { printf 'add-device.sh: error: %s\n' "$*" >&2; exit 2; }

CONF_DIR=/etc/mosquitto
OUT=""
CERT=0
ROTATE=0
DEVICE=""
while [ "$#" -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --conf-dir) [ "$#" -ge 2 ] || die "--conf-dir needs a directory"; CONF_DIR="$2"; shift ;;
        --out) [ "$#" -ge 2 ] || die "--out needs a directory"; OUT="$2"; shift ;;
        --cert) CERT=1 ;;
        --rotate) ROTATE=1 ;;
        -*) die "unknown option '$1' (see --help)" ;;
        *) [ -z "$DEVICE" ] || die "one device at a time"; DEVICE="$1" ;;
    esac
    shift
done
[ -n "$DEVICE" ] || die "no DEVICE_ID given (see --help)"
# The daemon's device_id rule; MQTT wildcards and '/' would escape the ACL.
[[ "$DEVICE" =~ ^[A-Za-z0-9_-]{1,64}$ ]] || die "device id '$DEVICE': use 1-64 letters, digits, '-' and '_'"
case "$DEVICE" in aggregator|homeassistant) die "device id '$DEVICE' is reserved for a service user" ;; esac
command -v mosquitto_passwd >/dev/null 2>&1 || die "mosquitto_passwd not found (apt-get install mosquitto)"

PASSWD="$CONF_DIR/video-analysis.passwd"
ACL="$CONF_DIR/video-analysis.acl"
OUT="${OUT:-./$DEVICE}"
[ -f "$ACL" ] || die "$ACL: no ACL file (./setup.sh aggregator installs it)"
install -d -m 0700 "$OUT"

if [ -f "$PASSWD" ] && grep -q "^$DEVICE:" "$PASSWD" && [ "$ROTATE" -eq 0 ]; then
    echo "$DEVICE: already in $PASSWD (password kept; --rotate replaces it)"
else
    password="$(openssl rand -base64 32 | tr -d '/+=\n' | cut -c1-32)"
    touch "$PASSWD"
    chmod 0640 "$PASSWD"
    mosquitto_passwd -b "$PASSWD" "$DEVICE" "$password" 2>/dev/null
    (umask 077 && printf '%s\n' "$password" >"$OUT/mqtt-password")
    echo "$DEVICE: password set in $PASSWD; the device's copy is $OUT/mqtt-password"
fi

line="topic write homeassistant/sensor/va_$DEVICE/#"
if grep -qx "user $DEVICE" "$ACL"; then
    echo "$DEVICE: ACL block present in $ACL"
else
    printf '\nuser %s\n%s\n' "$DEVICE" "$line" >>"$ACL"
    echo "$DEVICE: ACL block added to $ACL"
fi

if [ "$CERT" -eq 1 ]; then
    [ -f "$CONF_DIR/certs/ca.key" ] || die "$CONF_DIR/certs/ca.key: no CA key to sign the client certificate"
    if [ -f "$OUT/client.crt" ]; then
        echo "$DEVICE: $OUT/client.crt exists (kept)"
    else
        openssl req -new -newkey rsa:2048 -nodes -subj "/CN=$DEVICE" \
            -keyout "$OUT/client.key" -out "$OUT/client.csr" 2>/dev/null
        openssl x509 -req -in "$OUT/client.csr" -CA "$CONF_DIR/certs/ca.crt" -CAkey "$CONF_DIR/certs/ca.key" \
            -CAcreateserial -days 825 -out "$OUT/client.crt" 2>/dev/null
        rm -f "$OUT/client.csr"
        chmod 0600 "$OUT/client.key"
        cp "$CONF_DIR/certs/ca.crt" "$OUT/ca.crt"
        echo "$DEVICE: client certificate $OUT/client.crt (key $OUT/client.key)"
    fi
fi
echo "reload the broker to apply: systemctl reload mosquitto"
