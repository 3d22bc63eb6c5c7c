"""Clips like a real camera's, for benchmarks: the synthetic plaza scene rendered at 640x360,
1280x720 or 1920x1080, H.264 at 15 FPS, 0.8/3/6 Mbit/s, GOP 30, no B-frames
(edge.device.h264).

Real cameras' keyframes fall at unrelated moments, while N copies of one clip started together
would reach a keyframe at the same instant: `phases` K also writes K - 1 copies whose keyframes
are shifted by GOP/K frames (`plaza-720p-phase1.mp4`, ...), which the streams benchmark hands
out to the cameras in turn (edge.commands.bench_streams.phase_copies).
"""

from pathlib import Path
from typing import Dict, Iterable, Tuple

from edge.device.h264 import write_h264
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
    frames = (render(scene, index) for index in range(int(seconds * FPS)))
    return write_h264(path, frames, width, height, FPS, bit_rate, GOP, keyframe_at=phase)


def make_clips(
    out: Path, names: Iterable[str] = tuple(SIZES), phases: int = 1, seconds: float = 24.0
) -> Dict[str, Path]:
    """`plaza-<name>.mp4` per size (and its phase copies, keyed `<name>-phase<k>`); existing
    files are kept."""
    out.mkdir(parents=True, exist_ok=True)
    clips = {}
    for name in names:
        for number in range(max(1, phases)):
            key = name if number == 0 else f"{name}-phase{number}"
            path = out / f"plaza-{key}.mp4"
            if not path.exists():
                width, height, rate = SIZES[name]
                write_clip(path, width, height, rate, seconds, phase=number * GOP // phases)
            clips[key] = path
    return clips
