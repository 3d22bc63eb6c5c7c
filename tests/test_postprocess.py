"""SSD decode, YOLO decode and class-aware NMS, against hand-computed boxes."""

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge.core.errors import ModelError
from edge.detection.engines import EngineOptions, detect
from edge.detection.factory import create_detector
from edge.detection.families.base import PostprocessSettings
from edge.detection.families.ssd import decode_ssd_boxes, postprocess_ssd
from edge.detection.families.yolo import Letterbox, letterbox_geometry, postprocess_yolo, undo_letterbox
from edge.detection.manifest import ModelFile, ModelSpec, sha256_of
from edge.detection.nms import box_iou, nms

# One anchor: ymin 0.2, xmin 0.3, ymax 0.6, xmax 0.5 -> centre (y 0.4, x 0.4), h 0.4, w 0.2.
ANCHOR = np.array([[0.2, 0.3, 0.6, 0.5]], np.float32)


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_ssd_zero_encoding_gives_the_anchor():
    boxes = decode_ssd_boxes(np.zeros((1, 4), np.float32), ANCHOR)
    np.testing.assert_allclose(boxes, [[0.3, 0.2, 0.5, 0.6]], atol=1e-6)


def test_ssd_decode_matches_hand_computed_box():
    # ty = 1 -> cy += 1/10 * 0.4; tx = -2 -> cx -= 2/10 * 0.2; th = 5 ln 2 -> h * 2; tw = 0.
    encoding = np.array([[1.0, -2.0, 5 * math.log(2), 0.0]], np.float32)
    boxes = decode_ssd_boxes(encoding, ANCHOR)
    # cy 0.44, cx 0.36, h 0.8, w 0.2
    np.testing.assert_allclose(boxes, [[0.26, 0.04, 0.46, 0.84]], atol=1e-6)


def test_ssd_decode_honours_other_box_coder_scales():
    encoding = np.array([[1.0, 0.0, 0.0, 0.0]], np.float32)
    boxes = decode_ssd_boxes(encoding, ANCHOR, scales=(1.0, 1.0, 1.0, 1.0))
    np.testing.assert_allclose(boxes[0, [1, 3]], [0.2 + 0.4, 0.6 + 0.4], atol=1e-6)


def test_postprocess_ssd_maps_to_frame_pixels_thresholds_and_clips():
    anchors = np.array([[0.2, 0.3, 0.6, 0.5], [0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.2, 1.1]], np.float32)
    encodings = np.zeros((1, 3, 4), np.float32)
    logits = np.array([[[0.0, logit(0.9)], [0.0, logit(0.2)], [5.0, logit(0.7)]]], np.float32)
    (result,) = postprocess_ssd(encodings, logits, anchors, [(200, 100)], PostprocessSettings(0.5, 0.45))
    assert len(result) == 2
    np.testing.assert_allclose(result.scores, [0.9, 0.7], atol=1e-5)
    np.testing.assert_allclose(result.boxes[0], [60, 20, 100, 60], atol=1e-4)
    # The third anchor reaches past the frame: clipped to 200 x 100; background logit is ignored.
    np.testing.assert_allclose(result.boxes[1], [100, 50, 200, 100], atol=1e-4)
    assert result.class_ids.tolist() == [0, 0]
    assert result.boxes.dtype == np.float32 and result.class_ids.dtype == np.int32


def test_postprocess_ssd_batch_gives_one_result_per_frame_and_accepts_uncut_layout():
    encodings = np.zeros((2, 1, 1, 4), np.float32)  # TF's (B, N, 1, 4)
    logits = np.array([[[0.0, 3.0]], [[0.0, -3.0]]], np.float32)
    first, second = postprocess_ssd(encodings, logits, ANCHOR, [(10, 10), (20, 20)])
    assert len(first) == 1 and len(second) == 0


def test_postprocess_ssd_rejects_anchor_mismatch():
    with pytest.raises(ValueError, match="anchors"):
        postprocess_ssd(np.zeros((1, 2, 4)), np.zeros((1, 2, 2)), ANCHOR, [(10, 10)])


