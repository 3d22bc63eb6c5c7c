"""The ingest nothing can stop: hostile payloads (the issue's killers each as its own case, then
a flood of 10,000 mutated ones) against a real mosquitto, with a valid device sending alongside.
"""

import base64
import json
import logging
import random
import time
import zlib

import paho.mqtt.client as mqtt
import psutil
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from aggregator.validate import MAX_PAYLOAD_BYTES, Rejection, validate_message
from contract import DataMessage, build_data_payload, with_floor
from edge.delivery.publisher import Publisher
from edge.delivery.spool import Spool
from tests.mqtt_fixtures import counts_body, heatmap_body, make_config, wait_for

TOPIC = "va/x/c/counts"
HEAT_TOPIC = "va/x/c/heatmap"


def envelope(**overrides):
    base = {"v": 1, "device": "x", "camera": "c", "boot": "b1", "seq": 1, "window": [0, 10]}
    base.update(overrides)
    return base


def counts_payload(**overrides) -> bytes:
    return json.dumps({**envelope(), **counts_body(), **overrides}).encode()


def zlib_bomb() -> bytes:
    """A heatmap tile whose data inflates to 150 MB (the payload itself is under the size limit)."""
    data = base64.b64encode(zlib.compress(b"\0" * 150_000_000, 9)).decode()
    return json.dumps({**envelope(), **heatmap_body(), "data": data}).encode()


# The payload killers: each one stopped the old ingest for every device.
KILLERS = {
    "nested_100000_deep": (TOPIC, b"[" * 100_000 + b"]" * 100_000),
    "nested_object_deep": (TOPIC, b'{"a":' * 40_000 + b"1" + b"}" * 40_000),
    "window_10e400": (TOPIC, counts_payload(window=[0, 10**400])),
    "fps_10e400": (TOPIC, counts_payload(fps=10**400)),
    "seq_2_63": (TOPIC, counts_payload(seq=2**63)),
    "boot_lone_surrogate": (
        TOPIC,
        b'{"v":1,"device":"x","camera":"c","boot":"\\ud800","seq":1,"window":[0,10],"fps":1,"target_fps":1,'
        b'"tier":"t","frames":1,"dropped":0,"objects":{},"lines":{},"zones":{}}',
    ),
    "zlib_bomb_tile": (HEAT_TOPIC, None),  # built lazily: compressing takes a moment
}

ZONE = {"now": 1, "max": 1, "mean": 1, "entered": 1, "dwell_mean_s": 1}
OBJECT = {"now": 1, "max": 1, "mean": 1, "unique": 1}

# What the old ingest stored although the edge never sends it.
NEVER_SENT = {
    "id_dotdot": (TOPIC, counts_payload(lines={"..": {"in": 1, "out": 0}})),
    "id_sys": (TOPIC, counts_payload(zones={"$SYS": ZONE})),
    "id_sql": (TOPIC, counts_payload(objects={"x');DROP TABLE messages;--": OBJECT})),
    "id_rtl_override": (TOPIC, counts_payload(lines={"door\u202e": {"in": 1, "out": 0}})),
    "id_2000_chars": (TOPIC, counts_payload(lines={"a" * 2000: {"in": 1, "out": 0}})),
    "nan": (TOPIC, counts_payload().replace(b'"fps": 9.8', b'"fps": NaN')),
    "infinity": (TOPIC, counts_payload().replace(b'"fps": 9.8', b'"fps": Infinity')),
    "version_true": (TOPIC, counts_payload(v=True)),
    "version_2": (TOPIC, counts_payload(v=2)),
    "extra_key_10mb": (TOPIC, counts_payload(extra="x" * 10_000_000)),
    "extra_key_small": (TOPIC, counts_payload(extra=1)),
    "tier_rtl_override": (TOPIC, counts_payload(tier="int8\u202eevil")),
    "negative_count": (TOPIC, counts_payload(lines={"door": {"in": -1, "out": 0}})),
    "tile_outside_grid": (HEAT_TOPIC, json.dumps({**envelope(), **heatmap_body(tile=(9, 9))}).encode()),
}


