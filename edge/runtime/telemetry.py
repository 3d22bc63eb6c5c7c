"""The appliance's telemetry as a typed record, and the one place it becomes the wire dict.

The publisher adds its own delivery figures (spool depth, drops) to `to_wire()` and publishes
the result on `va/{device}/telemetry` every `mqtt.telemetry_interval_s`.
"""

from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence

from edge.core.accuracy import PrecisionDecision
from edge.core.policy import TierChange
from edge.runtime.pipeline import CameraStats

# Tier changes listed in each telemetry message (the newest ones).
RECENT_TIER_CHANGES = 5


@dataclass(frozen=True)
class DeviceLoad:
    """Readings of the device, None where the platform has no such sensor."""

    temperature_c: Optional[float]
    memory_percent: Optional[float]
    cpu_percent: Optional[float]


@dataclass(frozen=True)
class Telemetry:
    version: str
    tier: str
    tier_level: int
    effective_fps: Optional[float]
    target_fps: float
    tier_changes: Sequence[TierChange]  # the newest last
    precision: PrecisionDecision
    spool_write_errors: int  # windows lost because the spool could not be written
    cameras: Sequence[CameraStats]
    latency_ms: Dict[str, Dict[str, float]]  # stage → {p50, p90, p99}
    load: DeviceLoad
    sources_down: Sequence[str] = ()  # cameras without frames (edge.runtime.source_health)
    capacity_warning: Optional[str] = None  # the cameras cannot fit at any tier (start-up prediction)
    # The current tier's agreement (mAP@0.5) with the best tier's detections (edge.device.agreement);
    # None when the check is off.
    tier_agreement: Optional[float] = None

    def to_wire(self) -> Dict[str, Any]:
        changes: List[Dict[str, object]] = [change.to_dict() for change in self.tier_changes[-RECENT_TIER_CHANGES:]]
        wire: Dict[str, Any] = {
            "version": self.version,
            "tier": self.tier,
            "tier_level": self.tier_level,
            "effective_fps": self.effective_fps,
            "target_fps": self.target_fps,
            "tier_changes": changes,
            "tier_agreement": self.tier_agreement,
            "precision": self.precision.to_dict(),
            "spool_write_errors": self.spool_write_errors,
            "sources_down": list(self.sources_down),
            "cameras": {stats.camera_id: asdict(stats) for stats in self.cameras},
            "latency_ms": self.latency_ms,
            "temperature_c": self.load.temperature_c,
            "memory_percent": self.load.memory_percent,
            "cpu_percent": self.load.cpu_percent,
        }
        if self.capacity_warning is not None:  # optional: only when the cameras cannot fit
            wire["capacity_warning"] = self.capacity_warning
        return wire
