"""Cost of tracking plus analytics per frame, for a crowd of synthetic walkers.

20 people (by default) walk straight lines with some turning back, across a frame with two
counting lines and two zones; detections get 2 px jitter, 5 % misses and a few low scores.
Per frame we time `ByteTracker.update` and `CameraAnalytics.observe` (windows closing included),
after a warm-up, and report the median and 99th percentile.

    .venv/bin/python benchmarks/analytics_cost.py [--people 20] [--frames 3000]
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edge.core.analytics import CameraAnalytics, LineSpec, ZoneSpec  # noqa: E402
from edge.core.tracking import ByteTracker, TrackerParams  # noqa: E402
from edge.detection.engines.base import Detections  # noqa: E402

W, H, FPS = 1280, 720, 10.0
BUDGET_MS = 1.0


def scene(people: int, frames: int, seed: int = 0) -> list:
    """Per frame, the detections of `people` walkers bouncing around the frame."""
    rng = np.random.default_rng(seed)
    pos = np.stack([rng.uniform(50, W - 50, people), rng.uniform(150, H - 10, people)], axis=1)
    vel = rng.normal(0, 60, (people, 2))
    height = rng.uniform(90, 160, people)
    out = []
    for _ in range(frames):
        pos += vel / FPS
        for axis, limit in ((0, W), (1, H)):
            bounce = (pos[:, axis] < 40) | (pos[:, axis] > limit - 10)
            vel[bounce, axis] *= -1
        seen = rng.random(people) >= 0.05
        x, y, h = pos[seen, 0], pos[seen, 1], height[seen]
        boxes = np.stack([x - 0.2 * h, y - h, x + 0.2 * h, y], axis=1) + rng.normal(
            0, 2, (int(seen.sum()), 4)
        )
        scores = np.where(rng.random(len(boxes)) < 0.1, 0.3, 0.85)
        out.append(
            Detections(boxes.astype(np.float32), scores.astype(np.float32), np.zeros(len(boxes), np.int32))
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=20)
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    frames = scene(args.people, args.frames)
    tracker = ByteTracker(TrackerParams())
    analytics = CameraAnalytics(
        class_names=["person"],
        counted_classes=["person"],
        lines=[LineSpec("door", (0.5, 0.2), (0.5, 1.0)), LineSpec("stairs", (0.1, 0.6), (0.9, 0.6))],
        zones=[
            ZoneSpec("queue", ((0.6, 0.5), (0.9, 0.5), (0.9, 0.95), (0.6, 0.95))),
            ZoneSpec("entrance", ((0.05, 0.3), (0.3, 0.3), (0.35, 0.9), (0.05, 0.9))),
        ],
    )
    t0 = 1_700_000_000.0
    track_ms, analytics_ms, tracks_per_frame = [], [], []
    for index, dets in enumerate(frames):
        t = t0 + index / FPS
        a = time.perf_counter()
        tracks = tracker.update(dets, t)
        b = time.perf_counter()
        analytics.observe(t, 1.0 / FPS, (W, H), tracks)
        analytics.close_due(t)
        c = time.perf_counter()
        track_ms.append((b - a) * 1e3)
        analytics_ms.append((c - b) * 1e3)
        tracks_per_frame.append(sum(tr.confirmed for tr in tracks))
    warm = slice(50, None)
    total = np.array(track_ms[warm]) + np.array(analytics_ms[warm])
    result = {
        "command": f"python benchmarks/analytics_cost.py --people {args.people} --frames {args.frames}",
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "people": args.people,
        "frames": args.frames,
        "mean_confirmed_tracks": round(float(np.mean(tracks_per_frame[warm])), 1),
        "tracking_ms_median": round(float(np.median(track_ms[warm])), 3),
        "analytics_ms_median": round(float(np.median(analytics_ms[warm])), 3),
        "total_ms_median": round(float(np.median(total)), 3),
        "total_ms_mean": round(float(np.mean(total)), 3),
        "total_ms_p99": round(float(np.percentile(total, 99)), 3),
        "budget_ms": BUDGET_MS,
        "median_over_budget_ratio": round(float(np.median(total)) / BUDGET_MS, 3),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "analytics_cost.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "analytics_cost.md").write_text(
        "# Tracking + analytics cost per frame\n\n"
        f"Command: `{result['command']}` ({result['machine']}, "
        f"Python {result['python']}, numpy {result['numpy']}).\n"
        f"{args.people} walkers at {FPS:g} FPS, 1280x720, 2 lines, 2 zones, heatmap on; "
        f"{result['mean_confirmed_tracks']} confirmed tracks per frame on average.\n\n"
        "| part | median ms |\n|---|---|\n"
        f"| ByteTracker.update | {result['tracking_ms_median']} |\n"
        f"| CameraAnalytics.observe + close_due | {result['analytics_ms_median']} |\n"
        f"| total | {result['total_ms_median']} "
        f"(mean {result['total_ms_mean']}, p99 {result['total_ms_p99']}) |\n\n"
        "The p99 includes the frames that close a window (heatmap tiles are encoded then) and\n"
        "whatever else ran on the 2 shared cores.\n\n"
        f"Budget {BUDGET_MS} ms: median / budget = {result['median_over_budget_ratio']}.\n"
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
