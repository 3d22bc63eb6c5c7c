"""INT8 calibration and the accuracy guard (used by the daemon and the `calibrate` /
`build-engine` commands).

`load_guarded_detector` is what the daemon calls for a tier: for INT8 it quantises the model
with ONNX Runtime (cached) for engines that run a quantised file, or hands the calibration frames
to engines that calibrate INT8 themselves (the registry's `calibrates_int8`, e.g. TensorRT),
compares the INT8 detector with FP32 on the set's held-out frames, and uses INT8 only when the
agreement reaches the floor; otherwise it falls back to the engine's `int8_fallback` precision
(FP16 on TensorRT, FP32 elsewhere) and logs why. The decision is a dataclass the
daemon publishes in telemetry; the daemon's decisions are cached per device and inputs
(edge.detection.int8.decisions), so the FP32 model is loaded on the first start only.

When the held-out frames give FP32 too few boxes to judge by (an empty scene, a broken set),
the built-in scenes are added to the comparison, so a set of blank frames cannot pass unseen.
"""

import dataclasses
import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from edge import __version__
from edge.config import Config
from edge.core.accuracy import MIN_REFERENCE_BOXES, AgreementReport, PrecisionDecision, compare, judge
from edge.core.detections import Detections
from edge.core.errors import ModelError
from edge.core.tiers import Tier
from edge.detection.engines import REFERENCE_ENGINE, CalibrationSource, Detector, EngineOptions, detect, engine_plugin
from edge.detection.factory import (
    TierLike,
    cache_dir,
    create_detector,
    engine_options,
    tier_model,
    tracking_score_threshold,
)
from edge.detection.families import family_for
from edge.detection.int8.decisions import DIRECTORY as DECISIONS_DIRECTORY
from edge.detection.int8.decisions import DecisionCache, GuardKey
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
from edge.detection.int8.tables import calibration_table_path
from edge.detection.manifest import ModelFile, ModelSpec, sha256_of

log = logging.getLogger(__name__)


def calibration_root(config: Config) -> Path:
    """config.calibration.dir, else <state_dir>/calibration."""
    if config.calibration.dir is not None:
        return Path(config.calibration.dir)
    return config.state_dir / "calibration"


def device_calibration_set(config: Config) -> Optional[CalibrationSet]:
    """The configured set, else the newest set the device has; None when it has none."""
    root = calibration_root(config)
    if config.calibration.set_name:
        return load_set(root / config.calibration.set_name)
    sets = list_sets(root)
    return load_set(sets[0]) if sets else None