def test_nms_suppresses_overlapping_same_class_and_keeps_others():
    boxes = np.array(
        [
            [0, 0, 10, 10],  # best
            [1, 0, 11, 10],  # IoU 0.82 with the best, same class -> suppressed
            [1, 0, 11, 10],  # same box, other class -> kept
            [20, 20, 30, 30],  # no overlap -> kept
            [0, 0, 10, 20],  # IoU 0.5 with the best -> kept at threshold 0.6
        ],
        np.float32,
    )
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.95], np.float32)
    classes = np.array([0, 0, 1, 0, 0])
    keep = nms(boxes, scores, classes, iou_threshold=0.6)
    assert keep.tolist() == [4, 0, 2, 3]
    keep = nms(boxes, scores, classes, iou_threshold=0.45)
    # IoU 0.5 now suppresses box 0; box 1 (IoU 0.43 with box 4) survives, since a suppressed box
    # suppresses nothing.
    assert keep.tolist() == [4, 1, 2, 3]


def test_nms_is_class_agnostic_without_class_ids_and_caps_detections():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60], [70, 70, 80, 80]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    assert nms(boxes, scores, None, 0.5).tolist() == [0, 2, 3]
    assert nms(boxes, scores, None, 0.5, max_detections=2).tolist() == [0, 2]
    assert nms(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)).tolist() == []


def test_box_iou():
    ious = box_iou(np.array([0, 0, 10, 10.0]), np.array([[0, 0, 10, 10.0], [5, 0, 15, 10], [20, 20, 30, 30]]))
    np.testing.assert_allclose(ious, [1.0, 1 / 3, 0.0])


def test_letterbox_geometry_and_undo():
    box = letterbox_geometry((128, 64), (64, 64))
    assert box == Letterbox(scale=0.5, pad_x=0, pad_y=16)
    restored = undo_letterbox(np.array([[0, 16, 64, 48]], np.float32), box)
    np.testing.assert_allclose(restored, [[0, 0, 128, 64]])


# A YOLOv8-format head output for a 64x64 input: rows cx, cy, w, h, then 2 class scores.
YOLO_OUTPUT = np.array(
    [
        # A: class 0, 0.9   B: overlaps A, 0.8   C: A's box, class 1   D: too weak   E: other place
        [32, 33, 32, 10, 50],  # cx
        [32, 32, 32, 32, 40],  # cy
        [20, 20, 20, 20, 8],  # w
        [20, 20, 20, 20, 16],  # h
        [0.9, 0.8, 0.1, 0.2, 0.05],  # class 0
        [0.05, 0.1, 0.7, 0.1, 0.6],  # class 1
    ],
    np.float32,
)[None]
# Frame 128 x 64 letterboxed into 64 x 64: scale 0.5, 16 px padding above and below.
FRAME = np.zeros((64, 128, 3), np.uint8)
EXPECTED_BOXES = [[44, 12, 84, 52], [44, 12, 84, 52], [92, 32, 108, 64]]  # A, C (A's box), E


def check_yolo_result(result):
    np.testing.assert_allclose(result.scores, [0.9, 0.7, 0.6], atol=1e-6)
    assert result.class_ids.tolist() == [0, 1, 1]
    np.testing.assert_allclose(result.boxes, EXPECTED_BOXES, atol=1e-4)


def test_postprocess_yolo_decodes_letterboxed_output():
    (result,) = postprocess_yolo(
        YOLO_OUTPUT, [letterbox_geometry((128, 64), (64, 64))], [(128, 64)], PostprocessSettings(0.25, 0.45)
    )
    check_yolo_result(result)


