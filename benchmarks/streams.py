"""Streams per device from the command line: `edge.commands.bench_streams` over a list of camera
counts, interleaved over rounds, each in its own process; the load average before each run is
recorded beside it (figures taken on a busy machine say so).

    python benchmarks/clips.py --out /tmp/va-clips
    python benchmarks/streams.py --clip /tmp/va-clips/plaza-720p.mp4 --cameras 1 4 6 8 12 --rounds 3 \\
        [--detect-clip /tmp/va-clips/plaza-360p.mp4] [--site-frames] [--tier I | --adaptive] \\
        --json benchmarks/results/streams-720p.json

`--site-frames` first stores a calibration set of the analysed clip's frames in the state
directory, as `video-analysis calibrate --from CLIP` does on a device: the tier choice (agreement
and equivalence) and the INT8 calibration then use this site's frames.
"""

import argparse
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

from edge.commands.bench_streams import SITE_DEFAULT, run_isolated
from edge.config import CalibrationConfig
from edge.detection.int8.sets import collect, frames_from_video, write_set


def store_site_frames(clip: Path, state_dir: Path) -> None:
    wanted = CalibrationConfig().frames
    frames = collect(frames_from_video(clip, wanted), wanted)
    write_set(state_dir / "calibration", clip.stem, frames, f"benchmarks/streams.py --site-frames: {clip}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, required=True)
    parser.add_argument("--detect-clip", type=Path)
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--state-dir", type=Path, default=Path(tempfile.gettempdir()) / "va-streams-state")
    parser.add_argument("--site-frames", action="store_true", help="calibrate on the analysed clip's frames first")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--tier", default=SITE_DEFAULT, help="table index or 'default' (this site's), pinned")
    choice.add_argument("--adaptive", action="store_true", help="the whole tier table")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.site_frames:
        store_site_frames(args.detect_clip or args.clip, args.state_dir)
    tier = None if args.adaptive else (args.tier if args.tier == SITE_DEFAULT else int(args.tier))
    results = []
    for round_number in range(1, args.rounds + 1):
        for n in args.cameras:
            load = os.getloadavg()[0]
            result = asdict(run_isolated(args.clip, n, args.seconds, args.state_dir, args.detect_clip, tier))
            result.update(round=round_number, load_before=round(load, 2))
            print(json.dumps({k: v for k, v in result.items() if k != "stages_ms"}), flush=True)
            results.append(result)
            if args.json:
                args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
