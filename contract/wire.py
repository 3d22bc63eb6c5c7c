"""Whole messages on the wire: build and strictly parse data, ack, status and telemetry payloads.

A data message is one flat JSON object: the envelope keys (`v`, `device`, `camera`, `boot`,
`seq`, `window`, and `floor` once it is sent) next to the body keys. Parsing is strict: an
unknown version, a missing key or a wrongly typed value raises `MessageError` whose message
names the field, so a consumer can log and count it.
"""

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Tuple, Union

from contract import fields
from contract.bodies import Ack, CountsBody, Status, Telemetry
from contract.envelope import ENVELOPE_KEYS, FLOOR_KEY, Envelope
from contract.errors import MessageError
from contract.heatmap import HeatmapBody
from contract.topics import DATA_KINDS, KIND_COUNTS, parse_data_topic

Body = Union[CountsBody, HeatmapBody]


@dataclass(frozen=True)
class DataMessage:
    kind: str
    envelope: Envelope
    body: Body


def body_dict(body: Union[Body, Mapping[str, Any]]) -> Dict[str, Any]:
    """The wire dict of a typed body; a mapping is taken as already in wire form."""
    if isinstance(body, (CountsBody, HeatmapBody)):
        return body.to_dict()
    return dict(body)


def build_data_payload(
    kind: str,
    device: str,
    camera: str,
    boot: str,
    seq: int,
    window: Tuple[float, float],
    body: Union[Body, Mapping[str, Any]],
) -> bytes:
    """The JSON payload of a counts or heatmap message (without `floor`, added when sent)."""
    if kind not in DATA_KINDS:
        raise MessageError(f"unknown data kind {kind!r}")
    wire_body = body_dict(body)
    clash = sorted(set(wire_body) & (set(ENVELOPE_KEYS) | {FLOOR_KEY}))
    if clash:
        raise MessageError(f"{kind} body uses reserved envelope keys {clash}")
    envelope = Envelope(device=device, camera=camera, boot=boot, seq=seq, window=window)
    return fields.dumps({**envelope.to_dict(), **wire_body})


def with_floor(payload: bytes, floor: int) -> bytes:
    """Add the send-time `floor` to a payload made by `build_data_payload` (compact JSON object,
    no `floor` yet), without re-encoding the body: replay sends thousands of these."""
    return payload[:-1] + b',"floor":' + str(int(floor)).encode("ascii") + b"}"


def parse_data_message(topic: str, payload: bytes) -> DataMessage:
    """Strictly parse a counts/heatmap message; the topic must agree with the envelope."""
    where = parse_data_topic(topic)
    obj = fields.loads(payload, topic)
    envelope = Envelope.from_dict(obj, topic)
    if envelope.device != where.device or envelope.camera != where.camera:
        raise MessageError(
            f"{topic}: envelope says device {envelope.device!r} camera {envelope.camera!r}, topic disagrees"
        )
    rest = {k: v for k, v in obj.items() if k not in ENVELOPE_KEYS and k != FLOOR_KEY}
    label = f"{topic} {where.kind}"
    body: Body = CountsBody.from_dict(rest, label) if where.kind == KIND_COUNTS else HeatmapBody.from_dict(rest, label)
    return DataMessage(kind=where.kind, envelope=envelope, body=body)


def build_ack(ack: Ack) -> bytes:
    return fields.dumps(ack.to_dict())


def parse_ack(payload: bytes, where: str = "ack") -> Ack:
    return Ack.from_dict(fields.loads(payload, where), where)


def build_status(status: Status) -> bytes:
    return fields.dumps(status.to_dict())


def parse_status(payload: bytes, where: str = "status") -> Status:
    return Status.from_dict(fields.loads(payload, where), where)


def build_telemetry(telemetry: Telemetry) -> bytes:
    return fields.dumps(telemetry.to_dict())


def parse_telemetry(payload: bytes, where: str = "telemetry") -> Telemetry:
    return Telemetry.from_dict(fields.loads(payload, where), where)
