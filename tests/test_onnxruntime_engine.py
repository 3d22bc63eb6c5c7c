"""The ONNX Runtime backend on the default model and the two real person photographs shipped in
registry packages, checked against hand-measured ground truth (tests/images/ground_truth.json)."""

import dataclasses
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.core.errors import ModelError
from edge.detection.engines import EngineOptions, detect
from edge.detection.engines.onnxruntime import choose_providers, resolve_model_file
from edge.detection.factory import create_detector
from edge.detection.families.ssd import preprocess_ssd
from edge.detection.manifest import ModelFile, ModelSpec, get_model, sha256_of
from edge.detection.nms import box_iou

MODEL = "ssdlite-mobilenetv2-pedestrian"
GROUND_TRUTH = json.loads((Path(__file__).parent / "images" / "ground_truth.json").read_text())["images"]


def load_image(name: str) -> np.ndarray:
    """BGR image from the package it ships in (no copies in the repository)."""
    if name == "astronaut":
        import skimage.data

        return cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
        return cv2.imdecode(np.frombuffer(handle.read(), np.uint8), cv2.IMREAD_COLOR)


@pytest.fixture(scope="module")
def images():
    return {name: load_image(name) for name in GROUND_TRUTH}


@pytest.fixture(scope="module", params=["fp32", "int8"])
def detector(request):
    options = EngineOptions(precision=request.param, input_size=(300, 300), max_batch=2)
    detector = create_detector("onnxruntime", get_model(MODEL), options)
    yield detector
    detector.close()


def test_ground_truth_matches_the_images(images):
    for name, truth in GROUND_TRUTH.items():
        height, width = images[name].shape[:2]
        assert [width, height] == truth["size"]


@pytest.mark.parametrize("name", sorted(GROUND_TRUTH))
def test_finds_the_person_in_the_real_images(detector, images, name):
    (found,) = detect(detector, [images[name]])
    assert len(found) >= 1
    truth = np.array(GROUND_TRUTH[name]["persons"][0]["box"], np.float32)
    best = int(np.argmax(found.scores))
    assert found.scores[best] > 0.5
    assert box_iou(truth, found.boxes[best : best + 1])[0] >= 0.5
    assert found.class_ids[best] == 0 and detector.classes[0] == "person"


def test_a_batch_of_frames_of_different_sizes_equals_single_frames(detector, images):
    frames = [images["astronaut"], images["grace_hopper"]]
    batched = detect(detector, frames)
    for frame, result in zip(frames, batched):
        (single,) = detect(detector, [frame])
        np.testing.assert_allclose(result.boxes, single.boxes, atol=1e-3)
        np.testing.assert_allclose(result.scores, single.scores, atol=1e-5)


def test_batch_larger_than_max_batch_is_refused(detector, images):
    with pytest.raises(ValueError, match="batch of 3"):
        detector.preprocess([images["astronaut"]] * 3)


def test_ssd_preprocess_is_one_contiguous_uint8_rgb_batch(images):
    batch = preprocess_ssd([images["astronaut"], images["grace_hopper"]], (300, 300))
    assert batch.shape == (2, 300, 300, 3) and batch.dtype == np.uint8 and batch.flags["C_CONTIGUOUS"]
    expected = cv2.resize(images["astronaut"], (300, 300))[..., ::-1]
    np.testing.assert_array_equal(batch[0], expected)


def test_smaller_input_uses_its_own_anchors(images):
    options = EngineOptions(precision="fp32", input_size=(256, 256))
    detector = create_detector("onnxruntime", get_model(MODEL), options)
    assert detector.input_size == (256, 256)
    (found,) = detect(detector, [images["grace_hopper"]])
    truth = np.array(GROUND_TRUTH["grace_hopper"]["persons"][0]["box"], np.float32)
    assert box_iou(truth, found.boxes[:1])[0] >= 0.5


def test_unsupported_input_size_is_a_model_error():
    with pytest.raises(ModelError, match="input 100 not supported"):
        create_detector("onnxruntime", get_model(MODEL), EngineOptions(input_size=(100, 100)))


def test_fp16_runs_the_fp32_file_on_cpu_and_says_why(caplog):
    caplog.set_level(logging.INFO, logger="edge.detection.engines.onnxruntime")
    detector = create_detector("onnxruntime", get_model(MODEL), EngineOptions(precision="fp16"))
    assert detector.precision == "fp32"
    assert detector.artifact.name == "ssdlite_mobilenetv2_pedestrian.onnx"
    assert "fp16 needs TensorRT; CPUExecutionProvider runs the fp32 file" in caplog.text


