"""Strict validation of one received data message, on top of the wire contract.

`contract.wire.parse_data_message` checks shapes and types; the server must also survive
payloads written to hurt it. This module adds what a hostile or newer sender can break:
a size limit before parsing, no NaN/Infinity and no integers past 2^63 (JSON's unbounded ints
overflow SQLite and `float()`), the edge's id rule for every id, the exact key sets (no unknown
keys, a `v` that is an int), bounded ranges, and a tile decompressed with a hard output limit
(a zlib bomb stops at the expected size). It never raises: any exception from any step becomes
a `Rejection` with a reason code, and the rejection keeps (device, boot, seq) when they can be
trusted, so the record can be quarantined and the device's watermark can pass it.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import zlib
from dataclasses import dataclass
from typing import Any

from contract import (
    DATA_KINDS,
    ENVELOPE_KEYS,
    FLOOR_KEY,
    HEATMAP_DTYPE,
    HEATMAP_ENCODING,
    HEATMAP_UNIT,
    KIND_COUNTS,
    WIRE_VERSION,
    CountsBody,
    DataMessage,
    Envelope,
    HeatmapBody,
    MessageError,
)

ID_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}")
LABEL_RE = re.compile(r"[\x20-\x7e]{1,128}")
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_INT = 2**63 - 1
MAX_TIME_S = 1e11  # about the year 5138: any later window is garbage
MAX_RATE = 10_000.0
MAX_ENTRIES = 256  # classes, lines or zones in one counts window
MAX_GRID = 4096
MAX_TILE_CELLS = 256 * 256
DETAIL_CHARS = 200

COUNTS_KEYS = frozenset({"fps", "target_fps", "tier", "frames", "dropped", "objects", "lines", "zones"})
HEATMAP_KEYS = frozenset({"grid", "tile", "tile_size", "unit", "scale", "dtype", "encoding", "data"})
OBJECT_KEYS = frozenset({"now", "max", "mean", "unique"})
LINE_KEYS = frozenset({"in", "out"})
ZONE_KEYS = frozenset({"now", "max", "mean", "entered", "dwell_mean_s"})

# Reason codes: a small fixed set, so metrics labels stay bounded.
TOO_LARGE = "too_large"
BAD_TOPIC = "bad_topic"
BAD_JSON = "bad_json"
BAD_VERSION = "bad_version"
BAD_ENVELOPE = "bad_envelope"
BAD_BODY = "bad_body"
BAD_TILE = "bad_tile"
UNEXPECTED = "unexpected"
STORE_REFUSED = "store_refused"
REASONS = (TOO_LARGE, BAD_TOPIC, BAD_JSON, BAD_VERSION, BAD_ENVELOPE, BAD_BODY, BAD_TILE, UNEXPECTED, STORE_REFUSED)


class Invalid(Exception):
    """One validation failure: a reason code and a short detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class RecordKey:
    """The idempotency key of a record, when every part of it is trustworthy."""

    device: str
    boot: str
    seq: int


@dataclass(frozen=True)
class Rejection:
    topic: str
    reason: str
    detail: str
    payload_head: str  # the first bytes of the payload, escaped, for the log and quarantine
    key: RecordKey | None
    camera: str | None
    kind: str | None


def is_id(value: Any) -> bool:
    return isinstance(value, str) and ID_RE.fullmatch(value) is not None


def is_label(value: Any) -> bool:
    """A display name (a tier's, say): 1-128 printable ASCII characters, so no control or
    bidirectional-override characters reach a log line or the dashboard."""
    return isinstance(value, str) and LABEL_RE.fullmatch(value) is not None


def short(text: str, limit: int = DETAIL_CHARS) -> str:
    """`text` cut to `limit` characters, non-printable characters escaped (log lines stay one line)."""
    escaped = text.encode("unicode_escape", errors="backslashreplace").decode("ascii")
    return escaped if len(escaped) <= limit else escaped[:limit] + f"...(+{len(escaped) - limit})"


def _no_constant(name: str) -> Any:
    raise Invalid(BAD_JSON, f"{name} is not a number")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 19:
        raise Invalid(BAD_JSON, f"integer with {len(text)} digits")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise Invalid(BAD_JSON, f"number {text[:20]} out of range")
    return value


