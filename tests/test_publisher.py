import json

from contract import parse_data_message, parse_status, parse_telemetry
from edge.delivery.homeassistant import discovery_messages
from edge.delivery.publisher import Publisher
from edge.delivery.spool import Spool
from tests.mqtt_fixtures import Recorder, counts_body, heatmap_body, make_config, wait_for

CAMERAS = [
    {
        "id": "cam1",
        "source": "scene.mp4",
        "lines": [{"id": "door", "points": [[0.5, 0.0], [0.5, 1.0]]}],
        "zones": [{"id": "queue", "polygon": [[0, 0], [0.5, 0], [0.5, 0.5]]}],
    }
]


def start_publisher(config, boot="boot-1", **kwargs):
    publisher = Publisher(config, Spool.from_config(config), boot, **kwargs)
    publisher.start()
    return publisher


def test_subscriber_sees_status_counts_and_heatmap_in_order(tmp_path, mosquitto_broker, ingest_factory):
    recorder = Recorder(mosquitto_broker, ["va/edge-t/#"])
    ingest_factory(mosquitto_broker)
    config = make_config(tmp_path, mosquitto_broker.port, cameras=CAMERAS)
    publisher = start_publisher(config)
    sent = []
    for i in range(30):
        window = (1000.0 + 10 * i, 1010.0 + 10 * i)
        kind, body = ("heatmap", heatmap_body(seed=i)) if i % 3 == 2 else ("counts", counts_body(frames=i))
        sent.append((publisher.submit(kind, "cam1", window, body), kind, window, body))
    assert publisher.wait_drained(20)
    wait_for(lambda: len(recorder.on("/counts")) + len(recorder.on("/heatmap")) >= 30)
    publisher.stop()
    recorder.close()

    statuses = [parse_status(m.payload) for m in recorder.on("/status")]
    assert statuses[0].state == "online" and statuses[0].boot == "boot-1"
    first_data = next(i for i, m in enumerate(recorder.messages) if m.topic.endswith(("/counts", "/heatmap")))
    assert recorder.messages.index(recorder.on("/status")[0]) < first_data
    received = [
        parse_data_message(m.topic, m.payload)
        for m in recorder.messages
        if m.topic.endswith(("/counts", "/heatmap"))
    ]
    assert [m.envelope.seq for m in received] == [seq for seq, *_ in sent]
    for message, (seq, kind, window, body) in zip(received, sent):
        assert (message.kind, message.envelope.window, message.body.to_dict()) == (kind, window, body)
        assert message.envelope.floor is not None and message.envelope.floor <= seq
    assert publisher.stats().delivered == 30 and publisher.stats().refused == 0


def test_clean_stop_publishes_retained_stopped(tmp_path, mosquitto_broker):
    config = make_config(tmp_path, mosquitto_broker.port)
    publisher = start_publisher(config)
    wait_for(lambda: publisher.stats().connected)
    publisher.stop()
    late = Recorder(mosquitto_broker, ["va/edge-t/status"], client_id="late")
    status = wait_for(lambda: late.on("/status"))[0]
    late.close()
    assert status.retain and parse_status(status.payload).state == "stopped"


def test_puback_mode_removes_on_puback_without_an_aggregator(tmp_path, mosquitto_broker):
    config = make_config(tmp_path, mosquitto_broker.port, acks=False)
    publisher = start_publisher(config)
    for i in range(25):
        publisher.submit("counts", "cam1", (float(i), i + 1.0), counts_body())
    assert publisher.wait_drained(20)
    stats = publisher.stats()
    publisher.stop()
    assert (stats.delivered, stats.spool_depth, stats.refused) == (25, 0, 0)


def test_without_acks_from_an_aggregator_nothing_leaves_the_spool(tmp_path, mosquitto_broker):
    config = make_config(tmp_path, mosquitto_broker.port, ack_timeout_s=0.5)
    recorder = Recorder(mosquitto_broker, ["va/edge-t/cam1/counts"])
    publisher = start_publisher(config)
    for i in range(3):
        publisher.submit("counts", "cam1", (float(i), i + 1.0), counts_body())
    # Unacknowledged messages are sent again after the ack timeout.
    wait_for(lambda: len(recorder.on("/counts")) >= 6)
    stats = publisher.stats()
    publisher.stop()
    recorder.close()
    assert stats.spool_depth == 3 and stats.delivered == 0 and stats.resent >= 3


def test_telemetry_reports_spool_counters_and_caller_values(tmp_path, mosquitto_broker):
    recorder = Recorder(mosquitto_broker, ["va/edge-t/telemetry"])
    config = make_config(tmp_path, mosquitto_broker.port, telemetry_interval_s=0.2)
    publisher = start_publisher(config, telemetry_source=lambda: {"cameras": {"cam1": {"fps": 9.5}}})
    publisher.submit("counts", "cam1", (0.0, 10.0), counts_body())
    message = wait_for(
        lambda: [m for m in recorder.on("/telemetry") if parse_telemetry(m.payload).spool.depth]
    )
    publisher.stop()
    recorder.close()
    telemetry = parse_telemetry(message[0].payload)
    assert telemetry.values["cameras"]["cam1"]["fps"] == 9.5
    assert telemetry.device == "edge-t" and telemetry.boot == "boot-1"
    assert set(telemetry.to_dict()["spool"]) >= {"depth", "dropped", "refused", "delivered", "in_flight"}


def test_snapshot_is_retained_and_switchable(tmp_path, mosquitto_broker):
    config = make_config(tmp_path, mosquitto_broker.port)
    publisher = start_publisher(config)
    assert publisher.snapshot_due("cam1")
    publisher.publish_snapshot("cam1", b"\xff\xd8jpeg\xff\xd9")
    assert not publisher.snapshot_due("cam1")
    wait_for(lambda: publisher.stats().connected)
    publisher.stop()
    late = Recorder(mosquitto_broker, ["va/edge-t/cam1/snapshot"], client_id="late")
    snapshot = wait_for(lambda: late.on("/snapshot"))[0]
    late.close()
    assert snapshot.retain and snapshot.payload == b"\xff\xd8jpeg\xff\xd9"

    private = make_config(tmp_path, mosquitto_broker.port, device_id="private", snapshot={"enabled": False})
    assert not Publisher(private, Spool.from_config(private), "b").snapshot_due("cam1")


def test_home_assistant_discovery_is_retained_with_availability(tmp_path, mosquitto_broker):
    config = make_config(tmp_path, mosquitto_broker.port, cameras=CAMERAS)
    expected = discovery_messages(config, "0.1.0")
    # person occupancy, door in/out, queue occupancy
    assert len(expected) == 4
    publisher = start_publisher(config)
    wait_for(lambda: publisher.stats().connected)
    publisher.stop()
    late = Recorder(mosquitto_broker, ["homeassistant/#"], client_id="late")
    configs = wait_for(lambda: len(late.on("/config")) == 4 and late.on("/config"))
    late.close()
    door_in = next(json.loads(m.payload) for m in configs if "door_in" in m.topic)
    assert all(m.retain for m in configs)
    assert door_in["state_topic"] == "va/edge-t/cam1/counts"
    assert door_in["value_template"] == "{{ value_json.lines['door']['in'] }}"
    assert door_in["availability"][0]["topic"] == "va/edge-t/status"
    off = make_config(tmp_path, mosquitto_broker.port, cameras=CAMERAS, homeassistant={"enabled": False})
    assert discovery_messages(off, "0.1.0") == []
