"""Home Assistant MQTT discovery: one retained device-based discovery message per device.

Follows HA's device-based discovery (`<ha prefix>/device/<node>/config`, HA 2024.11+): the device
(`dev`), the origin (`o`) and the availability are given once, every entity is a component under
`cmps` with its platform (`p`), `unique_id` and `default_entity_id` (which replaces `object_id`,
no longer honoured from HA 2026.4). Every entity reads the retained live-state topics of
`contract.state`, never the replayed window stream, so a replay after an outage cannot show old
values. Per camera:

- `sensor` people now, per counted class (`measurement`, `force_update`, so equal samples count);
- `sensor` today's cumulative `in` and `out` per line (`total_increasing`): they fall back to 0 at
  local midnight, which HA reads as a new cycle. `last_reset_value_template` is not sent: HA
  accepts it only with state class `total`; the payload's `last_reset` says when the day began;
- per zone: `binary_sensor` occupied (device class `occupancy`), `sensor` people now, `sensor` mean
  dwell of the newest window (device class `duration`, seconds);
- diagnostics (`entity_category: diagnostic`): fps and tier; an `image` entity for the retained
  snapshot when snapshots are enabled.

Per device: diagnostic `sensor`s for the SoC temperature and the spool depth (device state topic).
Every live value has `expire_after` (`EXPIRE_FACTOR` times its publishing period), so a value
that stops arriving shows as unavailable rather than frozen. Availability follows the device's
retained status topic.

Removed entities are cleaned up on reload: the component ids (with their platforms) published
last time are kept in `<state_dir>/homeassistant-components.json`; a component that is gone is
published once more reduced to `{"p": platform}`, which HA documents as "remove this component".
Discovery topics of the single-component scheme used before (`<ha prefix>/sensor/<node>/.../config`)
get an empty retained payload, which removes those entities. With discovery switched off after it
was on, the device topic gets an empty retained payload (HA removes the device).
"""

import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional

from contract import Topics
from contract.state import StateTopics
from edge.core.errors import ConfigError

if TYPE_CHECKING:
    from edge.config import Config

log = logging.getLogger(__name__)

ORIGIN_NAME = "video-analysis"
EXPIRE_FACTOR = 3
COMPONENTS_FILE = "homeassistant-components.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_ENTITY_UNSAFE = re.compile(r"[^a-z0-9_]")


@dataclass(frozen=True)
class DiscoveryMessage:
    """One retained message: a discovery config, or an empty payload that removes one."""

    topic: str
    payload: bytes


@dataclass(frozen=True)
class DeviceDiscovery:
    """What to publish (retained, in order) and the components to remember for the next reload."""

    messages: List[DiscoveryMessage]
    components: Dict[str, str] = field(default_factory=dict)  # component id -> platform


def node_id(config: "Config") -> str:
    return _UNSAFE.sub("_", f"va_{config.device_id}")


def device_topic(config: "Config") -> str:
    return f"{config.mqtt.homeassistant.prefix}/device/{node_id(config)}/config"