def loads_bounded(payload: bytes) -> dict[str, Any]:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid(BAD_JSON, "not UTF-8") from None
    try:
        value = json.loads(
            text, parse_constant=_no_constant, parse_int=_bounded_int, parse_float=_finite_float
        )
    except RecursionError:
        raise Invalid(BAD_JSON, "nested too deep") from None
    except ValueError as exc:
        raise Invalid(BAD_JSON, f"not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise Invalid(BAD_JSON, "not a JSON object")
    return value


def _int(obj: dict[str, Any], key: str, where: str, lo: int = 0, hi: int = MAX_INT) -> int:
    value = obj.get(key)
    if type(value) is not int or not lo <= value <= hi:
        raise Invalid(BAD_BODY, f"{where}.{key}: expected an integer in [{lo}, {hi}], got {short(repr(value), 40)}")
    return value


def _num(obj: dict[str, Any], key: str, where: str, hi: float, nullable: bool = False) -> float | None:
    value: Any = obj.get(key)
    if value is None and nullable and key in obj:
        return None
    if type(value) not in (int, float) or not math.isfinite(value) or not 0 <= value <= hi:
        raise Invalid(BAD_BODY, f"{where}.{key}: expected a number in [0, {hi:g}], got {short(repr(value), 40)}")
    return float(value)


def _keys(obj: Any, expected: frozenset[str], where: str, reason: str = BAD_BODY) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise Invalid(reason, f"{where}: expected an object")
    if set(obj) != expected:
        extra, missing = sorted(set(obj) - expected), sorted(expected - set(obj))
        raise Invalid(reason, f"{where}: unknown keys {short(str(extra), 80)}, missing {missing}")
    return obj


def _named(obj: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = obj[key]
    if not isinstance(value, dict) or len(value) > MAX_ENTRIES:
        raise Invalid(BAD_BODY, f"{where}.{key}: expected an object of at most {MAX_ENTRIES} entries")
    for name in value:
        if not is_id(name):
            raise Invalid(BAD_BODY, f"{where}.{key}: {short(repr(name), 80)} is not a valid id")
    return value


def _pair_ints(obj: dict[str, Any], key: str, where: str, lo: int, hi: int) -> tuple[int, int]:
    value = obj[key]
    if not (isinstance(value, list) and len(value) == 2 and all(type(v) is int and lo <= v <= hi for v in value)):
        raise Invalid(BAD_TILE, f"{where}.{key}: expected two integers in [{lo}, {hi}]")
    return value[0], value[1]


def validate_counts(body: dict[str, Any], where: str) -> None:
    _keys(body, COUNTS_KEYS, where)
    _num(body, "fps", where, MAX_RATE)
    _num(body, "target_fps", where, MAX_RATE)
    tier = body["tier"]
    if not (is_label(tier) or (type(tier) is int and 0 <= tier <= 1000)):
        raise Invalid(BAD_BODY, f"{where}.tier: expected a tier name or index, got {short(repr(tier), 80)}")
    _int(body, "frames", where)
    _int(body, "dropped", where)
    for name, entry in _named(body, "objects", where).items():
        sub = _keys(entry, OBJECT_KEYS, f"{where}.objects.{name}")
        for key in ("now", "max", "unique"):
            _int(sub, key, f"{where}.objects.{name}")
        _num(sub, "mean", f"{where}.objects.{name}", float(MAX_INT))
    for name, entry in _named(body, "lines", where).items():
        sub = _keys(entry, LINE_KEYS, f"{where}.lines.{name}")
        for key in ("in", "out"):
            _int(sub, key, f"{where}.lines.{name}")
    for name, entry in _named(body, "zones", where).items():
        sub = _keys(entry, ZONE_KEYS, f"{where}.zones.{name}")
        for key in ("now", "max", "entered"):
            _int(sub, key, f"{where}.zones.{name}")
        _num(sub, "mean", f"{where}.zones.{name}", float(MAX_INT))
        _num(sub, "dwell_mean_s", f"{where}.zones.{name}", MAX_TIME_S, nullable=True)


def decode_tile(body: dict[str, Any]) -> bytes:
    """The tile's raw uint16 cells; never inflates more than the tile's own size."""
    width, height = body["tile_size"]
    expected = width * height * 2
    data = body["data"]
    if not isinstance(data, str) or len(data) > 4 * expected + 1024:
        raise Invalid(BAD_TILE, "heatmap.data: expected base64 text no longer than the tile needs")
    try:
        compressed = base64.b64decode(data, validate=True)
        inflater = zlib.decompressobj()
        raw = inflater.decompress(compressed, expected + 1)
    except (binascii.Error, zlib.error, ValueError):
        raise Invalid(BAD_TILE, "heatmap.data: not zlib+base64") from None
    if len(raw) != expected or inflater.unconsumed_tail or not inflater.eof:
        raise Invalid(BAD_TILE, f"heatmap.data: does not inflate to exactly {expected} bytes ({width}x{height} uint16)")
    return raw


def validate_heatmap(body: dict[str, Any], where: str) -> None:
    _keys(body, HEATMAP_KEYS, where, BAD_TILE)
    cols, rows = _pair_ints(body, "grid", where, 1, MAX_GRID)
    tx, ty = _pair_ints(body, "tile", where, 0, MAX_GRID)
    width, height = _pair_ints(body, "tile_size", where, 1, MAX_GRID)
    if width * height > MAX_TILE_CELLS:
        raise Invalid(BAD_TILE, f"{where}.tile_size: more than {MAX_TILE_CELLS} cells")
    if tx * width >= cols or ty * height >= rows:
        raise Invalid(BAD_TILE, f"{where}.tile: [{tx}, {ty}] is outside grid [{cols}, {rows}]")
    for key, expected in (("unit", HEATMAP_UNIT), ("dtype", HEATMAP_DTYPE), ("encoding", HEATMAP_ENCODING)):
        if body[key] != expected:
            raise Invalid(BAD_TILE, f"{where}.{key}: expected {expected!r}")
    scale = body["scale"]
    if type(scale) not in (int, float) or not 0 < scale <= 1e6:
        raise Invalid(BAD_TILE, f"{where}.scale: expected a number in (0, 1e6]")
    decode_tile(body)


def _envelope(obj: dict[str, Any], device: str, camera: str, where: str) -> Envelope:
    version = obj.get("v")
    if type(version) is not int or version != WIRE_VERSION:
        got = short(repr(version), 20)
        raise Invalid(BAD_VERSION, f"{where}: wire version {got}, this server reads {WIRE_VERSION}")
    if obj.get("device") != device or obj.get("camera") != camera:
        raise Invalid(BAD_ENVELOPE, f"{where}: envelope device/camera disagree with the topic")
    if not is_id(obj.get("boot")):
        raise Invalid(BAD_ENVELOPE, f"{where}.boot: not a valid id")
    seq = obj.get("seq")
    if type(seq) is not int or not 1 <= seq <= MAX_INT:
        raise Invalid(BAD_ENVELOPE, f"{where}.seq: expected an integer in [1, 2^63)")
    floor = obj.get(FLOOR_KEY)
    if FLOOR_KEY in obj and (type(floor) is not int or not 1 <= floor <= seq):
        raise Invalid(BAD_ENVELOPE, f"{where}.floor: expected an integer in [1, seq]")
    window = obj.get("window")
    if not (
        isinstance(window, list)
        and len(window) == 2
        and all(type(t) in (int, float) and math.isfinite(t) and 0 <= t <= MAX_TIME_S for t in window)
        and window[0] <= window[1]
    ):
        raise Invalid(BAD_ENVELOPE, f"{where}.window: expected [start, end], 0 <= start <= end <= {MAX_TIME_S:g}")
    return Envelope(device, camera, obj["boot"], seq, (float(window[0]), float(window[1])), floor)


def _trusted_key(device: str | None, obj: dict[str, Any] | None) -> RecordKey | None:
    if device is None or obj is None:
        return None
    boot: Any = obj.get("boot")
    seq: Any = obj.get("seq")
    if is_id(boot) and type(seq) is int and 1 <= seq <= MAX_INT:
        return RecordKey(device, boot, seq)
    return None


def validate_message(topic: str, payload: bytes) -> DataMessage | Rejection:
    """The parsed message, or why it is refused (never raises)."""
    device = camera = kind = None
    obj: dict[str, Any] | None = None
    try:
        parts = topic.split("/")
        if len(parts) != 4 or parts[3] not in DATA_KINDS or not (is_id(parts[1]) and is_id(parts[2])):
            raise Invalid(BAD_TOPIC, "not {prefix}/{device}/{camera}/counts|heatmap with valid ids")
        device, camera, kind = parts[1], parts[2], parts[3]
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise Invalid(TOO_LARGE, f"{len(payload)} bytes, limit {MAX_PAYLOAD_BYTES}")
        obj = loads_bounded(payload)
        envelope = _envelope(obj, device, camera, kind)
        body = {k: v for k, v in obj.items() if k not in ENVELOPE_KEYS and k != FLOOR_KEY}
        if kind == KIND_COUNTS:
            validate_counts(body, kind)
            return DataMessage(kind=kind, envelope=envelope, body=CountsBody.from_dict(body, kind))
        validate_heatmap(body, kind)
        return DataMessage(kind=kind, envelope=envelope, body=HeatmapBody.from_dict(body, kind))
    except Invalid as exc:
        reason, detail = exc.reason, str(exc)
    except MessageError as exc:
        reason, detail = BAD_BODY, str(exc)
    except Exception as exc:  # anything else a payload provokes is still that payload's fault
        reason, detail = UNEXPECTED, f"{exc.__class__.__name__}: {exc}"
    try:
        key = _trusted_key(device, obj)
    except Exception:
        key = None
    return Rejection(
        topic=short(topic, 120),
        reason=reason,
        detail=short(detail),
        payload_head=short(payload[:300].decode("utf-8", errors="replace"), 300),
        key=key,
        camera=camera,
        kind=kind,
    )
