"""How much this machine itself stretches a fixed piece of work: the floor under any p99 latency.

The same single-threaded work (OpenCV blurs of one image, one OpenCV thread: no inter-thread
waits, no allocation, no Python in the loop) is timed call by call, at a camera's pace (one call
every 1 / --paced-fps s, the thread asleep in between, as a one-camera pipeline is) and back to
back. Whatever spread it shows is the machine's (a VM's host taking its CPUs, frequency changes,
wake-up delays), not the pipeline's: a stage whose median is M cannot have a p99 under M times
this work's p99 / p50 here.

    .venv/bin/python benchmarks/vm_jitter.py --work-ms 13 --calls 900 \\
        --json benchmarks/results/vm_jitter.json --markdown benchmarks/results/vm_jitter.md
"""

import argparse
import json
import os
import time
from pathlib import Path
from typing import Dict, List

import cv2
import numpy as np

from edge.commands.bench_streams import steal_s

CORES = os.cpu_count() or 1


def make_work(target_ms: float) -> "Work":
    """A fixed amount of CPU work whose median is about `target_ms` on this machine."""
    work = Work(repeats=1)
    single = np.median([work.timed() for _ in range(30)])
    work.repeats = max(1, int(round(target_ms / 1000.0 / single)))
    return work


class Work:
    def __init__(self, repeats: int) -> None:
        self.repeats = repeats
        rng = np.random.default_rng(0)
        self._image = rng.integers(0, 255, (300, 533, 3), dtype=np.uint8)
        self._out = np.empty_like(self._image)

    def timed(self) -> float:
        start = time.perf_counter()
        for _ in range(self.repeats):
            cv2.GaussianBlur(self._image, (9, 9), 0, dst=self._out)
        return time.perf_counter() - start


def series(work: Work, calls: int, interval_s: float) -> Dict[str, float]:
    """Per-call ms of `calls` calls, one every `interval_s` (0: back to back)."""
    times: List[float] = []
    steal = steal_s()
    started = time.monotonic()
    next_call = time.monotonic()
    for _ in range(calls):
        if interval_s > 0:
            delay = next_call - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            next_call += interval_s
        times.append(work.timed() * 1000.0)
    elapsed = time.monotonic() - started
    values = np.array(times)
    p50, p99 = float(np.percentile(values, 50)), float(np.percentile(values, 99))
    return {
        "p50_ms": round(p50, 2),
        "p95_ms": round(float(np.percentile(values, 95)), 2),
        "p99_ms": round(p99, 2),
        "max_ms": round(float(values.max()), 2),
        "p99_over_p50": round(p99 / p50, 2),
        "steal_percent": round(100.0 * (steal_s() - steal) / elapsed / CORES, 1),
    }


def windows(work: Work, seconds: float, window_s: float = 10.0) -> List[float]:
    """Median ms of the work per `window_s` window, calls back to back for `seconds`: how the
    machine's speed itself moves from minute to minute."""
    medians: List[float] = []
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        window_start = time.monotonic()
        times = []
        while time.monotonic() - window_start < window_s:
            times.append(work.timed() * 1000.0)
        medians.append(round(float(np.median(times)), 2))
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-ms", type=float, default=13.0, help="median of one call, roughly")
    parser.add_argument("--calls", type=int, default=900)
    parser.add_argument("--paced-fps", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sustained-s", type=float, default=150.0, help="back to back, medians per 10 s")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    work = make_work(args.work_ms)
    rows = []
    for number in range(1, args.rounds + 1):
        for mode, interval in (("paced", 1.0 / args.paced_fps), ("back to back", 0.0)):
            print(f"round {number}/{args.rounds}: {mode}, {args.calls} calls", flush=True)
            row = {"round": number, "mode": mode, **series(work, args.calls, interval)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    print(f"back to back for {args.sustained_s:.0f} s", flush=True)
    sustained = windows(work, args.sustained_s)
    report = {
        "work_ms": args.work_ms,
        "calls": args.calls,
        "paced_fps": args.paced_fps,
        "rows": rows,
        "sustained_window_medians_ms": sustained,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    if args.markdown:
        lines = [
            "# A fixed piece of work, timed call by call on this machine",
            "",
            f"`benchmarks/vm_jitter.py --work-ms {args.work_ms} --calls {args.calls}`: the same single-threaded "
            f"work (about {args.work_ms} ms), paced = one call every 1/{args.paced_fps:g} s with the thread "
            "asleep in between (a one-camera pipeline), or back to back. Steal: time the VM's CPUs waited for "
            "the host, in % of all cores.",
            "",
            "| round | mode | p50 ms | p95 ms | p99 ms | max ms | p99 / p50 | steal % |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in rows:
            lines.append(
                f"| {row['round']} | {row['mode']} | {row['p50_ms']} | {row['p95_ms']} | {row['p99_ms']} | "
                f"{row['max_ms']} | {row['p99_over_p50']} | {row['steal_percent']} |"
            )
        lines += [
            "",
            f"The same work back to back for {args.sustained_s:.0f} s, median of each 10 s window (ms): "
            f"{', '.join(str(v) for v in sustained)} (slowest / fastest window "
            f"{max(sustained) / min(sustained):.2f}).",
        ]
        args.markdown.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
