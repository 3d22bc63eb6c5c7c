"""How many real-time cameras the daemon sustains: N copies of one H.264 clip played at their
native 15 FPS as N cameras through the real appliance (readers, one inference worker, tracking,
analytics; no MQTT), the tier pinned, each N in its own process so peak RSS is its own.

Per N: analysed FPS per camera and in total, unintended drops (due frames a newer one replaced
before the worker took it, or that arrived too late to be worth converting) as a share of the
due frames, CPU % of one core, peak RSS, and the read→counts latency percentiles.

    python benchmarks/streams.py --clip /tmp/va-clips/plaza-720p.mp4 --cameras 1 4 6 8 --seconds 20
    python benchmarks/streams.py ... --detect-clip /tmp/va-clips/plaza-360p.mp4   # sub-streams
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from edge.config import Config, parse_config
from edge.runtime.appliance import build_appliance

DEFAULT_TIER = 0  # the first tier of this device's table: the daemon's best tier


def streams_config(
    clip: Path, cameras: int, state_dir: Path, detect_clip: Optional[Path] = None, tier: int = DEFAULT_TIER,
    target_fps: float = 15.0, extra: Optional[Dict[str, Any]] = None,
) -> Config:
    """N cameras on one clip, only `tier` of this device's table left, so the controller cannot move."""
    base = Config()
    from edge.device.hardware import probe
    from edge.device.tiers import tiers_for_platform

    platform, tiers = tiers_for_platform(base.policy, probe().platform)
    pinned = tiers[tier].model_dump()
    camera_list = []
    for index in range(cameras):
        camera: Dict[str, Any] = {"id": f"cam{index + 1}", "source": str(clip), "target_fps": target_fps,
                                  "realtime": True, "loop": True,
                                  "lines": [{"id": "door", "points": [[0.5, 0.2], [0.5, 0.95]]}]}
        if detect_clip is not None:
            camera["detect_source"] = str(detect_clip)
        camera_list.append(camera)
    data: Dict[str, Any] = {"state_dir": str(state_dir), "cameras": camera_list,
                            "policy": {"tiers": {platform: [pinned]}}}
    data.update(extra or {})
    return parse_config(data)


def measure(config: Config, seconds: float, warmup_s: float = 4.0) -> Dict[str, Any]:
    """Run the appliance on `config` for warm-up + `seconds`; the figures cover `seconds` only."""
    appliance = build_appliance(config, publish=False)
    pipeline = appliance.pipeline
    appliance.start()
    try:
        deadline = time.monotonic() + warmup_s
        while time.monotonic() < deadline:
            appliance.tick()
            time.sleep(0.5)
        before = {s.camera_id: s for s in pipeline.stats()}
        cpu0, wall0 = _cpu_s(), time.monotonic()
        pipeline.timer.reset()
        deadline = wall0 + seconds
        while time.monotonic() < deadline:
            appliance.tick()
            time.sleep(0.5)
        after = {s.camera_id: s for s in pipeline.stats()}
        cpu, wall = _cpu_s() - cpu0, time.monotonic() - wall0
        stages = pipeline.timer.summary_ms()
    finally:
        appliance.stop()
    if pipeline.error is not None:
        raise pipeline.error
    processed = sum(after[c].processed - before[c].processed for c in after)
    dropped = sum(after[c].dropped - before[c].dropped for c in after)
    return {
        "cameras": len(after),
        "tier": appliance.parts.controller.tier.name,
        "seconds": round(wall, 1),
        "analysed_fps_total": round(processed / wall, 1),
        "analysed_fps_per_camera": round(processed / wall / len(after), 2),
        "drop_percent": round(100.0 * dropped / max(processed + dropped, 1), 2),
        "cpu_percent": round(100.0 * cpu / wall, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "stages_ms": stages,
    }


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_isolated(args: List[str]) -> Dict[str, Any]:
    """One measurement in a fresh process (its own peak RSS); its JSON is the last stdout line."""
    out = subprocess.run([sys.executable, __file__, "--one", *args], check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, required=True)
    parser.add_argument("--detect-clip", type=Path)
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--state-dir", type=Path, default=Path(tempfile.gettempdir()) / "va-streams-state")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.one:
        config = streams_config(args.clip, args.cameras[0], args.state_dir, args.detect_clip)
        print(json.dumps(measure(config, args.seconds)))
        return
    results = []
    for round_number in range(1, args.rounds + 1):
        for n in args.cameras:
            forwarded = ["--clip", str(args.clip), "--cameras", str(n), "--seconds", str(args.seconds),
                         "--state-dir", str(args.state_dir)]
            if args.detect_clip:
                forwarded += ["--detect-clip", str(args.detect_clip)]
            load = open("/proc/loadavg").read().split()[0]
            result = run_isolated(forwarded)
            result.update(round=round_number, load_before=float(load))
            print(json.dumps({k: v for k, v in result.items() if k != "stages_ms"}), flush=True)
            results.append(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
