"""Home Assistant discovery: one device-based config, validated against HA's documented schema
(tests/fixtures/homeassistant), reading the live-state topics; removed entities cleaned up."""

import json
from pathlib import Path

import jinja2
import jsonschema
import pytest

from contract.state import DeviceState, StateTopics, build_camera_state, build_device_state
from edge.core.analytics import CountsWindow, LineCounts, ObjectCounts, ZoneCounts
from edge.core.errors import ConfigError
from edge.delivery.homeassistant import ComponentStore, device_discovery, device_topic, discovery_messages
from edge.delivery.live_state import CameraLiveState
from edge.delivery.publisher import Publisher
from edge.delivery.spool import Spool
from tests.mqtt_fixtures import Recorder, make_config, wait_for

SCHEMA = json.loads(
    (Path(__file__).parent / "fixtures" / "homeassistant" / "device_discovery.schema.json").read_text()
)
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
CAMERAS = [
    {
        "id": "cam1",
        "source": "scene.mp4",
        "lines": [{"id": "door", "points": [[0.5, 0.0], [0.5, 1.0]]}],
        "zones": [{"id": "queue", "polygon": [[0, 0], [0.5, 0], [0.5, 0.5]]}],
    }
]


def config_for(tmp_path, port=1883, cameras=None, **mqtt):
    return make_config(tmp_path, port, cameras=cameras if cameras is not None else CAMERAS, **mqtt)


def device_payload(discovery):
    message = discovery.messages[-1]
    assert message.topic.endswith("/config") and "/device/" in message.topic
    return json.loads(message.payload)


def test_schema_fixture_is_valid_and_rejects_what_ha_documents_as_wrong():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    good = {
        "dev": {"ids": ["x"], "name": "X"},
        "o": {"name": "tool"},
        "cmps": {"a": {"p": "sensor", "unique_id": "x_a", "state_topic": "t/a", "default_entity_id": "sensor.x_a"}},
    }
    VALIDATOR.validate(good)

    def bad(**component):
        doc = json.loads(json.dumps(good))
        doc["cmps"]["a"].update(component)
        return doc

    for wrong in (
        bad(object_id="x_a"),  # deprecated, not honoured from HA 2026.4
        bad(state_class="total_increasing", last_reset_value_template="{{ 0 }}"),  # needs `total`
        bad(expire_after="30"),
        bad(force_update="true"),
        bad(entity_category="diagnostics"),
        bad(default_entity_id="binary_sensor.x_a"),
        bad(state_topic="t/+/a"),
        bad(stat_topic="typo"),
        {"dev": good["dev"], "cmps": good["cmps"]},  # no origin
        {**good, "cmps": {"a": {"p": "sensor", "state_topic": "t/a"}}},  # no unique_id
        {**good, "cmps": {"a": {"p": "image", "unique_id": "i", "image_topic": "t/i", "url_topic": "t/u"}}},
    ):
        assert not VALIDATOR.is_valid(wrong), wrong


def test_one_device_config_with_all_entities_validates_against_the_schema(tmp_path):
    config = config_for(tmp_path, snapshot={"enabled": True})
    discovery = device_discovery(config, "0.1.0")
    assert device_topic(config) == "homeassistant/device/va_edge-t/config"
    payload = device_payload(discovery)
    VALIDATOR.validate(payload)
    cmps = payload["cmps"]
    assert payload["o"] == {"name": "video-analysis", "sw": "0.1.0"}
    assert payload["availability"][0]["topic"] == "va/edge-t/status"
    assert all("object_id" not in c for c in cmps.values())
    assert discovery.components == {cid: c["p"] for cid, c in cmps.items()}

    door_in = cmps["cam1_line_door_in_today"]
    assert door_in["state_class"] == "total_increasing"
    assert door_in["state_topic"] == "va/edge-t/cam1/state"  # live state, never the replayed counts
    assert door_in["default_entity_id"] == "sensor.va_edge_t_cam1_line_door_in_today"
    assert door_in["expire_after"] == 30  # 3 counts windows
    occupied = cmps["cam1_zone_queue_occupied"]
    assert (occupied["p"], occupied["device_class"]) == ("binary_sensor", "occupancy")
    assert cmps["cam1_zone_queue_dwell"]["device_class"] == "duration"
    assert cmps["cam1_person_now"]["force_update"] is True
    diagnostics = {cid for cid, c in cmps.items() if c.get("entity_category") == "diagnostic"}
    assert diagnostics == {"cam1_fps", "cam1_tier", "temperature", "spool_depth"}
    assert cmps["temperature"]["state_topic"] == "va/edge-t/state"
    assert cmps["cam1_snapshot"] == {
        "p": "image",
        "name": "cam1 snapshot",
        "unique_id": "va_edge-t_cam1_snapshot",
        "default_entity_id": "image.va_edge_t_cam1_snapshot",
        "image_topic": "va/edge-t/cam1/snapshot",
        "content_type": "image/jpeg",
    }
    live = [c for c in cmps.values() if c["p"] != "image"]
    assert all(isinstance(c["expire_after"], int) and c["expire_after"] > 0 for c in live)

    private = device_payload(device_discovery(config_for(tmp_path, snapshot={"enabled": False}), "0.1.0"))
    assert "cam1_snapshot" not in private["cmps"]