def _json(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _expire(period_s: float) -> int:
    return int(math.ceil(EXPIRE_FACTOR * period_s))


class _Components:
    """Collects the `cmps` mapping, with unique ids and default entity ids derived from one key."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.items: Dict[str, Dict[str, Any]] = {}

    def add(self, platform: str, key: str, name: str, **options: Any) -> None:
        component_id = _UNSAFE.sub("_", key)
        if component_id in self.items:
            raise ConfigError(f"mqtt.homeassistant: two entities map to the same id {component_id!r}; rename one")
        unique_id = f"{self.node}_{component_id}"
        self.items[component_id] = {
            "p": platform,
            "name": name,
            "unique_id": unique_id,
            "default_entity_id": f"{platform}.{_ENTITY_UNSAFE.sub('_', unique_id.lower())}",
            **options,
        }


def _value(path: str) -> str:
    # Subscripts, not attributes: `in` is a Jinja keyword and ids may hold '-' or '.'.
    return "{{ value_json" + path + " }}"


def _components(config: "Config") -> Dict[str, Dict[str, Any]]:
    topics = Topics(config.mqtt.prefix, config.device_id)
    state_topics = StateTopics(config.mqtt.prefix, config.device_id)
    camera_expire = _expire(config.counts.window_s)
    device_expire = _expire(config.mqtt.telemetry_interval_s)
    cmps = _Components(node_id(config))
    for camera in config.cameras:
        cam = camera.id
        live = {"state_topic": state_topics.camera_state(cam), "expire_after": camera_expire}
        for cls in config.detector.classes:
            cmps.add(
                "sensor", f"{cam}_{cls}_now", f"{cam} {cls} now",
                value_template=_value(f"['occupancy']['{cls}']"), state_class="measurement",
                unit_of_measurement="people", force_update=True, icon="mdi:account-group", **live,
            )  # fmt: skip
        for line in camera.lines:
            for direction in ("in", "out"):
                cmps.add(
                    "sensor", f"{cam}_line_{line.id}_{direction}_today", f"{cam} {line.id} {direction} today",
                    value_template=_value(f"['lines']['{line.id}']['{direction}']"),
                    state_class="total_increasing", unit_of_measurement="people",
                    icon="mdi:transfer-right" if direction == "in" else "mdi:transfer-left", **live,
                )  # fmt: skip
        for zone in camera.zones:
            zone_path = f"['zones']['{zone.id}']"
            cmps.add(
                "binary_sensor", f"{cam}_zone_{zone.id}_occupied", f"{cam} {zone.id} occupied",
                value_template="{{ 'ON' if value_json" + zone_path + "['occupied'] else 'OFF' }}",
                payload_on="ON", payload_off="OFF", device_class="occupancy", **live,
            )  # fmt: skip
            cmps.add(
                "sensor", f"{cam}_zone_{zone.id}_now", f"{cam} {zone.id} people",
                value_template=_value(zone_path + "['now']"), state_class="measurement",
                unit_of_measurement="people", force_update=True, icon="mdi:map-marker-radius", **live,
            )  # fmt: skip
            cmps.add(
                "sensor", f"{cam}_zone_{zone.id}_dwell", f"{cam} {zone.id} mean dwell",
                value_template=_value(zone_path + "['dwell_mean_s']"), device_class="duration",
                state_class="measurement", unit_of_measurement="s", **live,
            )  # fmt: skip
        cmps.add(
            "sensor", f"{cam}_fps", f"{cam} fps", value_template=_value("['fps']"), state_class="measurement",
            unit_of_measurement="fps", entity_category="diagnostic", icon="mdi:speedometer", **live,
        )  # fmt: skip
        cmps.add(
            "sensor", f"{cam}_tier", f"{cam} tier", value_template=_value("['tier']"),
            entity_category="diagnostic", icon="mdi:layers-triple", **live,
        )  # fmt: skip
        if config.mqtt.snapshot.enabled:
            cmps.add(
                "image", f"{cam}_snapshot", f"{cam} snapshot", image_topic=topics.snapshot(cam),
                content_type="image/jpeg",
            )  # fmt: skip
    device_live = {"state_topic": state_topics.device_state, "expire_after": device_expire}
    cmps.add(
        "sensor", "temperature", "temperature", value_template=_value("['temperature_c']"),
        device_class="temperature", state_class="measurement", unit_of_measurement="°C",
        entity_category="diagnostic", **device_live,
    )  # fmt: skip
    cmps.add(
        "sensor", "spool_depth", "spool depth", value_template=_value("['spool_depth']"),
        state_class="measurement", unit_of_measurement="messages", entity_category="diagnostic",
        icon="mdi:tray-full", **device_live,
    )  # fmt: skip
    return cmps.items


def _legacy_topics(config: "Config") -> List[str]:
    """The single-component discovery topics earlier versions published for this config."""
    prefix, node = config.mqtt.homeassistant.prefix, node_id(config)
    object_ids = []
    for camera in config.cameras:
        object_ids += [f"{camera.id}_{cls}_occupancy" for cls in config.detector.classes]
        object_ids += [f"{camera.id}_line_{line.id}_{d}" for line in camera.lines for d in ("in", "out")]
        object_ids += [f"{camera.id}_zone_{zone.id}_occupancy" for zone in camera.zones]
    return [f"{prefix}/sensor/{node}/{_UNSAFE.sub('_', oid)}/config" for oid in object_ids]


def device_discovery(config: "Config", version: str, previous: Optional[Mapping[str, str]] = None) -> DeviceDiscovery:
    """The discovery messages for `config`; `previous` is the component list published last time
    (component id -> platform), whose missing entries are published as removals."""
    previous = previous or {}
    if not config.mqtt.homeassistant.enabled:
        removal = [DiscoveryMessage(device_topic(config), b"")] if previous else []
        return DeviceDiscovery(removal, {})
    components = _components(config)
    removed = {cid: {"p": platform} for cid, platform in previous.items() if cid not in components}
    status = Topics(config.mqtt.prefix, config.device_id).status
    payload = {
        "dev": {
            "ids": [node_id(config)],
            "name": f"video-analysis {config.device_id}",
            "mf": "video-analysis",
            "mdl": "edge video analytics",
            "sw": version,
        },
        "o": {"name": ORIGIN_NAME, "sw": version},
        "availability": [
            {
                "topic": status,
                "value_template": "{{ 'online' if value_json.state == 'online' else 'offline' }}",
                "payload_available": "online",
                "payload_not_available": "offline",
            }
        ],
        "qos": 1,
        "cmps": {**components, **removed},
    }
    messages = [DiscoveryMessage(topic, b"") for topic in _legacy_topics(config)]
    messages.append(DiscoveryMessage(device_topic(config), _json(payload)))
    return DeviceDiscovery(messages, {cid: c["p"] for cid, c in components.items()})


def discovery_messages(
    config: "Config", version: str, previous: Optional[Mapping[str, str]] = None
) -> List[DiscoveryMessage]:
    """The retained messages to publish on connect (see `device_discovery`)."""
    return device_discovery(config, version, previous).messages


class ComponentStore:
    """The component list published last time, in a small JSON file (the state directory)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def from_config(cls, config: "Config") -> "ComponentStore":
        return cls(config.state_dir / COMPONENTS_FILE)

    def load(self) -> Dict[str, str]:
        """The saved list; empty when there is none or it cannot be read (logged): then removed
        entities are not cleaned up this once, nothing else is affected."""
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("%s: cannot read the Home Assistant component list (%s); not cleaning up", self.path, exc)
            return {}
        if not (isinstance(raw, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items())):
            log.warning("%s: not a component list; not cleaning up removed entities", self.path)
            return {}
        return dict(raw)

    def save(self, components: Mapping[str, str]) -> None:
        """Write atomically (temporary file + rename), so a crash never leaves half a file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dict(components), indent=1, sort_keys=True))
        tmp.replace(self.path)
