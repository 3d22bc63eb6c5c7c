"""Test clips like a real camera's: the synthetic plaza scene rendered at 1280x720 (and 1920x1080,
640x360 for sub-streams), H.264 at 15 FPS, 3 Mbit/s (1080p: 6, 360p: 0.8), GOP 30, no B-frames,
encoded with PyAV's libx264 (OpenCV's writer has no H.264 encoder in the PyPI wheel).

    python benchmarks/clips.py --out /tmp/clips   # writes plaza-720p.mp4, plaza-1080p.mp4, plaza-360p.mp4
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


def write_clip(path: Path, width: int, height: int, bit_rate: int, seconds: float = 24.0) -> Path:
    scene = standard_scenes(width, height, FPS)[1]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = bit_rate
        stream.gop_size = 30
        stream.options = {"bf": "0", "preset": "veryfast", "x264-params": "keyint=30:min-keyint=30:scenecut=0"}
        for index in range(int(seconds * FPS)):
            frame = av.VideoFrame.from_ndarray(render(scene, index), format="bgr24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_clips(out: Path, names: Tuple[str, ...] = tuple(SIZES)) -> Dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    clips = {}
    for name in names:
        path = out / f"plaza-{name}.mp4"
        if not path.exists():
            width, height, rate = SIZES[name]
            write_clip(path, width, height, rate)
        clips[name] = path
    return clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/va-clips"))
    args = parser.parse_args()
    for name, path in make_clips(args.out).items():
        print(name, path)


if __name__ == "__main__":
    main()
