"""Export an Ultralytics YOLOv8 / YOLO11 detector to ONNX and add it to the model manifest
(edge/assets/models/manifest.json, the package data the runtime loads).

Run on a machine that has the weights and the `export` extra (ultralytics, onnx); the
appliance itself never needs ultralytics and never downloads anything:

    pip install 'video-analysis[export]'
    python models/export_yolo.py yolo11n.pt --name yolo11n --imgsz 640

The exported graph takes `images` float32 [batch, 3, imgsz, imgsz] (RGB, 0..1, letterboxed with
grey 114) and returns `output0` [batch, 4 + classes, anchors]: cx, cy, w, h in input pixels and
sigmoid class scores, without NMS (edge/postprocess.py decodes it and runs class-aware NMS).
The batch dimension is dynamic so the pipeline can batch cameras. The manifest entry records the
class names from the weights, the sha256, the source weights' sha256 and the export versions;
its `family` is "yolo". Weights stay FP32: TensorRT builds FP16/INT8 engines from them.
Copy the .onnx file and the updated manifest to the device's models directory (config `models_dir`),
or rebuild the wheel.
INT8 for YOLO comes from TensorRT calibration on the device (`video-analysis calibrate`).
"""

import argparse
import json
import shutil
from pathlib import Path
from typing import Dict, List, Tuple

from edge.detection.manifest import sha256_of

MODELS_DIR = Path(__file__).resolve().parent.parent / "edge" / "assets" / "models"


def class_names(names: object) -> List[str]:
    """Ultralytics keeps names as {index: name}; the manifest wants them in index order."""
    if isinstance(names, dict):
        return [str(names[index]) for index in sorted(names)]
    return [str(name) for name in names]  # type: ignore[attr-defined]


def export(weights: Path, imgsz: int, opset: int) -> Tuple[Path, List[str]]:
    from ultralytics import YOLO  # lazily: only this offline script needs it

    model = YOLO(str(weights))
    # FP32 weights: TensorRT builds FP16/INT8 engines from them on the device.
    exported = model.export(format="onnx", imgsz=imgsz, dynamic=True, simplify=True, opset=opset)
    return Path(exported), class_names(model.names)


def check_output_layout(path: Path, classes: List[str]) -> None:
    """The graph must end in the [batch, 4 + classes, anchors] head that postprocess_yolo reads."""
    import onnx

    model = onnx.load(str(path))
    (output,) = model.graph.output
    dims = [d.dim_value or d.dim_param for d in output.type.tensor_type.shape.dim]
    if len(dims) != 3 or dims[1] != 4 + len(classes):
        raise SystemExit(
            f"{path}: output {output.name} has shape {dims}; expected [batch, {4 + len(classes)}, anchors] "
            "(export without NMS / end2end)"
        )


def update_manifest(manifest_path: Path, name: str, entry: Dict[str, object]) -> None:
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"models": {}}
    manifest["models"][name] = entry
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("weights", type=Path, help="Ultralytics .pt weights (YOLOv8 or YOLO11 detection)")
    parser.add_argument("--name", help="model name in the manifest (default: the weights' stem)")
    parser.add_argument("--imgsz", type=int, default=640, help="square input size (%(default)s)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (%(default)s)")
    parser.add_argument(
        "--licence", default="AGPL-3.0", help="licence of the weights (%(default)s for Ultralytics)"
    )
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    args = parser.parse_args()

    if not args.weights.is_file():
        # Ultralytics would otherwise download weights by that name; this script only converts.
        raise SystemExit(f"{args.weights}: weights file not found")
    import ultralytics

    name = args.name or args.weights.stem
    exported, classes = export(args.weights, args.imgsz, args.opset)
    check_output_layout(exported, classes)
    target = args.models_dir / f"{name}.onnx"
    shutil.copy(exported, target)
    entry = {
        "family": "yolo",
        "classes": classes,
        "input": {
            "width": args.imgsz,
            "height": args.imgsz,
            "layout": "NCHW",
            "dtype": "float32",
            "color": "RGB",
        },
        "files": {"fp32": {"path": target.name, "sha256": sha256_of(target)}},
        "supported_inputs": [args.imgsz],
        "extras": {
            "source": {"weights": args.weights.name, "sha256": sha256_of(args.weights)},
            "licence": args.licence,
            "letterbox_pad": 114,
            "export": {
                "script": "models/export_yolo.py",
                "ultralytics": ultralytics.__version__,
                "opset": args.opset,
            },
        },
    }
    update_manifest(args.models_dir / "manifest.json", name, entry)
    print(f"wrote {target} and added {name!r} to {args.models_dir / 'manifest.json'}")


if __name__ == "__main__":
    main()
