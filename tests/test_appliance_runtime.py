"""The running appliance on fakes: the telemetry record and its wire dict, a tier switch loaded
in the background, the counts body's tier and the final windows at stop."""

import time
from typing import List

from edge.core.policy import TierChange
from edge.core.tiers import Tier
from edge.runtime.analysis import ClosedWindow
from edge.runtime.telemetry import RECENT_TIER_CHANGES
from tests.runtime_fakes import TIER, fake_appliance, three_cameras

WIRE_KEYS = {
    "version",
    "tier",
    "tier_level",
    "effective_fps",
    "target_fps",
    "tier_changes",
    "tier_agreement",
    "precision",
    "spool_write_errors",
    "sources_down",
    "cameras",
    "latency_ms",
    "temperature_c",
    "memory_percent",
    "cpu_percent",
}
CAMERA_KEYS = {"camera_id", "processed", "skipped", "dropped", "reconnects", "connected", "fps", "covered_fps"}


def _wait_processed(appliance, frames: int) -> None:
    deadline = time.monotonic() + 30
    while sum(s.processed for s in appliance.pipeline.stats()) < frames:
        assert time.monotonic() < deadline, "the worker processed nothing"
        time.sleep(0.01)


def test_telemetry_wire_dict_keeps_its_keys_and_the_newest_tier_changes() -> None:
    appliance = fake_appliance(three_cameras(), [])
    for n in range(RECENT_TIER_CHANGES + 2):
        appliance.tier_history.append(TierChange(float(n), TIER, TIER, "down", f"change {n}"))
    appliance.start()
    try:
        _wait_processed(appliance, 30)
        wire = appliance.telemetry().to_wire()
    finally:
        appliance.stop()
    assert set(wire) == WIRE_KEYS
    assert set(wire["cameras"]) == {"cam0", "cam1", "cam2"}
    assert all(set(camera) == CAMERA_KEYS for camera in wire["cameras"].values())
    assert sum(camera["processed"] for camera in wire["cameras"].values()) >= 30
    assert [change["reason"] for change in wire["tier_changes"]] == [
        f"change {n}" for n in range(2, RECENT_TIER_CHANGES + 2)
    ]
    assert wire["precision"]["chosen"] == "int8" and wire["tier"] == TIER.name
    assert "inference" in wire["latency_ms"]


def test_a_tier_switch_loads_in_the_background_and_labels_the_windows() -> None:
    closed: List[ClosedWindow] = []
    appliance = fake_appliance(three_cameras(), [closed.append])
    lower = Tier(1, "fake", "int8", "onnxruntime", 48, 2)
    appliance.start()
    try:
        _wait_processed(appliance, 30)
        appliance.switch_tier(TierChange(time.time(), TIER, lower, "down", "test"))
        deadline = time.monotonic() + 30
        while appliance.pipeline.frame_skip != 2:
            assert time.monotonic() < deadline, "the new tier was never applied"
            time.sleep(0.01)
        appliance.tick()  # collects the finished load (raises if loading failed)
        before = len(closed)
        _wait_processed(appliance, sum(s.processed for s in appliance.pipeline.stats()) + 60)
    finally:
        appliance.stop()
    counts = [c for c in closed[before:] if c.kind == "counts"]
    assert counts and counts[-1].body["tier"] == lower.name
    assert appliance.tier_history[-1].to_tier == lower
    # Stopping closed every camera's open windows: every analysed frame is in a closed window.
    for stats in appliance.pipeline.stats():
        frames = sum(c.body["frames"] for c in closed if c.kind == "counts" and c.camera == stats.camera_id)
        assert frames == stats.processed, stats
