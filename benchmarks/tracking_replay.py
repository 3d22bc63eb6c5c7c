"""Tracking on the real scene in seconds: detect once, replay the detections through tracking
and counting as often as needed.

Running the detector is the slow part of `video-analysis evaluate`; the tracker and the counting
rules are what one tunes. `detect` runs a tier's detector once over every frame of the video and
saves what it returns (boxes, scores, classes down to the tracker's low threshold, as `run`
gets them) to an .npz; `score` feeds them back through `edge.commands.evaluate.evaluate` (the same
tracker, counting and metrics) for every frame-skip and frame range asked for, and, for frames
past the ground truth, prints what can be checked without it: track ids per minute and track
lengths. A frame range is evaluated as its own video (the tracker starts empty at its first
frame), so 1-200 and 201-400 are independent halves. `--tracker supervision` scores
`supervision.ByteTrack` (same thresholds, a 1 s buffer at the analysed rate) in place of ours.

    .venv/bin/python benchmarks/tracking_replay.py detect --out /tmp/pets-dets.npz
    .venv/bin/python benchmarks/tracking_replay.py score --detections /tmp/pets-dets.npz \\
        [--skips 1 2 3 4] [--ranges 1-200 201-400 1-400] [--set buffer_s=2.0 ...] [--json F] \\
        [--tracker ours|supervision]

Detections are data of a CC BY-NC-SA video: keep the .npz out of the repository (/tmp).
"""

import argparse
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from real_scene import LINES  # noqa: E402  (the four development lines)

from edge.commands.detect import choose_tier  # noqa: E402
from edge.commands.evaluate import (  # noqa: E402
    Evaluation,
    FrameTracker,
    evaluate,
    open_video,
    parse_line,
    video_frames,
)
from edge.config import Config  # noqa: E402
from edge.core.detections import Detections  # noqa: E402
from edge.core.tracking import ByteTracker, Track, TrackerParams  # noqa: E402
from edge.detection.engines import detect  # noqa: E402
from edge.detection.engines.base import PreparedBatch  # noqa: E402
from edge.detection.factory import load_tier_detector  # noqa: E402
from edge.devkit.mot import FrameTruth, GroundTruth, read_mot  # noqa: E402

GT = "/work/shared/eval/pets09-s2l1/gt-frames-0001-0400.txt"
COLUMNS = ("mota", "idf1", "id_switches", "track_ids", "mae_tracks", "crossings", "invented")


@dataclass(frozen=True)
class Recorded:
    """A tier's detections of every frame of a video, as saved by `detect`."""

    classes: List[str]
    fps: float
    frame_size: Tuple[int, int]
    frames: List[Detections]
    tier: str

    def save(self, path: Path) -> None:
        counts = np.array([len(d) for d in self.frames], np.int64)
        np.savez_compressed(
            path,
            counts=counts,
            boxes=np.concatenate([d.boxes for d in self.frames]).astype(np.float32),
            scores=np.concatenate([d.scores for d in self.frames]).astype(np.float32),
            class_ids=np.concatenate([d.class_ids for d in self.frames]).astype(np.int32),
            meta=np.array(
                json.dumps({"classes": self.classes, "fps": self.fps, "size": self.frame_size, "tier": self.tier})
            ),
        )

    @classmethod
    def load(cls, path: Path) -> "Recorded":
        data = np.load(path)
        meta = json.loads(str(data["meta"]))
        ends = np.cumsum(data["counts"])
        starts = ends - data["counts"]
        frames = [
            Detections(data["boxes"][a:b], data["scores"][a:b], data["class_ids"][a:b]) for a, b in zip(starts, ends)
        ]
        return cls(list(meta["classes"]), float(meta["fps"]), tuple(meta["size"]), frames, str(meta["tier"]))


