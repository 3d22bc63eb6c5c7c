"""Quantise the default SSDLite pedestrian model to INT8 (ONNX Runtime static QDQ) and record the
INT8 file in edge/assets/models/manifest.json. Run once, after models/convert_ssdlite.py, in the
project's dev environment (needs `onnx`, `scikit-image` and `matplotlib`):

    .venv/bin/python models/quantize_default.py

Calibration frames are built deterministically from the real person photographs that ship in
registry packages, scikit-image's `astronaut` and matplotlib's `grace_hopper.jpg`: the whole
images, random crops, and the people pasted at pedestrian-like sizes onto plain and gradient
backgrounds of camera-like aspect ratios, then resized to the model input as the runtime does.
Weights are quantised per output channel (int8), activations per tensor (uint8). The input
scaling nodes the converter added stay in float: they act on the uint8 input directly.
Finally it prints FP32 vs INT8 latency (median ms per frame, batch 1) and both models' best box
on the two photographs.
"""

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MODEL_NAME = "ssdlite-mobilenetv2-pedestrian"
INPUT_SIZE = 300
SEED = 20240531
# The converter's input prefix (uint8 -> float scaling) is exact in float and tiny; keep it so.
FLOAT_NODES = ["to_nchw", "to_float", "scale", "offset"]


def person_images() -> List[np.ndarray]:
    """The two public-domain person photographs, RGB uint8."""
    import matplotlib.cbook
    import skimage.data

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
        hopper = cv2.imdecode(np.frombuffer(handle.read(), np.uint8), cv2.IMREAD_COLOR)
    return [skimage.data.astronaut(), cv2.cvtColor(hopper, cv2.COLOR_BGR2RGB)]


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    if rng.random() < 0.5:
        bottom = top
    ramp = np.linspace(0.0, 1.0, height)[:, None, None]
    canvas = (1 - ramp) * top[None, None, :] + ramp * bottom[None, None, :]
    noise = rng.normal(0.0, 6.0, (height, width, 3))
    return np.clip(np.broadcast_to(canvas, (height, width, 3)) + noise, 0, 255).astype(np.uint8)


def _random_crop(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    crop_w = int(width * rng.uniform(0.5, 1.0))
    crop_h = int(height * rng.uniform(0.5, 1.0))
    x = int(rng.integers(0, width - crop_w + 1))
    y = int(rng.integers(0, height - crop_h + 1))
    crop = image[y : y + crop_h, x : x + crop_w]
    return crop[:, ::-1] if rng.random() < 0.5 else crop


def _placement(rng: np.random.Generator, people: List[np.ndarray]) -> np.ndarray:
    width, height = [(640, 360), (640, 480), (480, 480), (360, 640)][int(rng.integers(0, 4))]
    canvas = _background(rng, width, height)
    for _ in range(int(rng.integers(1, 4))):
        person = people[int(rng.integers(0, len(people)))]
        target_h = int(height * rng.uniform(0.25, 0.9))
        target_w = max(8, int(person.shape[1] * target_h / person.shape[0]))
        if target_w >= width:
            continue
        pasted = cv2.resize(person, (target_w, target_h), interpolation=cv2.INTER_AREA)
        x = int(rng.integers(0, width - target_w + 1))
        y = int(rng.integers(0, height - target_h + 1))
        canvas[y : y + target_h, x : x + target_w] = pasted[:, ::-1] if rng.random() < 0.5 else pasted
    return canvas


def calibration_frames(count: int = 96, size: int = INPUT_SIZE) -> np.ndarray:
    """(count, size, size, 3) uint8 RGB frames; the same every run."""
    rng = np.random.default_rng(SEED)
    people = person_images()
    images: List[np.ndarray] = []
    images += people + [p[:, ::-1] for p in people]
    while len(images) < count // 3:
        images.append(_random_crop(rng, people[len(images) % 2]))
    while len(images) < count:
        images.append(_placement(rng, people))
    frames = [
        cv2.resize(np.ascontiguousarray(img), (size, size), interpolation=cv2.INTER_LINEAR) for img in images
    ]
    return np.stack(frames)


class FrameReader(CalibrationDataReader):
    def __init__(self, frames: np.ndarray) -> None:
        self._frames = iter(frames)

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        frame = next(self._frames, None)
        return None if frame is None else {"images": frame[None]}


def quantize(fp32_path: Path, int8_path: Path, frames: np.ndarray) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # Shape inference + graph clean-up (BN folding etc.) so quantisation sees the fused graph.
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(int8_path),
            FrameReader(frames),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=FLOAT_NODES,
        )


