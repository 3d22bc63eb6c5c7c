"""`video-analysis evaluate VIDEO --gt MOT.txt`: the product's accuracy on a labelled video.

Runs what `run` runs on every analysed frame (the tier's detector through the engine registry,
`ByteTracker` with the config's tracker parameters, `CameraAnalytics` with the config's counting
rules) over a video file, frame by frame and as fast as it goes, and scores it against MOT-format
ground truth (`edge.devkit.mot`):

- detection: recall and precision at IoU 0.5 and 0.3; people per frame (detections and counted
  tracks) against the annotated people, as mean absolute error and bias;
- tracking: MOTA, IDF1, id switches and track ids per person (py-motmetrics, an optional extra;
  skipped with a note when it is not installed);
- counting: per line and direction, true crossings (ground-truth foot points through the same
  `LineCounter`) against counted ones; occupancy mean and unique per counting window;
- speed: analysed frames per second of detection + tracking + analytics (decoding excluded).

Prints a table, and optionally writes JSON (`--json`) and pictures (`--out`: detections against
ground truth on sampled frames, and a per-line bar chart when matplotlib is installed). Exit codes
as everywhere: 2 usage/config (bad ground truth or line), 3 model, 4 video.
"""

import argparse
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Protocol, Sequence, Set, Tuple

import cv2
import numpy as np

from edge.config import Config
from edge.core.analytics import CameraAnalytics, CountsWindow, LineSpec
from edge.core.detections import Detections
from edge.core.errors import ConfigError, SourceError
from edge.core.tracking import ByteTracker, Track, TrackerParams
from edge.detection.engines import Detector, detect
from edge.detection.factory import load_tier_detector
from edge.detection.pictures import Image, as_bgr
from edge.devkit.mot import GroundTruth, match_frame, read_mot, true_crossings
from edge.runtime.sources import Capture, open_capture, retrieve_image

log = logging.getLogger(__name__)

IOU_THRESHOLDS = (0.5, 0.3)
SAMPLED_FRAMES = 4


class FrameTracker(Protocol):
    """What `evaluate` tracks with: `ByteTracker`, or another tracker to compare it with."""

    def update(self, detections: Detections, timestamp: float) -> List[Track]: ...


@dataclass(frozen=True)
class DetectionScore:
    iou: float
    recall: float
    precision: float
    true_positives: int
    false_positives: int
    misses: int


@dataclass(frozen=True)
class PeopleCountScore:
    """Per analysed frame, how many people were reported against how many are annotated."""

    source: str  # "detections" or "tracks" (confirmed tracks, what occupancy counts)
    mae: float
    bias: float  # mean of reported - true; negative = too few


@dataclass(frozen=True)
class TrackingScore:
    mota: float
    idf1: float
    id_switches: int
    track_ids: int  # confirmed track ids reported
    people: int  # annotated identities
    ids_per_person: float


@dataclass(frozen=True)
class LineScore:
    line: str
    direction: str  # "in" or "out"
    true: int
    counted: int


@dataclass(frozen=True)
class WindowScore:
    start_s: float
    true_mean: float
    counted_mean: float
    true_unique: int
    counted_unique: int


