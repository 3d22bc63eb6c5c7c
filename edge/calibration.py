"""INT8 calibration, the accuracy guard and the `calibrate` / `build-engine` commands.

`load_guarded_detector` is what the daemon calls for a tier: for INT8 it quantises (ONNX Runtime,
cached) or builds (TensorRT, cached) from the calibration set, compares the INT8 detector with
FP32 on the set's held-out frames, and uses INT8 only when the agreement reaches the floor;
otherwise it falls back to FP16 (TensorRT) or FP32 and logs why. The decision is a dataclass the
daemon publishes in telemetry.

When the held-out frames give FP32 too few boxes to judge by (an empty scene, a broken set),
the built-in scenes are added to the comparison, so a set of blank frames cannot pass unseen.
"""

import argparse
import dataclasses
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

try:
    from typing import Protocol
except ImportError:  # pragma: no cover
    from typing_extensions import Protocol  # type: ignore[assignment]

import numpy as np

from edge.accuracy import MIN_REFERENCE_BOXES, AgreementReport, PrecisionDecision, compare, judge
from edge.calibration_data import (
    BUILTIN_SET,
    REPO_CALIBRATION_DIR,
    CalibrationFrame,
    CalibrationSet,
    CandidateFrame,
    FrameTensorReader,
    Progress,
    builtin_frames,
    collect,
    ensure_builtin_set,
    frames_from_cameras,
    frames_from_folder,
    frames_from_video,
    list_sets,
    load_images,
    load_set,
    stderr_progress,
    write_set,
)
from edge.config import Config, load_config
from edge.engines import Detector, EngineOptions, create_detector, detect
from edge.engines.base import Detections
from edge.errors import ConfigError, ModelError
from edge.models import DEFAULT_MODELS_DIR, ModelFile, ModelSpec, load_manifest, sha256_of
from edge.quantize import QuantizeResult, quantize_cached

log = logging.getLogger(__name__)


class TierLike(Protocol):
    """What the guard needs of a tier (edge.tiers.Tier and config.TierConfig both have it)."""

    model: str
    precision: str
    engine: str
    input: int
    dla: bool


def calibration_root(config: Config) -> Path:
    """config.calibration.dir, else the checkout's calibration/ when writable, else state_dir."""
    if config.calibration.dir is not None:
        return Path(config.calibration.dir)
    if REPO_CALIBRATION_DIR.is_dir() and _writable(REPO_CALIBRATION_DIR):
        return REPO_CALIBRATION_DIR
    return config.state_dir / "calibration"


def _writable(path: Path) -> bool:
    import os

    return os.access(str(path), os.W_OK)


def cache_dir(config: Config) -> Path:
    return config.state_dir / "cache"


def resolve_calibration_set(config: Config, progress: Optional[Progress] = None) -> CalibrationSet:
    """The configured set, else the newest set, else the built-in scenes (written on first use)."""
    root = calibration_root(config)
    if config.calibration.set_name:
        return load_set(root / config.calibration.set_name)
    sets = list_sets(root)
    if sets:
        return load_set(sets[0])
    return ensure_builtin_set(root, progress=progress)


def engine_options(config: Config, tier: TierLike, max_batch: Optional[int] = None) -> EngineOptions:
    return EngineOptions(
        precision=tier.precision,
        input_size=(tier.input, tier.input),
        max_batch=max_batch or config.detector.max_batch,
        score_threshold=config.detector.score_threshold,
        nms_iou=config.detector.nms_iou,
        dla_core=0 if tier.dla else -1,
        cache_dir=str(cache_dir(config)),
    )


def with_int8_file(model: ModelSpec, path: Path) -> ModelSpec:
    """The model spec with its INT8 file replaced by a locally quantised one."""
    return dataclasses.replace(model, files={**model.files, "int8": ModelFile(path, sha256_of(path))})


