"""The MQTT wire contract (DESIGN.md): topic names, payload build and strict parse.

Shared by the edge daemon and the aggregator, so it imports only the standard library.

A data message is one flat JSON object: the envelope keys
(`v`, `device`, `camera`, `boot`, `seq`, `window`, and `floor` once it is sent) next to the body keys
that the analytics produce (`CountsWindow.body()`, `HeatmapTile.body()`).

`floor` is added by the publisher each time it sends a message: every seq of the same
(device, boot) below `floor` is settled (already acknowledged or dropped by the full spool), so
the aggregator counts its "highest contiguous seq" from there. Without it a gap left by a spool
drop, or a lost first message of a boot, would stall (or falsely advance) the acknowledgements.

Parsing is strict: an unknown version, a missing key or a wrongly typed value raises
`MessageError` whose message names the field, so a consumer can log and count it.
"""

import base64
import binascii
import json
import math
import uuid
import zlib
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

WIRE_VERSION = 1
KIND_COUNTS = "counts"
KIND_HEATMAP = "heatmap"
DATA_KINDS = (KIND_COUNTS, KIND_HEATMAP)
STATUS_STATES = ("online", "offline", "stopped")
ENVELOPE_KEYS = ("v", "device", "camera", "boot", "seq", "window")
FLOOR_KEY = "floor"

COUNTS_OBJECT_KEYS = ("now", "max", "mean", "unique")
COUNTS_LINE_KEYS = ("in", "out")
COUNTS_ZONE_KEYS = ("now", "max", "mean", "entered", "dwell_mean_s")
HEATMAP_UNIT = "person_seconds"
HEATMAP_DTYPE = "uint16"
HEATMAP_ENCODING = "zlib+base64"


class MessageError(ValueError):
    """A payload or topic that does not follow the wire contract; the message says why."""


@dataclass(frozen=True)
class Topics:
    """Topic names of one device."""

    prefix: str
    device: str

    @property
    def status(self) -> str:
        return f"{self.prefix}/{self.device}/status"

    @property
    def telemetry(self) -> str:
        return f"{self.prefix}/{self.device}/telemetry"

    @property
    def ack(self) -> str:
        return f"{self.prefix}/{self.device}/ack"

    def data(self, kind: str, camera: str) -> str:
        if kind not in DATA_KINDS:
            raise MessageError(f"unknown data kind {kind!r}")
        return f"{self.prefix}/{self.device}/{camera}/{kind}"

    def counts(self, camera: str) -> str:
        return self.data(KIND_COUNTS, camera)

    def heatmap(self, camera: str) -> str:
        return self.data(KIND_HEATMAP, camera)

    def snapshot(self, camera: str) -> str:
        return f"{self.prefix}/{self.device}/{camera}/snapshot"


def data_subscriptions(prefix: str = "va") -> List[str]:
    """The topic filters an aggregator subscribes to for data messages of every device."""
    return [f"{prefix}/+/+/{kind}" for kind in DATA_KINDS]


def ack_topic(prefix: str, device: str) -> str:
    return Topics(prefix, device).ack


def new_boot_id() -> str:
    """A per-start id (random, so it never repeats even when the clock is wrong)."""
    return uuid.uuid4().hex[:16]


@dataclass(frozen=True)
class Envelope:
    device: str
    camera: str
    boot: str
    seq: int
    window: Tuple[float, float]
    floor: Optional[int] = None
    v: int = WIRE_VERSION


@dataclass(frozen=True)
class DataMessage:
    kind: str
    envelope: Envelope
    body: Dict[str, Any]


@dataclass(frozen=True)
class Ack:
    boot: str
    seq: int


@dataclass(frozen=True)
class Status:
    state: str
    boot: str
    version: str
    ts: float


