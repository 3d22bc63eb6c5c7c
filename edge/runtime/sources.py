"""Frame sources: video files, RTSP, V4L2 and Jetson CSI/GStreamer, each read by its own thread.

A live source keeps only the newest frame (the analysis must never fall behind the camera);
frames replaced before the pipeline took them are counted as drops. A file source either
plays at its native rate (like a camera, same latest-frame rule) or as fast as the consumer
takes frames (no drops: for tests, calibration and benchmarks). Live sources reconnect with
exponential backoff; a one-shot command gets a SourceError instead.

The pipeline depends on the `FrameSource` protocol, not on OpenCV: `SourceReader` implements
it for real sources, and tests feed the pipeline with sources that need no video file.

Decoding is most of a camera's cost, so a reader does as little of it as it can:
- files and network streams are read packet by packet (edge.device.packet_capture, PyAV), so
  when the lanes have not taken any of SHED_AFTER_DROPS due frames in a row (the device is past
  what it can analyse) the reader skips undecoded to the next keyframe instead of decoding frames
  only to drop them; the skipped frames count as shed (and the due ones as dropped);
- it knows the pipeline's pacing (`pace`: one analysed frame per `frame_skip / target_fps`
  seconds) and only `grab()`s the frames in between: the compressed stream must still be decoded
  (H.264 frames depend on each other) but a frame that will not be analysed is never copied
  (`retrieve()`);
- a frame is handed over in the decoder's I420 layout (`edge.detection.pictures`), converted by
  the lane that takes it, straight to the detector's input size, so a frame replaced before a
  lane took it costs no conversion at all;
- a real-time file that fell behind its schedule while the lanes are busy drops the late frames
  before converting them (a newer one is already there), the way a live camera's frames pile up
  while the device is busy;
- the FFmpeg decoder gets `decode_threads` threads (1 by default: frame threading adds a frame of
  latency and a set of buffers per thread, and with several cameras there is no idle core to give);
- a camera may be read from its low-resolution sub-stream (`detect_source`), the way NVRs analyse;
- readers run `decode.nice` below the inference lanes: past what the device can analyse they
  decode with the CPU inference leaves, instead of taking it from frames already decoded.
"""

import itertools
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Deque, Generator, List, Optional, Protocol, Tuple

import cv2
import numpy as np

from edge.config import mask_urls
from edge.core.errors import SourceError
from edge.detection.pictures import Image
from edge.device.packet_capture import PacketCapture

log = logging.getLogger(__name__)

# Due frames lost in a row before a reader skips to the next keyframe. One lost frame is jitter;
# three in a row (the lanes have not taken any of them) is a device past what it can analyse.
SHED_AFTER_DROPS = 3
# Frames a reader that hands over every frame (a file, not in real time) decodes ahead of the
# lanes, so a lane that finishes finds its next frame decoded while another lane still infers
# (one stream as fast as it goes: 52 -> 55 analysed frames/s on 2 lanes).
HANDOVER_DEPTH = 2


@dataclass(frozen=True)
class Frame:
    camera_id: str
    index: int  # frame number in the source since it was opened
    timestamp: float  # UNIX seconds the frame stands for (media time for files)
    image: Image  # BGR uint8, or an I420 picture converted when a consumer asks (as_bgr)
    decode_s: float = 0.0  # time the reader spent decoding it
    read_at: float = 0.0  # time.perf_counter() when the reader started reading it (latency)


@dataclass
class SourceStats:
    frames_read: int = 0  # frames handed to the pipeline (converted)
    frames_dropped: int = 0  # due frames replaced before the pipeline took them, or too late to convert
    frames_skipped: int = 0  # frames grabbed but not converted: not due under the pacing
    frames_shed: int = 0  # frames never decoded: skipped to the next keyframe while the lanes lagged
    reconnects: int = 0
    connected: bool = False
    last_error: str = ""


class FrameSource(Protocol):
    """What the pipeline reads frames from (one camera)."""

    realtime: bool  # keeps only the newest frame (a camera); else hands over every frame
    finished: bool  # a finite source reached its end
    stats: SourceStats
    # Set by the pipeline before `start`: the source sets it on every new frame and at its end.
    frame_ready: Optional[threading.Event]

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def take(self, timeout: float = 0.0) -> Optional[Frame]:
        """The newest frame not yet taken (None when there is none)."""
        ...

    def pace(self, interval_s: float) -> None:
        """Hand over at most one frame per `interval_s` seconds of source time (0: every frame);
        the source may skip the others before decoding them fully."""
        ...