class ReplayDetector:
    """A `Detector` that returns recorded detections. The "frames" it gets are 0-d arrays holding
    the video frame index (see `frame_indices`), so `evaluate` can skip frames as it does for a
    video and the detector still returns the right frame's detections."""

    name = "replay"
    input_size = (0, 0)
    max_batch = 1
    lanes = 1
    precision = "recorded"
    fallback_reasons: Mapping[str, str] = {}
    artifact = Path("/dev/null")

    def __init__(self, recorded: Recorded) -> None:
        self.classes: Sequence[str] = recorded.classes
        self._frames = recorded.frames
        self._size = recorded.frame_size

    def preprocess(self, frames: Sequence[np.ndarray]) -> PreparedBatch:
        return PreparedBatch(np.array([int(f) for f in frames]), [self._size] * len(frames))

    def infer(self, batch: PreparedBatch) -> List[np.ndarray]:
        return [batch.tensor]

    def postprocess(self, outputs: List[np.ndarray], batch: PreparedBatch) -> List[Detections]:
        return [self._frames[int(i)] for i in outputs[0]]

    def close(self) -> None:
        pass


def frame_indices(first: int, last: int) -> Iterator[np.ndarray]:
    """Video frames first..last (0-based, inclusive) as the 0-d arrays `ReplayDetector` reads."""
    for index in range(first, last + 1):
        yield np.array(index)


def shifted_truth(truth: GroundTruth, first: int, last: int) -> GroundTruth:
    frames = {i - first: truth.at(i) for i in range(first, last + 1) if i in truth.frames}
    return GroundTruth(frames or {0: FrameTruth.empty()}, last - first)


def parse_range(text: str) -> Tuple[int, int]:
    """`A-B` (1-based, inclusive, as in the MOT files) -> 0-based (first, last)."""
    a, _, b = text.partition("-")
    return int(a) - 1, int(b) - 1


def with_tracker(config: Config, settings: Sequence[str]) -> Config:
    """`config` with tracker fields overridden by `name=value` strings (validated by pydantic)."""
    update: Dict[str, object] = {}
    for item in settings:
        name, _, value = item.partition("=")
        update[name] = json.loads(value)
    tracker = type(config.tracker).model_validate({**config.tracker.model_dump(), **update})
    return config.model_copy(update={"tracker": tracker})


class SupervisionByteTrack:
    """`supervision.ByteTrack` behind `FrameTracker`, with our thresholds (as
    benchmarks/tracker_eval.py sets them) and a buffer of 1 s at `fps` analysed frames a second.
    It reports only tracks matched in the frame, all of them as confirmed."""

    def __init__(self, fps: float) -> None:
        import warnings

        import supervision as sv

        self._sv = sv
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its deprecation notice
            self._tracker = sv.ByteTrack(
                track_activation_threshold=0.5,
                lost_track_buffer=30,
                minimum_matching_threshold=0.8,
                frame_rate=int(round(fps)),
            )

    def update(self, detections: Detections, timestamp: float) -> List[Track]:
        out = self._tracker.update_with_detections(
            self._sv.Detections(
                xyxy=detections.boxes.astype(np.float64),
                confidence=detections.scores,
                class_id=detections.class_ids,
            )
        )
        ids, scores, classes = (np.asarray(v).reshape(-1) for v in (out.tracker_id, out.confidence, out.class_id))
        return [
            Track(int(i), (b[0], b[1], b[2], b[3]), float(s), int(c), True, True, 1, timestamp)
            for i, b, s, c in zip(ids, np.asarray(out.xyxy).tolist(), scores, classes)
        ]


def score_range(
    recorded: Recorded,
    truth: GroundTruth,
    config: Config,
    skip: int,
    first: int,
    last: int,
    tracker: Optional[FrameTracker] = None,
) -> Evaluation:
    """Frames first..last (0-based) scored as a video of their own: frame `first` becomes frame 0."""
    part = replace(recorded, frames=recorded.frames[first : last + 1])
    return evaluate(
        frame_indices(0, last - first),
        recorded.fps,
        recorded.frame_size,
        shifted_truth(truth, first, last),
        [parse_line(text) for text in LINES],
        config,
        ReplayDetector(part),
        f"skip{skip} frames {first + 1}-{last + 1}",
        skip,
        tracker=tracker,
    )


@dataclass(frozen=True)
class Sanity:
    """What can be checked on frames without ground truth: confirmed track ids per minute and the
    length (seconds from first to last confirmed report) of each."""

    ids_per_minute: float
    tracks: int
    length_s_quantiles: Tuple[float, float, float]  # 10 %, median, 90 %
    short: int  # confirmed tracks reported for under 1 s