@dataclass(frozen=True)
class Evaluation:
    video: str
    tier: str
    frames: int  # frames read
    analysed: int  # frames analysed (frame-skip applied)
    fps: float  # analysed frames per second of detection + tracking + analytics
    detector_ms: float  # mean detector time per analysed frame
    detection: List[DetectionScore]
    people: List[PeopleCountScore]
    tracking: Optional[TrackingScore]
    lines: List[LineScore]
    windows: List[WindowScore]
    notes: List[str] = field(default_factory=list)

    @property
    def crossings_true(self) -> int:
        return sum(score.true for score in self.lines)

    @property
    def crossings_counted(self) -> int:
        """Counted crossings that are real: per line and direction at most the true count."""
        return sum(min(score.counted, score.true) for score in self.lines)

    @property
    def crossings_invented(self) -> int:
        return sum(max(0, score.counted - score.true) for score in self.lines)

    def summary(self) -> Dict[str, object]:
        """The headline figures, flat (for tables and JSON)."""
        by_iou = {score.iou: score for score in self.detection}
        people = {score.source: score for score in self.people}
        crossing_recall = self.crossings_counted / self.crossings_true if self.crossings_true else 1.0
        return {
            "tier": self.tier,
            "recall@0.5": round(by_iou[0.5].recall, 3),
            "precision@0.5": round(by_iou[0.5].precision, 3),
            "recall@0.3": round(by_iou[0.3].recall, 3),
            "precision@0.3": round(by_iou[0.3].precision, 3),
            "mae_detections": round(people["detections"].mae, 3),
            "mae_tracks": round(people["tracks"].mae, 3),
            "mota": None if self.tracking is None else round(self.tracking.mota, 3),
            "idf1": None if self.tracking is None else round(self.tracking.idf1, 3),
            "id_switches": None if self.tracking is None else self.tracking.id_switches,
            "track_ids": None if self.tracking is None else self.tracking.track_ids,
            "crossings": f"{self.crossings_counted}/{self.crossings_true}",
            "crossing_recall": round(crossing_recall, 3),
            "invented": self.crossings_invented,
            "fps": round(self.fps, 1),
        }

    def to_json(self) -> Dict[str, object]:
        record = asdict(self)
        record["summary"] = self.summary()
        return record


@dataclass
class SampledFrame:
    """A frame kept for the pictures."""

    index: int
    image: np.ndarray
    detections: Detections


@dataclass
class _Tally:
    matches: Dict[float, List[int]] = field(default_factory=lambda: {iou: [0, 0, 0] for iou in IOU_THRESHOLDS})
    errors: Dict[str, List[int]] = field(default_factory=lambda: {"detections": [], "tracks": []})


def parse_line(text: str) -> LineSpec:
    """`ID:x1,y1,x2,y2` in normalised coordinates -> LineSpec; ConfigError when malformed."""
    name, sep, coords = text.partition(":")
    try:
        values = [float(v) for v in coords.split(",")] if sep else []
    except ValueError:
        values = []
    if not name or len(values) != 4 or not all(0.0 <= v <= 1.0 for v in values):
        raise ConfigError(f"--line {text!r}: expected ID:x1,y1,x2,y2 with coordinates in 0..1")
    if values[:2] == values[2:]:
        raise ConfigError(f"--line {text!r}: its two points are the same")
    return LineSpec(name, (values[0], values[1]), (values[2], values[3]))


def config_lines(config: Config) -> List[LineSpec]:
    """The first camera's counting lines, when the config has a camera."""
    if not config.cameras:
        return []
    return [LineSpec(line.id, line.points[0], line.points[1]) for line in config.cameras[0].lines]


def open_video(path: Path, skip_deblocking: bool = False) -> Tuple[Capture, float, Tuple[int, int]]:
    """An opened capture, its frame rate and frame size; SourceError when it cannot be read.
    The capture is the one `run` reads files with, so what is scored is what the daemon sees
    (I420 pictures resized straight to the detector's input; config.decode.skip_deblocking)."""
    capture = open_capture(str(path), decode_threads=1, skip_deblocking=skip_deblocking)
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    return capture, fps if fps > 0 else 10.0, size


def video_frames(capture: Capture, limit: Optional[int]) -> Iterator[Image]:
    """The capture's frames in order, the first `limit` only when given; released after."""
    try:
        count = 0
        while (limit is None or count < limit) and capture.grab():
            image = retrieve_image(capture)
            if image is None:
                return
            yield image
            count += 1
    finally:
        capture.release()