def median_latencies_ms(paths: List[Path], runs: int = 300) -> Tuple[float, ...]:
    """Median ms per frame (batch 1) of each model, measured interleaved so that both see the
    same machine load (this machine is shared with other work)."""
    from edge.detection.engines.onnxruntime import session_options

    sessions = [
        ort.InferenceSession(str(path), sess_options=session_options(), providers=["CPUExecutionProvider"])
        for path in paths
    ]
    frame = calibration_frames(4)[2:3]
    times: List[List[float]] = [[] for _ in sessions]
    for iteration in range(runs + 20):
        for session, bucket in zip(sessions, times):
            start = time.perf_counter()
            session.run(None, {"images": frame})
            if iteration >= 20:  # warm-up
                bucket.append(time.perf_counter() - start)
    return tuple(float(np.median(bucket) * 1000.0) for bucket in times)


def best_boxes(path: Path) -> List[str]:
    """Best person box per photograph, for a quick FP32 / INT8 comparison."""
    from edge.detection.families.base import PostprocessSettings
    from edge.detection.families.ssd import postprocess_ssd
    from edge.detection.families.ssd_anchors import ssd_anchors

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    lines = []
    for image in person_images():
        frame = cv2.resize(image, (INPUT_SIZE, INPUT_SIZE))[None]
        boxes, logits = session.run(["box_encodings", "class_logits"], {"images": frame})
        size = (image.shape[1], image.shape[0])
        found = postprocess_ssd(boxes, logits, ssd_anchors(INPUT_SIZE), [size], PostprocessSettings(0.3))[0]
        lines.append(
            " ".join(f"{box.round().tolist()} {score:.3f}" for box, score in zip(found.boxes, found.scores))
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models-dir", type=Path, default=REPO / "edge" / "assets" / "models")
    args = parser.parse_args()
    manifest_path = args.models_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    entry = manifest["models"][MODEL_NAME]
    fp32_path = args.models_dir / entry["files"]["fp32"]["path"]
    int8_path = fp32_path.with_name(fp32_path.stem + "_int8.onnx")

    frames = calibration_frames()
    quantize(fp32_path, int8_path, frames)
    entry["files"]["int8"] = {
        "path": int8_path.name,
        "sha256": hashlib.sha256(int8_path.read_bytes()).hexdigest(),
    }
    entry["extras"]["int8_calibration"] = {
        "script": "models/quantize_default.py",
        "onnxruntime": ort.__version__,
        "format": "QDQ",
        "weights": "int8 per channel",
        "activations": "uint8 per tensor",
        "method": "MinMax",
        "frames": len(frames),
        "data": "skimage astronaut, matplotlib grace_hopper.jpg: whole, crops, pasted on plain backgrounds",
        "seed": SEED,
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {int8_path} ({int8_path.stat().st_size / 1e6:.1f} MB) and {manifest_path}")

    fp32_ms, int8_ms = median_latencies_ms([fp32_path, int8_path])
    size = f"{INPUT_SIZE}x{INPUT_SIZE}"
    print(f"median latency, batch 1, {size}, CPU EP: fp32 {fp32_ms:.2f} ms, int8 {int8_ms:.2f} ms")
    print(f"int8 speed-up: {fp32_ms / int8_ms:.2f}x")
    for label, path in (("fp32", fp32_path), ("int8", int8_path)):
        for name, line in zip(("astronaut", "grace_hopper"), best_boxes(path)):
            print(f"{label} {name}: {line}")


if __name__ == "__main__":
    main()
