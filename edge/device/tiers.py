"""Which policy tiers this device can run, config-time checks of the tier table, and the
per-device cache of each tier's measured speed.

A tier is runnable when its model is in the manifest and its engine's plug-in says it can run on
the probed hardware (edge.detection.engines: the registry's capability checks; DLA also needs DLA
cores). The others are dropped, each with a reason that is logged and shown by `probe`. An engine
name the registry does not know is a configuration error naming the tier's key path. The daemon
and `probe` then drop the tiers whose detections disagree with the best one's
(edge.device.agreement, `TierSelection.judged`).
"""

import dataclasses
import json
import logging
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np

from edge.config import Config, PolicyConfig, TierConfig
from edge.core.errors import ConfigError, ModelError
from edge.core.tier_agreement import TierAgreement
from edge.core.tiers import Tier
from edge.detection.atomic_file import atomic_write
from edge.detection.engines import detect, engine_names, engine_plugin
from edge.detection.factory import load_tier_detector
from edge.detection.manifest import DEFAULT_MODELS_DIR, ModelSpec, load_manifest
from edge.detection.pictures import Image
from edge.device.h264 import write_h264
from edge.device.hardware import HardwareProfile
from edge.device.packet_capture import PacketCapture

log = logging.getLogger(__name__)

# A class with no entry of its own borrows the tiers of the nearest class that has one.
_FALLBACK_CLASSES = {
    "jetson-nano": "arm-cpu",
    "jetson-tx2": "jetson-nano",
    "jetson-xavier-nx": "jetson-agx-xavier",
    "jetson-agx-xavier": "jetson-xavier-nx",
    "jetson-orin-nano": "jetson-orin-nx",
    "jetson-orin-nx": "jetson-agx-orin",
    "jetson-agx-orin": "jetson-orin-nx",
    "rpi-4": "arm-cpu",
    "rpi-5": "arm-cpu",
    "x86-nvidia": "x86-cpu",
    "x86-cpu": "arm-cpu",
    "arm-cpu": "x86-cpu",
}


def tier_from_config(index: int, tier: TierConfig) -> Tier:
    return Tier(index, tier.model, tier.precision, tier.engine, tier.input, tier.frame_skip, tier.dla)


@dataclass(frozen=True)
class DroppedTier:
    index: int
    name: str
    reason: str


@dataclass(frozen=True)
class TierSelection:
    platform: str  # the class whose table was used (may be a fallback of the probed one)
    runnable: Tuple[Tier, ...]
    dropped: Tuple[DroppedTier, ...]
    # Each judged tier's agreement with the best tier (edge.device.agreement); empty until judged.
    agreement: Tuple[TierAgreement, ...] = ()

    def agreement_of(self, index: int) -> Optional[TierAgreement]:
        return next((verdict for verdict in self.agreement if verdict.index == index), None)

    def _agreement_dict(self, index: int) -> Optional[Dict[str, object]]:
        verdict = self.agreement_of(index)
        return verdict.to_dict() if verdict is not None else None

    def to_dict(self) -> Dict[str, Any]:
        return {
            "platform": self.platform,
            "runnable": [
                dict(asdict(tier), name=tier.name, agreement=self._agreement_dict(tier.index)) for tier in self.runnable
            ],
            "dropped": [
                dict(asdict(dropped), agreement=self._agreement_dict(dropped.index)) for dropped in self.dropped
            ],
        }

    def judged(self, verdicts: Sequence[TierAgreement]) -> "TierSelection":
        """This selection with the verdicts recorded and the tiers they refuse moved to the
        dropped ones, with the verdict's reason."""
        refused = {verdict.index: verdict.reason for verdict in verdicts if verdict.reason is not None}
        return dataclasses.replace(self.without(refused), agreement=tuple(verdicts))

    def without(self, reasons: Mapping[int, str]) -> "TierSelection":
        """This selection with the runnable tiers in `reasons` (by index) moved to the dropped ones."""
        dropped = list(self.dropped)
        dropped += [
            DroppedTier(tier.index, tier.name, reasons[tier.index]) for tier in self.runnable if tier.index in reasons
        ]
        return TierSelection(
            self.platform,
            tuple(tier for tier in self.runnable if tier.index not in reasons),
            tuple(sorted(dropped, key=lambda item: item.index)),
            self.agreement,
        )


def tiers_for_platform(policy: PolicyConfig, platform: str) -> Tuple[str, List[TierConfig]]:
    """The configured tiers for a class, following the fallback chain when it has none."""
    seen = []
    current = platform
    while current not in policy.tiers:
        seen.append(current)
        current = _FALLBACK_CLASSES.get(current, "x86-cpu")
        if current in seen:
            raise ConfigError(f"policy.tiers: no tiers for {platform} nor any class it falls back to")
    return current, list(policy.tiers[current])


