"""Topic names (DESIGN.md "Wire contract"): one device's topics and the aggregator's filters."""

from dataclasses import dataclass
from typing import List

from contract.errors import MessageError

KIND_COUNTS = "counts"
KIND_HEATMAP = "heatmap"
DATA_KINDS = (KIND_COUNTS, KIND_HEATMAP)


@dataclass(frozen=True)
class Topics:
    """Topic names of one device."""

    prefix: str
    device: str

    @property
    def status(self) -> str:
        return f"{self.prefix}/{self.device}/status"

    @property
    def telemetry(self) -> str:
        return f"{self.prefix}/{self.device}/telemetry"

    @property
    def ack(self) -> str:
        return f"{self.prefix}/{self.device}/ack"

    def data(self, kind: str, camera: str) -> str:
        if kind not in DATA_KINDS:
            raise MessageError(f"unknown data kind {kind!r}")
        return f"{self.prefix}/{self.device}/{camera}/{kind}"

    def counts(self, camera: str) -> str:
        return self.data(KIND_COUNTS, camera)

    def heatmap(self, camera: str) -> str:
        return self.data(KIND_HEATMAP, camera)

    def snapshot(self, camera: str) -> str:
        return f"{self.prefix}/{self.device}/{camera}/snapshot"


@dataclass(frozen=True)
class DataTopic:
    """A parsed `{prefix}/{device}/{camera}/{kind}` topic."""

    prefix: str
    device: str
    camera: str
    kind: str


def data_subscriptions(prefix: str = "va") -> List[str]:
    """The topic filters an aggregator subscribes to for data messages of every device."""
    return [f"{prefix}/+/+/{kind}" for kind in DATA_KINDS]


def ack_topic(prefix: str, device: str) -> str:
    return Topics(prefix, device).ack


def parse_data_topic(topic: str) -> DataTopic:
    parts = topic.split("/")
    if len(parts) != 4 or not all(parts) or parts[3] not in DATA_KINDS:
        raise MessageError(f"{topic}: not a data topic ({{prefix}}/{{device}}/{{camera}}/counts|heatmap)")
    return DataTopic(parts[0], parts[1], parts[2], parts[3])
