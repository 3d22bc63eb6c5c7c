"""Per site, the cheapest equivalent detector wins: a cheaper detector that agrees with the best
tier on the site's own frames drops the costlier detectors' tiers (pure rule), and the daemon's
tier choice does so with the real detectors on a camera whose people are large (the synthetic
720p plaza: input 300 sees what 576 sees) but not on the built-in scenes."""

import json
from pathlib import Path

import pytest

from edge.commands.cli import main
from edge.config import PolicyConfig, parse_config
from edge.core.accuracy import MIN_REFERENCE_BOXES
from edge.core.tier_agreement import BEST, CACHED, MEASURED, SAME_DETECTOR, TierAgreement, dominated, on_site_frames
from edge.core.tiers import Tier
from edge.detection.int8.sets import BUILTIN_SET, CandidateFrame, write_set
from edge.devkit.synthetic import render, standard_scenes
from edge.runtime.appliance import choose_tiers
from tests.test_tiers import SSD, profile

FLOOR = PolicyConfig().equivalence_floor
TIERS = [
    Tier(0, SSD, "int8", "onnxruntime", 576, 1),
    Tier(1, SSD, "int8", "onnxruntime", 576, 2),
    Tier(2, SSD, "int8", "onnxruntime", 300, 1),
    Tier(3, SSD, "int8", "onnxruntime", 300, 2),
]
CAPACITIES = [12.0, 12.0, 40.0, 40.0]


def verdicts(agreement: float, frame_set: str = "site", boxes: int = 200, basis: str = MEASURED):
    return [
        TierAgreement(0, TIERS[0].name, 1.0, BEST, 0.88),
        TierAgreement(1, TIERS[1].name, 1.0, SAME_DETECTOR, 0.88),
        TierAgreement(2, TIERS[2].name, agreement, basis, 0.88, boxes, 40, frame_set),
        TierAgreement(3, TIERS[3].name, agreement, basis, 0.88, boxes, 40, frame_set),
    ]


def test_a_cheaper_detector_that_agrees_on_the_sites_frames_drops_the_costlier_tiers():
    reasons = dominated(TIERS, CAPACITIES, verdicts(0.99, basis=CACHED), FLOOR)
    assert sorted(reasons) == [0, 1]
    assert (
        "ssdlite-mobilenetv2-pedestrian@300 onnxruntime/int8 agrees with the best tier at mAP@0.5 0.990" in (reasons[0])
    )
    assert "40.0 frames/s against 12.0" in reasons[1]


@pytest.mark.parametrize(
    "case",
    [
        dict(agreement=0.95),  # under the equivalence floor: 576 sees people 300 misses
        dict(agreement=0.99, frame_set=BUILTIN_SET),  # not the site's frames
        dict(agreement=0.99, frame_set="site+builtin"),  # partly not
        dict(agreement=0.99, boxes=MIN_REFERENCE_BOXES - 1),  # too few people to tell
    ],
)
def test_nothing_is_dropped_without_evidence_from_the_site(case):
    assert dominated(TIERS, CAPACITIES, verdicts(**case), FLOOR) == {}


def test_a_detector_that_is_not_faster_does_not_drop_the_better_one():
    assert dominated(TIERS, [40.0, 40.0, 30.0, 30.0], verdicts(0.99), FLOOR) == {}


def test_the_floor_zero_turns_the_rule_off():
    assert dominated(TIERS, CAPACITIES, verdicts(1.0), 0.0) == {}


def test_site_frames_are_named_sets_without_the_builtin_scenes():
    assert on_site_frames("front-door") and on_site_frames("a+b")
    assert not on_site_frames(BUILTIN_SET) and not on_site_frames("front-door+builtin") and not on_site_frames("")


# --- the daemon's tier choice, real detectors ----------------------------------------------------


def site_config(tmp_path: Path, with_site_frames: bool):
    calibration = tmp_path / "calibration"
    if with_site_frames:
        scene = standard_scenes(1280, 720, 15)[1]  # benchmarks/clips.py's plaza camera
        frames = [CandidateFrame(render(scene, index), f"plaza:{index}") for index in range(0, 360, 9)]
        write_set(calibration, "plaza", frames, "test: plaza 720p")
    tiers = [{"model": SSD, "input": t.input, "frame_skip": t.frame_skip} for t in TIERS]
    return parse_config(
        {
            "state_dir": str(tmp_path / "state"),
            "calibration": {"dir": str(calibration)},
            "policy": {"tiers": {"x86-cpu": tiers}},
        }
    )


def test_the_plaza_cameras_frames_make_input_300_the_default(tmp_path, capsys):
    config = site_config(tmp_path, with_site_frames=True)
    selection, capacities = choose_tiers(config, profile("x86-cpu", arch="x86_64"), lambda message: None)
    assert [t.index for t in selection.runnable] == [2, 3]
    assert len(capacities) == 2
    assert [d.index for d in selection.dropped] == [0, 1]
    assert all("a cheaper detector sees the same people" in d.reason for d in selection.dropped)
    verdict = selection.agreement_of(2)
    assert verdict is not None and verdict.frame_set == "plaza" and verdict.agreement_map50 >= FLOOR
    # `probe` shows the same choice (from the caches the daemon's choice just filled).
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config.model_dump(mode="json", include={"state_dir", "calibration", "policy"})))
    assert main(["probe", "-c", str(path), "--json"]) == 0
    tiers = json.loads(capsys.readouterr().out)["tiers"]
    assert [t["index"] for t in tiers["runnable"]] == [2, 3]
    assert [d["index"] for d in tiers["dropped"]] == [0, 1]


@pytest.mark.slow
def test_without_site_frames_the_best_input_stays_the_default(tmp_path):
    config = site_config(tmp_path, with_site_frames=False)
    selection, _ = choose_tiers(config, profile("x86-cpu", arch="x86_64"), lambda message: None)
    assert selection.runnable[0].index == 0
    assert not any("cheaper detector" in d.reason for d in selection.dropped)
