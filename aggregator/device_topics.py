"""Status, telemetry and snapshot messages: what the fleet view shows about each device.

They are not records (no seq, not acknowledged to the device), so a refused one is only counted
and logged. Checked as strictly as data: ids, sizes, finite numbers, a JPEG that starts as one.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from aggregator.store import DeviceUpdate, Snapshot
from aggregator.validate import (
    BAD_BODY,
    BAD_TOPIC,
    TOO_LARGE,
    UNEXPECTED,
    Invalid,
    Rejection,
    is_id,
    loads_bounded,
    short,
)
from contract import STATUS_STATES

MAX_TELEMETRY_BYTES = 32 * 1024
MAX_SNAPSHOT_BYTES = 900 * 1024
MAX_VERSION_CHARS = 64


@dataclass(frozen=True)
class DeviceTopicKind:
    name: str
    levels: int  # topic levels after the prefix

    def filter(self, prefix: str) -> str:
        return f"{prefix}/+/{self.name}" if self.levels == 2 else f"{prefix}/+/+/{self.name}"


STATUS = DeviceTopicKind("status", 2)
TELEMETRY = DeviceTopicKind("telemetry", 2)
SNAPSHOT = DeviceTopicKind("snapshot", 3)
DEVICE_TOPIC_KINDS = (STATUS, TELEMETRY, SNAPSHOT)


def _status(device: str, payload: bytes, now: float) -> DeviceUpdate:
    if len(payload) > MAX_TELEMETRY_BYTES:
        raise Invalid(TOO_LARGE, f"status of {len(payload)} bytes, limit {MAX_TELEMETRY_BYTES}")
    obj = loads_bounded(payload)
    state, boot, version, ts = obj.get("state"), obj.get("boot"), obj.get("version"), obj.get("ts")
    if state not in STATUS_STATES:
        raise Invalid(BAD_BODY, f"status.state: not one of {STATUS_STATES}")
    if not is_id(boot):
        raise Invalid(BAD_BODY, "status.boot: not a valid id")
    if not (isinstance(version, str) and 0 < len(version) <= MAX_VERSION_CHARS and version.isprintable()):
        raise Invalid(BAD_BODY, "status.version: expected a short printable string")
    if not isinstance(ts, (int, float)) or isinstance(ts, bool) or not math.isfinite(ts) or ts < 0:
        raise Invalid(BAD_BODY, "status.ts: expected a finite time")
    return DeviceUpdate(device, now, state=state, boot=boot, version=version, status_ts=float(ts))


def _telemetry(device: str, payload: bytes, now: float) -> DeviceUpdate:
    if len(payload) > MAX_TELEMETRY_BYTES:
        raise Invalid(TOO_LARGE, f"telemetry of {len(payload)} bytes, limit {MAX_TELEMETRY_BYTES}")
    obj = loads_bounded(payload)
    return DeviceUpdate(device, now, telemetry=json.dumps(obj, separators=(",", ":"), allow_nan=False))


def parse_device_topic(topic: str, payload: bytes, now: float) -> DeviceUpdate | Snapshot | Rejection:
    """The update a status/telemetry/snapshot message makes, or why it is refused (never raises)."""
    parts = topic.split("/")
    try:
        if not all(is_id(p) for p in parts[1:-1]):
            raise Invalid(BAD_TOPIC, "ids do not follow the id rule")
        if len(parts) == 3 and parts[2] == STATUS.name:
            return _status(parts[1], payload, now)
        if len(parts) == 3 and parts[2] == TELEMETRY.name:
            return _telemetry(parts[1], payload, now)
        if len(parts) == 4 and parts[3] == SNAPSHOT.name:
            if len(payload) > MAX_SNAPSHOT_BYTES or not payload.startswith(b"\xff\xd8"):
                raise Invalid(BAD_BODY, "snapshot: expected a JPEG within the size limit")
            return Snapshot(parts[1], parts[2], payload, now)
        raise Invalid(BAD_TOPIC, "not a status, telemetry or snapshot topic")
    except Invalid as exc:
        reason, detail = exc.reason, str(exc)
    except Exception as exc:  # whatever a payload provokes is that payload's fault
        reason, detail = UNEXPECTED, f"{exc.__class__.__name__}: {exc}"
    return Rejection(
        topic=short(topic, 120),
        reason=reason,
        detail=short(detail),
        payload_head=short(payload[:120].decode("utf-8", errors="replace"), 120),
        key=None,
        camera=None,
        kind=parts[-1] if parts[-1] in {k.name for k in DEVICE_TOPIC_KINDS} else None,
    )
