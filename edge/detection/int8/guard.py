"""INT8 calibration, the accuracy guard and the `calibrate` / `build-engine` commands.

`load_guarded_detector` is what the daemon calls for a tier: for INT8 it quantises (ONNX Runtime,
cached) or builds (TensorRT, cached) from the calibration set, compares the INT8 detector with
FP32 on the set's held-out frames, and uses INT8 only when the agreement reaches the floor;
otherwise it falls back to FP16 (TensorRT) or FP32 and logs why. The decision is a dataclass the
daemon publishes in telemetry.

When the held-out frames give FP32 too few boxes to judge by (an empty scene, a broken set),
the built-in scenes are added to the comparison, so a set of blank frames cannot pass unseen.
"""

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Protocol, Sequence, Tuple

import numpy as np

from edge.config import Config
from edge.core.accuracy import MIN_REFERENCE_BOXES, AgreementReport, PrecisionDecision, compare, judge
from edge.core.detections import Detections
from edge.core.errors import ModelError
from edge.detection.engines import Detector, EngineOptions, create_detector, detect
from edge.detection.int8.quantize import QuantizeResult, quantize_cached
from edge.detection.int8.sets import (
    BUILTIN_SET,
    CalibrationFrame,
    CalibrationSet,
    FrameTensorReader,
    Progress,
    ensure_builtin_set,
    list_sets,
    load_images,
    load_set,
)
from edge.detection.manifest import ModelFile, ModelSpec, sha256_of

log = logging.getLogger(__name__)


class TierLike(Protocol):
    """What the guard needs of a tier (edge.core.tiers.Tier and config.TierConfig both have it;
    read-only, as both are frozen)."""

    @property
    def model(self) -> str: ...
    @property
    def precision(self) -> str: ...
    @property
    def engine(self) -> str: ...
    @property
    def input(self) -> int: ...
    @property
    def dla(self) -> bool: ...


def calibration_root(config: Config) -> Path:
    """config.calibration.dir, else <state_dir>/calibration."""
    if config.calibration.dir is not None:
        return Path(config.calibration.dir)
    return config.state_dir / "calibration"


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
    from edge.detection.engines.onnxruntime import preprocess_ssd, preprocess_yolo

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
            from edge.detection.engines import tensorrt as trt_engine

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