def killer(name):
    topic, payload = KILLERS[name]
    return topic, zlib_bomb() if payload is None else payload


def mutate(rng: random.Random, valid: bytes) -> bytes:
    """One hostile variant of a valid payload: structural, numeric, id or byte-level damage."""
    obj = json.loads(valid)
    choice = rng.randrange(9)
    if choice == 0:
        data = bytearray(valid)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if choice == 1:
        del obj[rng.choice(sorted(obj))]
    elif choice == 2:
        obj[rng.choice(sorted(obj))] = rng.choice([None, True, "x", [], {}, -1, 2**64, 1e308, "\ud800"])
    elif choice == 3:
        obj["seq"] = rng.choice([0, -5, 2**63, 2**63 - 1 + rng.randint(1, 9), 1.5, "1"])
    elif choice == 4:
        obj["window"] = rng.choice([[5, 1], [0], [0, 1, 2], ["a", "b"], [-1, 2], [0, 1e12]])
    elif choice == 5:
        obj["boot"] = rng.choice(["", ".", "..", "a/b", "$SYS", "é", "x" * 65, "\u202e", "a b"])
    elif choice == 6:
        obj["extra_" + str(rng.randrange(1000))] = "y" * rng.randrange(1, 5000)
    elif choice == 7:
        return json.dumps(obj).encode()[: rng.randrange(1, len(valid))]
    else:
        depth = rng.randrange(1000, 20_000)
        return b'{"v":1,"x":' + b"[" * depth + b"]" * depth + b"}"
    return json.dumps(obj).encode()


def hostile_payloads(count: int, seed: int = 7):
    rng = random.Random(seed)
    valid = [counts_payload(seq=i + 1) for i in range(20)]
    for i in range(count):
        yield mutate(rng, valid[i % len(valid)])


def test_validation_never_raises_on_10000_hostile_payloads():
    kinds = set()
    for payload in hostile_payloads(10_000):
        verdict = validate_message(TOPIC, payload)
        if isinstance(verdict, Rejection):
            kinds.add(verdict.reason)
            assert len(verdict.detail) < 260 and len(verdict.payload_head) < 360
    assert {"bad_json", "bad_envelope", "bad_body"} <= kinds


@pytest.mark.parametrize("name", sorted(KILLERS))
def test_each_killer_is_refused_by_validation(name):
    verdict = validate_message(*killer(name))
    assert isinstance(verdict, Rejection), verdict


@pytest.mark.parametrize("name", sorted(NEVER_SENT))
def test_what_the_edge_never_sends_is_refused(name):
    topic, payload = NEVER_SENT[name]
    verdict = validate_message(topic, payload)
    assert isinstance(verdict, Rejection), verdict


@pytest.mark.parametrize("topic", ["va/../c/counts", "va/$SYS/c/counts", "va/x/" + "c" * 65 + "/counts"])
def test_bad_ids_in_the_topic_are_refused(topic):
    verdict = validate_message(topic, counts_payload())
    assert isinstance(verdict, Rejection) and verdict.reason == "bad_topic" and verdict.key is None


def test_a_valid_edge_message_passes():
    payload = with_floor(build_data_payload("counts", "x", "c", "b1", 3, (0.0, 10.0), counts_body()), 2)
    assert isinstance(validate_message(TOPIC, payload), DataMessage)
    tile = build_data_payload("heatmap", "x", "c", "b1", 4, (0.0, 60.0), heatmap_body())
    assert isinstance(validate_message(HEAT_TOPIC, tile), DataMessage)


def raw_client(broker, name="vandal"):
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=MQTTProtocolVersion.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def valid_device_sends(client, seqs, device="good"):
    for seq in seqs:
        window = (10.0 * seq, 10.0 * seq + 10)
        payload = build_data_payload("counts", device, "cam1", "boot1", seq, window, counts_body())
        client.publish(f"va/{device}/cam1/counts", payload, qos=1).wait_for_publish(5)


