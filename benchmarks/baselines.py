"""The pipeline against the baselines on one 720p stream as fast as it goes, same clip, same run,
interleaved rounds (medians and the median of each round's ratios):

- pipeline: `video-analysis` end to end (reader thread, inference worker, tracking, analytics),
  the default tier;
- naive loop: one thread doing `cap.read()` → detector → tracking + analytics, in FP32 and INT8
  (what one writes first with the same model);
- raw engine: the detector alone on frames already in memory, one call at a time on every core
  and (the ceiling of the pipeline's lanes) one call per lane at once;
- decode only: the daemon's reader path (packets decoded, frames kept in I420) on one thread;
  with the lanes' figure it gives the most frames per second the cores can both decode and
  infer ("ceiling": cores / (cores / lanes fps + 1 / decode fps), computed per round);
- Ultralytics `track()` with YOLOv8n at 320 and 640 and YOLO11n at 320, run by
  `benchmarks/baselines_ultralytics.py` in its own venv (`--ultralytics-python`), with
  Ultralytics' default torch threads and with one per core.

    python benchmarks/baselines.py --clip /tmp/va-clips/plaza-720p.mp4 --rounds 5 \\
        --ultralytics-python /tmp/va-baselines-venv/bin/python --json benchmarks/results/baselines.json \\
        --markdown benchmarks/results/baselines.md
"""

import argparse
import json
import os
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Dict, List

import cv2
import numpy as np
import yaml

from edge.commands.bench import measure_engine, measure_pipeline
from edge.commands.bench_streams import steal_s
from edge.config import Config, parse_config
from edge.core.tiers import Tier
from edge.detection.engines.base import detect
from edge.detection.factory import load_tier_detector, pipeline_lanes
from edge.device.hardware import probe
from edge.device.tiers import tier_from_config, tiers_for_platform
from edge.runtime.analysis import CameraAnalysis
from edge.runtime.sources import Frame, open_capture, read_all_frames, retrieve_image

HERE = Path(__file__).resolve().parent
CORES = os.cpu_count() or 1
DECODE_ONLY = "decode only, 1 thread"
CEILING = "ceiling: lanes + decoding"
ULTRALYTICS = [("yolov8n.yaml", 320, 0), ("yolov8n.yaml", 640, 0), ("yolo11n.yaml", 320, 0), ("yolov8n.yaml", 320, 2)]


def naive_loop(config: Config, tier: Tier, clip: Path, seconds: float) -> float:
    """Frames per second of the loop one writes first: read, detect, track, count, repeat."""
    camera = parse_config({"cameras": [{"id": "naive", "source": str(clip), "target_fps": 15}]}).cameras[0]
    detector = load_tier_detector(config, tier, max_batch=1)
    analysis = CameraAnalysis(config, camera, sinks=[])
    capture = cv2.VideoCapture(str(clip))
    try:
        count, index, started = 0, 0, 0.0
        while True:
            ok, image = capture.read()
            if not ok:
                capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                continue
            detections = detect(detector, [image])[0]
            analysis.update(Frame("naive", index, index / 15.0, image), detections, 1 / 15.0)
            index += 1
            if index == 10:
                started = time.perf_counter()
            elif index > 10:
                count += 1
                if time.perf_counter() - started >= seconds:
                    return count / (time.perf_counter() - started)
    finally:
        capture.release()
        detector.close()


def decode_only(clip: Path, seconds: float) -> float:
    """Frames per second one thread decodes the way a reader does, looping the clip."""
    capture = open_capture(str(clip), decode_threads=1)
    frames = 0
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < seconds:
            if not capture.grab():
                capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                continue
            if retrieve_image(capture) is not None:
                frames += 1
    finally:
        capture.release()
    return frames / (time.perf_counter() - started)


def ceiling(row: Dict[str, float], lanes_run: str) -> float:
    """Most frames per second the cores can decode and infer, from one round's two figures."""
    return CORES / (CORES / row[lanes_run] + 1.0 / row[DECODE_ONLY])


def lanes_engine(config: Config, tier: Tier, frames: List[np.ndarray], seconds: float, lanes: int) -> float:
    return measure_engine(config, tier, frames, seconds, lanes=lanes)["fps"]


