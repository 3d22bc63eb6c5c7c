"""Tracker accuracy: our ByteTrack against `supervision.ByteTrack`, side by side, on the same inputs.

Ground truth is the real pedestrian annotation that py-motmetrics ships (TUD-Campus, 71 frames,
and TUD-Stadtmitte, 179 frames, both 640x480 at 25 FPS). Each ground-truth box becomes a
detection after seeded corruption: a miss rate, Gaussian jitter of the box corners, optionally
noise on the scores and false positives. Both trackers see exactly the same detections, and
motmetrics scores both (IoU >= 0.5 match). Every setting is run over several seeds; the table
shows the means.

    .venv/bin/python benchmarks/tracker_eval.py [--seeds 10] [--out benchmarks/results]
"""

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import numpy as np

# motmetrics 1.4.0 calls np.asfarray, removed in NumPy 2.
np.asfarray = lambda a, dtype=np.float64: np.asarray(a, dtype=dtype)  # type: ignore[attr-defined]  # noqa: E731
import motmetrics  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edge.core.tracking import ByteTracker, TrackerParams  # noqa: E402
from edge.detection.engines.base import Detections  # noqa: E402

FPS = 25.0
DATA = Path(motmetrics.__file__).parent / "data"
SEQUENCES = ("TUD-Campus", "TUD-Stadtmitte")


@dataclass(frozen=True)
class Corruption:
    name: str
    miss_rate: float
    jitter_px: float
    false_positives_per_frame: float = 0.0
    score_noise: bool = False


SETTINGS = (
    Corruption("10% misses, 2 px jitter", 0.10, 2.0),
    Corruption("10% misses, 2 px jitter, score noise", 0.10, 2.0, score_noise=True),
    Corruption("20% misses, 5 px jitter", 0.20, 5.0),
    Corruption("20% misses, 5 px jitter, 1 FP/frame, score noise", 0.20, 5.0, 1.0, True),
)


@dataclass(frozen=True)
class GroundTruth:
    frames: List[int]
    ids: Dict[int, np.ndarray]  # frame -> (N,) identities
    boxes: Dict[int, np.ndarray]  # frame -> (N, 4) x1 y1 x2 y2


@dataclass(frozen=True)
class Scores:
    mota: float
    idf1: float
    id_switches: float
    misses: float
    false_positives: float


def load_ground_truth(sequence: str) -> GroundTruth:
    rows = np.loadtxt(DATA / sequence / "gt.txt", delimiter=",")
    frames = sorted({int(f) for f in rows[:, 0]})
    ids, boxes = {}, {}
    for frame in frames:
        sel = rows[rows[:, 0] == frame]
        ids[frame] = sel[:, 1].astype(int)
        boxes[frame] = np.stack([sel[:, 2], sel[:, 3], sel[:, 2] + sel[:, 4], sel[:, 3] + sel[:, 5]], axis=1)
    return GroundTruth(frames, ids, boxes)


def corrupt(gt: GroundTruth, setting: Corruption, seed: int) -> Dict[int, Detections]:
    rng = np.random.default_rng(seed)
    out = {}
    for frame in gt.frames:
        boxes = gt.boxes[frame]
        keep = rng.random(len(boxes)) >= setting.miss_rate
        boxes = boxes[keep] + rng.normal(0.0, setting.jitter_px, (int(keep.sum()), 4))
        if setting.score_noise:
            scores = np.clip(rng.normal(0.7, 0.2, len(boxes)), 0.05, 1.0)
        else:
            scores = np.full(len(boxes), 0.9)
        n_fp = rng.poisson(setting.false_positives_per_frame)
        if n_fp:
            w = rng.uniform(40, 120, n_fp)
            h = w * rng.uniform(1.8, 2.8, n_fp)
            x = rng.uniform(0, 640 - w)
            y = rng.uniform(0, 480 - h)
            boxes = np.concatenate([boxes, np.stack([x, y, x + w, y + h], axis=1)])
            scores = np.concatenate([scores, rng.uniform(0.1, 0.7, n_fp)])
        out[frame] = Detections(
            boxes.astype(np.float32), scores.astype(np.float32), np.zeros(len(boxes), np.int32)
        )
    return out


# A tracker adapter: detections of one frame and its time -> (ids, boxes) of the tracks it reports.
TrackFn = Callable[[Detections, float], "tuple[np.ndarray, np.ndarray]"]


def ours(params: TrackerParams) -> TrackFn:
    tracker = ByteTracker(params)

    def step(dets: Detections, t: float) -> "tuple[np.ndarray, np.ndarray]":
        tracks = [tr for tr in tracker.update(dets, t) if tr.confirmed]
        return np.array([tr.track_id for tr in tracks]), np.array([tr.box for tr in tracks]).reshape(-1, 4)

    return step


