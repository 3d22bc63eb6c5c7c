"""`video-analysis calibrate` and `build-engine`: collect a calibration set, then prepare
(quantise or build) every runnable tier through the INT8 accuracy guard, with a summary table."""

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any, List, Optional, Tuple

import numpy as np

from edge.config import Config, load_config, mask_urls
from edge.core.errors import ConfigError
from edge.detection.engines import Detector
from edge.detection.int8.guard import calibration_root, load_guarded_detector, resolve_calibration_set
from edge.detection.int8.sets import (
    CandidateFrame,
    Progress,
    builtin_frames,
    collect,
    frames_from_cameras,
    frames_from_folder,
    frames_from_video,
    load_images,
    stderr_progress,
    write_set,
)
from edge.detection.manifest import DEFAULT_MODELS_DIR, load_manifest

log = logging.getLogger(__name__)


def _config(args: argparse.Namespace) -> Config:
    return load_config(Path(args.config))


def _candidates(
    config: Config, args: argparse.Namespace, wanted: int
) -> Tuple[str, str, List[CandidateFrame]]:
    """(set name, source description, candidate frames)."""
    if args.source:
        path = Path(args.source)
        if path.is_dir():
            return args.name or path.name, str(path), list(frames_from_folder(path))
        if path.is_file():
            return args.name or path.stem, str(path), list(frames_from_video(path, wanted))
        raise ConfigError(f"--from {path}: no such folder or video")
    if config.cameras:
        sources = {camera.id: camera.source_url() for camera in config.cameras}
        interval = max(0.2, config.calibration.collect_s / max(1, wanted * 2 // len(sources)))
        name = args.name or (config.cameras[0].id if len(sources) == 1 else config.device_id)
        frames = frames_from_cameras(sources, config.calibration.collect_s, interval)
        return name, mask_urls(", ".join(sources.values())), list(frames)
    return args.name or "synthetic", "synthetic scenes and sample images", list(builtin_frames(wanted))


def _runnable_tiers(config: Config, include_all: bool) -> List[Any]:
    from edge.device.hardware import probe
    from edge.device.tiers import select_tiers

    manifest = load_manifest(config.models_dir or DEFAULT_MODELS_DIR)
    selection = select_tiers(config.policy, probe(), manifest)
    for dropped in selection.dropped:
        log.info("tier %s skipped: %s", dropped.name, dropped.reason)
    seen = set()
    tiers = []
    for tier in selection.runnable:
        identity = (tier.model, tier.engine, tier.precision, tier.input, tier.dla)
        if identity not in seen:
            seen.add(identity)
            tiers.append(tier)
    return tiers if include_all else tiers[:1]


def _latency_ms(detector: Detector, image: np.ndarray, runs: int = 20) -> float:
    batch = detector.preprocess([image])
    detector.infer(batch)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        detector.infer(batch)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000.0)


def _file_size(path: str) -> str:
    try:
        return f"{Path(path).stat().st_size / 1e6:.1f} MB"
    except (OSError, ValueError):
        return "-"


def _fmt(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3f}"


def prepare_tiers(config: Config, include_all: bool, progress: Progress) -> List[str]:
    """Quantise/build every runnable tier through the guard; one summary line per tier."""
    lines = [f"{'tier':44} {'precision':10} {'agreement':>9} {'recall':>13} {'latency':>9} {'size':>8}"]
    manifest = load_manifest(config.models_dir or DEFAULT_MODELS_DIR)
    tiers = _runnable_tiers(config, include_all)
    sample = None
    for number, tier in enumerate(tiers, 1):
        progress(f"[{number}/{len(tiers)}] {tier.name}: preparing\n")
        detector, decision = load_guarded_detector(config, tier, manifest[tier.model], progress=progress)
        try:
            if sample is None:
                sample = load_images(resolve_calibration_set(config).frames[:1])[0]
            latency = _latency_ms(detector, sample)
        finally:
            detector.close()
        chosen = decision.chosen + ("" if decision.accepted else " (fallback)")
        recall = f"{_fmt(decision.recall_int8)}/{_fmt(decision.recall_fp32)}"
        size = _file_size(decision.model_path) if decision.model_path else "-"
        lines.append(
            f"{tier.name[:44]:44} {chosen:10} {_fmt(decision.agreement_map50):>9} {recall:>13} "
            f"{latency:7.1f}ms {size:>8}"
        )
        if not decision.accepted:
            lines.append(f"  why: {decision.reason}")
    lines.append(
        "agreement: INT8 mAP@0.5 against FP32 on held-out frames "
        f"(floor {config.calibration.agreement_floor})"
    )
    lines.append("recall: INT8/FP32 on labelled frames")
    return lines


def calibrate_command(args: argparse.Namespace) -> int:
    config = _config(args)
    wanted = int(args.frames or config.calibration.frames)
    name, source, candidates = _candidates(config, args, wanted)
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"--name {name!r}: use letters, digits, '-' and '_'")
    root = calibration_root(config)
    frames = collect(candidates, wanted, progress=stderr_progress)
    calibration_set = write_set(root, name, frames, source, stderr_progress)
    if config.calibration.set_name and config.calibration.set_name != name:
        log.warning(
            "config calibration.set_name is %r; the daemon will not use set %r",
            config.calibration.set_name,
            name,
        )
    config = config.model_copy(
        update={"calibration": config.calibration.model_copy(update={"set_name": name})}
    )
    lines = prepare_tiers(config, getattr(args, "all", False), stderr_progress)
    labelled = sum(1 for f in calibration_set.frames if f.labels is not None)
    print(
        f"calibration set {name}: {len(calibration_set.frames)} frames ({labelled} labelled) "
        f"in {calibration_set.directory}"
    )
    print(f"  from {source}; hash {calibration_set.content_hash()[:16]}")
    print("\n".join(lines))
    return 0


def build_engine_command(args: argparse.Namespace) -> int:
    config = _config(args)
    calibration_set = resolve_calibration_set(config, stderr_progress)
    print(f"calibration set {calibration_set.name}: {len(calibration_set.frames)} frames", file=sys.stderr)
    lines = prepare_tiers(config, bool(getattr(args, "all", False)), stderr_progress)
    print("\n".join(lines))
    return 0
