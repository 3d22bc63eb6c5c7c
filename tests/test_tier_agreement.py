"""Accuracy-aware tiers: a tier whose detections disagree with the best tier's on the device's
frames is dropped with its reason (a test engine plug-in that shifts every box), an agreeing one
is kept, the second start reads the cache, probe shows the agreement, and the controller never
steps into a dropped tier."""

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import List

import numpy as np
import pytest

from benchmarks.policy_sim import SimClock
from edge.commands.cli import main
from edge.config import Config, PolicyConfig, parse_config
from edge.core.accuracy import MIN_REFERENCE_BOXES
from edge.core.detections import Detections
from edge.core.policy import AdaptiveController
from edge.core.tier_agreement import (
    BEST,
    CACHED,
    MEASURED,
    OFF,
    SAME_DETECTOR,
    Measurement,
    assess,
    judge_tier,
    needs_measuring,
)
from edge.core.tiers import Tier
from edge.detection import engines
from edge.detection.engines import EnginePlugin, EngineRequest
from edge.detection.int8.sets import builtin_frames, write_set
from edge.device import agreement
from edge.device.agreement import AgreementCache, check_agreement, counted_classes
from edge.device.tiers import TierSelection, select_tiers
from edge.runtime.appliance import _select
from edge.runtime.lifecycle import Appliance
from tests import example_engine
from tests.runtime_fakes import TIER, fake_appliance, three_cameras
from tests.test_tiers import MANIFEST, SSD, profile

FLOOR = PolicyConfig().agreement_floor


class ShiftedEngine(example_engine.PlainCpuEngine):
    """The FP32 graph with every SSD box moved one anchor width to the right (tx += 10 with the
    box coder's scale 10): the detections exist but none overlaps the real person."""

    def run(self, tensor: np.ndarray) -> List[np.ndarray]:
        outputs = super().run(tensor)
        for output in outputs:
            if output.shape[-1] == 4:
                output[..., 1] += 10.0
        return outputs


def _open_shifted(request: EngineRequest) -> ShiftedEngine:
    return ShiftedEngine(request)


@pytest.fixture
def registry(monkeypatch):
    """The registry with the example engine and the shifting one, restored after the test."""
    monkeypatch.setattr(engines, "_PLUGINS", dict(engines._PLUGINS))
    engines.register_engine(example_engine.PLUGIN)
    engines.register_engine(EnginePlugin("shifted-cpu", __name__, example_engine.can_run))
    return engines


# The plug-in module's entry point (EnginePlugin imports this module and calls it).
open_engine = _open_shifted

TIERS = [
    {"model": SSD, "input": 300},  # the best tier (reference)
    {"model": SSD, "input": 300, "engine": "shifted-cpu", "precision": "fp32"},  # disagrees
    {"model": SSD, "input": 300, "engine": "plain-cpu", "precision": "fp32"},  # agrees (FP32 of the same model)
    {"model": SSD, "input": 300, "frame_skip": 2},  # the best tier's detector: not measured
]


def device_config(tmp_path: Path, set_name: str = "scenes", tiers=TIERS, **policy) -> Config:
    return parse_config(
        {
            "state_dir": str(tmp_path / "state"),
            "calibration": {"dir": str(tmp_path / "calibration"), "set_name": set_name},
            "policy": {"tiers": {"x86-cpu": tiers}, **policy},
        }
    )


def write_scenes(tmp_path: Path, name: str = "scenes", count: int = 10, offset: int = 38) -> None:
    """A small calibration set of the device: built-in scenes (from frame 38 on, 3-5 people a frame)."""
    frames = list(builtin_frames(64))[offset : offset + count]
    write_set(tmp_path / "calibration", name, frames, "test: scenes")


def selection_of(config: Config) -> TierSelection:
    return select_tiers(config.policy, profile("x86-cpu", arch="x86_64"), MANIFEST)


# --- pure logic --------------------------------------------------------------------------------


def tier(index: int, input_size: int = 300, skip: int = 1, engine: str = "onnxruntime") -> Tier:
    return Tier(index, SSD, "int8", engine, input_size, skip)