def supervision_bytetrack() -> TrackFn:
    import warnings

    import supervision as sv

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its deprecation notice
        # Same thresholds as ours: high 0.5 (new track 0.6), IoU distance 0.8, 1 s buffer.
        tracker = sv.ByteTrack(
            track_activation_threshold=0.5,
            lost_track_buffer=30,
            minimum_matching_threshold=0.8,
            frame_rate=FPS,
        )

    def step(dets: Detections, t: float) -> "tuple[np.ndarray, np.ndarray]":
        out = tracker.update_with_detections(
            sv.Detections(xyxy=dets.boxes.astype(np.float64), confidence=dets.scores, class_id=dets.class_ids)
        )
        return np.asarray(out.tracker_id), np.asarray(out.xyxy).reshape(-1, 4)

    return step


def score(gt: GroundTruth, detections: Dict[int, Detections], step: TrackFn) -> Scores:
    acc = motmetrics.MOTAccumulator(auto_id=True)
    for frame in gt.frames:
        ids, boxes = step(detections[frame], frame / FPS)
        gt_boxes = gt.boxes[frame]
        to_xywh = lambda b: np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)  # noqa: E731
        dist = motmetrics.distances.iou_matrix(to_xywh(gt_boxes), to_xywh(boxes), max_iou=0.5)
        acc.update(gt.ids[frame].tolist(), ids.tolist(), dist)
    summary = motmetrics.metrics.create().compute(
        acc, metrics=["mota", "idf1", "num_switches", "num_misses", "num_false_positives"]
    )
    row = summary.iloc[0]
    return Scores(
        float(row["mota"]),
        float(row["idf1"]),
        float(row["num_switches"]),
        float(row["num_misses"]),
        float(row["num_false_positives"]),
    )


def mean_scores(scores: Sequence[Scores]) -> Scores:
    return Scores(*(float(np.mean([getattr(s, f) for s in scores])) for f in Scores.__dataclass_fields__))


def run(seeds: int, params: TrackerParams) -> List[dict]:
    trackers: Dict[str, Callable[[], TrackFn]] = {
        "ours": lambda: ours(params),
        "ours_no_coast": lambda: ours(replace(params, coast_s=0.0)),
        "supervision": supervision_bytetrack,
    }
    results = []
    for sequence in SEQUENCES:
        gt = load_ground_truth(sequence)
        for setting in SETTINGS:
            per: Dict[str, List[Scores]] = {name: [] for name in trackers}
            for seed in range(seeds):
                detections = corrupt(gt, setting, seed)
                for name, factory in trackers.items():
                    per[name].append(score(gt, detections, factory()))
            result = {"sequence": sequence, "setting": asdict(setting), "seeds": seeds}
            result.update({name: asdict(mean_scores(scores)) for name, scores in per.items()})
            for metric in ("mota", "idf1"):
                result[f"seeds_ours_{metric}_ge_supervision"] = sum(
                    getattr(o, metric) >= getattr(s, metric) for o, s in zip(per["ours"], per["supervision"])
                )
            results.append(result)
    return results


def markdown(results: List[dict], command: str, params: TrackerParams) -> str:
    lines = [
        "# Tracker accuracy: ours vs supervision.ByteTrack",
        "",
        f"Command: `{command}`. Ground truth: the real pedestrian annotations py-motmetrics ships",
        "(TUD-Campus, TUD-Stadtmitte; 25 FPS), fed as detections after seeded corruption; every",
        "tracker gets the same detections; motmetrics scores all (IoU >= 0.5); means over seeds.",
        f"`ours` = edge.core.tracking.ByteTracker with the default config ({asdict(params)});",
        "`ours, no coast` = the same with coast_s = 0, i.e. reporting only tracks matched in the frame,",
        "as ByteTrack does; `sv` = supervision.ByteTrack with the same thresholds and a 1 s buffer.",
        "IDsw = identity switches. Ratios are ours / sv.",
        "",
        "| sequence | corruption | MOTA ours | MOTA ours, no coast | MOTA sv "
        "| IDF1 ours | IDF1 ours, no coast | IDF1 sv "
        "| IDsw ours | IDsw ours, no coast | IDsw sv | MOTA ratio | IDF1 ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        o, n, s = r["ours"], r["ours_no_coast"], r["supervision"]
        lines.append(
            f"| {r['sequence']} | {r['setting']['name']} | "
            f"{o['mota']:.3f} | {n['mota']:.3f} | {s['mota']:.3f} | "
            f"{o['idf1']:.3f} | {n['idf1']:.3f} | {s['idf1']:.3f} | {o['id_switches']:.1f} | "
            f"{n['id_switches']:.1f} | {s['id_switches']:.1f} | {o['mota'] / s['mota']:.3f} | "
            f"{o['idf1'] / s['idf1']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    import supervision

    params = TrackerParams()
    started = time.perf_counter()
    results = run(args.seeds, params)
    command = f"python benchmarks/tracker_eval.py --seeds {args.seeds}"
    report = {
        "command": command,
        "tracker_params": asdict(params),
        "supervision_version": supervision.__version__,
        "motmetrics_version": motmetrics.__version__,
        "python": platform.python_version(),
        "seconds": round(time.perf_counter() - started, 1),
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tracker_eval.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "tracker_eval.md").write_text(markdown(results, command, params))
    print(markdown(results, command, params))


if __name__ == "__main__":
    main()