@pytest.mark.parametrize("name", sorted(KILLERS))
def test_each_killer_leaves_the_ingest_running(name, mosquitto_broker, ingest_factory):
    ingest = ingest_factory(mosquitto_broker)
    client = raw_client(mosquitto_broker)
    topic, payload = killer(name)
    assert len(payload) <= MAX_PAYLOAD_BYTES + 100_000
    client.publish(topic, payload, qos=1).wait_for_publish(10)
    valid_device_sends(client, [1, 2, 3])
    wait_for(lambda: ingest.store.seqs("good") == [1, 2, 3], 20)
    stats = wait_for(lambda: (s := ingest.stats()).malformed >= 1 and s)
    assert ingest.health().writer_alive and ingest.health().database_ok
    assert ingest.store.seqs("x") == [] and stats.stored == 3
    client.disconnect()
    client.loop_stop()


@pytest.mark.slow
def test_flood_of_10000_hostile_payloads_with_a_valid_device_alongside(tmp_path, mosquitto_broker, ingest_factory):
    """The bar: >= 10,000 hostile payloads including every killer; the ingest stays up, the valid
    device (the real edge publisher, which resends what the broker drops from a full queue) loses
    nothing, nothing refused is stored outside quarantine, memory < 300 MB, the log stays bounded."""
    logged = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())
    logging.getLogger("aggregator").addHandler(handler)
    process = psutil.Process()
    # The ingest runs inside the test process, which earlier tests in the same session may have
    # grown (models loaded, the allocator's high-water mark): measure what this run adds.
    baseline_rss = process.memory_info().rss
    try:
        ingest = ingest_factory(mosquitto_broker)
        vandal = raw_client(mosquitto_broker)
        config = make_config(tmp_path, mosquitto_broker.port, device_id="good", acks=True)
        good = Publisher(config, Spool.from_config(config), "boot1")
        good.start()
        submitted = []
        peak_rss = process.memory_info().rss
        payloads = [killer(name) for name in sorted(KILLERS)] + list(NEVER_SENT.values())
        payloads += [(TOPIC, p) for p in hostile_payloads(10_000)]
        for i, (topic, payload) in enumerate(payloads):
            vandal.publish(topic, payload, qos=1 if i % 2 else 0)
            if i % 250 == 0:
                submitted.append(good.submit("counts", "cam1", (10.0 * i, 10.0 * i + 10), counts_body()))
                peak_rss = max(peak_rss, process.memory_info().rss)
        assert good.wait_drained(60), good.stats()
        good.stop()
        expected = sorted(submitted)
        assert ingest.store.seqs("good") == expected
        wait_for(lambda: ingest.health().backlog == 0, 30)
        time.sleep(0.5)
        peak_rss = max(peak_rss, process.memory_info().rss)
        health = ingest.health()
        assert health.writer_alive and not health.stalled and health.database_ok
        # Nothing refused is stored outside quarantine: besides the valid device's records, only
        # mutations that happen to be valid messages are (a flipped digit in a count, say).
        accepted = set()
        for topic, payload in payloads:
            verdict = validate_message(topic, payload)
            if isinstance(verdict, DataMessage):
                accepted.add((verdict.envelope.boot, verdict.envelope.seq))
        stored_x = {(m.boot, m.seq) for m in ingest.store.messages(device="x")}
        assert stored_x <= accepted
        assert {m.device for m in ingest.store.messages()} <= {"good", "x"}
        assert peak_rss - baseline_rss < 300 * 1024 * 1024, (baseline_rss, peak_rss)
        # Half the flood is QoS 0, which the broker may drop when the ingest's queue is full: count
        # what arrived. Nearly all of it is refused (a few mutations are valid messages).
        stats = ingest.stats()
        assert stats.received >= 5_000 and stats.malformed >= 0.8 * stats.received, stats
        assert len(logged) < 300 and sum(map(len, logged)) < 200_000, (len(logged), sum(map(len, logged)))
        vandal.disconnect()
        vandal.loop_stop()
    finally:
        logging.getLogger("aggregator").removeHandler(handler)