def resolve_calibration_set(config: Config, progress: Optional[Progress] = None) -> CalibrationSet:
    """The configured set, else the newest set, else the built-in scenes (written on first use)."""
    found = device_calibration_set(config)
    return found if found is not None else ensure_builtin_set(calibration_root(config), progress=progress)


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
    native = model.family == "ssd"
    chosen = model.input_size if native else options.input_size
    size = (int(chosen[0]), int(chosen[1]))
    family = family_for(model, dataclasses.replace(options, input_size=size))

    return quantize_cached(
        model.file("fp32"),
        model.name,
        set_hash,
        size,
        functools.partial(FrameTensorReader, list(frames), family.tensor),
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
    candidate: Detector,
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


def guard_key(
    config: Config,
    tier: TierLike,
    model: ModelSpec,
    options: EngineOptions,
    candidate: Detector,
    set_hash: str,
    device: str,
) -> GuardKey:
    return GuardKey(
        device=device,
        software=__version__,
        engine=tier.engine,
        model=model.name,
        fp32_sha256=model.files["fp32"].sha256,
        int8_sha256=sha256_of(candidate.artifact),
        calibration_set=set_hash,
        input_size=(int(options.input_size[0]), int(options.input_size[1])),
        keep_aspect=options.keep_aspect,
        coarse_input=options.coarse_input,
        detector_threshold=options.score_threshold,
        operating_threshold=config.detector.score_threshold,
        nms_iou=options.nms_iou,
        dla_core=options.dla_core,
        agreement_floor=config.calibration.agreement_floor,
        max_recall_drop=config.calibration.max_recall_drop,
        holdout_fraction=config.calibration.holdout_fraction,
    )


def decision_cache(config: Config) -> DecisionCache:
    return DecisionCache(cache_dir(config) / DECISIONS_DIRECTORY)


def _replay(
    decision: PrecisionDecision,
    candidate: Detector,
    tier: TierLike,
    model: ModelSpec,
    options: EngineOptions,
) -> Optional[Detector]:
    """The detector a cached decision chose, without comparing again; None when the candidate
    built now is not what the decision was about (its engine fell back differently)."""
    if decision.chosen == candidate.precision:
        log.info("%s: %s (cached decision: %s)", model.name, decision.chosen, decision.reason)
        return candidate
    if decision.accepted:
        return None
    candidate.close()
    log.warning("%s: INT8 refused: %s (cached decision); running %s", model.name, decision.reason, decision.chosen)
    return create_detector(tier.engine, model, dataclasses.replace(options, precision=decision.chosen))


def load_guarded_detector(
    config: Config,
    tier: TierLike,
    model: ModelSpec,
    options: Optional[EngineOptions] = None,
    progress: Optional[Progress] = None,
    device: Optional[str] = None,
) -> Tuple[Detector, PrecisionDecision]:
    """The detector for a tier, INT8 only when it agrees with FP32 above the floor. With `device`
    (the hardware fingerprint) the decision is cached and replayed (edge.detection.int8.decisions),
    so the FP32 model is loaded only when something the decision depends on changed."""
    options = options or engine_options(config, tier, config.detector.max_batch)
    if tier.precision != "int8":
        detector = create_detector(tier.engine, model, options)
        return detector, _decision(tier, tier.precision, True, f"{tier.precision} requested", config)
    plugin = engine_plugin(tier.engine)
    calibration_set = resolve_calibration_set(config, progress)
    calibration_frames, held_out = calibration_set.split(config.calibration.holdout_fraction)
    set_hash = calibration_set.content_hash()
    reference: Optional[Detector] = None
    candidate: Optional[Detector] = None
    key: Optional[GuardKey] = None
    model_path = ""
    try:
        if plugin.calibrates_int8:
            table = calibration_table_path(tier.engine, calibration_set.directory, model, options, set_hash)
            source = CalibrationSource(calibration_frames, table)
            candidate = create_detector(tier.engine, model, options, source)
        else:
            quantized = quantize_for(model, options, calibration_frames, set_hash, cache_dir(config), progress)
            candidate = create_detector(tier.engine, with_int8_file(model, quantized.path), options)
        model_path = str(candidate.artifact)
        if device is not None:
            key = guard_key(config, tier, model, options, candidate, set_hash, device)
            cached = decision_cache(config).get(key)
            replayed = _replay(cached, candidate, tier, model, options) if cached is not None else None
            if cached is not None and replayed is not None:
                return replayed, cached
        reference = create_detector(REFERENCE_ENGINE, model, dataclasses.replace(options, precision="fp32"))
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
        key = None
    chosen, decision = _decide(
        config, tier, model, options, candidate, reference, report, reason, calibration_set.name, model_path
    )
    if key is not None:
        decision_cache(config).put(key, decision)
    return chosen, decision


def _decide(
    config: Config,
    tier: TierLike,
    model: ModelSpec,
    options: EngineOptions,
    candidate: Optional[Detector],
    reference: Optional[Detector],
    report: Optional[AgreementReport],
    reason: Optional[str],
    set_name: str,
    model_path: str,
) -> Tuple[Detector, PrecisionDecision]:
    """The detector and decision after the comparison (`reason` None: INT8 agreed)."""
    built_precision = candidate.precision if candidate is not None else "int8"
    if reason is None and built_precision == "int8":
        if reference is not None:
            reference.close()
        assert candidate is not None
        log.info(
            "%s: INT8 accepted (agreement mAP@0.5 %.3f >= %.2f on %d held-out frames of set %s)",
            model.name,
            report.agreement_map50 if report else float("nan"),
            config.calibration.agreement_floor,
            report.frames if report else 0,
            set_name,
        )
        return candidate, _decision(
            tier, "int8", True, "agreement above the floor", config, report, set_name, model_path
        )
    if reason is None:  # the engine itself fell back (no fast INT8, build failure)
        assert candidate is not None
        if reference is not None:
            reference.close()
        why = "; ".join(f"{k}: {v}" for k, v in candidate.fallback_reasons.items())
        log.warning("%s: INT8 not available on this engine (%s); running %s", model.name, why, built_precision)
        return candidate, _decision(tier, built_precision, False, why, config, report, set_name, model_path)
    if candidate is not None:
        candidate.close()
    fallback = engine_plugin(tier.engine).int8_fallback
    log.warning("%s: INT8 refused: %s; falling back to %s", model.name, reason, fallback)
    if tier.engine == REFERENCE_ENGINE and fallback == "fp32" and reference is not None:
        chosen: Detector = reference
    else:
        if reference is not None:
            reference.close()
        chosen = create_detector(tier.engine, model, dataclasses.replace(options, precision=fallback))
    return chosen, _decision(tier, fallback, False, reason, config, report, set_name, model_path)


def log_progress(message: str) -> None:
    log.info("calibration: %s", message)


def load_guarded_tier_detector(
    config: Config,
    tier: Tier,
    max_batch: int,
    progress: Callable[[str], None] = log_progress,
    device: Optional[str] = None,
    lanes: int = 1,
) -> Tuple[Detector, PrecisionDecision]:
    """The detector the daemon runs for a tier: its score threshold is the tracker's (see
    edge.detection.factory.tracking_score_threshold); INT8 is calibrated on this device's
    calibration set and used only when it agrees with FP32 above `calibration.agreement_floor`.
    `lanes`: the pipeline's inference lanes (edge.detection.factory.pipeline_lanes)."""
    options = engine_options(config, tier, max_batch, tracking_score_threshold(config), lanes)
    detector, decision = load_guarded_detector(config, tier, tier_model(config, tier), options, progress, device)
    log.info("precision for %s: %s (%s)", tier.name, decision.chosen, decision.reason)
    return detector, decision