def quantize_for(
    model: ModelSpec,
    options: EngineOptions,
    frames: Sequence[CalibrationFrame],
    set_hash: str,
    cache: Path,
    progress: Optional[Progress] = None,
) -> QuantizeResult:
    """The cached INT8 QDQ model of `model` calibrated on `frames`. The SSD core takes any
    input size, so one INT8 model, calibrated at its native size, serves all its tiers (a tier
    change then needs no new calibration; the guard still checks agreement at the tier's size);
    YOLO exports have a fixed input, calibrated at the tier's size."""
    from edge.engines.onnxruntime import preprocess_ssd, preprocess_yolo

    native = model.family == "ssd"
    chosen = model.input_size if native else options.input_size
    size = (int(chosen[0]), int(chosen[1]))

    def preprocess(images: Sequence[np.ndarray]) -> np.ndarray:
        if model.family == "ssd":
            return preprocess_ssd(images, size)
        return preprocess_yolo(images, size)[0]

    return quantize_cached(
        model.file("fp32"),
        model.name,
        set_hash,
        size,
        lambda input_name: FrameTensorReader(frames, preprocess, input_name),
        cache,
        progress=progress,
    )


@dataclass(frozen=True)
class EvaluationFrames:
    frames: List[CalibrationFrame]
    images: List[np.ndarray]
    labels: List[Optional[np.ndarray]]


def evaluation_frames(held_out: Sequence[CalibrationFrame]) -> EvaluationFrames:
    frames = list(held_out)
    return EvaluationFrames(
        frames,
        load_images(frames),
        [np.asarray(f.labels, np.float64).reshape(-1, 4) if f.labels is not None else None for f in frames],
    )


def _detect_all(detector: Detector, images: Sequence[np.ndarray]) -> List[Detections]:
    return [detect(detector, [image])[0] for image in images]


def _above(detections: List[Detections], threshold: float) -> List[Detections]:
    return [d.select(d.scores >= threshold) for d in detections]


def agreement(
    candidate: Any,
    reference: Detector,
    held_out: Sequence[CalibrationFrame],
    score_threshold: float,
    builtin: Optional[CalibrationSet] = None,
) -> AgreementReport:
    """INT8 `candidate` against FP32 `reference` on the held-out frames: reference boxes are FP32
    detections at the operating threshold, candidates are ranked by score (AP). When FP32 finds
    fewer than MIN_REFERENCE_BOXES there, the built-in scenes are compared as well."""
    evaluation = evaluation_frames(held_out)
    fp32 = _above(_detect_all(reference, evaluation.images), score_threshold)
    if sum(len(d) for d in fp32) < MIN_REFERENCE_BOXES and builtin is not None:
        log.info("held-out frames give FP32 too few boxes to judge by; adding the built-in scenes")
        extra = evaluation_frames(builtin.frames)
        evaluation = EvaluationFrames(
            evaluation.frames + extra.frames,
            evaluation.images + extra.images,
            evaluation.labels + extra.labels,
        )
        fp32 = fp32 + _above(_detect_all(reference, extra.images), score_threshold)
    int8 = _detect_all(candidate, evaluation.images)
    return compare(int8, fp32, evaluation.labels)


def _decision(
    tier: TierLike,
    chosen: str,
    accepted: bool,
    reason: str,
    config: Config,
    report: Optional[AgreementReport] = None,
    calibration_set: str = "",
    model_path: str = "",
) -> PrecisionDecision:
    return PrecisionDecision(
        requested=tier.precision,
        chosen=chosen,
        engine=tier.engine,
        accepted=accepted,
        reason=reason,
        floor=config.calibration.agreement_floor,
        agreement_map50=report.agreement_map50 if report else None,
        recall_fp32=report.recall_fp32 if report else None,
        recall_int8=report.recall_int8 if report else None,
        heldout_frames=report.frames if report else 0,
        reference_boxes=report.reference_boxes if report else 0,
        calibration_set=calibration_set,
        model_path=model_path,
    )


def _builtin_for_guard(config: Config, calibration_set: CalibrationSet) -> Optional[CalibrationSet]:
    if calibration_set.name == BUILTIN_SET:
        return None
    return ensure_builtin_set(calibration_root(config))