def _tracking_score(
    truth: GroundTruth, analysed: Sequence[int], tracks: Dict[int, List[Track]]
) -> Tuple[Optional[TrackingScore], List[str]]:
    try:
        # motmetrics 1.4.0 calls np.asfarray, removed in NumPy 2 (DESIGN.md "Facts").
        if not hasattr(np, "asfarray"):
            np.asfarray = lambda a, dtype=np.float64: np.asarray(a, dtype=dtype)  # type: ignore[attr-defined]
        import motmetrics
    except ImportError:
        return None, ["tracking metrics skipped: install motmetrics (the dev extra) for MOTA/IDF1"]
    accumulator = motmetrics.MOTAccumulator(auto_id=False)
    track_ids: Set[int] = set()
    for index in analysed:
        frame = truth.at(index)
        boxes = np.array([t.box for t in tracks[index]], np.float64).reshape(-1, 4)
        ids = [t.track_id for t in tracks[index]]
        match = match_frame(boxes, frame, 0.5)
        keep = [i for i in range(len(ids)) if i not in set(match.ignored)]
        track_ids.update(ids[i] for i in keep)
        counted = np.flatnonzero(frame.counted)
        gt_boxes = frame.boxes[counted]
        hyp = boxes[keep]
        distances = motmetrics.distances.iou_matrix(
            np.c_[gt_boxes[:, :2], gt_boxes[:, 2:] - gt_boxes[:, :2]],
            np.c_[hyp[:, :2], hyp[:, 2:] - hyp[:, :2]],
            max_iou=0.5,
        )
        accumulator.update(frame.ids[counted].tolist(), [ids[i] for i in keep], distances, frameid=index)
    metrics = motmetrics.metrics.create().compute(accumulator, metrics=["mota", "idf1", "num_switches"], name="eval")
    people = truth.identities()
    return (
        TrackingScore(
            mota=float(metrics["mota"].iloc[0]),
            idf1=float(metrics["idf1"].iloc[0]),
            id_switches=int(metrics["num_switches"].iloc[0]),
            track_ids=len(track_ids),
            people=people,
            ids_per_person=len(track_ids) / people if people else 0.0,
        ),
        [],
    )


def _windows(
    truth: GroundTruth, analysed: Sequence[int], fps: float, counts: Sequence[CountsWindow], window_s: float
) -> List[WindowScore]:
    by_start: Dict[float, List[int]] = {}
    for index in analysed:
        by_start.setdefault(np.floor(index / fps / window_s) * window_s, []).append(index)
    scores = []
    for window in counts:
        frames = by_start.get(window.window[0], [])
        if not frames or "person" not in window.objects:
            continue
        truths = [truth.at(i) for i in frames]
        unique = {int(i) for t in truths for i in t.ids[t.counted]}
        person = window.objects["person"]
        scores.append(
            WindowScore(
                start_s=float(window.window[0]),
                true_mean=float(np.mean([t.people() for t in truths])),
                counted_mean=float(person.mean),
                true_unique=len(unique),
                counted_unique=int(person.unique),
            )
        )
    return scores


