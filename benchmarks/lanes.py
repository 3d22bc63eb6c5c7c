"""One call on every core against one call per lane: the engine alone (frames already decoded),
as fast as it goes and at a camera's pace, for `detector.cpu_lanes`.

- as fast as it goes: `lanes` threads call the detector back to back for `--seconds`;
- paced: one call every `1 / --paced-fps` seconds (a camera at that rate), one lane, so the
  latency includes waking the session's idle threads.

    .venv/bin/python benchmarks/lanes.py --clip /tmp/va-clips/plaza-720p.mp4 --tier 4 \\
        --json benchmarks/results/lanes.json --markdown benchmarks/results/lanes.md
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from edge.commands.bench import measure_engine
from edge.commands.bench_streams import steal_s
from edge.config import Config, parse_config
from edge.core.tiers import Tier
from edge.detection.engines.base import detect
from edge.detection.factory import load_tier_detector
from edge.device.hardware import probe
from edge.device.tiers import tier_from_config, tiers_for_platform
from edge.runtime.sources import read_all_frames

CORES = os.cpu_count() or 1


def paced(config: Config, tier: Tier, frames: List[np.ndarray], lanes: int, fps: float, calls: int) -> Dict[str, float]:
    """Per-call latency (ms) and CPU per call when one call comes every 1 / fps seconds."""
    detector = load_tier_detector(config, tier, max_batch=1, lanes=lanes)
    try:
        for frame in frames[:3]:
            detect(detector, [frame])
        latencies = []
        cpu = time.process_time()
        for index in range(calls):
            started = time.perf_counter()
            detect(detector, [frames[index % len(frames)]])
            latencies.append(time.perf_counter() - started)
            time.sleep(max(0.0, 1.0 / fps - latencies[-1]))
        cpu_ms = (time.process_time() - cpu) / calls * 1000
    finally:
        detector.close()
    p50, p99 = np.percentile(latencies, [50, 99]) * 1000
    return {"p50_ms": round(float(p50), 1), "p99_ms": round(float(p99), 1), "cpu_ms_per_call": round(cpu_ms, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, required=True)
    parser.add_argument("--tier", type=int, default=0, help="index in this device's tier table")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--paced-fps", type=float, default=15.0)
    parser.add_argument("--calls", type=int, default=150)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    config = parse_config({"state_dir": str(Path(tempfile.gettempdir()) / "va-lanes-state")})
    _, tiers = tiers_for_platform(config.policy, probe().platform)
    tier = tier_from_config(args.tier, tiers[args.tier])
    frames = read_all_frames(str(args.clip), limit=40)
    rows: List[Dict[str, Any]] = []
    for number in range(1, args.rounds + 1):
        for lanes in (1, CORES):
            for mode in ("as fast as it goes", f"paced at {args.paced_fps:g} calls/s"):
                print(f"round {number}: {lanes} lane(s), {mode}", flush=True)
                steal, started = steal_s(), time.monotonic()
                if mode.startswith("paced"):
                    row: Dict[str, Any] = paced(config, tier, frames, lanes, args.paced_fps, args.calls)
                else:
                    measured = measure_engine(config, tier, frames, args.seconds, lanes=lanes)
                    row = {
                        "fps": round(measured["fps"], 1),
                        "p50_ms": round(measured["p50_ms"], 1),
                        "p99_ms": round(measured["p99_ms"], 1),
                    }
                elapsed = time.monotonic() - started
                row.update(
                    round=number,
                    lanes=lanes,
                    threads_per_call=max(1, CORES // lanes),
                    mode=mode,
                    steal_percent=round(100 * (steal_s() - steal) / elapsed / CORES, 1),
                )
                print(json.dumps(row), flush=True)
                rows.append(row)
    report = {"tier": tier.name, "clip": str(args.clip), "cores": CORES, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    markdown = to_markdown(report)
    if args.markdown:
        args.markdown.write_text(markdown)
    print(markdown)


def to_markdown(report: Dict[str, Any]) -> str:
    lines = [
        "# One call on every core, or one call per lane: the engine alone",
        "",
        f"Tier {report['tier']}; frames of `{Path(report['clip']).name}` already decoded; {report['cores']} cores; "
        "`benchmarks/lanes.py`. Steal: time the VM's CPUs waited for the host, in % of all cores.",
        "",
        "| round | lanes × threads per call | mode | frames/s | p50 ms | p99 ms | CPU ms per call | steal % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['round']} | {r['lanes']} × {r['threads_per_call']} | {r['mode']} | {r.get('fps', '')} | "
            f"{r['p50_ms']} | {r['p99_ms']} | {r.get('cpu_ms_per_call', '')} | {r['steal_percent']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