def has_gstreamer() -> bool:
    info = cv2.getBuildInformation()
    for line in info.splitlines():
        if "GStreamer" in line:
            return "YES" in line
    return False


def classify(source: str) -> str:
    """file | rtsp | v4l2 | csi | gstreamer"""
    if source.startswith(("rtsp://", "rtsps://", "http://", "https://")):
        return "rtsp"
    if source.startswith("/dev/video") or source.isdigit():
        return "v4l2"
    if source.startswith("csi://"):
        return "csi"
    if source.startswith("gst:"):
        return "gstreamer"
    return "file"


def csi_pipeline(sensor_id: int, width: int = 1280, height: int = 720, fps: int = 30) -> str:
    """The usual Jetson CSI capture pipeline (nvarguscamerasrc → BGR appsink)."""
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! video/x-raw(memory:NVMM), width={width}, height={height}, "
        f"framerate={fps}/1 ! nvvidconv ! video/x-raw, format=BGRx ! videoconvert ! "
        "video/x-raw, format=BGR ! appsink drop=true max-buffers=1"
    )


class Capture(Protocol):
    """What a reader needs of a capture: `cv2.VideoCapture` (cameras, GStreamer) or
    `PacketCapture` (files, network streams; it can also skip to the next keyframe)."""

    def grab(self) -> bool: ...

    def retrieve(self) -> Tuple[bool, Optional[np.ndarray]]: ...

    def read(self) -> Tuple[bool, Optional[np.ndarray]]: ...

    def get(self, prop: int) -> float: ...

    def set(self, prop: int, value: float) -> bool: ...

    def release(self) -> None: ...


def open_capture(source: str, decode_threads: int = 0, skip_deblocking: bool = False) -> Capture:
    """Open a source; raises SourceError when it cannot be opened. Files and network streams
    are read packet by packet (`PacketCapture`), cameras and GStreamer pipelines by OpenCV.
    `decode_threads`: FFmpeg decoder threads for files and network streams (0: FFmpeg's choice);
    `skip_deblocking`: their decoder leaves out the in-loop deblocking filter."""
    kind = classify(source)
    if kind == "file":
        path = Path(source[len("file://") :] if source.startswith("file://") else source)
        if not path.is_file():
            raise SourceError(f"{path}: no such video file")
        try:
            packets = PacketCapture(str(path), decode_threads, skip_deblocking=skip_deblocking)
        except (OSError, ValueError) as exc:
            raise SourceError(f"{path}: not a readable video ({exc})") from None
        if not packets.grab():
            packets.release()
            raise SourceError(f"{path}: not a readable video (cannot decode a frame)")
        packets.set(cv2.CAP_PROP_POS_FRAMES, 0)
        return packets
    if kind == "rtsp":
        try:
            return PacketCapture(source, decode_threads, network=True, skip_deblocking=skip_deblocking)
        except (OSError, ValueError):
            raise SourceError(f"{redact(source)}: cannot open rtsp source") from None
    if kind in ("csi", "gstreamer"):
        if not has_gstreamer():
            raise SourceError(f"{redact(source)}: this OpenCV has no GStreamer (use the system OpenCV on Jetson)")
        pipeline = csi_pipeline(int(source[len("csi://") :])) if kind == "csi" else source[len("gst:") :]
        capture = cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)
    else:
        device = int(source) if source.isdigit() else int(source[len("/dev/video") :])
        capture = cv2.VideoCapture(device, cv2.CAP_V4L2)
    if not capture.isOpened():
        capture.release()
        raise SourceError(f"{redact(source)}: cannot open {kind} source")
    return capture


def stream_size(source: str, decode_threads: int = 1) -> Optional[Tuple[int, int]]:
    """(width, height) of a source's frames, or None when it cannot be opened now."""
    try:
        capture = open_capture(source, decode_threads)
    except SourceError:
        return None
    try:
        width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        return (width, height) if width > 0 and height > 0 else None
    finally:
        capture.release()


