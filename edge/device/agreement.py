"""Accuracy-aware tiers: each runnable tier's detections are compared with the best runnable
tier's on the device's own frames, once per device, and a tier under `policy.agreement_floor`
is dropped with its reason, so the adaptive controller can never step into it.

The frames are the calibration set the config selects or the device captured
(`video-analysis calibrate`), else the built-in scenes (logged). When the best tier finds fewer
than MIN_REFERENCE_BOXES people on them, the built-in scenes are added, as the INT8 guard does.
At most AGREEMENT_FRAMES frames, spread over the set, keep a first start short; results are
cached in `<state_dir>/tier-agreement.json` keyed by hardware fingerprint, both tiers' detector
keys, the detection settings and the frames' hash, so a new calibration set measures again.
Detectors are built as `measure_tier` builds them (edge.detection.factory.load_tier_detector).
"""

import hashlib
import logging
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edge.config import Config
from edge.core.accuracy import MIN_REFERENCE_BOXES, compare
from edge.core.detections import Detections
from edge.core.tier_agreement import CACHED, MEASURED, Measurement, TierAgreement, assess, needs_measuring
from edge.core.tiers import Tier
from edge.detection.engines import detect
from edge.detection.factory import load_tier_detector, tier_model
from edge.detection.int8.guard import device_calibration_set
from edge.detection.int8.sets import BUILTIN_SET, CalibrationFrame, builtin_set, load_images
from edge.device.tiers import TierSelection, read_json_object, write_json_atomic

log = logging.getLogger(__name__)

AGREEMENT_FRAMES = 40  # PETS09 S2.L1: 40 frames give the best tier ~200 people to compare

Progress = Callable[[str], None]


def default_agreement_cache_path(config: Config) -> Path:
    return config.state_dir / "tier-agreement.json"


class AgreementCache:
    """Measured agreements of this device, beside the tier speeds (edge.device.tiers)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def get(self, fingerprint: str, key: str) -> Optional[Measurement]:
        entry = read_json_object(self.path).get(fingerprint, {}).get(key)
        if not isinstance(entry, dict):
            return None
        try:
            value = entry["agreement_map50"]
            return Measurement(
                None if value is None else float(value),
                int(entry["reference_boxes"]),
                int(entry["frames"]),
                str(entry["frame_set"]),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def put(self, fingerprint: str, key: str, measurement: Measurement) -> None:
        data = read_json_object(self.path)
        data.setdefault(fingerprint, {})[key] = {
            "agreement_map50": measurement.agreement_map50,
            "reference_boxes": measurement.reference_boxes,
            "frames": measurement.frames,
            "frame_set": measurement.frame_set,
        }
        write_json_atomic(self.path, data)


def settings_digest(config: Config) -> str:
    """What the compared detections depend on besides the tiers: detector settings and the
    tracker's low threshold (the daemon's detectors run at it)."""
    settings = config.detector.model_dump_json(exclude={"max_batch"}) + f"|low={config.tracker.low_threshold}"
    return hashlib.sha256(settings.encode()).hexdigest()[:12]


def cache_key(config: Config, tier: Tier, best: Tier, frames_hash: str) -> str:
    return f"{tier.key}|vs|{best.key}|{settings_digest(config)}|frames={frames_hash[:16]}"


def agreement_frames(config: Config) -> Tuple[str, List[CalibrationFrame]]:
    """(set name, frames): at most AGREEMENT_FRAMES spread over the device's set, else over the
    built-in scenes (read from the package, so this writes nothing)."""
    found = device_calibration_set(config)
    if found is None:
        log.info(
            "tier agreement: this device has no calibration set (`video-analysis calibrate` captures "
            "one from its cameras); measuring on the built-in scenes"
        )
        found = builtin_set()
    return found.name, _spread(found.frames)


def _spread(frames: Sequence[CalibrationFrame]) -> List[CalibrationFrame]:
    if len(frames) <= AGREEMENT_FRAMES:
        return list(frames)
    return [frames[i] for i in np.linspace(0, len(frames) - 1, AGREEMENT_FRAMES).round().astype(int)]


def frames_hash(frames: Sequence[CalibrationFrame]) -> str:
    digest = hashlib.sha256()
    for frame in frames:
        digest.update(frame.path.read_bytes())
    return digest.hexdigest()


def counted_classes(detections: Detections, class_names: Sequence[str], counted: Sequence[str]) -> Detections:
    """The detections of the counted classes, their ids renumbered as indices into `counted`,
    so models with other class tables (COCO YOLO vs the pedestrian SSD) compare class by class."""
    mapping = np.array([counted.index(name) if name in counted else -1 for name in class_names], np.int32)
    ids = mapping[detections.class_ids] if len(detections) else detections.class_ids
    keep = ids >= 0
    return Detections(detections.boxes[keep], detections.scores[keep], ids[keep].astype(np.int32))


class _Runner:
    """Runs tiers' detectors over frames, with progress."""

    def __init__(self, config: Config, progress: Progress) -> None:
        self.config = config
        self.progress = progress

    def detections(self, tier: Tier, label: str, images: Sequence[np.ndarray]) -> List[Detections]:
        classes = tier_model(self.config, tier).classes
        detector = load_tier_detector(self.config, tier, max_batch=1)
        found = []
        try:
            for number, image in enumerate(images, 1):
                found.append(counted_classes(detect(detector, [image])[0], classes, self.config.detector.classes))
                if number % 10 == 0 or number == len(images):
                    self.progress(f"tier agreement: {label} {tier.name}: {number}/{len(images)} frames")
        finally:
            detector.close()
        return found