def test_resolve_model_file_uses_tensorrt_for_fp16():
    role, reason = resolve_model_file(
        get_model(MODEL), "fp16", ["TensorrtExecutionProvider", "CPUExecutionProvider"]
    )
    assert role == "fp32" and "TensorRT" in reason
    assert resolve_model_file(get_model(MODEL), "int8", ["CPUExecutionProvider"]) == ("int8", "")


def test_providers_best_first_and_cpu_always_last():
    available = [
        "CPUExecutionProvider",
        "CUDAExecutionProvider",
        "AzureExecutionProvider",
        "TensorrtExecutionProvider",
    ]
    assert choose_providers(available) == [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    assert choose_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]


def test_sha256_mismatch_is_a_model_error(tmp_path):
    spec = get_model(MODEL)
    copy = tmp_path / "model.onnx"
    data = bytearray(spec.file("fp32").read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    files = dict(spec.files, fp32=ModelFile(copy, spec.files["fp32"].sha256))
    corrupt = ModelSpec(
        spec.name, spec.family, spec.classes, spec.input_size, files, spec.supported_inputs, spec.extras
    )
    with pytest.raises(ModelError, match="corrupt"):
        create_detector("onnxruntime", corrupt, EngineOptions(precision="fp32"))


def test_corrupt_onnx_with_a_matching_checksum_is_a_model_error(tmp_path):
    # A user-supplied model whose manifest entry was written for the broken file.
    spec = get_model(MODEL)
    broken = tmp_path / "user_model.onnx"
    broken.write_bytes(spec.file("fp32").read_bytes()[:200_000])
    files = {"fp32": ModelFile(broken, sha256_of(broken))}
    user = ModelSpec("user-model", "ssd", ("person",), (300, 300), files, (300,))
    with pytest.raises(ModelError, match="cannot load ONNX model"):
        create_detector("onnxruntime", user, EngineOptions(precision="fp32"))


def test_missing_model_file_is_a_model_error(tmp_path):
    spec = get_model(MODEL)
    files = dict(spec.files, int8=ModelFile(tmp_path / "absent.onnx", spec.files["int8"].sha256))
    missing = ModelSpec(
        spec.name, spec.family, spec.classes, spec.input_size, files, spec.supported_inputs, spec.extras
    )
    with pytest.raises(ModelError, match="missing"):
        create_detector("onnxruntime", missing, EngineOptions(precision="int8"))


def test_session_options_suit_a_shared_edge_cpu():
    from edge.detection.engines.onnxruntime import physical_cores, session_options

    options = session_options()
    assert options.intra_op_num_threads == physical_cores()
    assert options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert not options.enable_mem_pattern  # one planned block per input shape would stay allocated
    assert session_options(threads=1).intra_op_num_threads == 1


def at(size, budget):
    return EngineOptions(input_size=size, max_batch=4, cpu_batch_pixels=budget)


def test_on_the_cpu_a_batch_holds_at_most_the_pixel_budget():
    from edge.detection.engines.onnxruntime import cpu_batch_limit

    assert cpu_batch_limit("CPUExecutionProvider", at((576, 576), 180_000)) == 1
    assert cpu_batch_limit("CPUExecutionProvider", at((300, 300), 180_000)) == 2
    assert cpu_batch_limit("CPUExecutionProvider", at((300, 300), 0)) == 4  # no budget: max_batch
    assert cpu_batch_limit("CUDAExecutionProvider", at((576, 576), 180_000)) == 4  # GPUs gain from batches
    options = at((576, 576), 180_000)
    detector = create_detector("onnxruntime", get_model(MODEL), dataclasses.replace(options, precision="int8"))
    try:
        assert detector.max_batch == 1
        with pytest.raises(ValueError, match="takes 1..1"):
            detector.preprocess([np.zeros((576, 576, 3), np.uint8)] * 2)
    finally:
        detector.close()


def test_the_configured_budget_reaches_the_engine():
    from edge.config import Config, TierConfig
    from edge.detection.factory import engine_options

    tier = TierConfig(model=MODEL, precision="int8", engine="onnxruntime", input=576)
    assert engine_options(Config(), tier, 4).cpu_batch_pixels == Config().detector.cpu_batch_pixels > 0
    assert engine_options(Config(detector={"cpu_batch_pixels": 0}), tier, 4).cpu_batch_pixels == 0
