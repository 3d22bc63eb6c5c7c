"""The agreement metric and the accuracy guard: a broken (blank-frame) calibration is refused
and the detector falls back to FP32 with the reason logged; a proper one is accepted."""

import logging

import numpy as np
import pytest

from edge.config import Config, TierConfig
from edge.core.accuracy import AgreementReport, agreement_map, average_precision, compare, judge, recall
from edge.core.detections import Detections
from edge.detection.int8.guard import load_guarded_detector
from edge.detection.int8.sets import CandidateFrame, write_set
from edge.detection.manifest import get_model

MODEL = "ssdlite-mobilenetv2-pedestrian"


def dets(boxes, scores, classes=None):
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    classes = np.zeros(len(boxes), np.int32) if classes is None else np.asarray(classes, np.int32)
    return Detections(boxes, np.asarray(scores, np.float32), classes)


A, B, C = [0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]


def test_identical_detections_agree_fully():
    frames = [dets([A, B], [0.9, 0.8]), dets([C], [0.7])]
    assert agreement_map(frames, frames) == pytest.approx(1.0)


def test_a_missed_box_and_a_high_scoring_false_box_lower_the_ap():
    reference = [dets([A, B], [0.9, 0.8])]
    assert average_precision([dets([A], [0.9])], [reference[0].boxes]) == pytest.approx(0.5)
    # A false box ranked first: precision 1/2 at recall 1/2 and 2/3 at recall 1.
    ranked_badly = dets([C, A, B], [0.95, 0.9, 0.8])
    assert average_precision([ranked_badly], [reference[0].boxes]) == pytest.approx(0.5 * 2 / 3 + 0.5 * 2 / 3)
    # The same false box ranked last costs nothing.
    ranked_well = dets([A, B, C], [0.9, 0.8, 0.1])
    assert average_precision([ranked_well], [reference[0].boxes]) == pytest.approx(1.0)


def test_boxes_shifted_below_iou_half_do_not_match_and_classes_are_kept_apart():
    shifted = [dets([[6, 0, 16, 10]], [0.9])]  # IoU with A = 4/16
    assert agreement_map(shifted, [dets([A], [0.9])]) == 0.0
    other_class = [dets([A], [0.9], [1])]
    assert agreement_map(other_class, [dets([A], [0.9], [0])]) == 0.0
    assert agreement_map([dets([], [])], [dets([], [])]) is None


def test_recall_matches_each_label_once():
    labels = [np.array([A, B], np.float64)]
    assert recall([dets([A, A], [0.9, 0.8])], labels) == pytest.approx(0.5)
    report = compare([dets([A], [0.9])], [dets([A, B], [0.9, 0.8])], [np.array([A, B], np.float64)])
    assert report.recall_int8 == pytest.approx(0.5) and report.recall_fp32 == pytest.approx(1.0)


def test_judge_names_the_reason():
    good = AgreementReport(frames=10, reference_boxes=40, agreement_map50=0.97)
    assert judge(good, 0.95, 0.05) is None
    assert "below the floor" in judge(AgreementReport(10, 40, 0.90), 0.95, 0.05)
    assert "no FP32 detections" in judge(AgreementReport(10, 0, None), 0.95, 0.05)
    recall_drop = AgreementReport(10, 40, 0.99, labelled_frames=5, recall_fp32=0.95, recall_int8=0.80)
    assert "recall" in judge(recall_drop, 0.95, 0.05)


@pytest.fixture(scope="module")
def model():
    return get_model(MODEL)


def guard_config(tmp_path, set_name):
    return Config(
        state_dir=tmp_path / "state",
        calibration={"dir": str(tmp_path / "calibration"), "set_name": set_name},
    )


INT8_TIER = TierConfig(model=MODEL, precision="int8", engine="onnxruntime", input=300)


@pytest.mark.slow
def test_a_blank_frame_calibration_is_refused_and_fp32_is_used(tmp_path, model, caplog):
    blank = [CandidateFrame(np.full((360, 640, 3), 0, np.uint8), f"blank#{i}") for i in range(20)]
    write_set(tmp_path / "calibration", "blank", blank, "test: blank frames")
    config = guard_config(tmp_path, "blank")
    with caplog.at_level(logging.WARNING, logger="edge.detection.int8.guard"):
        detector, decision = load_guarded_detector(config, INT8_TIER, model)
    assert not decision.accepted and decision.requested == "int8" and decision.chosen == "fp32"
    assert detector.precision == "fp32"
    assert decision.agreement_map50 is not None and decision.agreement_map50 < 0.95
    assert "below the floor" in decision.reason
    assert "INT8 refused" in caplog.text and "falling back to fp32" in caplog.text
    assert decision.to_dict()["chosen"] == "fp32"
    detector.close()


@pytest.mark.slow
def test_a_scene_calibration_is_accepted(tmp_path, model):
    from edge.detection.int8.sets import builtin_frames

    write_set(tmp_path / "calibration", "scenes", list(builtin_frames(40)), "test: scenes")
    config = guard_config(tmp_path, "scenes")
    detector, decision = load_guarded_detector(config, INT8_TIER, model)
    assert decision.accepted and decision.chosen == "int8" and detector.precision == "int8"
    assert decision.agreement_map50 >= 0.95 and decision.reference_boxes > 0
    assert decision.recall_int8 is not None and decision.recall_int8 >= decision.recall_fp32 - 0.05
    assert "quantized" in decision.model_path
    detector.close()
    # The second load reuses the quantised model: same file, no new one.
    again, second = load_guarded_detector(config, INT8_TIER, model)
    assert second.model_path == decision.model_path
    assert len(list((tmp_path / "state" / "cache" / "quantized").glob("*.onnx"))) == 1
    again.close()


def test_fp32_tiers_skip_the_guard(tmp_path, model):
    config = guard_config(tmp_path, None)
    tier = TierConfig(model=MODEL, precision="fp32", engine="onnxruntime", input=300)
    detector, decision = load_guarded_detector(config, tier, model)
    assert decision.accepted and decision.chosen == "fp32" and decision.agreement_map50 is None
    detector.close()