def write_tiny_yolo(path: Path) -> None:
    """A YOLO-format graph: images [B, 3, 64, 64] float -> output0 [B, 6, 5] equal to YOLO_OUTPUT
    for every image (the constant plus 0 x the image mean keeps the input wired in)."""
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Unsqueeze", ["mean", "axes"], ["mean_b11"]),
        helper.make_node("Mul", ["mean_b11", "zero"], ["nothing"]),
        helper.make_node("Add", ["head", "nothing"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 64, 64])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 6, 5])],
        initializer=[
            numpy_helper.from_array(YOLO_OUTPUT, "head"),
            numpy_helper.from_array(np.zeros((), np.float32), "zero"),
            numpy_helper.from_array(np.array([1, 2], np.int64), "axes"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_yolo_decode_through_onnx_runtime_on_a_yolo_format_graph(tmp_path):
    path = tmp_path / "tiny_yolo.onnx"
    write_tiny_yolo(path)
    spec = ModelSpec(
        name="tiny-yolo",
        family="yolo",
        classes=("person", "bicycle"),
        input_size=(64, 64),
        files={"fp32": ModelFile(path, sha256_of(path))},
    )
    options = EngineOptions(precision="int8", input_size=(64, 64), max_batch=2, score_threshold=0.25)
    detector = create_detector("onnxruntime", spec, options)
    assert detector.precision == "fp32"  # no int8 file: falls back, says so in the log
    batch = detector.preprocess([FRAME, FRAME])
    assert batch.tensor.shape == (2, 3, 64, 64) and batch.tensor.dtype == np.float32
    assert batch.tensor.flags["C_CONTIGUOUS"]
    # Letterbox padding is Ultralytics grey (114 / 255) above and below the frame.
    assert batch.tensor[0, :, :16].max() == pytest.approx(114 / 255)
    assert batch.tensor[0, :, 16:48].max() == 0.0
    first, second = detect(detector, [FRAME, FRAME])
    check_yolo_result(first)
    check_yolo_result(second)


def reference_greedy_nms(boxes, scores, classes, threshold):
    """Textbook greedy NMS, one box at a time, as the oracle."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    kept = []
    for i in order:
        if all(classes[i] != classes[k] or box_iou(boxes[k], boxes[i : i + 1])[0] <= threshold for k in kept):
            kept.append(i)
    return kept


@pytest.mark.parametrize("seed", range(5))
def test_nms_equals_textbook_greedy_nms_on_random_boxes(seed):
    rng = np.random.default_rng(seed)
    count = 60
    corners = rng.uniform(0, 200, (count, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(10, 80, (count, 2))], axis=1).astype(np.float32)
    scores = rng.permutation(count).astype(np.float32) / count  # distinct scores: one right answer
    classes = rng.integers(0, 3, count)
    expected = reference_greedy_nms(boxes, scores, classes, 0.45)
    assert nms(boxes, scores, classes, 0.45, max_detections=count).tolist() == expected


def test_postprocess_ssd_drops_the_anchors_the_mask_marks_unusable():
    encodings = np.zeros((1, 2, 4), np.float32)
    logits = np.array([[[0.0, logit(0.9)], [0.0, logit(0.8)]]], np.float32)
    anchors = np.concatenate([ANCHOR, ANCHOR * 0.5])
    (both,) = postprocess_ssd(encodings, logits, anchors, [(100, 100)], PostprocessSettings(0.5, 0.99))
    (masked,) = postprocess_ssd(
        encodings, logits, anchors, [(100, 100)], PostprocessSettings(0.5, 0.99), usable=np.array([False, True])
    )
    assert len(both) == 2
    assert masked.scores.tolist() == pytest.approx([0.8])


def test_ssd_family_keeps_the_aspect_and_adds_a_coarse_pass():
    from edge.detection.families.ssd import SsdFamily, aspect_input
    from edge.detection.manifest import get_model

    assert aspect_input((768, 576), 576) == (768, 576)
    assert aspect_input((640, 360), 300) == (533, 300)
    assert aspect_input((360, 640), 300) == (300, 533)
    model = get_model("ssdlite-mobilenetv2-pedestrian")
    frame = np.zeros((576, 768, 3), np.uint8)
    family = SsdFamily(model, EngineOptions(input_size=(576, 576), keep_aspect=True, coarse_input=300))
    batch = family.preprocess([frame, frame])
    assert batch.tensor.shape == (2, 576, 768, 3)
    assert [t.shape for t in batch.more_tensors] == [(2, 300, 400, 3)]
    assert batch.extras["inputs"] == [(768, 576), (400, 300)]
    # A frame smaller than the tier's input is not enlarged: the largest supported input that
    # fits it, and no coarse pass once the main pass is no larger than it.
    small = family.preprocess([np.zeros((360, 640, 3), np.uint8)])
    assert small.extras["inputs"] == [(626, 352), (533, 300)] and small.tensor.shape == (1, 352, 626, 3)
    tiny = family.preprocess([np.zeros((240, 320, 3), np.uint8)])
    assert tiny.extras["inputs"] == [(299, 224)] and tiny.more_tensors == []
    frame = np.zeros((480, 640, 3), np.uint8)
    square = SsdFamily(model, EngineOptions(input_size=(300, 300), coarse_input=300)).preprocess([frame])
    assert square.tensor.shape == (1, 300, 300, 3) and square.more_tensors == []
    with pytest.raises(ModelError, match="input 500 not supported"):
        SsdFamily(model, EngineOptions(input_size=(500, 500), keep_aspect=True))
    with pytest.raises(ModelError, match="SSD input must be square"):
        SsdFamily(model, EngineOptions(input_size=(400, 300)))
