"""`video-analysis bench`: what this device sustains, per runnable tier, measured side by side.

For every tier the probe keeps on this device, on a generated scene:
- engine: the detector alone on frames already in memory (preprocess + inference +
  postprocess), batch 1: its latency p50/p99 and raw throughput;
- pipeline: the same tier end to end on one stream (a video file decoded by its reader
  thread as fast as the pipeline takes frames, tracking and analytics included): sustained
  analysed frames per second, and its ratio to the engine's raw throughput.
Results as JSON, a Markdown table and a plot.
"""

import argparse
import json
import logging
import platform
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from edge.config import DEFAULT_CONFIG_PATH, Config, load_config, parse_config
from edge.core.tiers import Tier
from edge.detection.factory import load_tier_detector
from edge.detection.manifest import DEFAULT_MODELS_DIR, load_manifest
from edge.device.hardware import HardwareProfile, probe
from edge.device.tiers import select_tiers
from edge.devkit.synthetic import standard_scenes, write_scene
from edge.runtime.analysis import CameraAnalysis
from edge.runtime.pipeline import Pipeline
from edge.runtime.sources import SourceReader, read_all_frames

log = logging.getLogger(__name__)
ROUNDS = 5


@dataclass
class TierResult:
    tier: str
    frame_skip: int
    engine_p50_ms: float
    engine_p99_ms: float
    engine_fps: float
    pipeline_fps: float
    pipeline_ratio: float  # pipeline_fps / engine_fps
    covered_fps: float  # pipeline_fps × frame_skip: source frames per second the tier keeps up with


def _progress(message: str) -> None:
    print(message, flush=True)


def measure_engine(config: Config, tier: Tier, frames: List[np.ndarray], seconds: float) -> Dict[str, float]:
    detector = load_tier_detector(config, tier, max_batch=1)
    try:
        for frame in frames[:5]:  # warm-up
            batch = detector.preprocess([frame])
            detector.postprocess(detector.infer(batch), batch)
        latencies = []
        started = time.perf_counter()
        i = 0
        while time.perf_counter() - started < seconds:
            t0 = time.perf_counter()
            batch = detector.preprocess([frames[i % len(frames)]])
            detector.postprocess(detector.infer(batch), batch)
            latencies.append(time.perf_counter() - t0)
            i += 1
        elapsed = time.perf_counter() - started
    finally:
        detector.close()
    p50, p99 = np.percentile(latencies, [50, 99]) * 1000
    return {"p50_ms": float(p50), "p99_ms": float(p99), "fps": len(latencies) / elapsed}


def measure_pipeline(config: Config, tier: Tier, video: Path, seconds: float) -> float:
    """Analysed frames per second of one stream through the whole pipeline."""
    camera = parse_config(
        {"cameras": [{"id": "bench", "source": str(video), "target_fps": 120, "realtime": False, "loop": True}]}
    ).cameras[0]
    analysis = CameraAnalysis(config, camera, sinks=[])
    reader = SourceReader(camera.id, camera.source_url(), realtime=False, loop=True)
    detector = load_tier_detector(config, tier, max_batch=1)
    pipeline = Pipeline([(camera, reader, analysis)], detector, frame_skip=1)
    pipeline.start()
    try:
        time.sleep(1.0)  # warm-up: model, decoder, first windows
        start_count, started = pipeline.cameras[0].processed, time.perf_counter()
        time.sleep(seconds)
        count, elapsed = pipeline.cameras[0].processed - start_count, time.perf_counter() - started
    finally:
        pipeline.stop()
        detector.close()
    if pipeline.error is not None:
        raise pipeline.error
    return count / elapsed


