"""`video-analysis bench`: what this device sustains, measured on the device, with progress.

- engine: each runnable tier's detector alone on 720p frames in memory (preprocess + inference
  + postprocess), batch 1: latency p50/p99 and throughput; the best tier also at batch 1, 2, 4
  and 8, and in FP32 beside INT8;
- pipeline: each tier end to end on one 720p stream read as fast as the lanes take frames,
  with the tier's frame-skip applied by the reader: analysed FPS, and covered FPS *measured*
  (source frames consumed per second, analysed or skipped), and the ratio to the engine;
- stages: one real-time 720p camera through the appliance: per-stage mean/p50/p95/p99 and the
  read→counts latency;
- streams: the most 720p and 1080p cameras (and 720p read from a 360p sub-stream) held at
  15 FPS each with < 1 % unintended drops, with CPU and peak RSS per configuration
  (`edge.commands.bench_streams`, each configuration in its own process).

Clips: `--clip-720`/`--clip-1080`/`--clip-360` take recordings of real cameras (H.264, what a
device decodes); without them the synthetic plaza is written as H.264 (edge.devkit.clips), with
copies whose keyframes are shifted so that the simulated cameras do not all reach a keyframe at
once. Streams run the tier the daemon starts from on this site (its calibration set decides, when
the bench uses the daemon's state directory). Results as JSON (machine, versions,
configuration), Markdown and a PNG.
"""

import argparse
import json
import logging
import platform
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import cv2
import numpy as np
import onnxruntime

from edge import __version__
from edge.commands.bench_streams import StreamsResult, run_isolated, sustained_streams
from edge.config import DEFAULT_CONFIG_PATH, Config, load_config, parse_config
from edge.core.tiers import Tier
from edge.detection.factory import load_tier_detector, pipeline_lanes
from edge.detection.manifest import DEFAULT_MODELS_DIR, load_manifest
from edge.device.hardware import HardwareProfile, probe
from edge.device.tiers import select_tiers
from edge.devkit.clips import make_clips
from edge.runtime.analysis import CameraAnalysis
from edge.runtime.pipeline import Pipeline
from edge.runtime.sources import SourceReader, read_all_frames

log = logging.getLogger(__name__)
BATCHES = (1, 2, 4, 8)
SIZES = ("360p", "720p", "1080p")
CLIP_PHASES = 4
SOURCE_FPS = 15.0


@dataclass
class TierResult:
    tier: str
    frame_skip: int
    engine_p50_ms: float
    engine_p99_ms: float
    engine_fps: float
    pipeline_fps: float  # analysed frames per second, one stream as fast as possible
    pipeline_ratio: float  # pipeline_fps / engine_fps (median of the rounds' ratios)
    covered_fps: float  # measured: source frames consumed per second (analysed or skipped)


def _progress(message: str) -> None:
    print(message, flush=True)