def test_only_tiers_with_another_detector_than_the_best_are_measured():
    tiers = [tier(0), tier(1, skip=2), tier(2, 416), tier(3, 416, skip=3), tier(4, 224)]
    assert [t.index for t in needs_measuring(tiers, 0.9)] == [2, 4]
    assert needs_measuring(tiers, 0.0) == []
    measured = {
        tiers[2].key: (Measurement(0.95, 80, 40, "site"), True),
        tiers[4].key: (Measurement(0.61, 80, 40, "site"), False),
    }
    verdicts = assess(tiers, measured, 0.9)
    assert [v.basis for v in verdicts] == [BEST, SAME_DETECTOR, CACHED, CACHED, MEASURED]
    assert [v.runnable for v in verdicts] == [True, True, True, True, False]
    assert "mAP@0.5 0.610, below policy.agreement_floor 0.90 (40 frames of set site)" in verdicts[4].reason
    assert {v.basis for v in assess(tiers, {}, 0.0)} == {OFF}


def test_too_few_reference_boxes_cannot_judge_and_keep_the_tier():
    assert judge_tier(Measurement(0.1, MIN_REFERENCE_BOXES - 1, 10, "empty"), 0.9) is None
    assert judge_tier(Measurement(None, 0, 10, "empty"), 0.9) is None
    assert judge_tier(Measurement(0.1, MIN_REFERENCE_BOXES, 10, "site"), 0.9) is not None


def test_only_the_counted_classes_are_compared_renumbered():
    found = Detections(
        np.array([[0, 0, 10, 10], [5, 5, 20, 20], [1, 1, 9, 9]], np.float32),
        np.array([0.9, 0.8, 0.7], np.float32),
        np.array([2, 0, 5], np.int32),
    )
    coco_like = ["person", "bicycle", "car", "motorcycle", "airplane", "bus"]
    kept = counted_classes(found, coco_like, ["car", "person"])
    assert kept.class_ids.tolist() == [0, 1] and kept.scores.tolist() == pytest.approx([0.9, 0.8])
    assert len(counted_classes(Detections.empty(), coco_like, ["person"])) == 0


