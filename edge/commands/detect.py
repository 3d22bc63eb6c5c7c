"""`video-analysis detect PATH [--json]`: one-shot detection on an image or a video, for debugging.

Prints one result per frame (an image is one frame): with --json one JSON object per line,
`{"frame": i, "detections": [{"box": [x1, y1, x2, y2], "score": s, "class": name}]}`, boxes in
source pixels; otherwise a short table. Exit codes as everywhere: 2 config, 3 model, 4 source.
"""

import argparse
import itertools
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, cast

import cv2
import numpy as np

from edge.config import DEFAULT_CONFIG_PATH, Config, TierConfig, load_config
from edge.core.errors import ConfigError, SourceError
from edge.detection.engines import Detections, detect
from edge.detection.factory import create_detector, engine_options
from edge.detection.manifest import DEFAULT_MODELS_DIR, get_model
from edge.runtime.sources import classify, frames_of, open_capture

log = logging.getLogger(__name__)

# Until the hardware probe picks the platform, `detect` uses the plain-CPU tiers.
DEFAULT_PLATFORM = "x86-cpu"


@dataclass(frozen=True)
class FrameResult:
    frame: int
    detections: Detections


def load_detect_config(path: Path) -> Config:
    """The config file, or the defaults when the default config file is not installed."""
    if path == DEFAULT_CONFIG_PATH and not path.exists():
        return Config.model_validate({})
    return load_config(path)


def choose_tier(config: Config, index: Optional[int], platform: str = DEFAULT_PLATFORM) -> TierConfig:
    """The tier `detect` runs: `index` into the platform's tiers, or the best (first) one."""
    tiers = config.policy.tiers.get(platform, [])
    if not tiers:
        raise ConfigError(f"policy.tiers.{platform}: no tiers configured")
    chosen = 0 if index is None else index
    if not 0 <= chosen < len(tiers):
        raise ConfigError(f"--tier {chosen}: policy.tiers.{platform} has tiers 0..{len(tiers) - 1}")
    return tiers[chosen]


def read_frames(path: Path) -> Iterator[np.ndarray]:
    """BGR frames of an image (one) or a video file; SourceError when it is neither."""
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror})") from None
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is not None:
        yield cast(np.ndarray, image)
        return
    frames = frames_of(cv2.VideoCapture(str(path)))
    first = next(frames, None)
    if first is None:
        raise SourceError(f"{path}: not an image or a video that OpenCV can decode")
    yield first
    yield from frames


def _batches(frames: Iterator[np.ndarray], size: int) -> Iterator[List[np.ndarray]]:
    batch: List[np.ndarray] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def detection_records(detections: Detections, classes: Sequence[str]) -> List[dict]:
    return [
        {
            "box": [round(float(value), 1) for value in box],
            "score": round(float(score), 4),
            "class": classes[int(class_id)] if 0 <= int(class_id) < len(classes) else str(int(class_id)),
        }
        for box, score, class_id in zip(detections.boxes, detections.scores, detections.class_ids)
    ]


def format_table(result: FrameResult, classes: Sequence[str]) -> str:
    records = detection_records(result.detections, classes)
    lines = [f"frame {result.frame}: {len(records)} detection(s)"]
    for record in records:
        x1, y1, x2, y2 = (int(round(value)) for value in record["box"])
        lines.append(f"  {record['class']:<10} {record['score']:.2f}  [{x1}, {y1}, {x2}, {y2}]")
    return "\n".join(lines)


def run_detect(args: argparse.Namespace) -> int:
    if not args.debug:
        # FFmpeg's own log lines would precede our one-line error for an undecodable file.
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    config = load_detect_config(Path(args.config))
    tier = choose_tier(config, args.tier)
    live = classify(args.path) != "file"
    frames = frames_of(open_capture(args.path)) if live else read_frames(Path(args.path))
    first = next(frames)  # opens the source before the model loads: a bad file fails fast
    model = get_model(tier.model, config.models_dir or DEFAULT_MODELS_DIR)
    detector = create_detector(tier.engine, model, engine_options(config, tier, config.detector.max_batch))
    log.debug("detect: %s %s at %d on %s", tier.model, tier.precision, tier.input, tier.engine)
    index = 0
    try:
        for batch in _batches(itertools.chain([first], frames), detector.max_batch):
            for detections in detect(detector, batch):
                result = FrameResult(index, detections)
                if args.json:
                    record = {"frame": index, "detections": detection_records(detections, detector.classes)}
                    print(json.dumps(record), flush=True)
                else:
                    print(format_table(result, detector.classes), flush=True)
                index += 1
    finally:
        detector.close()
    return 0