def _drop_reason(tier: TierConfig, profile: HardwareProfile, manifest: Mapping[str, ModelSpec]) -> Optional[str]:
    if tier.model not in manifest:
        return f"model {tier.model!r} is not in the model manifest"
    spec = manifest[tier.model]
    if spec.supported_inputs and tier.input not in spec.supported_inputs:
        return f"model {tier.model!r} cannot take input {tier.input}"
    reason = engine_plugin(tier.engine).can_run(profile)
    if reason is None and tier.dla and profile.dla_cores == 0:
        reason = "dla requested but this device has no DLA core"
    return reason


def select_tiers(policy: PolicyConfig, profile: HardwareProfile, manifest: Mapping[str, ModelSpec]) -> TierSelection:
    """Split the platform's tiers into runnable ones (best first) and dropped ones with reasons;
    ConfigError for an engine no plug-in registered."""
    validate_engines(policy)
    platform, configured = tiers_for_platform(policy, profile.platform)
    runnable = []
    dropped = []
    for index, tier_config in enumerate(configured):
        tier = tier_from_config(index, tier_config)
        reason = _drop_reason(tier_config, profile, manifest)
        if reason is None:
            runnable.append(tier)
        else:
            dropped.append(DroppedTier(index, tier.name, reason))
    return TierSelection(platform, tuple(runnable), tuple(dropped))


def validate_engines(policy: PolicyConfig, source: Optional[str] = None) -> None:
    """Refuse engine names that no plug-in registered, naming the key path."""
    for platform, tiers in policy.tiers.items():
        for index, tier in enumerate(tiers):
            if tier.engine not in engine_names():
                where = f"{source}: " if source else ""
                raise ConfigError(
                    f"{where}policy.tiers.{platform}[{index}].engine: unknown engine {tier.engine!r} "
                    f"(known: {', '.join(engine_names())})"
                )


def validate_tiers(config: Config, manifest: Mapping[str, ModelSpec], source: Optional[str] = None) -> None:
    """Refuse engines no plug-in registered and input sizes a manifest model cannot take, naming
    the key path. Models missing from the manifest are not an error here: such tiers are dropped
    at run time with a reason."""
    validate_engines(config.policy, source)
    for platform, tiers in config.policy.tiers.items():
        for index, tier in enumerate(tiers):
            spec = manifest.get(tier.model)
            if spec is None or not spec.supported_inputs or tier.input in spec.supported_inputs:
                continue
            supported = ", ".join(str(size) for size in sorted(spec.supported_inputs, reverse=True))
            where = f"{source}: " if source else ""
            raise ConfigError(
                f"{where}policy.tiers.{platform}[{index}].input: {tier.model} cannot take {tier.input} "
                f"(supported: {supported})"
            )


def load_manifest_or_empty(models_dir: Optional[Path] = None) -> Dict[str, ModelSpec]:
    """The manifest, or no models (every tier then dropped with its reason) when it is missing."""
    try:
        return load_manifest(models_dir or DEFAULT_MODELS_DIR)
    except ModelError as exc:
        log.warning("%s", exc)
        return {}


class MeasurementCache:
    """Measured capacity (processed frames per second) of each tier on this device, in a JSON
    file under state_dir keyed by hardware fingerprint (platform, CPU, GPU, engine versions) and
    tier, so a restart does not measure every tier again; other hardware measures anew."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _load(self) -> Dict[str, Any]:
        return read_json_object(self.path)

    def get(self, fingerprint: str, tier: Tier, variant: str = "") -> Optional[float]:
        value = self._load().get(fingerprint, {}).get(_measurement_key(tier, variant))
        return float(value) if isinstance(value, (int, float)) and value > 0 else None

    def put(self, fingerprint: str, tier: Tier, capacity_fps: float, variant: str = "") -> None:
        """`variant` tells measurements of one tier under other conditions apart (e.g. the
        camera resolution decoded with it)."""
        data = self._load()
        data.setdefault(fingerprint, {})[_measurement_key(tier, variant)] = capacity_fps
        write_json_atomic(self.path, data)


def _measurement_key(tier: Tier, variant: str) -> str:
    """The detector and its frame-skip: a reader decodes the skipped frames too, so each skip
    of one detector has its own capacity."""
    return f"{tier.key}|skip={tier.frame_skip}{variant}"


def read_json_object(path: Path) -> Dict[str, Any]:
    """A JSON object from a file; empty when the file is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """A JSON object written whole or not at all (edge.detection.atomic_file)."""
    atomic_write(path, json.dumps(data, indent=2, sort_keys=True).encode())