def test_templates_render_the_live_state_values(tmp_path):
    """Render every value_template with Jinja (HA's template engine) on a real live-state payload."""
    config = config_for(tmp_path)
    cmps = device_payload(device_discovery(config, "0.1.0"))["cmps"]
    state = CameraLiveState("edge-t", "cam1", ["person"], ["door"], ["queue"], heartbeat_s=10.0)
    state.fold_window(
        CountsWindow(
            (1000.0, 1010.0), 90, {"person": ObjectCounts(2, 3, 1.5, 4)}, {"door": LineCounts(5, 2)},
            {"queue": ZoneCounts(1, 2, 0.4, 3, 7.25)},
        ),
        1010.5,
    )  # fmt: skip
    state.observe({"person": 2}, {"queue": 1}, fps=9.5, tier="ssdlite-int8-300-skip1")
    camera = json.loads(build_camera_state(state.current(1011.0)))
    device = json.loads(build_device_state(DeviceState("edge-t", 1011.0, spool_depth=7, temperature_c=51.5)))
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)

    def render(cid, value_json):
        return env.from_string(cmps[cid]["value_template"]).render(value_json=value_json)

    assert render("cam1_person_now", camera) == "2"
    assert render("cam1_line_door_in_today", camera) == "5"
    assert render("cam1_line_door_out_today", camera) == "2"
    assert render("cam1_zone_queue_occupied", camera) == cmps["cam1_zone_queue_occupied"]["payload_on"]
    assert render("cam1_zone_queue_now", camera) == "1"
    assert render("cam1_zone_queue_dwell", camera) == "7.25"
    assert render("cam1_fps", camera) == "9.5"
    assert render("cam1_tier", camera) == "ssdlite-int8-300-skip1"
    assert render("temperature", device) == "51.5"
    assert render("spool_depth", device) == "7"
    availability = json.loads(json.dumps(device_payload(device_discovery(config, "0.1.0"))["availability"][0]))
    status = {"state": "stopped", "boot": "b", "version": "v", "ts": 1.0}
    assert env.from_string(availability["value_template"]).render(value_json=status) == "offline"


def test_removed_entities_are_cleaned_up_on_reload(tmp_path):
    before = config_for(tmp_path)
    first = device_discovery(before, "0.1.0")
    store = ComponentStore.from_config(before)
    store.save(first.components)
    assert store.load() == first.components

    gate = [{"id": "gate", "points": [[0, 0], [1, 1]]}]
    after = config_for(tmp_path, cameras=[{**CAMERAS[0], "zones": [], "lines": gate}])
    second = device_discovery(after, "0.1.0", store.load())
    cmps = device_payload(second)["cmps"]
    VALIDATOR.validate(device_payload(second))
    assert cmps["cam1_line_door_in_today"] == {"p": "sensor"}
    assert cmps["cam1_zone_queue_occupied"] == {"p": "binary_sensor"}
    assert "cam1_line_gate_in_today" in cmps
    assert "cam1_line_door_in_today" not in second.components  # omitted from the next reload
    # earlier versions' single-component topics get an empty retained payload
    assert [m.payload for m in second.messages[:-1]] == [b""] * (len(second.messages) - 1)
    assert "homeassistant/sensor/va_edge-t/cam1_line_gate_in/config" in {m.topic for m in second.messages}

    off = config_for(tmp_path, homeassistant={"enabled": False})
    assert [(m.topic, m.payload) for m in device_discovery(off, "0.1.0", first.components).messages] == [
        ("homeassistant/device/va_edge-t/config", b"")
    ]
    assert discovery_messages(off, "0.1.0") == []