def redact(source: str) -> str:
    """A source without its credentials, for logs and errors."""
    return mask_urls(source)


class SourceReader:
    """Reads one source on its own thread and hands out frames (a `FrameSource`).

    `latest=True`: keep only the newest frame (live cameras, files played in real time).
    `latest=False`: hand over every frame, blocking the reader until it is taken.
    """

    def __init__(
        self,
        camera_id: str,
        source: str,
        realtime: bool = True,
        loop: bool = False,
        clock: Callable[[], float] = time.time,
        max_backoff_s: float = 30.0,
        decode_threads: int = 1,
        nice: int = 0,
        skip_deblocking: bool = False,
    ) -> None:
        self.camera_id = camera_id
        self.source = source
        self.kind = classify(source)
        self.realtime = realtime or self.kind != "file"
        self.loop = loop
        self.stats = SourceStats()
        self.fps = 0.0  # native frame rate, when the source reports one
        self.finished = False  # a file source reached its end (and does not loop)
        self._clock = clock
        self._max_backoff_s = max_backoff_s
        self._decode_threads = decode_threads
        self._skip_deblocking = skip_deblocking
        self._nice = nice
        self._interval_s = 0.0  # pacing set by the pipeline (a float: written and read whole)
        self._last_due: Optional[float] = None  # timestamp of the last frame handed over (reader only)
        self._condition = threading.Condition()
        # Frames handed over and not yet taken: the newest one for a camera, up to
        # HANDOVER_DEPTH in order otherwise (so the reader decodes ahead while the lanes infer).
        self._frames: Deque[Frame] = deque()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._capture: Optional[Capture] = None
        self._drops_in_row = 0  # drops since a lane last took a frame (guarded by _condition)
        # Set by the pipeline: wakes an idle lane when a frame arrives (one event for all cameras).
        self.frame_ready: Optional[threading.Event] = None

    def open(self) -> None:
        """Open now so a bad source fails fast with a SourceError."""
        self._capture = open_capture(self.source, self._decode_threads, self._skip_deblocking)
        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        if not (0 < self.fps < 240):
            self.fps = 25.0
        self.stats.connected = True

    def start(self) -> None:
        if self._capture is None and self.kind == "file":
            self.open()
        self._thread = threading.Thread(target=self._run, name=f"source-{self.camera_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._condition:
            self._condition.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def take(self, timeout: float = 0.0) -> Optional[Frame]:
        """The newest frame not yet taken, waiting up to `timeout` seconds for one."""
        with self._condition:
            if not self._frames and timeout > 0 and not self.finished:
                self._condition.wait(timeout)
            frame = self._frames.popleft() if self._frames else None
            if frame is not None:
                self._drops_in_row = 0
                self._condition.notify_all()
            return frame

    def pace(self, interval_s: float) -> None:
        self._interval_s = max(0.0, interval_s)

    def _due(self, timestamp: float) -> bool:
        """Whether the frame of `timestamp` is worth converting under the current pacing. A
        little slack so a source at exactly the target rate is not skipped by jitter (the
        pipeline applies the same rule to the frames it takes)."""
        if self._last_due is None or self._interval_s <= 0:
            return True
        return timestamp - self._last_due >= self._interval_s * 0.9 or timestamp < self._last_due

    def _publish(self, frame: Frame) -> None:
        with self._condition:
            if not self.realtime:
                while len(self._frames) >= HANDOVER_DEPTH and not self._stop.is_set():
                    self._condition.wait(0.1)
            elif self._frames:
                self._frames.clear()
                self.stats.frames_dropped += 1
                self._drops_in_row += 1
            self._frames.append(frame)
            self.stats.frames_read += 1
            self._condition.notify_all()
        if self.frame_ready is not None:
            self.frame_ready.set()

    def _run(self) -> None:
        lower_thread_priority(self._nice)
        backoff = 1.0
        index = 0
        start = self._clock()
        dropped_late = False
        while not self._stop.is_set():
            if self._capture is None:
                try:
                    self.open()
                    backoff = 1.0
                    log.info("%s: connected to %s", self.camera_id, redact(self.source))
                except SourceError as exc:
                    self.stats.connected = False
                    self.stats.last_error = str(exc)
                    log.warning("%s: %s; retrying in %.0f s", self.camera_id, exc, backoff)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self._max_backoff_s)
                    continue
            assert self._capture is not None
            late = False
            timestamp = self._clock()
            if self.kind == "file":
                timestamp = start + index / self.fps
                if self.realtime:
                    # A camera's frame arrives at its time: wait for it, then decode.
                    delay = timestamp - self._clock()
                    if delay > 0:
                        self._stop.wait(delay)
                    # More than a frame behind: a newer frame is already there.
                    late = delay < -1.0 / self.fps
            decode_start = time.perf_counter()
            if not self._capture.grab():
                if self.kind == "file":
                    if self.loop and index > 0:
                        self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                        continue
                    with self._condition:
                        self.finished = True
                        self._condition.notify_all()
                    if self.frame_ready is not None:
                        self.frame_ready.set()
                    return
                self.stats.connected = False
                self.stats.reconnects += 1
                self.stats.last_error = "read failed"
                log.warning("%s: lost %s; reconnecting", self.camera_id, redact(self.source))
                self._capture.release()
                self._capture = None
                continue
            if self.kind != "file":
                timestamp = self._clock()
            index += 1
            if not self._due(timestamp):
                with self._condition:
                    self.stats.frames_skipped += 1
                continue
            if late and not dropped_late:
                # Behind, and the lanes have not taken the last frame yet (they are busy): this
                # frame would be replaced by the next one before it is taken, so it is dropped
                # before being converted. Never two in a row, so the frame handed over stays
                # at most a frame old; a lane that is waiting gets every frame.
                with self._condition:
                    dropped_late = bool(self._frames)
                    if dropped_late:
                        self.stats.frames_dropped += 1
                        self._drops_in_row += 1
                if dropped_late:
                    index += self._shed_if_overloaded()
                    continue
            dropped_late = False
            image = retrieve_image(self._capture)
            if image is None:
                continue
            self._last_due = timestamp
            decode_s = time.perf_counter() - decode_start
            self._publish(Frame(self.camera_id, index - 1, timestamp, image, decode_s, decode_start))
            index += self._shed_if_overloaded()

    def _shed_if_overloaded(self) -> int:
        """After SHED_AFTER_DROPS due frames in a row were lost (no lane has taken one
        meanwhile), skip undecoded to the next keyframe when the capture can: the frames up to it
        would be decoded only to be dropped. Returns the frames skipped (counted as shed, and the
        due ones among them as dropped)."""
        skip = getattr(self._capture, "skip_to_keyframe", None)
        with self._condition:
            if skip is None or self._drops_in_row < SHED_AFTER_DROPS:
                return 0
        skipped = int(skip())
        due_share = 1.0 if self._interval_s <= 0 else min(1.0, 1.0 / (self.fps * self._interval_s))
        with self._condition:
            self.stats.frames_shed += skipped
            self.stats.frames_dropped += int(round(skipped * due_share))
            self._drops_in_row = 0
        return skipped


