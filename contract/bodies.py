"""Typed message bodies (DESIGN.md "Wire contract"): counts, ack, status, telemetry.

Each record turns into its wire dict with `to_dict()` and back with `from_dict()`, which is
strict: a missing key or a wrongly typed value raises `MessageError` naming the field. Keys a
body does not define are ignored when reading, so a newer producer can add fields. The heatmap
tile body lives with its codec in `contract.heatmap`.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Union

from contract import fields
from contract.errors import MessageError

STATUS_STATES = ("online", "offline", "stopped")


@dataclass(frozen=True)
class ObjectCounts:
    """Occupancy of one object class over a window: now (at close), max, time-weighted mean, and
    the unique confirmed tracks seen."""

    now: int
    max: int
    mean: float
    unique: int


@dataclass(frozen=True)
class LineCounts:
    """Crossings of one line in a window (wire keys `in` and `out`)."""

    count_in: int
    count_out: int


@dataclass(frozen=True)
class ZoneCounts:
    now: int
    max: int
    mean: float
    entered: int
    dwell_mean_s: Optional[float]  # None when nobody left the zone in the window


@dataclass(frozen=True)
class CountsBody:
    """The `counts` body of one closed counting window of one camera."""

    fps: float
    target_fps: float
    tier: Union[str, int]  # a tier name or index
    frames: int
    dropped: int
    objects: Dict[str, ObjectCounts]
    lines: Dict[str, LineCounts]
    zones: Dict[str, ZoneCounts]

    def to_dict(self) -> Dict[str, Any]:
        return {
            "fps": self.fps,
            "target_fps": self.target_fps,
            "tier": self.tier,
            "frames": self.frames,
            "dropped": self.dropped,
            "objects": {
                name: {"now": c.now, "max": c.max, "mean": c.mean, "unique": c.unique}
                for name, c in self.objects.items()
            },
            "lines": {name: {"in": c.count_in, "out": c.count_out} for name, c in self.lines.items()},
            "zones": {
                name: {"now": c.now, "max": c.max, "mean": c.mean, "entered": c.entered, "dwell_mean_s": c.dwell_mean_s}
                for name, c in self.zones.items()
            },
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], where: str = "counts") -> "CountsBody":
        fps = fields.number(obj, "fps", where)
        target_fps = fields.number(obj, "target_fps", where)
        tier = fields.require(obj, "tier", where)
        if not (isinstance(tier, str) or fields.is_int(tier)):
            raise MessageError(f"{where}.tier: expected a tier name or index, got {tier!r}")
        return cls(
            fps=fps,
            target_fps=target_fps,
            tier=tier,
            frames=fields.integer(obj, "frames", where),
            dropped=fields.integer(obj, "dropped", where),
            objects={
                name: _object_counts(value, f"{where}.objects.{name}")
                for name, value in fields.mapping(obj, "objects", where).items()
            },
            lines={
                name: _line_counts(value, f"{where}.lines.{name}")
                for name, value in fields.mapping(obj, "lines", where).items()
            },
            zones={
                name: _zone_counts(value, f"{where}.zones.{name}")
                for name, value in fields.mapping(obj, "zones", where).items()
            },
        )


def _object_counts(value: Any, where: str) -> ObjectCounts:
    obj = fields.as_object(value, where)
    mean = fields.number(obj, "mean", where)
    return ObjectCounts(
        now=fields.integer(obj, "now", where),
        max=fields.integer(obj, "max", where),
        mean=mean,
        unique=fields.integer(obj, "unique", where),
    )


def _line_counts(value: Any, where: str) -> LineCounts:
    obj = fields.as_object(value, where)
    return LineCounts(count_in=fields.integer(obj, "in", where), count_out=fields.integer(obj, "out", where))


def _zone_counts(value: Any, where: str) -> ZoneCounts:
    obj = fields.as_object(value, where)
    now = fields.integer(obj, "now", where)
    peak = fields.integer(obj, "max", where)
    entered = fields.integer(obj, "entered", where)
    return ZoneCounts(
        now=now,
        max=peak,
        mean=fields.number(obj, "mean", where),
        entered=entered,
        dwell_mean_s=fields.optional_number(obj, "dwell_mean_s", where),
    )


@dataclass(frozen=True)
class Ack:
    """From the aggregator: every seq of `boot` up to `seq` is committed (or settled by a floor)."""

    boot: str
    seq: int

    def to_dict(self) -> Dict[str, Any]:
        return {"boot": self.boot, "seq": self.seq}

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], where: str = "ack") -> "Ack":
        return cls(boot=fields.text(obj, "boot", where), seq=fields.integer(obj, "seq", where, minimum=0))


@dataclass(frozen=True)
class Status:
    """The retained device status; `offline` is the broker's last will."""

    state: str
    boot: str
    version: str
    ts: float

    def to_dict(self) -> Dict[str, Any]:
        if self.state not in STATUS_STATES:
            raise MessageError(f"status.state: {self.state!r} is not one of {STATUS_STATES}")
        return {"state": self.state, "boot": self.boot, "version": self.version, "ts": self.ts}

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], where: str = "status") -> "Status":
        state = fields.text(obj, "state", where)
        if state not in STATUS_STATES:
            raise MessageError(f"{where}.state: {state!r} is not one of {STATUS_STATES}")
        ts = fields.number(obj, "ts", where)
        return cls(state=state, boot=fields.text(obj, "boot", where), version=fields.text(obj, "version", where), ts=ts)


@dataclass(frozen=True)
class SpoolCounters:
    """The delivery counters every telemetry message carries under `spool`."""

    depth: int
    bytes: int
    max_bytes: int
    dropped: int
    refused: int
    delivered: int
    in_flight: int
    resent: int

    def to_dict(self) -> Dict[str, Any]:
        return {
            "depth": self.depth,
            "bytes": self.bytes,
            "max_bytes": self.max_bytes,
            "dropped": self.dropped,
            "refused": self.refused,
            "delivered": self.delivered,
            "in_flight": self.in_flight,
            "resent": self.resent,
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], where: str = "telemetry.spool") -> "SpoolCounters":
        keys = ("depth", "bytes", "max_bytes", "dropped", "refused", "delivered", "in_flight", "resent")
        values = {key: fields.integer(obj, key, where) for key in keys}
        return cls(**values)


@dataclass(frozen=True)
class Telemetry:
    """The telemetry envelope: who and when, the delivery counters, and the runtime's own values
    (per-camera fps, tiers, latency, host load: whatever the runtime reports) beside them."""

    device: str
    boot: str
    ts: float
    spool: SpoolCounters
    values: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        obj = dict(self.values)
        obj.update({"device": self.device, "boot": self.boot, "ts": self.ts, "spool": self.spool.to_dict()})
        return obj

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], where: str = "telemetry") -> "Telemetry":
        envelope_keys = ("device", "boot", "ts", "spool")
        return cls(
            device=fields.text(obj, "device", where),
            boot=fields.text(obj, "boot", where),
            ts=fields.number(obj, "ts", where),
            spool=SpoolCounters.from_dict(fields.mapping(obj, "spool", where), f"{where}.spool"),
            values={key: value for key, value in obj.items() if key not in envelope_keys},
        )
