"""A restarted daemon continues today's line totals from the live state the broker retained,
over a real mosquitto (the transport's one-off subscription) and through the appliance's wiring."""

import time
from typing import List, Tuple

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from contract.state import CameraState, LineTotals, StateTopics, build_camera_state
from edge.delivery.live_state import local_midnight
from edge.delivery.publisher import Publisher
from edge.delivery.spool import Spool
from edge.runtime.analysis import CameraAnalysis
from edge.runtime.appliance import _LiveStateRestorer
from tests.mqtt_fixtures import make_config, wait_for

TOPICS = StateTopics("va", "edge-t")
CAMERAS = [
    {"id": "cam1", "source": "a.mp4", "lines": [{"id": "door", "points": [[0.5, 0.0], [0.5, 1.0]]}]},
    {"id": "cam2", "source": "b.mp4", "lines": [{"id": "door", "points": [[0.5, 0.0], [0.5, 1.0]]}]},
]


def previous_state(camera: str, now: float, door: LineTotals) -> CameraState:
    return CameraState(
        device="edge-t",
        camera=camera,
        ts=now - 30,
        occupancy={"person": 1},
        lines={"door": door},
        zones={},
        last_reset=local_midnight(now).isoformat(),
        window=now - 30,
        last_window=None,
        fps=10.0,
        tier="t",
    )


def retain(port: int, topic: str, payload: bytes) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="previous-run", protocol=MQTTProtocolVersion.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def test_the_transport_hands_over_each_retained_state_once_and_never_its_own(tmp_path, mosquitto_broker):
    now = time.time()
    payload = build_camera_state(previous_state("cam1", now, LineTotals(7, 3)))
    retain(mosquitto_broker.port, TOPICS.camera_state("cam1"), payload)
    config = make_config(tmp_path, mosquitto_broker.port, cameras=CAMERAS)
    received: List[Tuple[str, bytes]] = []
    topics = [TOPICS.camera_state("cam1"), TOPICS.camera_state("cam2")]  # cam2 has none retained
    spool = Spool.from_config(config)
    publisher = Publisher(config, spool, "boot-2", restore_topics=topics, on_restore=lambda *m: received.append(m))
    publisher.start()
    try:
        wait_for(lambda: received)
        # This run's own states (cam2's first one included) are not handed back as the previous run's.
        publisher.publish_state(TOPICS.camera_state("cam1"), b"{}")
        publisher.publish_state(TOPICS.camera_state("cam2"), b"{}")
        time.sleep(0.5)
    finally:
        publisher.stop()
    assert received == [(TOPICS.camera_state("cam1"), payload)]


def test_the_appliance_continues_the_retained_totals_and_ignores_a_malformed_state(tmp_path):
    config = make_config(tmp_path, 1883, cameras=CAMERAS)
    analyses = {camera.id: CameraAnalysis(config, camera, []) for camera in config.cameras}
    now = time.time()
    for analysis in analyses.values():
        analysis.hold_live_state(now + 5)
    restorer = _LiveStateRestorer(analyses, ["cam1", "cam2"], TOPICS, lambda: now)
    assert restorer.topics() == [TOPICS.camera_state("cam1"), TOPICS.camera_state("cam2")]
    restorer(TOPICS.camera_state("cam1"), build_camera_state(previous_state("cam1", now, LineTotals(7, 3))))
    restorer(TOPICS.camera_state("cam2"), b'{"device": "edge-t"')
    state = analyses["cam1"].live_state_due(now + 1)
    assert state is not None and state.lines["door"] == LineTotals(7, 3)
    # cam2's malformed state was not taken: it waits out the hold, then starts from zero.
    assert analyses["cam2"].live_state_due(now + 1) is None
    later = analyses["cam2"].live_state_due(now + 5)
    assert later is not None and later.lines["door"] == LineTotals(0, 0)