def predict_capacities(
    tiers: Sequence[Tier],
    measure: Callable[[Tier], float],
    cache: MeasurementCache,
    fingerprint: str,
    variant: str = "",
) -> List[float]:
    """Processed frames per second each tier can sustain on this device: from the cache, else
    measured once by `measure` (e.g. `measure_tier`) and cached under `variant`."""
    capacities = []
    for tier in tiers:
        cached = cache.get(fingerprint, tier, variant)
        if cached is None:
            started = time.monotonic()
            cached = float(measure(tier))
            log.info("measured %s: %.1f frames/s (%.1f s)", tier.name, cached, time.monotonic() - started)
            cache.put(fingerprint, tier, cached, variant)
        capacities.append(cached)
    return capacities


def fit_warning(tiers: Sequence[Tier], capacities: Sequence[float], target_fps: float, cameras: int) -> Optional[str]:
    """One line when no tier is predicted to cover the cameras' summed target (each analysed
    frame covers `frame_skip` source frames), else None."""
    if not tiers:
        return None
    best = max(range(len(tiers)), key=lambda i: capacities[i] * tiers[i].frame_skip)
    covered = capacities[best] * tiers[best].frame_skip
    if covered >= target_fps:
        return None
    return (
        f"{cameras} camera(s) need {target_fps:.0f} fps but the fastest tier ({tiers[best].name}) covers "
        f"about {covered:.0f} fps on this device: expect dropped frames (use detect_source sub-streams, "
        "fewer cameras or a lower target_fps)"
    )


def default_cache_path(config: Config) -> Path:
    return config.state_dir / "tier-measurements.json"


def size_variant(frame_size: Tuple[int, int], lanes: int = 1) -> str:
    """The cache variant of measurements decoding H.264 frames of `frame_size` on `lanes` lanes
    (measurements cached before they did are not reused)."""
    return f"@{frame_size[0]}x{frame_size[1]}/{max(1, lanes)}lanes/h264-i420"


def measure_tier(
    config: Config, tier: Tier, frame_size: Tuple[int, int] = (1280, 720), frames: int = 20, lanes: int = 1
) -> float:
    """Analysed frames per second of one tier on this device, batch 1, each analysed frame
    decoded from a video at the cameras' resolution `frame_size` (width, height) after the
    tier's skipped frames, which a camera's reader decodes too (a P-frame needs the one before
    it): decoding a 720p frame costs about as much as half an inference on a small CPU, so a
    capacity measured on frames already in memory promises twice what the cameras get, and one
    that left out the skipped frames held 576 skip 4 for four 720p cameras that it could not
    keep up with. With `lanes` > 1 that many threads each decode and detect on one detector,
    as the pipeline's readers and lanes do."""
    detector = load_tier_detector(config, tier, max_batch=1, lanes=lanes)
    skip = max(1, tier.frame_skip)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            video = _measurement_clip(Path(tmp) / "measure.mp4", frame_size, (frames + lanes) * skip)
            captures = [_open_clip(video, config.decode.threads) for _ in range(max(1, lanes))]
            try:
                for capture in captures:  # warm-up: first-run allocations are not the tier's speed
                    detect(detector, [_next_frame(capture, video)])
                share = max(1, frames // len(captures))
                counts = [0] * len(captures)

                def lane(k: int) -> None:
                    for _ in range(share):
                        for _ in range(skip - 1):
                            if not captures[k].grab():  # decoded, not converted, as a reader does
                                return
                        image = _read_picture(captures[k])
                        if image is None:
                            return
                        detect(detector, [image])
                        counts[k] += 1

                started = time.perf_counter()
                threads = [threading.Thread(target=lane, args=(k,)) for k in range(len(captures))]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                return max(sum(counts), 1) / (time.perf_counter() - started)
            finally:
                for capture in captures:
                    capture.release()
    finally:
        detector.close()


def _open_clip(video: Path, threads: int) -> PacketCapture:
    """The clip read as a camera's reader reads it: packets decoded by PyAV, each analysed frame
    handed over in I420 and resized straight to the detector's input."""
    return PacketCapture(str(video), threads)


def _read_picture(capture: PacketCapture) -> Optional[Image]:
    """The next frame, as the lanes get it from a reader; None at the end of the clip."""
    return capture.retrieve_picture() if capture.grab() else None


def _next_frame(capture: PacketCapture, video: Path) -> Image:
    image = _read_picture(capture)
    if image is None:
        raise RuntimeError(f"{video}: cannot decode the clip just written")
    return image


def _measurement_clip(path: Path, frame_size: Tuple[int, int], frames: int) -> Path:
    """A clip of moving noise blocks at `frame_size` (compressible like a scene, not flat),
    H.264 at 15 FPS, about 3 Mbit/s at 720p, GOP 30, as cameras send it (an mp4v clip costs less
    to decode than what the cameras will cost)."""
    width, height = frame_size
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 255, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    base: np.ndarray = np.asarray(cv2.resize(blocks, (width, height)), np.uint8)
    bit_rate = int(3_000_000 * width * height / (1280 * 720))
    images = (np.roll(base, index * 8, axis=1) for index in range(frames))
    return write_h264(path, images, width, height, fps=15, bit_rate=bit_rate)
