"""H.264 files like a camera's stream, for measuring what decoding costs on this device (tier
capacities) and for the dev kit's benchmark clips: PyAV's libx264 (OpenCV's writer has no H.264
encoder in the PyPI wheel, and its mp4v costs less to decode than what cameras send), no
B-frames, a keyframe every `gop` frames.
"""

from pathlib import Path
from typing import Iterable

import av
import numpy as np


def write_h264(
    path: Path,
    frames: Iterable[np.ndarray],
    width: int,
    height: int,
    fps: int,
    bit_rate: int,
    gop: int = 30,
    keyframe_at: int = 0,
) -> Path:
    """BGR `frames` of `width` x `height` as an H.264 file; `keyframe_at` > 0 adds a keyframe at
    that frame, from which the GOP continues."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = bit_rate
        stream.gop_size = gop
        stream.options = {"bf": "0", "preset": "veryfast", "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            if keyframe_at and index == keyframe_at:
                frame.pict_type = av.video.frame.PictureType.I
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
