"""What `decode.skip_deblocking` saves and what it costs: H.264 decoding time per frame with and
without FFmpeg's in-loop deblocking filter, and `video-analysis evaluate` on the real PETS09
scene re-encoded to H.264 at camera-like bitrates, with and without it.

    .venv/bin/python benchmarks/deblocking.py --video /work/data/vtest.avi \\
        --gt ../shared/eval/pets09-s2l1/gt-frames-0001-0400.txt --clip /tmp/va-clips/plaza-720p.mp4 \\
        --out benchmarks/results
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

from edge.device.h264 import write_h264
from edge.device.packet_capture import PacketCapture
from edge.runtime.sources import read_all_frames

# The development lines of ../shared/eval/pets09-s2l1/README.md.
LINES = ["x40:0.4,0.3,0.4,0.8", "x60:0.6,0.3,0.6,0.85", "x80:0.8,0.3,0.8,0.85", "y60:0.1,0.6,0.95,0.6"]
SCORES = ["recall@0.5", "precision@0.5", "mota", "idf1", "mae_tracks", "crossing_recall"]


def decode_ms(clip: Path, skip_deblocking: bool, frames: int = 600) -> float:
    """CPU ms per decoded frame on one thread (frames left in I420)."""
    capture = PacketCapture(str(clip), 1, skip_deblocking=skip_deblocking)
    decoded = 0
    started = time.process_time()
    try:
        while decoded < frames and capture.grab():
            capture.retrieve_picture()
            decoded += 1
    finally:
        capture.release()
    return 1000.0 * (time.process_time() - started) / max(decoded, 1)


def evaluate(video: Path, gt: Path, frames: int, skip_deblocking: bool, work: Path) -> Dict[str, float]:
    config = work / f"skip-{skip_deblocking}.yaml"
    config.write_text(f"decode:\n  skip_deblocking: {str(skip_deblocking).lower()}\n")
    result = work / "result.json"
    command = [sys.executable, "-m", "edge.commands.cli", "evaluate", "-c", str(config), "--gt", str(gt)]
    command += ["--frames", str(frames), "--json", str(result), str(video)]
    for line in LINES:
        command += ["--line", line]
    subprocess.run(command, check=True, capture_output=True)
    summary = json.loads(result.read_text())["summary"]
    return {name: round(float(summary[name]), 3) for name in SCORES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, required=True, help="PETS09 S2.L1 (OpenCV's vtest.avi)")
    parser.add_argument("--gt", type=Path, required=True)
    parser.add_argument("--clip", type=Path, required=True, help="a 720p H.264 clip for the decoding time")
    parser.add_argument("--frames", type=int, default=400)
    parser.add_argument("--bitrates", type=int, nargs="+", default=[1_000_000, 400_000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--keep", type=Path, help="keep the re-encoded PETS09 videos here (pets-BITRATE.mp4)")
    args = parser.parse_args()
    timing: Dict[str, List[float]] = {"deblocked": [], "skipped": []}
    for number in range(args.rounds):
        print(f"decoding round {number + 1}/{args.rounds}", flush=True)
        timing["deblocked"].append(decode_ms(args.clip, False))
        timing["skipped"].append(decode_ms(args.clip, True))
    scenes = []
    frames = read_all_frames(str(args.video), limit=args.frames)
    height, width = frames[0].shape[:2]
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        videos = args.keep or work
        videos.mkdir(parents=True, exist_ok=True)
        for bitrate in args.bitrates:
            print(f"PETS09 at {bitrate // 1000} kbit/s", flush=True)
            video = write_h264(videos / f"pets-{bitrate}.mp4", frames, width, height, 10, bitrate, gop=20)
            for skip in (False, True):
                scores = evaluate(video, args.gt, args.frames, skip, work)
                scenes.append({"bitrate": bitrate, "skip_deblocking": skip, **scores})
                print(json.dumps(scenes[-1]), flush=True)
    report = {"clip": str(args.clip), "decode_ms": timing, "pets09": scenes}
    (args.out / "deblocking.json").write_text(json.dumps(report, indent=1))
    lines = [
        "# Decoding without the deblocking filter (`decode.skip_deblocking`)",
        "",
        f"Decoding: CPU ms per frame on one thread, `{args.clip.name}` (1280x720 H.264, 3 Mbit/s), "
        f"{args.rounds} interleaved rounds of 600 frames: deblocked "
        f"{', '.join(f'{v:.2f}' for v in timing['deblocked'])}; skipped "
        f"{', '.join(f'{v:.2f}' for v in timing['skipped'])} "
        f"(median ratio {np.median(np.array(timing['skipped']) / np.array(timing['deblocked'])):.2f}).",
        "",
        f"Detection and counting: PETS09 S2.L1 frames 1-{args.frames} re-encoded to H.264 (libx264 veryfast, "
        "GOP 20, 768x576 at 10 fps), `video-analysis evaluate` at the default tier, the four development lines.",
        "",
        "| bitrate | deblocking | " + " | ".join(SCORES) + " |",
        "|---|---|" + "---|" * len(SCORES),
    ]
    for scene in scenes:
        mode = "skipped" if scene["skip_deblocking"] else "on"
        values = " | ".join(str(scene[name]) for name in SCORES)
        lines.append(f"| {scene['bitrate'] // 1000} kbit/s | {mode} | {values} |")
    (args.out / "deblocking.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
