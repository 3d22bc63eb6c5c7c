"""Live state on the wire: the retained topics a subscriber reads for the present (not the history).

The durable window stream (`contract.wire`, `{prefix}/{device}/{camera}/counts|heatmap`) is the
history: at least once, replayed oldest first after an outage, so a subscriber that only wants
"now" would see old values go by. Live state is published beside it, retained, QoS 1, always the
newest values whatever the backlog:

| topic | payload |
|---|---|
| `{prefix}/{device}/{camera}/state` | `CameraState`: occupancy now, today's line totals, zones, last window |
| `{prefix}/{device}/state` | `DeviceState`: device diagnostics (temperature, spool depth) |

`CameraState.window` is the end of the newest counts window folded in; a publisher never replaces a
state with one built from an older window (`edge.delivery.live_state` keeps that rule).

Cumulative line counts (`lines.*.in/out`) cover the local day that started at `last_reset` (an
ISO 8601 time with its UTC offset: the device's local midnight). They only grow during that day and
fall back to 0 at the next local midnight, which is what Home Assistant's `total_increasing` state
class reads as the start of a new cycle. Occupancy and zone `now` are the values of the newest
processed frame; `dwell_mean_s` is the newest window's mean dwell (null when nobody left the zone
in it).

Stdlib only and Python 3.8 syntax: imported by the edge and by any consumer.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from contract.errors import MessageError
from contract.fields import dumps, integer, is_number, loads, mapping, require

STATE_VERSION = 1
STATE_SUFFIX = "state"


# A live-state payload that does not follow this contract: the contract's one error type, raised
# by the same strict field readers as the data messages (the message names the field).
StateError = MessageError


@dataclass(frozen=True)
class StateTopics:
    """Live-state topic names of one device."""

    prefix: str
    device: str

    @property
    def device_state(self) -> str:
        return f"{self.prefix}/{self.device}/{STATE_SUFFIX}"

    def camera_state(self, camera: str) -> str:
        return f"{self.prefix}/{self.device}/{camera}/{STATE_SUFFIX}"


def state_subscriptions(prefix: str = "va") -> List[str]:
    """The topic filters a subscriber uses for the live state of every device and camera."""
    return [f"{prefix}/+/{STATE_SUFFIX}", f"{prefix}/+/+/{STATE_SUFFIX}"]


@dataclass(frozen=True)
class LineTotals:
    """Crossings of one line since `CameraState.last_reset`."""

    count_in: int
    count_out: int


@dataclass(frozen=True)
class ZoneState:
    now: int  # people in the zone on the newest processed frame
    dwell_mean_s: Optional[float]  # newest window's mean dwell; None when nobody left in it

    @property
    def occupied(self) -> bool:
        return self.now > 0


@dataclass(frozen=True)
class LastWindow:
    """The newest closed counts window, as counted in it (not cumulative)."""

    window: Tuple[float, float]
    frames: int
    lines: Dict[str, LineTotals]
    zone_entries: Dict[str, int]


@dataclass(frozen=True)
class CameraState:
    device: str
    camera: str
    ts: float  # when this state was built (UNIX seconds)
    window: float  # end of the newest counts window folded in; 0 before the first one
    last_reset: str  # ISO 8601 local midnight that started today's totals
    occupancy: Dict[str, int]  # class -> people now
    lines: Dict[str, LineTotals]
    zones: Dict[str, ZoneState]
    fps: float
    tier: str
    last_window: Optional[LastWindow] = None


@dataclass(frozen=True)
class DeviceState:
    device: str
    ts: float
    spool_depth: int
    temperature_c: Optional[float] = None
    cameras: List[str] = field(default_factory=list)
    sources_down: List[str] = field(default_factory=list)  # cameras whose source delivers no frames


def _lines_json(lines: Mapping[str, LineTotals]) -> Dict[str, Dict[str, int]]:
    return {name: {"in": t.count_in, "out": t.count_out} for name, t in lines.items()}


def build_camera_state(state: CameraState) -> bytes:
    last: Optional[Dict[str, Any]] = None
    if state.last_window is not None:
        lw = state.last_window
        last = {
            "window": [lw.window[0], lw.window[1]],
            "frames": lw.frames,
            "lines": _lines_json(lw.lines),
            "zones": {name: {"entered": n} for name, n in lw.zone_entries.items()},
        }
    return dumps(
        {
            "v": STATE_VERSION,
            "device": state.device,
            "camera": state.camera,
            "ts": state.ts,
            "window": state.window,
            "last_reset": state.last_reset,
            "occupancy": dict(state.occupancy),
            "lines": _lines_json(state.lines),
            "zones": {
                name: {"now": z.now, "occupied": z.occupied, "dwell_mean_s": z.dwell_mean_s}
                for name, z in state.zones.items()
            },
            "fps": state.fps,
            "tier": state.tier,
            "last_window": last,
        }
    )


def build_device_state(state: DeviceState) -> bytes:
    return dumps(
        {
            "v": STATE_VERSION,
            "device": state.device,
            "ts": state.ts,
            "spool_depth": state.spool_depth,
            "temperature_c": state.temperature_c,
            "cameras": list(state.cameras),
            "sources_down": list(state.sources_down),
        }
    )


# --- parsing (strict) ------------------------------------------------------------------------


def _loads(payload: bytes, where: str) -> Dict[str, Any]:
    value = loads(payload, where)
    if value.get("v") != STATE_VERSION:
        raise StateError(f"{where}: unsupported state version {value.get('v')!r} (this build reads v{STATE_VERSION})")
    return value


def _number(obj: Mapping[str, Any], key: str, where: str, nullable: bool = False) -> Optional[float]:
    value = require(obj, key, where)
    if value is None and nullable:
        return None
    if not is_number(value):
        raise StateError(f"{where}.{key}: expected a finite number, got {value!r}")
    return float(value)


def _text(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = require(obj, key, where)
    if not isinstance(value, str):
        raise StateError(f"{where}.{key}: expected a string, got {value!r}")
    return value


def _parse_lines(raw: Mapping[str, Any], where: str) -> Dict[str, LineTotals]:
    lines = {}
    for name, value in raw.items():
        if not isinstance(value, dict):
            raise StateError(f"{where}.{name}: expected an object")
        lines[name] = LineTotals(integer(value, "in", f"{where}.{name}"), integer(value, "out", f"{where}.{name}"))
    return lines


def parse_camera_state(payload: bytes, where: str = "state") -> CameraState:
    obj = _loads(payload, where)
    zones = {}
    for name, value in mapping(obj, "zones", where).items():
        if not isinstance(value, dict):
            raise StateError(f"{where}.zones.{name}: expected an object")
        zw = f"{where}.zones.{name}"
        zones[name] = ZoneState(integer(value, "now", zw), _number(value, "dwell_mean_s", zw, nullable=True))
    raw_occupancy = mapping(obj, "occupancy", where)
    occupancy = {name: integer(raw_occupancy, name, f"{where}.occupancy") for name in raw_occupancy}
    last_window: Optional[LastWindow] = None
    raw_last = require(obj, "last_window", where)
    if raw_last is not None:
        lw = f"{where}.last_window"
        if not isinstance(raw_last, dict):
            raise StateError(f"{lw}: expected an object or null")
        bounds = require(raw_last, "window", lw)
        if not (isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(b, (int, float)) for b in bounds)):
            raise StateError(f"{lw}.window: expected [start, end], got {bounds!r}")
        raw_zones = mapping(raw_last, "zones", lw)
        entries = {name: integer(value, "entered", f"{lw}.zones.{name}") for name, value in raw_zones.items()}
        last_window = LastWindow(
            (float(bounds[0]), float(bounds[1])),
            integer(raw_last, "frames", lw),
            _parse_lines(mapping(raw_last, "lines", lw), f"{lw}.lines"),
            entries,
        )
    return CameraState(
        device=_text(obj, "device", where),
        camera=_text(obj, "camera", where),
        ts=float(_number(obj, "ts", where) or 0.0),
        window=float(_number(obj, "window", where) or 0.0),
        last_reset=_text(obj, "last_reset", where),
        occupancy=occupancy,
        lines=_parse_lines(mapping(obj, "lines", where), f"{where}.lines"),
        zones=zones,
        fps=float(_number(obj, "fps", where) or 0.0),
        tier=_text(obj, "tier", where),
        last_window=last_window,
    )


def parse_device_state(payload: bytes, where: str = "device state") -> DeviceState:
    obj = _loads(payload, where)
    cameras = require(obj, "cameras", where)
    if not (isinstance(cameras, list) and all(isinstance(c, str) for c in cameras)):
        raise StateError(f"{where}.cameras: expected a list of camera ids")
    down = obj.get("sources_down", [])  # absent in states of earlier versions
    if not (isinstance(down, list) and all(isinstance(c, str) for c in down)):
        raise StateError(f"{where}.sources_down: expected a list of camera ids")
    return DeviceState(
        device=_text(obj, "device", where),
        ts=float(_number(obj, "ts", where) or 0.0),
        spool_depth=integer(obj, "spool_depth", where),
        temperature_c=_number(obj, "temperature_c", where, nullable=True),
        cameras=list(cameras),
        sources_down=list(down),
    )