def _dumps(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _loads(payload: bytes, what: str) -> Dict[str, Any]:
    try:
        value = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise MessageError(f"{what}: not UTF-8 JSON ({exc.__class__.__name__})") from None
    if not isinstance(value, dict):
        raise MessageError(f"{what}: expected a JSON object")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def _require(obj: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in obj:
        raise MessageError(f"{where}: missing {key!r}")
    return obj[key]


def _int(obj: Mapping[str, Any], key: str, where: str, minimum: int = 0) -> int:
    value = _require(obj, key, where)
    if not _is_int(value) or value < minimum:
        raise MessageError(f"{where}.{key}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _number(obj: Mapping[str, Any], key: str, where: str, nullable: bool = False) -> Optional[float]:
    value = _require(obj, key, where)
    if value is None and nullable:
        return None
    if not _is_number(value) or value < 0:
        raise MessageError(f"{where}.{key}: expected a number >= 0, got {value!r}")
    return float(value)


def _text(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = _require(obj, key, where)
    if not isinstance(value, str) or not value:
        raise MessageError(f"{where}.{key}: expected a non-empty string, got {value!r}")
    return value


def _mapping(obj: Mapping[str, Any], key: str, where: str) -> Dict[str, Any]:
    value = _require(obj, key, where)
    if not isinstance(value, dict):
        raise MessageError(f"{where}.{key}: expected an object")
    return value


def _pair(obj: Mapping[str, Any], key: str, where: str, integer: bool, minimum: float) -> Tuple[Any, Any]:
    value = _require(obj, key, where)
    check = _is_int if integer else _is_number
    if not (isinstance(value, list) and len(value) == 2 and all(check(v) and v >= minimum for v in value)):
        kind = "integers" if integer else "numbers"
        raise MessageError(f"{where}.{key}: expected [a, b], two {kind} >= {minimum}, got {value!r}")
    return value[0], value[1]


# --- data messages -------------------------------------------------------------------------


def build_data_payload(
    kind: str,
    device: str,
    camera: str,
    boot: str,
    seq: int,
    window: Tuple[float, float],
    body: Mapping[str, Any],
) -> bytes:
    """The JSON payload of a counts or heatmap message (without `floor`, added when sent)."""
    if kind not in DATA_KINDS:
        raise MessageError(f"unknown data kind {kind!r}")
    clash = sorted(set(body) & (set(ENVELOPE_KEYS) | {FLOOR_KEY}))
    if clash:
        raise MessageError(f"{kind} body uses reserved envelope keys {clash}")
    envelope = {"v": WIRE_VERSION, "device": device, "camera": camera, "boot": boot, "seq": seq}
    envelope["window"] = [window[0], window[1]]
    return _dumps({**envelope, **body})


def with_floor(payload: bytes, floor: int) -> bytes:
    """Add the send-time `floor` to a payload made by `build_data_payload` (compact JSON object,
    no `floor` yet), without re-encoding the body: replay sends thousands of these."""
    return payload[:-1] + b',"floor":' + str(int(floor)).encode("ascii") + b"}"


def split_data_topic(topic: str) -> Tuple[str, str, str, str]:
    """`{prefix}/{device}/{camera}/{kind}` -> (prefix, device, camera, kind)."""
    parts = topic.split("/")
    if len(parts) != 4 or not all(parts) or parts[3] not in DATA_KINDS:
        raise MessageError(f"{topic}: not a data topic ({{prefix}}/{{device}}/{{camera}}/counts|heatmap)")
    return parts[0], parts[1], parts[2], parts[3]


def parse_envelope(obj: Mapping[str, Any], where: str) -> Envelope:
    version = _require(obj, "v", where)
    if version != WIRE_VERSION:
        raise MessageError(
            f"{where}: unsupported wire version {version!r} (this build reads v{WIRE_VERSION})"
        )
    seq = _int(obj, "seq", where, minimum=1)
    floor: Optional[int] = None
    if FLOOR_KEY in obj:
        floor = _int(obj, FLOOR_KEY, where, minimum=1)
        if floor > seq:
            raise MessageError(f"{where}.floor: {floor} is above seq {seq}")
    start, end = _pair(obj, "window", where, integer=False, minimum=0)
    if end < start:
        raise MessageError(f"{where}.window: end {end} before start {start}")
    return Envelope(
        device=_text(obj, "device", where),
        camera=_text(obj, "camera", where),
        boot=_text(obj, "boot", where),
        seq=seq,
        window=(float(start), float(end)),
        floor=floor,
    )


def validate_counts_body(body: Mapping[str, Any], where: str = "counts") -> None:
    _number(body, "fps", where)
    _number(body, "target_fps", where)
    tier = _require(body, "tier", where)
    if not (isinstance(tier, str) or _is_int(tier)):
        raise MessageError(f"{where}.tier: expected a tier name or index, got {tier!r}")
    _int(body, "frames", where)
    _int(body, "dropped", where)
    for name, cls in _mapping(body, "objects", where).items():
        sub = _as_object(cls, f"{where}.objects.{name}")
        _number(sub, "mean", f"{where}.objects.{name}")
        for key in ("now", "max", "unique"):
            _int(sub, key, f"{where}.objects.{name}")
    for name, line in _mapping(body, "lines", where).items():
        sub = _as_object(line, f"{where}.lines.{name}")
        for key in COUNTS_LINE_KEYS:
            _int(sub, key, f"{where}.lines.{name}")
    for name, zone in _mapping(body, "zones", where).items():
        sub = _as_object(zone, f"{where}.zones.{name}")
        for key in ("now", "max", "entered"):
            _int(sub, key, f"{where}.zones.{name}")
        _number(sub, "mean", f"{where}.zones.{name}")
        # No one has left the zone yet in this window: no mean dwell to report.
        _number(sub, "dwell_mean_s", f"{where}.zones.{name}", nullable=True)


def validate_heatmap_body(body: Mapping[str, Any], where: str = "heatmap") -> None:
    cols, rows = _pair(body, "grid", where, integer=True, minimum=1)
    tx, ty = _pair(body, "tile", where, integer=True, minimum=0)
    width, height = _pair(body, "tile_size", where, integer=True, minimum=1)
    if tx * width >= cols or ty * height >= rows:
        raise MessageError(
            f"{where}.tile: tile [{tx}, {ty}] of size [{width}, {height}] is outside grid [{cols}, {rows}]"
        )
    for key, expected in (("unit", HEATMAP_UNIT), ("dtype", HEATMAP_DTYPE), ("encoding", HEATMAP_ENCODING)):
        if _require(body, key, where) != expected:
            raise MessageError(f"{where}.{key}: expected {expected!r}, got {body[key]!r}")
    scale = _number(body, "scale", where)
    if not scale:
        raise MessageError(f"{where}.scale: must be > 0")
    data = _text(body, "data", where)
    try:
        raw = zlib.decompress(base64.b64decode(data, validate=True))
    except (binascii.Error, zlib.error, ValueError):
        raise MessageError(f"{where}.data: not zlib+base64") from None
    expected_bytes = width * height * 2
    if len(raw) != expected_bytes:
        raise MessageError(
            f"{where}.data: {len(raw)} bytes, expected {expected_bytes} ({width}x{height} uint16)"
        )


def _as_object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise MessageError(f"{where}: expected an object")
    return value


_BODY_VALIDATORS = {KIND_COUNTS: validate_counts_body, KIND_HEATMAP: validate_heatmap_body}


def parse_data_message(topic: str, payload: bytes) -> DataMessage:
    """Strictly parse a counts/heatmap message; the topic must agree with the envelope."""
    _prefix, device, camera, kind = split_data_topic(topic)
    obj = _loads(payload, topic)
    envelope = parse_envelope(obj, topic)
    if envelope.device != device or envelope.camera != camera:
        raise MessageError(
            f"{topic}: envelope says device {envelope.device!r} camera {envelope.camera!r}, topic disagrees"
        )
    body = {k: v for k, v in obj.items() if k not in ENVELOPE_KEYS and k != FLOOR_KEY}
    _BODY_VALIDATORS[kind](body, f"{topic} {kind}")
    return DataMessage(kind=kind, envelope=envelope, body=body)


# --- acks and status -------------------------------------------------------------------------


def build_ack(ack: Ack) -> bytes:
    return _dumps({"boot": ack.boot, "seq": ack.seq})


def parse_ack(payload: bytes, where: str = "ack") -> Ack:
    obj = _loads(payload, where)
    return Ack(boot=_text(obj, "boot", where), seq=_int(obj, "seq", where, minimum=0))


def build_status(status: Status) -> bytes:
    if status.state not in STATUS_STATES:
        raise MessageError(f"status.state: {status.state!r} is not one of {STATUS_STATES}")
    return _dumps({"state": status.state, "boot": status.boot, "version": status.version, "ts": status.ts})


def parse_status(payload: bytes, where: str = "status") -> Status:
    obj = _loads(payload, where)
    state = _text(obj, "state", where)
    if state not in STATUS_STATES:
        raise MessageError(f"{where}.state: {state!r} is not one of {STATUS_STATES}")
    ts = _number(obj, "ts", where)
    return Status(
        state=state, boot=_text(obj, "boot", where), version=_text(obj, "version", where), ts=float(ts or 0.0)
    )


def build_telemetry(values: Mapping[str, Any]) -> bytes:
    return _dumps(values)


def parse_telemetry(payload: bytes, where: str = "telemetry") -> Dict[str, Any]:
    return _loads(payload, where)