def evaluate(
    frames: Iterator[Image],
    fps: float,
    frame_size: Tuple[int, int],
    truth: GroundTruth,
    lines: Sequence[LineSpec],
    config: Config,
    detector: Detector,
    tier_name: str,
    frame_skip: int = 1,
    video: str = "",
    samples: Optional[List[SampledFrame]] = None,
    sample_every: int = 0,
    tracker: Optional[FrameTracker] = None,
) -> Evaluation:
    """Score the product on `frames` (BGR, in order, video frame 0 first) against `truth`;
    `tracker` replaces the product's (ByteTracker with the config's parameters) to compare."""
    if tracker is None:
        tracker = ByteTracker(TrackerParams.from_config(config.tracker))
    analytics = CameraAnalytics(
        class_names=detector.classes,
        counted_classes=config.detector.classes,
        lines=lines,
        counts_window_s=config.counts.window_s,
        line_min_distance=config.counts.line_min_distance,
        heatmap_enabled=False,
        forget_after_s=config.tracker.buffer_s + 1.0,
    )
    counted = [i for i, name in enumerate(detector.classes) if name in config.detector.classes]
    tally = _Tally()
    tracks: Dict[int, List[Track]] = {}
    analysed: List[int] = []
    busy_s = detector_s = 0.0
    read = 0
    for index, image in enumerate(frames):
        read += 1
        if index % frame_skip:
            continue
        timestamp = index / fps
        t0 = time.perf_counter()
        detections = detect(detector, [image])[0]
        t1 = time.perf_counter()
        reported = tracker.update(detections, timestamp)
        analytics.observe(timestamp, frame_skip / fps, frame_size, reported)
        busy_s += time.perf_counter() - t0
        detector_s += t1 - t0
        analysed.append(index)
        # The tracker gets every detection down to its low threshold, as in `run`; the detector's
        # own output (what detection is scored on) is those at the detector's threshold.
        people = detections.select(
            np.isin(detections.class_ids, counted) & (detections.scores >= config.detector.score_threshold)
        )
        confirmed = [t for t in reported if t.confirmed and t.class_id in counted]
        tracks[index] = confirmed
        frame_truth = truth.at(index)
        for iou in IOU_THRESHOLDS:
            match = match_frame(people.boxes, frame_truth, iou)
            tally.matches[iou][0] += match.true_positives
            tally.matches[iou][1] += match.false_positives
            tally.matches[iou][2] += match.misses
            if iou == IOU_THRESHOLDS[0]:
                tally.errors["detections"].append(len(people) - len(match.ignored) - frame_truth.people())
        track_boxes = np.array([t.box for t in confirmed], np.float64).reshape(-1, 4)
        tally.errors["tracks"].append(
            len(confirmed) - len(match_frame(track_boxes, frame_truth, 0.5).ignored) - frame_truth.people()
        )
        if samples is not None and sample_every and len(analysed) % sample_every == 1:
            samples.append(SampledFrame(index, as_bgr(image).copy(), people))
    if not analysed:
        raise SourceError(f"{video or 'video'}: no frames to evaluate")
    end = (analysed[-1] + frame_skip) / fps
    windows = analytics.close_due(end + config.counts.window_s).counts
    detection = [
        DetectionScore(
            iou=iou,
            recall=tp / (tp + fn) if tp + fn else 1.0,
            precision=tp / (tp + fp) if tp + fp else 1.0,
            true_positives=tp,
            false_positives=fp,
            misses=fn,
        )
        for iou, (tp, fp, fn) in tally.matches.items()
    ]
    people_scores = [
        PeopleCountScore(source, float(np.mean(np.abs(errors))), float(np.mean(errors)))
        for source, errors in tally.errors.items()
    ]
    tracking, notes = _tracking_score(truth, analysed, tracks)
    truth_frames = [i for i in range(truth.last_frame + 1) if i <= analysed[-1]]
    true = true_crossings(truth, lines, frame_size, config.counts.line_min_distance, truth_frames)
    totals: Dict[str, List[int]] = {line.line_id: [0, 0] for line in lines}
    for window in windows:
        for line_id, line_counts in window.lines.items():
            totals[line_id][0] += line_counts.count_in
            totals[line_id][1] += line_counts.count_out
    line_scores = []
    for line in lines:
        crossings = true[line.line_id]
        line_scores.append(LineScore(line.line_id, "in", crossings.count_in, totals[line.line_id][0]))
        line_scores.append(LineScore(line.line_id, "out", crossings.count_out, totals[line.line_id][1]))
    if truth.last_frame < analysed[-1]:
        notes.append(
            f"frames after {truth.last_frame + 1} (1-based) have no ground truth and count as empty; "
            "use --frames to stop at the annotated part"
        )
    return Evaluation(
        video=video,
        tier=tier_name,
        frames=read,
        analysed=len(analysed),
        fps=len(analysed) / busy_s if busy_s > 0 else 0.0,
        detector_ms=1000.0 * detector_s / len(analysed),
        detection=detection,
        people=people_scores,
        tracking=tracking,
        lines=line_scores,
        windows=_windows(truth, analysed, fps, windows, config.counts.window_s),
        notes=notes,
    )


