"""ONNX Runtime INT8 vs FP32 for the default model at 300x300, batch 1, measured side by side.

Two INT8 models are compared with FP32 in the same run: the one committed in models/ (the
manifest's `int8` file) and the one the appliance makes itself (edge.detection.int8.quantize on the held-in
part of the built-in calibration set). Latency is the `infer` stage only (the model), with the
three models interleaved round by round so machine load affects them alike; the ratio is FP32
median / INT8 median. Agreement is the accuracy guard's figure: mAP@0.5 of INT8 detections with
FP32 detections (score >= 0.4) as reference, on the held-out frames of the built-in set (never
used to calibrate), plus recall against the synthetic ground truth.

    .venv/bin/python benchmarks/int8_vs_fp32.py [--rounds 400] [--frames 200]

Writes benchmarks/results/int8_vs_fp32.json and .md.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge.core.accuracy import compare  # noqa: E402
from edge.detection.engines import EngineOptions, detect  # noqa: E402
from edge.detection.factory import create_detector  # noqa: E402
from edge.detection.int8.guard import quantize_for, with_int8_file  # noqa: E402
from edge.detection.int8.sets import BUILTIN_SET, load_images, write_set  # noqa: E402
from edge.detection.manifest import get_model  # noqa: E402
from edge.devkit.calibration_frames import builtin_candidates  # noqa: E402

MODEL = "ssdlite-mobilenetv2-pedestrian"
HOLDOUT = 0.2
SCORE = 0.4
AGREEMENT_BAR = 0.95
SPEED_BAR = 2.5


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=400, help="timed rounds per model (%(default)s)")
    parser.add_argument("--frames", type=int, default=200, help="built-in calibration set size (%(default)s)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="results folder")
    args = parser.parse_args()

    model = get_model(MODEL)
    options = EngineOptions(precision="fp32", input_size=(300, 300), max_batch=1, score_threshold=SCORE)
    work = Path(tempfile.mkdtemp(prefix="int8-bench-"))
    frames = list(builtin_candidates(args.frames))
    calibration_set = write_set(work / "calibration", BUILTIN_SET, frames, "built-in scenes")
    calibrate, held_out = calibration_set.split(HOLDOUT)
    local = quantize_for(model, options, calibrate, calibration_set.content_hash(), work / "cache")

    detectors = {
        "fp32": create_detector("onnxruntime", model, options),
        "int8 (committed)": create_detector(
            "onnxruntime", model, EngineOptions(**{**options.__dict__, "precision": "int8"})
        ),
        "int8 (edge.detection.int8.quantize)": create_detector(
            "onnxruntime",
            with_int8_file(model, local.path),
            EngineOptions(**{**options.__dict__, "precision": "int8"}),
        ),
    }

    images = load_images(held_out)
    labels = [
        np.asarray(f.labels, np.float64).reshape(-1, 4) if f.labels is not None else None for f in held_out
    ]
    detections = {name: [detect(d, [image])[0] for image in images] for name, d in detectors.items()}

    batch = detectors["fp32"].preprocess([images[0]])
    for detector in detectors.values():
        for _ in range(20):
            detector.infer(batch)
    times = {name: [] for name in detectors}
    for _ in range(args.rounds):
        for name, detector in detectors.items():
            start = time.perf_counter()
            detector.infer(batch)
            times[name].append(time.perf_counter() - start)

    fp32_median = float(np.median(times["fp32"]) * 1000)
    rows = []
    for name in detectors:
        median = float(np.median(times[name]) * 1000)
        report = compare(detections[name], detections["fp32"], labels)
        rows.append(
            {
                "model": name,
                "median_ms": round(median, 3),
                "p90_ms": round(float(np.percentile(times[name], 90) * 1000), 3),
                "speedup_vs_fp32": round(fp32_median / median, 3),
                "agreement_map50": report.agreement_map50,
                "recall": report.recall_int8,
                "meets_speed_bar": (fp32_median / median >= SPEED_BAR) if name != "fp32" else None,
                "meets_agreement_bar": (report.agreement_map50 or 0) >= AGREEMENT_BAR
                if name != "fp32"
                else None,
            }
        )
        print(f"{name:22} {median:7.2f} ms  x{fp32_median / median:4.2f}  agreement {report.agreement_map50}")
    result = {
        "benchmark": "int8_vs_fp32",
        "model": MODEL,
        "input": [300, 300],
        "batch": 1,
        "rounds": args.rounds,
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "onnxruntime": __import__("onnxruntime").__version__,
        "heldout_frames": len(held_out),
        "reference_boxes": sum(len(d) for d in detections["fp32"]),
        "labelled_frames": sum(1 for label in labels if label is not None),
        "calibration_frames": len(calibrate),
        "results": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "int8_vs_fp32.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# ONNX Runtime INT8 vs FP32, default model, 300x300, batch 1",
        "",
        f"`.venv/bin/python benchmarks/int8_vs_fp32.py --rounds {args.rounds} --frames {args.frames}` "
        f"on {result['cpu']} "
        f"({result['cores']} cores, 1-min load {result['load_average_1m']:.2f} while measuring), "
        f"onnxruntime {result['onnxruntime']}. Models interleaved round by round; `infer` stage only.",
        "",
        f"Agreement: mAP@0.5 of each model's detections against FP32's (score >= {SCORE}) on "
        f"{result['heldout_frames']} held-out frames ({result['reference_boxes']} FP32 boxes); recall "
        f"against synthetic ground truth on {result['labelled_frames']} labelled frames.",
        "",
        "| model | median ms | p90 ms | speed-up vs FP32 | agreement mAP@0.5 | recall |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['median_ms']:.2f} | {row['p90_ms']:.2f} | "
            f"{row['speedup_vs_fp32']:.2f}x | {row['agreement_map50']:.3f} | {row['recall']:.3f} |"
        )
    int8_rows = [row for row in rows if row["model"] != "fp32"]
    speed_met = any(row["meets_speed_bar"] for row in int8_rows)
    agreement_met = all(row["meets_agreement_bar"] for row in int8_rows)
    lines += [
        "",
        f"Bar: INT8 >= {SPEED_BAR}x faster: {'met' if speed_met else 'NOT met'}; "
        f"agreement >= {AGREEMENT_BAR}: {'met' if agreement_met else 'NOT met'}.",
    ]
    if not speed_met:
        lines += [
            "",
            "Why the speed-up stops near 2x here: ONNX Runtime already runs all 88 convolutions of the",
            "INT8 model as fused NHWC QLinearConv (u8 activations, s8 weights, the VNNI path), while FP32",
            "runs its AVX-512 NCHWc kernels, which are fast for a model this small (~0.8 GFLOP). Tried on",
            "this machine, interleaved: per-tensor instead of per-channel weights (same speed), s8",
            "activations (0.8x, slower than FP32), leaving Transpose/Reshape in float (slower), one thread",
            "instead of two (same ratio). The ratio depends on the CPU: the design notes measured 3.7x on",
            "another AVX-512-VNNI machine with a slower FP32 conversion of the same model.",
        ]
    (out / "int8_vs_fp32.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