def test_the_controller_never_steps_into_a_dropped_tier():
    tiers = [tier(0), tier(1, 416), tier(2, 300, skip=2), tier(3, 224), tier(4, 300, skip=4)]
    base = TierSelection("x86-cpu", tuple(tiers), ())
    measured = {
        tiers[1].key: (Measurement(0.70, 60, 40, "site"), False),
        tiers[2].key: (Measurement(0.95, 60, 40, "site"), False),
        tiers[3].key: (Measurement(0.50, 60, 40, "site"), False),
    }
    selection = base.judged(assess(tiers, measured, 0.9))
    assert [t.index for t in selection.runnable] == [0, 2, 4]
    assert [(d.index, "agreement_floor" in d.reason) for d in selection.dropped] == [(1, True), (3, True)]
    clock = SimClock()
    controller = AdaptiveController(selection.runnable, [12.0, 25.0, 25.0], 10.0, PolicyConfig(), clock)
    visited = {controller.tier.index}
    frames, busy = 0, 0.0
    # Overload (2 frames/s analysed at any tier) steps down to the cheapest runnable tier, then
    # the load goes away and it climbs back to the best one.
    for second in range(1, 400):
        clock.now = float(second)
        rate, capacity = (2, 2.5) if second < 60 else (12 // controller.tier.frame_skip + 1, 40.0)
        frames += rate
        busy += rate / capacity
        controller.update(frames, busy_s=busy)
        visited.add(controller.tier.index)
    assert visited == {0, 2, 4}
    assert controller.tier.index == 0


# --- measured on the device's frames with real detectors ---------------------------------------


def test_a_disagreeing_tier_is_dropped_and_an_agreeing_one_kept(tmp_path, registry, caplog):
    write_scenes(tmp_path)
    config = device_config(tmp_path)
    messages: List[str] = []
    with caplog.at_level(logging.INFO, logger="edge.device.agreement"):
        checked = check_agreement(config, selection_of(config), "fp", messages.append)
    assert [t.index for t in checked.runnable] == [0, 2, 3]
    [dropped] = checked.dropped
    assert dropped.index == 1 and "below policy.agreement_floor" in dropped.reason
    assert f"tier {dropped.name} dropped: {dropped.reason}" in caplog.text
    shifted, plain = checked.agreement_of(1), checked.agreement_of(2)
    assert shifted is not None and plain is not None
    assert shifted.basis == MEASURED and shifted.agreement_map50 < FLOOR
    assert plain.basis == MEASURED and plain.agreement_map50 >= FLOOR
    assert plain.reference_boxes >= MIN_REFERENCE_BOXES and plain.frame_set == "scenes"
    assert checked.agreement_of(3).basis == SAME_DETECTOR
    # Progress names each detector run: the reference and the two measured tiers, nothing else.
    runs = {message.split(" ssdlite")[0] for message in messages}
    assert runs == {"tier agreement: 1/3 (reference)", "tier agreement: 2/3", "tier agreement: 3/3"}


def test_the_second_start_reads_the_cache_and_a_new_set_measures_again(tmp_path, registry, monkeypatch):
    write_scenes(tmp_path)
    config = device_config(tmp_path, tiers=[TIERS[0], TIERS[2]])
    cache = AgreementCache(tmp_path / "state" / "tier-agreement.json")
    first = check_agreement(config, selection_of(config), "fp", lambda message: None, cache)

    def no_detector(*args, **kwargs):
        raise AssertionError("a detector was built although the cache had the result")

    with monkeypatch.context() as patched:
        patched.setattr(agreement, "load_tier_detector", no_detector)
        again = check_agreement(config, selection_of(config), "fp", lambda message: None, cache)
    assert again.runnable == first.runnable and len(again.runnable) == 2
    assert again.agreement_of(1).basis == CACHED
    assert again.agreement_of(1).agreement_map50 == first.agreement_of(1).agreement_map50
    # A new calibration set measures again.
    write_scenes(tmp_path, "newer", offset=44)
    newer = device_config(tmp_path, "newer", tiers=[TIERS[0], TIERS[2]])
    measured: List[str] = []
    renewed = check_agreement(newer, selection_of(newer), "fp", measured.append, cache)
    assert measured and renewed.agreement_of(1).basis == MEASURED
    assert renewed.agreement_of(1).frame_set == "newer"


def test_a_floor_of_zero_measures_nothing_and_keeps_every_tier(tmp_path, registry, monkeypatch):
    monkeypatch.setattr(agreement, "load_tier_detector", None)  # any detector run would fail
    config = device_config(tmp_path, agreement_floor=0)
    checked = check_agreement(config, selection_of(config), "fp", lambda message: None)
    assert len(checked.runnable) == len(TIERS) and checked.agreement_of(1).basis == OFF


def test_the_daemon_start_drops_the_tier_before_the_controller_sees_it(tmp_path, registry, monkeypatch):
    write_scenes(tmp_path)
    config = device_config(tmp_path, tiers=TIERS[:2])
    monkeypatch.setattr("edge.runtime.appliance.load_manifest", lambda directory: MANIFEST)
    selection = _select(config, profile("x86-cpu", arch="x86_64"), lambda message: None)
    assert [t.index for t in selection.runnable] == [0]
    assert [d.index for d in selection.dropped] == [1]
    cached = json.loads((tmp_path / "state" / "tier-agreement.json").read_text())
    assert len(next(iter(cached.values()))) == 1  # the measured tier, under this device's fingerprint


def test_probe_shows_each_tiers_agreement(tmp_path, registry, capsys):
    write_scenes(tmp_path)
    path = tmp_path / "config.yaml"
    path.write_text(
        json.dumps(device_config(tmp_path).model_dump(mode="json", include={"state_dir", "calibration", "policy"}))
    )
    assert main(["probe", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"floor {FLOOR:.2f}" in out
    assert "run   [0]" in out and "agreement 1.000 (best)" in out
    assert "agreement 1.000 (same detector)" in out
    assert "(measured, 10 frames of set scenes)" in out
    assert "drop  [1] ssdlite-mobilenetv2-pedestrian@300 shifted-cpu/fp32 skip1: detections agree" in out
    assert main(["probe", "-c", str(path), "--json"]) == 0
    tiers = json.loads(capsys.readouterr().out)["tiers"]
    assert tiers["agreement_floor"] == FLOOR
    assert [t["agreement"]["basis"] for t in tiers["runnable"]] == [BEST, CACHED, SAME_DETECTOR]
    [dropped] = tiers["dropped"]
    assert dropped["index"] == 1 and dropped["agreement"]["agreement_map50"] < FLOOR


def test_telemetry_carries_the_current_tiers_agreement():
    appliance = fake_appliance(three_cameras(), [])
    assert appliance.telemetry().to_wire()["tier_agreement"] is None  # not judged
    judged = appliance.parts.selection.judged(assess([TIER], {}, FLOOR))
    checked = Appliance(replace(appliance.parts, selection=judged), appliance.precision)
    assert checked.telemetry().to_wire()["tier_agreement"] == 1.0