def retrieve_image(capture: Capture) -> Optional[Image]:
    """The grabbed frame: kept undecoded to BGR when the capture can (`PacketCapture`), so only
    the frames the lanes take are ever converted, and straight to the detector's input size."""
    if isinstance(capture, PacketCapture):
        return capture.retrieve_picture()
    ok, image = capture.retrieve()
    return image if ok else None


def lower_thread_priority(increment: int) -> None:
    """Make the calling thread (and the decoder threads it starts) `increment` nicer. Linux
    schedules threads one by one, so this leaves the process's other threads as they are."""
    if increment <= 0 or not hasattr(os, "setpriority"):
        return
    thread = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + increment))
    except OSError as exc:
        log.info("reader priority unchanged: %s", exc)


def frames_of(capture: Capture) -> Generator[np.ndarray, None, None]:
    """The frames of an opened capture until it ends; the capture is released after."""
    try:
        ok, image = capture.read()
        while ok and image is not None:
            yield image
            ok, image = capture.read()
    finally:
        capture.release()


def read_all_frames(path: str, limit: Optional[int] = None) -> List[np.ndarray]:
    """Every frame of a video file (one-shot commands); SourceError when it cannot be read."""
    frames = frames_of(open_capture(path))
    try:
        return list(itertools.islice(frames, limit))
    finally:
        frames.close()