def sanity(recorded: Recorded, params: TrackerParams, skip: int, first: int, last: int) -> Sanity:
    tracker = ByteTracker(params)
    seen: Dict[int, List[float]] = {}
    for index in range(first, last + 1, skip):
        t = index / recorded.fps
        for track in tracker.update(recorded.frames[index], t):
            if track.confirmed:
                seen.setdefault(track.track_id, [t, t])[1] = t
    lengths = np.array([b - a for a, b in seen.values()]) if seen else np.zeros(1)
    minutes = (last - first + 1) / recorded.fps / 60.0
    q = np.quantile(lengths, [0.1, 0.5, 0.9])
    return Sanity(len(seen) / minutes, len(seen), (float(q[0]), float(q[1]), float(q[2])), int((lengths < 1).sum()))


def run_detect(args: argparse.Namespace) -> int:
    config = Config.model_validate({})
    tier = choose_tier(config, args.tier, args.platform)
    capture, fps, size = open_video(Path(args.video))
    detector = load_tier_detector(config, tier, max_batch=1)
    try:
        frames = [detect(detector, [image])[0] for image in video_frames(capture, None)]
    finally:
        detector.close()
    name = f"{args.platform}[{args.tier}] {tier.model}@{tier.input} {tier.precision}"
    Recorded(list(detector.classes), fps, size, frames, name).save(Path(args.out))
    print(f"{len(frames)} frames of {args.video} ({name}) -> {args.out}")
    return 0


def run_score(args: argparse.Namespace) -> int:
    recorded = Recorded.load(Path(args.detections))
    truth = read_mot(Path(args.gt))
    config = with_tracker(Config.model_validate({}), args.set)
    params = TrackerParams.from_config(config.tracker)
    report: List[Dict[str, object]] = []
    print("| skip | frames | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for skip in args.skips:
        for text in args.ranges:
            first, last = parse_range(text)
            tracker = SupervisionByteTrack(recorded.fps / skip) if args.tracker == "supervision" else None
            summary = score_range(recorded, truth, config, skip, first, last, tracker).summary()
            report.append({"skip": skip, "frames": text, **summary})
            print(f"| {skip} | {text} | " + " | ".join(str(summary[c]) for c in COLUMNS) + " |")
    if args.tracker != "ours":
        return 0
    first, last = parse_range(args.unlabelled)
    last = min(last, len(recorded.frames) - 1)
    print(f"\nframes {first + 1}-{last + 1} (no ground truth): confirmed track ids per minute, track length (s)")
    for skip in args.skips:
        s = sanity(recorded, params, skip, first, last)
        q = ", ".join(f"{v:.1f}" for v in s.length_s_quantiles)
        print(f"skip {skip}: {s.tracks} ids, {s.ids_per_minute:.1f}/min, length p10/p50/p90 {q}, under 1 s: {s.short}")
        report.append({"skip": skip, "frames": args.unlabelled, "sanity": s.__dict__})
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("detect", help="run a tier's detector over the video once; save its detections")
    d.add_argument("--video", default="/work/data/vtest.avi")
    d.add_argument("--platform", default="x86-cpu")
    d.add_argument("--tier", type=int, default=0)
    d.add_argument("--out", required=True, help="the .npz to write (keep it out of the repository)")
    d.set_defaults(run=run_detect)
    s = sub.add_parser("score", help="replay saved detections through tracking, counting and the metrics")
    s.add_argument("--detections", required=True)
    s.add_argument("--gt", default=GT)
    s.add_argument("--skips", type=int, nargs="+", default=[1, 2, 3, 4])
    s.add_argument("--ranges", nargs="+", default=["1-200", "201-400", "1-400"], help="1-based, inclusive")
    s.add_argument("--unlabelled", default="401-795", help="frames without ground truth, for the sanity figures")
    s.add_argument("--set", nargs="*", default=[], help="tracker config overrides, name=value (JSON values)")
    s.add_argument("--json", help="write the figures here too")
    s.add_argument("--tracker", choices=("ours", "supervision"), default="ours")
    s.set_defaults(run=run_score)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
