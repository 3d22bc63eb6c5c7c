"""Test clips like a real camera's: the synthetic plaza scene rendered at 1280x720 (and 1920x1080,
640x360 for sub-streams), H.264 at 15 FPS, 3 Mbit/s (1080p: 6, 360p: 0.8), GOP 30, no B-frames,
encoded with PyAV's libx264 (OpenCV's writer has no H.264 encoder in the PyPI wheel).

Real cameras' keyframes fall at unrelated moments; N copies of one clip started together would
have every camera's keyframe at the same instant. `--phases K` also writes K - 1 copies whose
keyframes are shifted by GOP/K frames (plaza-720p-phase1.mp4, ...), which the streams benchmark
hands out to the cameras in turn.

    python benchmarks/clips.py --out /tmp/clips [--phases 6]   # plaza-720p.mp4, plaza-1080p.mp4, plaza-360p.mp4
"""

import argparse
from pathlib import Path
from typing import Dict, Tuple

import av

from edge.devkit.synthetic import render, standard_scenes

SIZES: Dict[str, Tuple[int, int, int]] = {  # name: width, height, bit rate
    "360p": (640, 360, 800_000),
    "720p": (1280, 720, 3_000_000),
    "1080p": (1920, 1080, 6_000_000),
}
FPS = 15


GOP = 30


def write_clip(path: Path, width: int, height: int, bit_rate: int, seconds: float = 24.0, phase: int = 0) -> Path:
    """`phase` > 0: an extra keyframe at that frame, from which the GOP of 30 continues."""
    scene = standard_scenes(width, height, FPS)[1]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = bit_rate
        stream.gop_size = GOP
        stream.options = {"bf": "0", "preset": "veryfast", "x264-params": "keyint=30:min-keyint=30:scenecut=0"}
        for index in range(int(seconds * FPS)):
            frame = av.VideoFrame.from_ndarray(render(scene, index), format="bgr24")
            if phase and index == phase:
                frame.pict_type = av.video.frame.PictureType.I
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_clips(out: Path, names: Tuple[str, ...] = tuple(SIZES), phases: int = 1) -> Dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    clips = {}
    for name in names:
        for number in range(max(1, phases)):
            key = name if number == 0 else f"{name}-phase{number}"
            path = out / f"plaza-{key}.mp4"
            if not path.exists():
                width, height, rate = SIZES[name]
                write_clip(path, width, height, rate, phase=number * GOP // phases)
            clips[key] = path
    return clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/va-clips"))
    parser.add_argument("--phases", type=int, default=1, help="copies with keyframes shifted by GOP/K frames")
    args = parser.parse_args()
    for name, path in make_clips(args.out, phases=args.phases).items():
        print(name, path)


if __name__ == "__main__":
    main()