def format_report(result: Evaluation) -> str:
    """The terminal table."""
    out = [f"{result.video}: {result.analysed} of {result.frames} frames analysed, tier {result.tier}"]
    out.append(f"speed       {result.fps:.1f} analysed frames/s (detector {result.detector_ms:.1f} ms/frame)")
    for score in result.detection:
        out.append(
            f"detection   IoU {score.iou:.1f}: recall {score.recall:.3f}  precision {score.precision:.3f}  "
            f"(TP {score.true_positives}, FP {score.false_positives}, missed {score.misses})"
        )
    for people in result.people:
        out.append(f"people/frame {people.source:<10} MAE {people.mae:.2f}  bias {people.bias:+.2f}")
    if result.tracking is not None:
        t = result.tracking
        out.append(
            f"tracking    MOTA {t.mota:.3f}  IDF1 {t.idf1:.3f}  id switches {t.id_switches}  "
            f"{t.track_ids} track ids for {t.people} people"
        )
    out.append("line        dir   true  counted")
    for line in result.lines:
        out.append(f"{line.line:<11} {line.direction:<5} {line.true:>4}  {line.counted:>7}")
    out.append(
        f"crossings   {result.crossings_counted} of {result.crossings_true} counted, "
        f"{result.crossings_invented} invented"
    )
    out.append("window(s)   mean true/counted   unique true/counted")
    for window in result.windows:
        out.append(
            f"{window.start_s:>9.0f}   {window.true_mean:>5.2f} / {window.counted_mean:<5.2f}"
            f"        {window.true_unique:>3} / {window.counted_unique}"
        )
    out.extend(f"note: {note}" for note in result.notes)
    return "\n".join(out)


def draw_samples(samples: Sequence[SampledFrame], truth: GroundTruth) -> np.ndarray:
    """Sampled frames side by side in a grid of two columns: ground truth green (ignored boxes
    grey), detections red with their score."""
    tiles = []
    for sample in samples:
        image = sample.image.copy()
        frame = truth.at(sample.index)
        for box, counted in zip(frame.boxes, frame.counted):
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            cv2.rectangle(image, (x1, y1), (x2, y2), (0, 200, 0) if counted else (160, 160, 160), 2)
        for box, score in zip(sample.detections.boxes, sample.detections.scores):
            x1, y1, x2, y2 = (int(round(float(v))) for v in box)
            cv2.rectangle(image, (x1, y1), (x2, y2), (0, 0, 255), 1)
            cv2.putText(image, f"{score:.2f}", (x1, max(10, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 255), 1)
        cv2.putText(image, f"frame {sample.index + 1}", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
        tiles.append(image)
    if len(tiles) % 2:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i : i + 2]) for i in range(0, len(tiles), 2)]
    return np.vstack(rows)


def plot_lines(result: Evaluation, path: Path) -> bool:
    """Bar chart of true against counted crossings per line and direction; False without
    matplotlib (an optional extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    labels = [f"{s.line} {s.direction}" for s in result.lines]
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(labels) + 2), 3.5))
    ax.bar(x - 0.2, [s.true for s in result.lines], 0.4, label="true (ground truth)")
    ax.bar(x + 0.2, [s.counted for s in result.lines], 0.4, label="counted")
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=30, ha="right")
    ax.set_ylabel("crossings")
    ax.set_title(f"line crossings, tier {result.tier}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def run_evaluate(args: argparse.Namespace) -> int:
    from edge.commands.detect import choose_tier, load_detect_config

    if not args.debug:
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    config = load_detect_config(Path(args.config))
    if args.score_threshold is not None:
        config = config.model_copy(
            update={"detector": config.detector.model_copy(update={"score_threshold": args.score_threshold})}
        )
    tier = choose_tier(config, args.tier, args.platform)
    lines = [parse_line(text) for text in args.line] or config_lines(config)
    truth = read_mot(Path(args.gt))
    capture, fps, frame_size = open_video(Path(args.video), config.decode.skip_deblocking)
    detector = load_tier_detector(config, tier, max_batch=1)
    index = 0 if args.tier is None else args.tier
    tier_name = f"{args.platform}[{index}] {tier.model}@{tier.input} {tier.precision} skip{tier.frame_skip}"
    samples: List[SampledFrame] = []
    limit = args.frames
    expected = limit or int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    sample_every = max(1, expected // tier.frame_skip // SAMPLED_FRAMES) if args.out else 0
    try:
        result = evaluate(
            video_frames(capture, limit),
            fps,
            frame_size,
            truth,
            lines,
            config,
            detector,
            tier_name,
            tier.frame_skip,
            str(args.video),
            samples,
            sample_every,
        )
    finally:
        detector.close()
    print(format_report(result))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out / "detections.png"), draw_samples(samples[:SAMPLED_FRAMES], truth))
        if not plot_lines(result, out / "lines.png"):
            log.warning("lines.png skipped: matplotlib is not installed")
    return 0