def test_component_store_survives_a_missing_or_corrupt_file(tmp_path):
    store = ComponentStore(tmp_path / "sub" / "components.json")
    assert store.load() == {}
    store.path.parent.mkdir()
    store.path.write_text("{not json")
    assert store.load() == {}
    store.path.write_text('{"a": 1}')
    assert store.load() == {}
    store.save({"a": "sensor"})
    assert store.load() == {"a": "sensor"}


def test_ids_that_collide_after_sanitising_are_a_config_error(tmp_path):
    lines = [{"id": "a.b", "points": [[0, 0], [1, 1]]}, {"id": "a_b", "points": [[0, 1], [1, 0]]}]
    cameras = [{**CAMERAS[0], "lines": lines}]
    with pytest.raises(ConfigError, match="same id 'cam1_line_a_b_in_today'"):
        device_discovery(config_for(tmp_path, cameras=cameras), "0.1.0")


def test_subscriber_receives_retained_discovery_and_state_from_a_real_broker(tmp_path, mosquitto_broker):
    """What a Home Assistant connecting later sees: the device config and the newest live state,
    both retained; the discovery validates against the schema."""
    config = config_for(tmp_path, mosquitto_broker.port)
    publisher = Publisher(config, Spool.from_config(config), "boot-1", version="0.1.0")
    publisher.start()
    wait_for(lambda: publisher.stats().connected)
    state = CameraLiveState("edge-t", "cam1", ["person"], ["door"], ["queue"], heartbeat_s=10.0)
    state.observe({"person": 1}, {"queue": 0}, fps=10.0, tier="t")
    topics = StateTopics(config.mqtt.prefix, config.device_id)
    old = state.due(1000.0)
    state.observe({"person": 4}, {"queue": 2}, fps=10.0, tier="t")
    new = state.due(1001.0)
    assert old is not None and new is not None
    publisher.stop()
    # The live-state publisher's job (wired in the appliance): an older then a newer state, retained.
    device_side = Recorder(mosquitto_broker, [], client_id="edge-t-state")
    wait_for(device_side.client.is_connected)
    for snapshot in (old, new):
        info = device_side.client.publish(
            topics.camera_state("cam1"), build_camera_state(snapshot), qos=1, retain=True
        )
        info.wait_for_publish(5)
    device_side.close()

    late = Recorder(mosquitto_broker, ["homeassistant/#", "va/+/+/state"], client_id="ha")
    configs = wait_for(lambda: late.on("/device/va_edge-t/config"))
    states = wait_for(lambda: late.on("/cam1/state"))
    late.close()
    assert configs[0].retain and states[0].retain
    VALIDATOR.validate(json.loads(configs[0].payload))
    assert json.loads(states[-1].payload)["occupancy"] == {"person": 4}
    assert len(states) == 1  # only the newest state is retained


def test_discovery_is_retained_with_availability_through_the_publisher(tmp_path, mosquitto_broker):
    """Moved from test_publisher.py: the publisher puts the discovery on the broker, retained."""
    config = config_for(tmp_path, mosquitto_broker.port)
    expected = discovery_messages(config, "0.1.0")
    # earlier versions' four single-component topics are cleared, then the one device config
    assert len(expected) == 5 and [bool(m.payload) for m in expected] == [False] * 4 + [True]
    publisher = Publisher(config, Spool.from_config(config), "boot-1", version="0.1.0")
    publisher.start()
    wait_for(lambda: publisher.stats().connected)
    publisher.stop()
    late = Recorder(mosquitto_broker, ["homeassistant/#"], client_id="late")
    configs = wait_for(lambda: late.on("/config"))
    late.close()
    assert len(configs) == 1 and configs[0].retain  # an empty retained payload leaves nothing behind
    door_in = json.loads(configs[0].payload)["cmps"]["cam1_line_door_in_today"]
    assert door_in["state_topic"] == "va/edge-t/cam1/state"
    assert door_in["value_template"] == "{{ value_json['lines']['door']['in'] }}"
    assert json.loads(configs[0].payload)["availability"][0]["topic"] == "va/edge-t/status"
    off = config_for(tmp_path, mosquitto_broker.port, homeassistant={"enabled": False})
    assert discovery_messages(off, "0.1.0") == []
