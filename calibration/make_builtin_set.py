"""Render the built-in INT8 calibration set into the package data, edge/assets/calibration/builtin/
(JPEG frames + manifest.json with the synthetic ground-truth boxes). Run in the dev environment
(it needs the demo extra: matplotlib and scikit-image) after changing the synthetic scenes:

    .venv/bin/python calibration/make_builtin_set.py [--frames 64]

The daemon calibrates from these files when no site set exists; it never renders them.
A new set changes its hash, so devices re-quantise on their next start.
"""

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge.detection.int8.sets import BUILTIN_SET, write_set  # noqa: E402
from edge.devkit.calibration_frames import builtin_candidates  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=62, help="synthetic scene frames (%(default)s)")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality (%(default)s)")
    parser.add_argument("--out", type=Path, default=REPO / "edge" / "assets" / "calibration")
    args = parser.parse_args()
    frames = list(builtin_candidates(args.frames))
    source = "built-in: synthetic scenes + sample photographs"
    # Quality 90 keeps the shipped set near 3 MB; the accuracy guard accepts INT8 with it.
    calibration_set = write_set(args.out, BUILTIN_SET, frames, source, quality=args.quality)
    size = sum(f.path.stat().st_size for f in calibration_set.frames)
    print(f"{len(calibration_set.frames)} frames, {size / 1e6:.1f} MB, hash {calibration_set.content_hash()[:16]}")
    print(f"in {calibration_set.directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
