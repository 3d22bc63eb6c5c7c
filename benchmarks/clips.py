"""Test clips like a real camera's (edge.devkit.clips): the synthetic plaza at 640x360, 1280x720
and 1920x1080, H.264 at 15 FPS, GOP 30, no B-frames; `--phases K` also writes K - 1 copies with
their keyframes shifted by GOP/K frames, which the streams benchmark hands to the cameras in turn.

    python benchmarks/clips.py --out /tmp/clips [--phases 6]   # plaza-720p.mp4, plaza-1080p.mp4, plaza-360p.mp4
"""

import argparse
from pathlib import Path

from edge.devkit.clips import make_clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/va-clips"))
    parser.add_argument("--phases", type=int, default=1, help="copies with keyframes shifted by GOP/K frames")
    args = parser.parse_args()
    for name, path in make_clips(args.out, phases=args.phases).items():
        print(name, path)


if __name__ == "__main__":
    main()