def ultralytics_fps(python: str, clip: Path, model: str, imgsz: int, threads: int) -> Dict[str, Any]:
    args = [python, str(HERE / "baselines_ultralytics.py"), "--clip", str(clip), "--model", model]
    args += ["--imgsz", str(imgsz), "--threads", str(threads)]
    out = subprocess.run(args, check=True, capture_output=True, text=True, cwd=tempfile.gettempdir())
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _ultralytics_run(python: str, clip: Path, model: str, imgsz: int, threads: int) -> Callable[[], float]:
    return lambda: float(ultralytics_fps(python, clip, model, imgsz, threads)["fps"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--tier", type=int, default=0, help="index in this device's tier table (0: the default)")
    parser.add_argument("--engine", help="run the tier on this engine instead (e.g. openvino)")
    parser.add_argument("--config", type=Path, help="a config file whose settings the runs take (e.g. decode)")
    parser.add_argument("--only", nargs="+", help="measure only these runs (names as in the report)")
    parser.add_argument("--ultralytics-python")
    parser.add_argument("--state-dir", type=Path, default=Path(tempfile.gettempdir()) / "va-streams-state")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    settings = yaml.safe_load(args.config.read_text()) if args.config else {}
    config = parse_config({**settings, "state_dir": str(args.state_dir)})
    _, tiers = tiers_for_platform(config.policy, probe().platform)
    tier = tier_from_config(args.tier, tiers[args.tier])
    if args.engine:
        tier = replace(tier, engine=args.engine)
    fp32 = replace(tier, precision="fp32")
    frames = read_all_frames(str(args.clip), limit=60)
    runs: Dict[str, Callable[[], float]] = {
        "pipeline": lambda: measure_pipeline(config, tier, args.clip, args.seconds)[0],
        "naive loop FP32": lambda: naive_loop(config, fp32, args.clip, args.seconds),
        "naive loop INT8": lambda: naive_loop(config, tier, args.clip, args.seconds),
        "raw engine": lambda: measure_engine(config, tier, frames, args.seconds)["fps"],
    }
    lanes = pipeline_lanes(config)
    lanes_run = f"raw engine, {lanes} lanes" if lanes > 1 else "raw engine"
    if lanes > 1:  # the ceiling of the pipeline's lanes: that many calls at once
        runs[lanes_run] = lambda: lanes_engine(config, tier, frames, args.seconds, lanes)
    runs[DECODE_ONLY] = lambda: decode_only(args.clip, args.seconds)
    if args.ultralytics_python:
        for model, imgsz, threads in ULTRALYTICS:
            name = f"Ultralytics track() {model.split('.')[0]} @{imgsz}" + (f" {threads} threads" if threads else "")
            runs[name] = _ultralytics_run(args.ultralytics_python, args.clip, model, imgsz, threads)
    if args.only:
        runs = {name: run for name, run in runs.items() if name in args.only}
    rounds: List[Dict[str, float]] = []
    for number in range(1, args.rounds + 1):
        row: Dict[str, float] = {"load_before": round(os.getloadavg()[0], 2)}
        for name, run in runs.items():
            print(f"round {number}/{args.rounds}: {name}", flush=True)
            steal = steal_s()
            started = time.monotonic()
            row[name] = round(run(), 2)
            row[f"{name} steal %"] = round(100 * (steal_s() - steal) / (time.monotonic() - started) / CORES, 1)
        if lanes_run in row and DECODE_ONLY in row:
            row[CEILING] = round(ceiling(row, lanes_run), 2)
        print(json.dumps(row), flush=True)
        rounds.append(row)
        if args.json:
            args.json.write_text(json.dumps(_report(tier, args, rounds, runs), indent=1))
    report = _report(tier, args, rounds, runs)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    if args.markdown:
        args.markdown.write_text(to_markdown(report))
    print(to_markdown(report))


def _report(
    tier: Tier, args: argparse.Namespace, rounds: List[Dict[str, float]], runs: Dict[str, Any]
) -> Dict[str, Any]:
    names = [*runs, *([CEILING] if all(CEILING in r for r in rounds) else [])]
    medians = {name: float(np.median([r[name] for r in rounds])) for name in names}
    ratios = {
        name: float(np.median([r["pipeline"] / r[name] for r in rounds]))
        for name in names
        if name != "pipeline" and all("pipeline" in r for r in rounds)
    }
    return {
        "tier": tier.name,
        "clip": str(args.clip),
        "seconds": args.seconds,
        "rounds": rounds,
        "median_fps": medians,
        "pipeline_over": ratios,
    }


def to_markdown(report: Dict[str, Any]) -> str:
    lines = [
        "# The pipeline against the baselines: one 720p H.264 stream as fast as it goes",
        "",
        f"Tier {report['tier']}; clip `{Path(report['clip']).name}`; {report['seconds']} s per measurement; "
        f"{len(report['rounds'])} interleaved rounds; load average before each round: "
        f"{', '.join(str(r['load_before']) for r in report['rounds'])}.",
        "Steal: time the VM's CPUs waited for the host during the measurement, in % of all cores. "
        f"`{CEILING}` is computed per round from the lanes' and the decoder's figures "
        "(cores / (cores / lanes fps + 1 / decode fps)): what the cores could do if they did nothing else.",
        "",
        "| what | median fps | pipeline ÷ it (median of rounds) | steal % (each round) |",
        "|---|---|---|---|",
    ]
    for name, fps in report["median_fps"].items():
        ratio = report["pipeline_over"].get(name)
        steal = ", ".join(str(r[f"{name} steal %"]) for r in report["rounds"] if f"{name} steal %" in r)
        lines.append(f"| {name} | {fps:.1f} | {'' if ratio is None else f'{ratio:.2f}×'} | {steal} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
