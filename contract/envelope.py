"""The envelope every data message carries (DESIGN.md): who sent it, which window, its seq.

`floor` is added by the publisher each time it sends a message: every seq of the same
(device, boot) below `floor` is settled (already acknowledged or dropped by the full spool), so
the aggregator counts its "highest contiguous seq" from there. Without it a gap left by a spool
drop, or a lost first message of a boot, would stall (or falsely advance) the acknowledgements.
"""

import uuid
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

from contract import fields
from contract.errors import MessageError

WIRE_VERSION = 1
ENVELOPE_KEYS = ("v", "device", "camera", "boot", "seq", "window")
FLOOR_KEY = "floor"


def new_boot_id() -> str:
    """A per-start id (random, so it never repeats even when the clock is wrong)."""
    return uuid.uuid4().hex[:16]


@dataclass(frozen=True)
class Envelope:
    device: str
    camera: str
    boot: str
    seq: int
    window: Tuple[float, float]  # UNIX seconds: start, end
    floor: Optional[int] = None
    v: int = WIRE_VERSION

    def to_dict(self) -> Dict[str, Any]:
        """The envelope keys in wire order (`floor` only when set)."""
        obj: Dict[str, Any] = {"v": self.v, "device": self.device, "camera": self.camera, "boot": self.boot}
        obj["seq"] = self.seq
        obj["window"] = [self.window[0], self.window[1]]
        if self.floor is not None:
            obj[FLOOR_KEY] = self.floor
        return obj

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], where: str) -> "Envelope":
        version = fields.require(obj, "v", where)
        if version != WIRE_VERSION:
            raise MessageError(
                f"{where}: unsupported wire version {version!r} (this build reads v{WIRE_VERSION})"
            )
        seq = fields.integer(obj, "seq", where, minimum=1)
        floor: Optional[int] = None
        if FLOOR_KEY in obj:
            floor = fields.integer(obj, FLOOR_KEY, where, minimum=1)
            if floor > seq:
                raise MessageError(f"{where}.floor: {floor} is above seq {seq}")
        start, end = fields.number_pair(obj, "window", where, minimum=0)
        if end < start:
            raise MessageError(f"{where}.window: end {end} before start {start}")
        return cls(
            device=fields.text(obj, "device", where),
            camera=fields.text(obj, "camera", where),
            boot=fields.text(obj, "boot", where),
            seq=seq,
            window=(start, end),
            floor=floor,
        )
