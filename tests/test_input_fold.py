"""Folding the input normalisation of a quantised model into its first convolution: the same
outputs without the float chain, and graphs it cannot fold left alone."""

from pathlib import Path
from typing import Dict, Iterator, Optional

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader

from edge.detection.int8.input_fold import fold_input_normalisation
from edge.detection.int8.quantize import QuantizeSettings, quantize_model

RNG = np.random.default_rng(5)
PIXELS = [RNG.integers(0, 256, (1, 24, 32, 3), np.uint8) for _ in range(8)]


def normalising_model(scale: object = 2.0 / 255.0, offset: float = -1.0) -> onnx.ModelProto:
    """uint8 NHWC pixels -> NCHW -> float -> x * scale + offset -> conv 3x3 (+bias) -> relu ->
    conv 1x1: the SSD's input chain in small."""
    weights = RNG.normal(0, 0.5, (8, 3, 3, 3)).astype(np.float32)
    head = RNG.normal(0, 0.5, (4, 8, 1, 1)).astype(np.float32)
    initializers = [
        numpy_helper.from_array(np.asarray(scale, np.float32), "scale_value"),
        numpy_helper.from_array(np.array(offset, np.float32), "offset_value"),
        numpy_helper.from_array(weights, "stem_weights"),
        numpy_helper.from_array(RNG.normal(0, 0.5, 8).astype(np.float32), "stem_bias"),
        numpy_helper.from_array(head, "head_weights"),
    ]
    nodes = [
        helper.make_node("Transpose", ["images"], ["images_nchw"], perm=[0, 3, 1, 2], name="to_nchw"),
        helper.make_node("Cast", ["images_nchw"], ["images_float"], to=TensorProto.FLOAT, name="to_float"),
        helper.make_node("Mul", ["images_float", "scale_value"], ["images_scaled"], name="scale"),
        helper.make_node("Add", ["images_scaled", "offset_value"], ["normalised"], name="offset"),
        helper.make_node("Conv", ["normalised", "stem_weights", "stem_bias"], ["stem"], pads=[1, 1, 1, 1], name="stem"),
        helper.make_node("Relu", ["stem"], ["stem_relu"], name="relu"),
        helper.make_node("Conv", ["stem_relu", "head_weights"], ["scores"], name="head"),
    ]
    graph = helper.make_graph(
        nodes,
        "normalising",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, [1, 24, 32, 3])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 4, 24, 32])],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


class Pixels(CalibrationDataReader):
    def __init__(self, input_name: str) -> None:
        self._frames: Iterator[np.ndarray] = iter(PIXELS)
        self._name = input_name

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        frame = next(self._frames, None)
        return None if frame is None else {self._name: frame}


def run(path: Path, frame: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"images": frame})[0])


@pytest.fixture(scope="module")
def quantised(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    out = tmp_path_factory.mktemp("fold")
    float_path = out / "float.onnx"
    onnx.save(normalising_model(), str(float_path))
    paths = {"float": float_path}
    for fold in (False, True):
        target = out / f"int8-{'folded' if fold else 'chain'}.onnx"
        quantize_model(float_path, target, Pixels, QuantizeSettings(fold_input=fold))
        paths["folded" if fold else "chain"] = target
    return paths


def test_the_folded_model_has_no_float_chain_and_reads_the_pixels_directly(quantised: Dict[str, Path]) -> None:
    chain = {node.op_type for node in onnx.load(str(quantised["chain"])).graph.node}
    folded = onnx.load(str(quantised["folded"]))
    assert {"Cast", "Mul", "Add"} <= chain
    assert not {"Cast", "Mul", "Add"} & {node.op_type for node in folded.graph.node}
    first = next(node for node in folded.graph.node if node.input[0] == "images_nchw")
    assert first.op_type == "DequantizeLinear"
    zero = next(item for item in folded.graph.initializer if item.name == first.input[2])
    assert int(numpy_helper.to_array(zero)) == 128  # 127.5 rounded; the half step is in the bias


def test_the_folded_model_computes_what_the_chain_computed(quantised: Dict[str, Path]) -> None:
    for frame in PIXELS[:3]:
        reference = run(quantised["float"], frame)
        chain, folded = run(quantised["chain"], frame), run(quantised["folded"], frame)
        spread = float(np.abs(reference).max())
        # Both within a few quantisation steps of the float model, and of each other.
        assert float(np.abs(folded - reference).max()) < 0.05 * spread
        assert float(np.abs(folded - chain).max()) < 0.05 * spread
        assert float(np.abs(folded - reference).mean()) <= float(np.abs(chain - reference).mean()) * 1.5


def test_a_chain_that_is_not_one_scale_and_offset_is_left_alone() -> None:
    per_channel = normalising_model(scale=np.full((1, 3, 1, 1), 2.0 / 255.0, np.float32))
    before = per_channel.SerializeToString()
    assert not fold_input_normalisation(per_channel)
    assert per_channel.SerializeToString() == before


def test_the_setting_changes_the_cache_key() -> None:
    assert QuantizeSettings(fold_input=False).tag != QuantizeSettings().tag