def load_guarded_detector(
    config: Config,
    tier: TierLike,
    model: ModelSpec,
    options: Optional[EngineOptions] = None,
    progress: Optional[Progress] = None,
) -> Tuple[Detector, PrecisionDecision]:
    """The detector for a tier, INT8 only when it agrees with FP32 above the floor."""
    options = options or engine_options(config, tier)
    if tier.precision != "int8":
        detector = create_detector(tier.engine, model, options)
        return detector, _decision(tier, tier.precision, True, f"{tier.precision} requested", config)
    calibration_set = resolve_calibration_set(config, progress)
    calibration_frames, held_out = calibration_set.split(config.calibration.holdout_fraction)
    set_hash = calibration_set.content_hash()
    reference = create_detector("onnxruntime", model, dataclasses.replace(options, precision="fp32"))
    candidate: Optional[Any] = None
    model_path = ""
    try:
        if tier.engine == "tensorrt":
            from edge.engines import tensorrt as trt_engine

            source = trt_engine.CalibrationSource(
                calibration_frames,
                trt_engine.calibration_table_path(calibration_set.directory, model, options, set_hash),
            )
            candidate = trt_engine.TensorRTDetector(model, options, source)
            model_path = str(candidate.engine_path)
        else:
            quantized = quantize_for(
                model, options, calibration_frames, set_hash, cache_dir(config), progress
            )
            candidate = create_detector("onnxruntime", with_int8_file(model, quantized.path), options)
            model_path = str(quantized.path)
        report = agreement(
            candidate,
            reference,
            held_out,
            config.detector.score_threshold,
            _builtin_for_guard(config, calibration_set),
        )
        reason = judge(report, config.calibration.agreement_floor, config.calibration.max_recall_drop)
    except ModelError as exc:
        report = None
        reason = f"INT8 model unavailable: {exc}"
    built_precision = getattr(candidate, "precision", "int8")
    if reason is None and built_precision == "int8":
        reference.close()
        assert candidate is not None
        log.info(
            "%s: INT8 accepted (agreement mAP@0.5 %.3f >= %.2f on %d held-out frames of set %s)",
            model.name,
            report.agreement_map50 if report else float("nan"),
            config.calibration.agreement_floor,
            report.frames if report else 0,
            calibration_set.name,
        )
        return candidate, _decision(
            tier, "int8", True, "agreement above the floor", config, report, calibration_set.name, model_path
        )
    if reason is None:  # TensorRT itself fell back (no fast INT8, build failure)
        assert candidate is not None
        reference.close()
        why = "; ".join(f"{k}: {v}" for k, v in getattr(candidate, "fallback_reasons", {}).items())
        log.warning(
            "%s: INT8 not available on this engine (%s); running %s", model.name, why, built_precision
        )
        return candidate, _decision(
            tier, built_precision, False, why, config, report, calibration_set.name, model_path
        )
    if candidate is not None:
        candidate.close()
    fallback = "fp16" if tier.engine == "tensorrt" else "fp32"
    log.warning("%s: INT8 refused: %s; falling back to %s", model.name, reason, fallback)
    if tier.engine == "onnxruntime":
        detector = reference
    else:
        reference.close()
        detector = create_detector(tier.engine, model, dataclasses.replace(options, precision=fallback))
    return detector, _decision(
        tier, fallback, False, reason, config, report, calibration_set.name, model_path
    )


# --- commands --------------------------------------------------------------------------------


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
        sources = {camera.id: camera.source for camera in config.cameras}
        interval = max(0.2, config.calibration.collect_s / max(1, wanted * 2 // len(sources)))
        name = args.name or (config.cameras[0].id if len(sources) == 1 else config.device_id)
        frames = frames_from_cameras(sources, config.calibration.collect_s, interval)
        return name, ", ".join(sources.values()), list(frames)
    return args.name or "synthetic", "synthetic scenes and sample images", list(builtin_frames(wanted))


def _runnable_tiers(config: Config, include_all: bool) -> List[Any]:
    from edge.hardware import probe
    from edge.tiers import select_tiers

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
