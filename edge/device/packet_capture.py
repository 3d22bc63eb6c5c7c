"""A capture of files and network streams (RTSP, HTTP) that reads packets before it decodes them,
so a reader can skip whole groups of pictures without decoding them (PyAV: FFmpeg's demuxer and
decoder, the same libraries OpenCV's FFmpeg backend wraps).

OpenCV's `VideoCapture.grab()` decodes every frame it passes: a camera the device cannot keep up
with still costs a full decode per frame, and past what the device can analyse those decodes took
the CPU from inference (12 cameras of 720p: 1.3 cores of decoding on a 2-core machine). Here the
reader sees each compressed packet first: `skip_to_keyframe` drops packets until the next
keyframe (a frame that needs no earlier one), which costs nothing but reading the network or the
file, and decoding resumes there. A live stream is drained all the while, so the reader never
lags behind its camera.

The methods are the subset of `cv2.VideoCapture` the readers use (grab, retrieve, get, set,
release), so the reader's loop is the same for both.
"""

import logging
from typing import Any, Dict, Iterator, Optional, Tuple

import av
import cv2
import numpy as np

from edge.detection.pictures import I420Picture, Image, as_bgr

log = logging.getLogger(__name__)

_NETWORK_OPTIONS = {"rtsp_transport": "tcp"}  # UDP loses packets under load: grey, smeared frames
# FFmpeg's in-loop deblocking filter off (H.264, HEVC): a fifth less decoding CPU per frame
# (720p plaza clip: 5.8 -> 4.6 ms), block edges left in (DecodeConfig.skip_deblocking).
_SKIP_DEBLOCKING = {"skip_loop_filter": "all"}
_TIMEOUT_S = (5.0, 5.0)  # opening, reading


class PacketCapture:
    """One video stream opened with PyAV. Raises OSError (PyAV's errors are OSErrors) or
    ValueError when the source cannot be opened or has no video stream."""

    def __init__(
        self, source: str, decode_threads: int = 1, network: bool = False, skip_deblocking: bool = False
    ) -> None:
        options: Dict[str, str] = dict(_NETWORK_OPTIONS) if network else {}
        self._container: Any = av.open(source, options=options, timeout=_TIMEOUT_S if network else None)
        try:
            if not self._container.streams.video:
                raise ValueError(f"{source}: no video stream")
            self._stream = self._container.streams.video[0]
            if decode_threads > 0:
                self._stream.thread_count = decode_threads
            self._stream.thread_type = "SLICE"  # frame threading adds a frame of latency per thread
            if skip_deblocking:
                self._stream.codec_context.options = dict(_SKIP_DEBLOCKING)
        except BaseException:
            self._container.close()
            raise
        self._packets: Iterator[Any] = self._container.demux(self._stream)
        self._pending: Optional[Any] = None  # a packet read ahead (the keyframe a skip stopped at)
        self._frame: Optional[Any] = None  # the last decoded frame, until retrieved

    def get(self, prop: int) -> float:
        if prop == cv2.CAP_PROP_FPS:
            rate = self._stream.average_rate or self._stream.guessed_rate
            return float(rate) if rate else 0.0
        if prop == cv2.CAP_PROP_FRAME_WIDTH:
            return float(self._stream.codec_context.width)
        if prop == cv2.CAP_PROP_FRAME_HEIGHT:
            return float(self._stream.codec_context.height)
        if prop == cv2.CAP_PROP_FRAME_COUNT:  # as the container states it; 0 when it does not
            return float(self._stream.frames or 0)
        if prop == cv2.CAP_PROP_N_THREADS:
            return float(self._stream.thread_count)
        return 0.0

    def set(self, prop: int, value: float) -> bool:
        """Only a rewind to the start (`CAP_PROP_POS_FRAMES`, 0) is supported: looping files."""
        if prop != cv2.CAP_PROP_POS_FRAMES or value != 0:
            return False
        self._container.seek(0, stream=self._stream)
        self._packets = self._container.demux(self._stream)
        self._pending = None
        self._frame = None
        return True

    def _next_packet(self) -> Optional[Any]:
        if self._pending is not None:
            packet, self._pending = self._pending, None
            return packet
        return next(self._packets, None)

    def grab(self) -> bool:
        """Decode up to the next frame; False at the end of the stream or on a read error."""
        try:
            while True:
                packet = self._next_packet()
                if packet is None:
                    return False
                frames = packet.decode()  # the flush packet at the end yields the last frames
                if frames:
                    self._frame = frames[-1]
                    return True
                if packet.size == 0:
                    return False
        except (OSError, ValueError, av.error.FFmpegError) as exc:
            log.debug("packet capture: %s", exc)
            return False

    def retrieve(self) -> Tuple[bool, Optional[np.ndarray]]:
        """The grabbed frame as BGR."""
        image = self.retrieve_picture()
        return (False, None) if image is None else (True, as_bgr(image))

    def retrieve_picture(self) -> Optional[Image]:
        """The grabbed frame left in the decoder's I420 layout (an `I420Picture`: converted only
        if and when it is analysed), or BGR when its sides are odd or the stream has another
        pixel format (OpenCV converts I420 faster than PyAV's swscale here)."""
        frame, self._frame = self._frame, None
        if frame is None:
            return None
        if frame.format.name != "yuv420p":
            return frame.to_ndarray(format="bgr24")
        planes = frame.to_ndarray()
        if frame.width % 2 or frame.height % 2:
            return cv2.cvtColor(planes, cv2.COLOR_YUV2BGR_I420)
        return I420Picture(planes)

    def read(self) -> Tuple[bool, Optional[np.ndarray]]:
        return self.retrieve() if self.grab() else (False, None)

    def skip_to_keyframe(self) -> int:
        """Drop packets undecoded up to the next keyframe (kept for the next `grab`); the number
        of frames dropped."""
        skipped = 0
        try:
            while True:
                packet = next(self._packets, None)
                if packet is None or packet.size == 0 or packet.is_keyframe:
                    self._pending = packet  # the end of the stream, or where decoding resumes
                    break
                skipped += 1
        except (OSError, ValueError, av.error.FFmpegError) as exc:
            log.debug("packet capture: %s", exc)
        self._frame = None
        return skipped

    def release(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