def measure_engine(
    config: Config, tier: Tier, frames: List[np.ndarray], seconds: float, batch: int = 1, lanes: int = 1
) -> Dict[str, float]:
    """The detector alone on frames in memory: per-call latency and frames per second, at the
    batch asked for whatever the daemon's CPU pixel budget (detector.cpu_batch_pixels) allows,
    with `lanes` calls at once (each on its own thread, as the pipeline's lanes run)."""
    unlimited = config.model_copy(update={"detector": config.detector.model_copy(update={"cpu_batch_pixels": 0})})
    detector = load_tier_detector(unlimited, tier, max_batch=batch, lanes=lanes)
    latencies: List[float] = []

    def call(i: int) -> None:
        images = [frames[(i + k) % len(frames)] for k in range(batch)]
        prepared = detector.preprocess(images)
        detector.postprocess(detector.infer(prepared), prepared)

    def lane(first: int, until: float) -> None:
        i = first
        while time.perf_counter() < until:
            t0 = time.perf_counter()
            call(i)
            latencies.append(time.perf_counter() - t0)
            i += batch * lanes

    try:
        for i in range(3):  # warm-up
            call(i)
        started = time.perf_counter()
        threads = [threading.Thread(target=lane, args=(k * batch, started + seconds)) for k in range(lanes)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
    finally:
        detector.close()
    p50, p99 = np.percentile(latencies, [50, 99]) * 1000
    return {"p50_ms": float(p50), "p99_ms": float(p99), "fps": len(latencies) * batch / elapsed}


def measure_pipeline(config: Config, tier: Tier, video: Path, seconds: float) -> Tuple[float, float]:
    """One stream through the whole pipeline as fast as it goes, with the tier's frame-skip:
    (analysed frames per second, source frames consumed per second), both measured."""
    camera = parse_config(
        {"cameras": [{"id": "bench", "source": str(video), "target_fps": SOURCE_FPS, "realtime": False, "loop": True}]}
    ).cameras[0]
    analysis = CameraAnalysis(config, camera, sinks=[])
    reader = SourceReader(
        camera.id,
        camera.source_url(),
        realtime=False,
        loop=True,
        decode_threads=config.decode.threads,
        skip_deblocking=config.decode.skip_deblocking,
    )
    detector = load_tier_detector(config, tier, max_batch=1, lanes=pipeline_lanes(config))
    pipeline = Pipeline([(camera, reader, analysis)], detector, frame_skip=tier.frame_skip)
    pipeline.start()
    try:
        time.sleep(1.0)  # warm-up: model, decoder, first windows
        first = pipeline.stats()[0]
        started = time.perf_counter()
        time.sleep(seconds)
        last = pipeline.stats()[0]
        elapsed = time.perf_counter() - started
    finally:
        pipeline.stop()
        detector.close()
    if pipeline.error is not None:
        raise pipeline.error
    analysed = last.processed - first.processed
    consumed = analysed + last.skipped - first.skipped
    return analysed / elapsed, consumed / elapsed


def _clips(out: Path, given: Dict[str, Optional[Path]], progress: Callable[[str], None]) -> Dict[str, Path]:
    """The clips to measure on: the ones given, else the synthetic plaza as H.264 with its phase
    copies (edge.devkit.clips)."""
    clips = {}
    for name in SIZES:
        path = given.get(name)
        if path is None:
            progress(f"writing the {name} synthetic H.264 clip and {CLIP_PHASES - 1} copies with shifted keyframes")
            path = make_clips(out, [name], phases=CLIP_PHASES, seconds=12.0)[name]
        clips[name] = path
    return clips


def _tier_results(
    config: Config,
    tiers: Tuple[Tier, ...],
    frames: List[np.ndarray],
    clip: Path,
    seconds: float,
    rounds: int,
    progress: Callable[[str], None],
) -> List[TierResult]:
    results = []
    for number, tier in enumerate(tiers, 1):
        # Engine and pipeline alternate over the rounds; medians are reported (the ratio is the
        # median of each round's pair), so a burst of other load does not decide it.
        engines, pipelines, covered = [], [], []
        for round_number in range(1, rounds + 1):
            progress(f"[tiers {number}/{len(tiers)}] {tier.name}: engine and pipeline, round {round_number}/{rounds}")
            engines.append(measure_engine(config, tier, frames, seconds))
            analysed, consumed = measure_pipeline(config, tier, clip, seconds)
            pipelines.append(analysed)
            covered.append(consumed)
        engine = sorted(engines, key=lambda e: e["fps"])[len(engines) // 2]
        results.append(
            TierResult(
                tier=tier.name,
                frame_skip=tier.frame_skip,
                engine_p50_ms=round(engine["p50_ms"], 2),
                engine_p99_ms=round(engine["p99_ms"], 2),
                engine_fps=round(engine["fps"], 1),
                pipeline_fps=round(float(np.median(pipelines)), 1),
                pipeline_ratio=round(float(np.median([p / e["fps"] for p, e in zip(pipelines, engines)])), 3),
                covered_fps=round(float(np.median(covered)), 1),
            )
        )
    return results


def run_benchmark(
    config: Config,
    seconds: float,
    rounds: int = 3,
    clips: Optional[Dict[str, Optional[Path]]] = None,
    streams: bool = True,
    most_cameras: int = 16,
    profile: Optional[HardwareProfile] = None,
    progress: Callable[[str], None] = _progress,
) -> Dict[str, Any]:
    profile = profile or probe()
    manifest = load_manifest(config.models_dir or DEFAULT_MODELS_DIR)
    selection = select_tiers(config.policy, profile, manifest)
    best = selection.runnable[0]
    with tempfile.TemporaryDirectory() as tmp:
        paths = _clips(Path(tmp), clips or {}, progress)
        frames = read_all_frames(str(paths["720p"]), limit=60)
        tiers = _tier_results(config, selection.runnable, frames, paths["720p"], seconds, rounds, progress)
        batches = []
        for batch in BATCHES:
            progress(f"[batch] {best.name}: batch {batch}")
            batches.append(dict(batch=batch, **measure_engine(config, best, frames, seconds, batch)))
        precisions = []
        for precision in ("int8", "fp32"):
            progress(f"[precision] {best.name} in {precision}")
            variant = replace(best, precision=precision)
            precisions.append(dict(precision=precision, **measure_engine(config, variant, frames, seconds)))
        stream_report: Dict[str, Any] = {}
        if streams:
            # Start the search where one stream's pipeline throughput says it should end.
            guess = int(tiers[0].pipeline_fps // SOURCE_FPS) if tiers else 1
            stream_report = _streams(config, paths, seconds, most_cameras, guess, progress)
    return {
        "machine": {
            "platform": profile.platform,
            "cpu": profile.cpu_model,
            "cores": profile.cpu_cores,
            "memory_mb": profile.memory_total_mb,
        },
        "versions": {
            "video-analysis": __version__,
            "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__,
            "opencv": cv2.__version__,
            "numpy": np.__version__,
        },
        "config": {
            "tiers": [tier.name for tier in selection.runnable],
            "decode_threads": config.decode.threads,
            "max_batch": config.detector.max_batch,
            "cpu_batch_pixels": config.detector.cpu_batch_pixels,
            "clips": {name: str(path) for name, path in (clips or {}).items() if path is not None},
        },
        "seconds_per_measurement": seconds,
        "rounds": rounds,
        "dropped_tiers": [asdict(d) for d in selection.dropped],
        "tiers": [asdict(r) for r in tiers],
        "batches": batches,
        "precision": precisions,
        "streams": stream_report,
    }


def _streams(
    config: Config, paths: Dict[str, Path], seconds: float, most: int, guess: int, progress: Callable[[str], None]
) -> Dict[str, Any]:
    """The streams each resolution sustains (and 720p analysed on its 360p sub-stream)."""
    state_dir = config.state_dir if config.state_dir.is_dir() else Path(tempfile.gettempdir()) / "va-bench-state"
    window = max(seconds * 3, 10.0)
    report: Dict[str, Any] = {}
    for label, clip, sub in (
        ("720p", paths["720p"], None),
        ("1080p", paths["1080p"], None),
        ("720p + 360p sub-stream", paths["720p"], paths["360p"]),
    ):
        progress(f"[streams] {label} cameras at {SOURCE_FPS:.0f} FPS")

        def measure(n: int, clip: Path = clip, sub: Optional[Path] = sub) -> StreamsResult:
            return run_isolated(clip, n, window, state_dir, sub)

        best, results = sustained_streams(measure, max(guess, 1), most, progress)
        guess = max(best, 1)
        report[label] = {"sustained": best, "runs": [asdict(r) for r in results]}
    one = report["720p"]["runs"][0]
    if one["cameras"] == 1:
        report["one_stream_stages_ms"] = one["stages_ms"]
    return report


def to_markdown(report: Dict[str, Any]) -> str:
    machine, versions = report["machine"], report["versions"]
    lines = [
        f"# video-analysis bench: {machine['platform']} ({machine['cpu']}, {machine['cores']} cores)",
        "",
        f"video-analysis {versions['video-analysis']}, Python {versions['python']}, ONNX Runtime "
        f"{versions['onnxruntime']}, OpenCV {versions['opencv']}; decode threads {report['config']['decode_threads']}; "
        f"{report['seconds_per_measurement']} s per measurement, {report['rounds']} rounds (medians).",
        "",
        "## Tiers (720p frames)",
        "",
        "engine = the detector alone on frames in memory, batch 1; pipeline = one stream end to end (reader "
        "thread decoding, detector, ByteTrack, analytics) as fast as it goes, frame-skip applied by the reader; "
        "covered = source frames consumed per second, measured.",
        "",
        "| tier | engine p50 ms | engine p99 ms | engine fps | pipeline fps | pipeline / engine | covered fps |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["tiers"]:
        lines.append(
            f"| {r['tier']} | {r['engine_p50_ms']} | {r['engine_p99_ms']} | {r['engine_fps']} | "
            f"{r['pipeline_fps']} | {r['pipeline_ratio']:.2f} | {r['covered_fps']} |"
        )
    lines += ["", "## Batch (best tier, engine alone)", "", "| batch | p50 ms per call | frames/s |", "|---|---|---|"]
    for b in report["batches"]:
        lines.append(f"| {b['batch']} | {b['p50_ms']:.1f} | {b['fps']:.1f} |")
    lines += ["", "## Precision (best tier, batch 1)", "", "| precision | p50 ms | frames/s |", "|---|---|---|"]
    for p in report["precision"]:
        lines.append(f"| {p['precision']} | {p['p50_ms']:.1f} | {p['fps']:.1f} |")
    streams = report.get("streams") or {}
    if streams:
        lines += [
            "",
            f"## Streams at {SOURCE_FPS:.0f} FPS each (< 1 % unintended drops)",
            "",
            "| streams | cameras | fps per camera | total fps | drops % | CPU % (one core = 100) | peak RSS MB |",
            "|---|---|---|---|---|---|---|",
        ]
        for label, entry in streams.items():
            if label == "one_stream_stages_ms":
                continue
            for run in entry["runs"]:
                mark = " **sustained**" if run["cameras"] == entry["sustained"] else ""
                lines.append(
                    f"| {label} | {run['cameras']}{mark} | {run['analysed_fps_per_camera']} | "
                    f"{run['analysed_fps_total']} | {run['drop_percent']} | {run['cpu_percent']} | "
                    f"{run['peak_rss_mb']} |"
                )
        stages = streams.get("one_stream_stages_ms")
        if stages:
            lines += [
                "",
                "## Stages, one 720p camera in real time (ms)",
                "",
                "| stage | mean | p50 | p95 | p99 |",
                "|---|---|---|---|---|",
            ]
            for stage, v in stages.items():
                lines.append(f"| {stage} | {v['mean']} | {v['p50']} | {v['p95']} | {v['p99']} |")
    for d in report["dropped_tiers"]:
        lines.append(f"\nDropped: {d['name']}: {d['reason']}")
    return "\n".join(lines) + "\n"


def plot(report: Dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    ax = axes[0]
    tiers = [r["tier"].replace(" ", "\n") for r in report["tiers"]]
    x = np.arange(len(tiers))
    ax.bar(x - 0.2, [r["engine_fps"] for r in report["tiers"]], 0.4, label="engine alone")
    ax.bar(x + 0.2, [r["pipeline_fps"] for r in report["tiers"]], 0.4, label="whole pipeline")
    ax.set_xticks(x, tiers, fontsize=6)
    ax.set_ylabel("analysed frames per second")
    ax.set_title("tiers, one 720p stream")
    ax.legend()
    ax = axes[1]
    ax.plot([b["batch"] for b in report["batches"]], [b["fps"] for b in report["batches"]], "o-")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch")
    ax.set_ylabel("frames per second")
    ax.set_title("engine throughput vs batch")
    ax = axes[2]
    for label, entry in (report.get("streams") or {}).items():
        if label == "one_stream_stages_ms":
            continue
        runs = entry["runs"]
        ax.plot([r["cameras"] for r in runs], [r["analysed_fps_total"] for r in runs], "o-", label=label)
    ax.set_xlabel("cameras at 15 FPS")
    ax.set_ylabel("total analysed FPS")
    ax.set_title("streams")
    if report.get("streams"):
        ax.legend(fontsize=7)
    fig.suptitle(f"video-analysis bench on {report['machine']['platform']} ({report['machine']['cores']} cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_bench(args: argparse.Namespace) -> int:
    config_path = Path(args.config)
    config = Config() if config_path == DEFAULT_CONFIG_PATH and not config_path.exists() else load_config(config_path)
    clips = {"360p": args.clip_360, "720p": args.clip_720, "1080p": args.clip_1080}
    report = run_benchmark(
        config,
        args.seconds,
        rounds=args.rounds,
        clips={name: Path(path) if path else None for name, path in clips.items()},
        streams=not args.no_streams,
    )
    markdown = to_markdown(report)
    print(markdown)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=1))
    if args.markdown:
        Path(args.markdown).write_text(markdown)
    if args.plot:
        plot(report, Path(args.plot))
    return 0