def run_benchmark(config: Config, seconds: float, profile: Optional[HardwareProfile] = None) -> Dict[str, Any]:
    profile = profile or probe()
    manifest = load_manifest(config.models_dir or DEFAULT_MODELS_DIR)
    selection = select_tiers(config.policy, profile, manifest)
    scene = standard_scenes()[1]
    with tempfile.TemporaryDirectory() as tmp:
        video = write_scene(scene, Path(tmp))
        frames = read_all_frames(str(video), limit=100)
        results = []
        for number, tier in enumerate(selection.runnable, 1):
            # Alternate engine and pipeline runs and report medians (the ratio is the median of
            # each round's pair), so a burst of other load on the machine does not decide it.
            engines, pipelines = [], []
            for round_number in range(1, ROUNDS + 1):
                _progress(f"[{number}/{len(selection.runnable)}] {tier.name}: engine alone, round {round_number}")
                engines.append(measure_engine(config, tier, frames, seconds))
                _progress(f"[{number}/{len(selection.runnable)}] {tier.name}: pipeline, round {round_number}")
                pipelines.append(measure_pipeline(config, tier, video, seconds))
            engine = sorted(engines, key=lambda e: e["fps"])[len(engines) // 2]
            pipeline_fps = float(np.median(pipelines))
            ratio = float(np.median([p / e["fps"] for p, e in zip(pipelines, engines)]))
            results.append(
                TierResult(
                    tier=tier.name,
                    frame_skip=tier.frame_skip,
                    engine_p50_ms=round(engine["p50_ms"], 2),
                    engine_p99_ms=round(engine["p99_ms"], 2),
                    engine_fps=round(engine["fps"], 1),
                    pipeline_fps=round(pipeline_fps, 1),
                    pipeline_ratio=round(ratio, 3),
                    covered_fps=round(pipeline_fps * tier.frame_skip, 1),
                )
            )
    return {
        "device": profile.platform,
        "cpu": profile.cpu_model,
        "cores": profile.cpu_cores,
        "python": platform.python_version(),
        "frame_size": [scene.width, scene.height],
        "seconds_per_measurement": seconds,
        "dropped_tiers": [asdict(d) for d in selection.dropped],
        "tiers": [asdict(r) for r in results],
    }


def to_markdown(report: Dict[str, Any]) -> str:
    lines = [
        f"# video-analysis bench: {report['device']} ({report['cpu']}, {report['cores']} cores)",
        "",
        f"Frames {report['frame_size'][0]}x{report['frame_size'][1]}; "
        f"{report['seconds_per_measurement']} s per measurement; engine = the detector alone on frames in "
        "memory, "
        "batch 1; pipeline = one stream end to end (decode thread, detector, ByteTrack, analytics). "
        f"Engine and pipeline alternate, {ROUNDS} rounds each in the same run; "
        "medians are shown (the ratio is the median of the rounds' ratios).",
        "",
        "| tier | engine p50 ms | engine p99 ms | engine fps | pipeline fps | pipeline / engine | covered fps |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["tiers"]:
        lines.append(
            f"| {r['tier']} | {r['engine_p50_ms']} | {r['engine_p99_ms']} | {r['engine_fps']} | "
            f"{r['pipeline_fps']} | {r['pipeline_ratio']:.2f} | {r['covered_fps']} |"
        )
    for d in report["dropped_tiers"]:
        lines.append(f"\nDropped: {d['name']}: {d['reason']}")
    return "\n".join(lines) + "\n"


def plot(report: Dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tiers = [r["tier"].replace(" ", "\n") for r in report["tiers"]]
    x = np.arange(len(tiers))
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.bar(x - 0.2, [r["engine_fps"] for r in report["tiers"]], 0.4, label="engine alone")
    ax.bar(x + 0.2, [r["pipeline_fps"] for r in report["tiers"]], 0.4, label="whole pipeline")
    for i, r in enumerate(report["tiers"]):
        ax.annotate(f"{r['pipeline_ratio']:.0%}", (i + 0.2, r["pipeline_fps"]), ha="center", va="bottom")
    ax.set_xticks(x, tiers, fontsize=7)
    ax.set_ylabel("frames per second")
    ax.set_title(f"video-analysis bench on {report['device']} ({report['cores']} cores)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_bench(args: argparse.Namespace) -> int:
    config_path = Path(args.config)
    config = Config() if config_path == DEFAULT_CONFIG_PATH and not config_path.exists() else load_config(config_path)
    report = run_benchmark(config, args.seconds)
    markdown = to_markdown(report)
    print(markdown)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=1))
    if args.markdown:
        Path(args.markdown).write_text(markdown)
    if args.plot:
        plot(report, Path(args.plot))
    return 0
