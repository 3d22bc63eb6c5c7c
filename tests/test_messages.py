import json

import pytest

from contract import (
    Ack,
    MessageError,
    Status,
    Topics,
    build_ack,
    build_data_payload,
    build_status,
    data_subscriptions,
    parse_ack,
    parse_data_message,
    parse_status,
    with_floor,
)
from tests.mqtt_fixtures import counts_body, heatmap_body

TOPICS = Topics("va", "dev1")


def counts_payload(**changes: object) -> bytes:
    obj = json.loads(build_data_payload("counts", "dev1", "cam1", "b1", 7, (100.0, 110.0), counts_body()))
    obj.update(changes)
    return json.dumps(obj).encode()


def test_topic_names():
    assert TOPICS.status == "va/dev1/status"
    assert TOPICS.telemetry == "va/dev1/telemetry"
    assert TOPICS.ack == "va/dev1/ack"
    assert TOPICS.counts("cam1") == "va/dev1/cam1/counts"
    assert TOPICS.heatmap("cam1") == "va/dev1/cam1/heatmap"
    assert TOPICS.snapshot("cam1") == "va/dev1/cam1/snapshot"
    assert data_subscriptions("va") == ["va/+/+/counts", "va/+/+/heatmap"]


@pytest.mark.parametrize("kind, body", [("counts", counts_body()), ("heatmap", heatmap_body())])
def test_data_message_round_trip(kind, body):
    payload = build_data_payload(kind, "dev1", "cam1", "b1", 42, (100.0, 160.0), body)
    message = parse_data_message(TOPICS.data(kind, "cam1"), with_floor(payload, 40))
    assert message.kind == kind
    assert message.body.to_dict() == body
    env = message.envelope
    assert (env.v, env.device, env.camera, env.boot, env.seq, env.window, env.floor) == (
        1, "dev1", "cam1", "b1", 42, (100.0, 160.0), 40,
    )  # fmt: skip


def test_floor_is_optional_and_not_above_seq():
    assert parse_data_message(TOPICS.counts("cam1"), counts_payload()).envelope.floor is None
    with pytest.raises(MessageError, match="floor"):
        parse_data_message(TOPICS.counts("cam1"), counts_payload(floor=8))


def test_unknown_version_is_rejected_with_reason():
    with pytest.raises(MessageError, match="unsupported wire version 2"):
        parse_data_message(TOPICS.counts("cam1"), counts_payload(v=2))


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"seq": "7"}, "seq"),
        ({"seq": 0}, "seq"),
        ({"window": [5, 1]}, "window"),
        ({"window": [1]}, "window"),
        ({"device": "other"}, "topic disagrees"),
        ({"fps": -1}, "fps"),
        ({"frames": 1.5}, "frames"),
        ({"objects": {"person": {"now": 1, "max": 1, "mean": 1}}}, "unique"),
        ({"lines": {"door": {"in": True, "out": 0}}}, "lines.door.in"),
        ({"zones": {"q": {"now": 1, "max": 1, "mean": 1, "entered": 1}}}, "dwell_mean_s"),
    ],
)
def test_malformed_counts_are_rejected_naming_the_field(changes, reason):
    with pytest.raises(MessageError, match=reason):
        parse_data_message(TOPICS.counts("cam1"), counts_payload(**changes))


def test_missing_envelope_key_and_bad_json():
    obj = json.loads(counts_payload())
    del obj["boot"]
    with pytest.raises(MessageError, match="missing 'boot'"):
        parse_data_message(TOPICS.counts("cam1"), json.dumps(obj).encode())
    with pytest.raises(MessageError, match="not UTF-8 JSON"):
        parse_data_message(TOPICS.counts("cam1"), b"\xff{")
    with pytest.raises(MessageError, match="not a data topic"):
        parse_data_message("va/dev1/cam1/snapshot", counts_payload())


def test_null_dwell_means_nobody_left_yet():
    body = counts_body()
    body["zones"]["queue"]["dwell_mean_s"] = None
    payload = build_data_payload("counts", "dev1", "cam1", "b1", 1, (0.0, 10.0), body)
    assert parse_data_message(TOPICS.counts("cam1"), payload).body.to_dict() == body


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"unit": "seconds"}, "unit"),
        ({"dtype": "float32"}, "dtype"),
        ({"tile": [4, 0]}, "outside grid"),
        ({"data": "not base64!"}, "zlib"),
        ({"tile_size": [8, 12]}, "bytes, expected"),
        ({"scale": 0}, "scale"),
    ],
)
def test_malformed_heatmap_is_rejected(changes, reason):
    body = {**heatmap_body(), **changes}
    payload = build_data_payload("heatmap", "dev1", "cam1", "b1", 1, (0.0, 60.0), body)
    with pytest.raises(MessageError, match=reason):
        parse_data_message(TOPICS.heatmap("cam1"), payload)


def test_body_cannot_shadow_the_envelope():
    with pytest.raises(MessageError, match="reserved"):
        build_data_payload("counts", "dev1", "cam1", "b1", 1, (0.0, 1.0), {**counts_body(), "seq": 3})


def test_ack_and_status_round_trip():
    assert parse_ack(build_ack(Ack("b1", 12))) == Ack("b1", 12)
    with pytest.raises(MessageError, match="seq"):
        parse_ack(b'{"boot": "b1", "seq": -1}')
    status = Status("online", "b1", "0.1.0", 1700000000.5)
    assert parse_status(build_status(status)) == status
    with pytest.raises(MessageError, match="state"):
        parse_status(b'{"state": "sleeping", "boot": "b1", "version": "1", "ts": 0}')
