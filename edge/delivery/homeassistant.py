"""Home Assistant MQTT discovery for the count sensors (retained config messages).

Per camera: occupancy of every tracked class, `in` and `out` of every line, and the current
occupancy of every zone, each read from the camera's counts message. Availability follows the
device's retained status topic, so the sensors go unavailable when the daemon is offline or stopped.
"""

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List

from contract import Topics

if TYPE_CHECKING:
    from edge.config import Config

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class DiscoveryMessage:
    topic: str
    payload: bytes


def _object_id(*parts: str) -> str:
    return _UNSAFE.sub("_", "_".join(parts))


def discovery_messages(config: "Config", version: str) -> List[DiscoveryMessage]:
    """The retained discovery configs for every camera of `config` (empty when switched off)."""
    ha = config.mqtt.homeassistant
    if not ha.enabled:
        return []
    topics = Topics(config.mqtt.prefix, config.device_id)
    node_id = _object_id("va", config.device_id)
    device = {
        "identifiers": [node_id],
        "name": f"video-analysis {config.device_id}",
        "manufacturer": "video-analysis",
        "model": "edge video analytics",
        "sw_version": version,
    }
    availability = {
        "topic": topics.status,
        "value_template": "{{ 'online' if value_json.state == 'online' else 'offline' }}",
        "payload_available": "online",
        "payload_not_available": "offline",
    }
    messages = []

    def sensor(camera: str, metric: str, name: str, template: str, icon: str) -> None:
        object_id = _object_id(camera, metric)
        payload: Dict[str, Any] = {
            "name": name,
            "unique_id": f"{node_id}_{object_id}",
            "object_id": f"{node_id}_{object_id}",
            "state_topic": topics.counts(camera),
            "value_template": template,
            "unit_of_measurement": "people",
            "state_class": "measurement",
            "icon": icon,
            "availability": [availability],
            "device": device,
        }
        topic = f"{ha.prefix}/sensor/{node_id}/{object_id}/config"
        messages.append(DiscoveryMessage(topic, json.dumps(payload, separators=(",", ":")).encode()))

    for camera in config.cameras:
        for cls in config.detector.classes:
            sensor(
                camera.id,
                f"{cls}_occupancy",
                f"{camera.id} {cls} occupancy",
                f"{{{{ value_json.objects.get('{cls}', {{}}).get('now', 0) }}}}",
                "mdi:account-group",
            )
        for line in camera.lines:
            for direction in ("in", "out"):
                # `in` is a Jinja keyword: subscript, not attribute access.
                sensor(
                    camera.id,
                    f"line_{line.id}_{direction}",
                    f"{camera.id} {line.id} {direction}",
                    f"{{{{ value_json.lines['{line.id}']['{direction}'] }}}}",
                    "mdi:transfer-right" if direction == "in" else "mdi:transfer-left",
                )
        for zone in camera.zones:
            sensor(
                camera.id,
                f"zone_{zone.id}_occupancy",
                f"{camera.id} {zone.id} occupancy",
                f"{{{{ value_json.zones['{zone.id}']['now'] }}}}",
                "mdi:map-marker-radius",
            )
    return messages