def _above(detections: Sequence[Detections], threshold: float) -> List[Detections]:
    return [frame.select(frame.scores >= threshold) for frame in detections]


def measure_agreements(
    config: Config,
    tiers: Sequence[Tier],
    cache: AgreementCache,
    fingerprint: str,
    progress: Progress,
) -> Dict[str, Tuple[Measurement, bool]]:
    """For each tier `needs_measuring`, by `Tier.key`: its measurement against the first tier and
    whether it came from the cache. Nothing is loaded when no tier needs measuring; no detector
    runs when the cache has them all."""
    wanted = needs_measuring(tiers, config.policy.agreement_floor)
    if not wanted:
        return {}
    best = tiers[0]
    set_name, frames = agreement_frames(config)
    identity = frames_hash(frames)
    results: Dict[str, Tuple[Measurement, bool]] = {}
    missing = []
    for tier in wanted:
        cached = cache.get(fingerprint, cache_key(config, tier, best, identity))
        if cached is None:
            missing.append(tier)
        else:
            results[tier.key] = (cached, True)
    if not missing:
        return results
    started = time.monotonic()
    runner = _Runner(config, progress)
    images = load_images(frames)
    steps = len(missing) + 1
    threshold = config.detector.score_threshold
    reference = _above(runner.detections(best, f"1/{steps} (reference)", images), threshold)
    if sum(len(frame) for frame in reference) < MIN_REFERENCE_BOXES and set_name != BUILTIN_SET:
        log.info("tier agreement: the best tier finds too few people on set %s; adding the built-in scenes", set_name)
        extra = _spread(builtin_set().frames)
        images = images + load_images(extra)
        set_name += "+builtin"
        reference += _above(
            runner.detections(best, f"1/{steps} (reference, built-in)", images[len(frames) :]), threshold
        )
    for number, tier in enumerate(missing, 2):
        measurement = Measurement.from_report(
            compare(runner.detections(tier, f"{number}/{steps}", images), reference), set_name
        )
        results[tier.key] = (measurement, False)
        try:
            cache.put(fingerprint, cache_key(config, tier, best, identity), measurement)
        except OSError as exc:
            log.warning("tier agreement of %s not cached: %s", tier.name, exc)
    log.info("tier agreement measured for %d tier(s) in %.1f s", len(missing), time.monotonic() - started)
    return results


def log_progress(message: str) -> None:
    log.info("%s", message)


def check_agreement(
    config: Config,
    selection: TierSelection,
    fingerprint: str,
    progress: Progress = log_progress,
    cache: Optional[AgreementCache] = None,
) -> TierSelection:
    """The selection with each runnable tier judged against the best one; tiers under the floor
    move to the dropped ones with their reason (logged)."""
    if not selection.runnable:
        return selection
    cache = cache or AgreementCache(default_agreement_cache_path(config))
    floor = config.policy.agreement_floor
    measured = measure_agreements(config, selection.runnable, cache, fingerprint, progress)
    verdicts = assess(selection.runnable, measured, floor)
    for verdict in verdicts:
        _log_verdict(verdict)
    return selection.judged(verdicts)


def _log_verdict(verdict: TierAgreement) -> None:
    if verdict.reason is not None:
        log.warning("tier %s dropped: %s", verdict.tier, verdict.reason)
    elif verdict.basis in (MEASURED, CACHED) and verdict.reference_boxes < MIN_REFERENCE_BOXES:
        log.warning(
            "tier %s kept unjudged: the best tier found only %d people on %s to compare with",
            verdict.tier,
            verdict.reference_boxes,
            verdict.frame_set,
        )
    elif verdict.basis in (MEASURED, CACHED):
        log.info(
            "tier %s agrees with the best tier at mAP@0.5 %.3f (floor %.2f, %s)",
            verdict.tier,
            verdict.agreement_map50 if verdict.agreement_map50 is not None else float("nan"),
            verdict.floor,
            verdict.basis,
        )
