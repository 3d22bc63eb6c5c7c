"""A device with Home Assistant only (no aggregator, `acks: auto`) through a 60 s broker outage, with
a real mosquitto: afterwards a subscriber sees every new window within one window period, the
replayed backlog arrives too, and the retained live state never goes back to an older value."""

import json
import time

import pytest

from contract.state import CameraState, LineTotals, StateTopics, build_camera_state
from edge.delivery.publisher import Publisher
from edge.delivery.spool import Spool
from tests.mqtt_fixtures import Recorder, counts_body, make_config, wait_for

WINDOW_S = 2.0
OUTAGE_S = 60.0


def state(config, end: float) -> bytes:
    return build_camera_state(
        CameraState(
            device=config.device_id,
            camera="cam1",
            ts=end,
            window=end,
            last_reset="2026-01-01T00:00:00+00:00",
            occupancy={"person": 1},
            lines={"door": LineTotals(int(end), 0)},
            zones={},
            fps=10.0,
            tier="t",
        )
    )


@pytest.mark.slow
def test_ha_only_device_sees_new_windows_right_after_an_outage(tmp_path, mosquitto_factory):
    broker = mosquitto_factory(persistence=True)
    config = make_config(tmp_path, broker.port, ack_timeout_s=3.0)
    assert config.mqtt.acks == "auto"
    state_topic = StateTopics(config.mqtt.prefix, config.device_id).camera_state("cam1")
    recorder = Recorder(broker, ["va/edge-t/cam1/counts", state_topic])
    publisher = Publisher(config, Spool.from_config(config), "boot-1")
    publisher.start()
    window = 0

    def next_window() -> int:
        nonlocal window
        window += 1
        end = window * WINDOW_S
        seq = publisher.submit("counts", "cam1", (end - WINDOW_S, end), counts_body(frames=window))
        publisher.publish_state(state_topic, state(config, end))
        assert seq is not None
        return seq

    def received_seqs() -> set:
        return {json.loads(m.payload)["seq"] for m in recorder.on("/counts")}

    try:
        for _ in range(3):
            next_window()
            time.sleep(WINDOW_S)
        broker.stop()
        outage_end = time.monotonic() + OUTAGE_S
        during = []
        while time.monotonic() < outage_end:  # the device keeps producing windows during the outage
            during.append(next_window())
            time.sleep(WINDOW_S)
        broker.start()
        wait_for(lambda: publisher.stats().connected, timeout_s=30)
        after = []
        for _ in range(5):
            seq = next_window()
            after.append(seq)
            time.sleep(WINDOW_S)
            # One window period later, the new window is there: no ack-timeout replay loop holds it back.
            assert seq in received_seqs(), (seq, sorted(received_seqs()))
        assert set(during) <= received_seqs()  # the backlog was replayed too (at least once)
        states = [json.loads(m.payload)["window"] for m in recorder.on("/state")]
        assert states == sorted(states), states  # the live state never went back to an older window
        assert states[-1] == window * WINDOW_S
        assert publisher.stats().spool_depth == 0 and publisher.healthy()
    finally:
        publisher.stop()
        recorder.close()
