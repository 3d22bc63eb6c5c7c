"""Frame sources against real files and a refused RTSP port."""

import time
from pathlib import Path
from typing import Callable

import cv2
import pytest

from edge.core.errors import SourceError
from edge.devkit.synthetic import Scene, Walker, Waypoint, write_scene
from edge.runtime.sources import SourceReader, classify, open_capture, redact, stream_size


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scene = Scene("clip", 160, 96, 20.0, 2.0, (Walker(1, 0, 0.5, (Waypoint(0, 0.1, 0.9), Waypoint(2, 0.9, 0.9))),))
    return write_scene(scene, tmp_path_factory.mktemp("clip"))


def test_classify() -> None:
    assert classify("rtsp://u:p@cam/1") == "rtsp"
    assert classify("/dev/video0") == "v4l2"
    assert classify("csi://0") == "csi"
    assert classify("gst:videotestsrc ! appsink") == "gstreamer"
    assert classify("/data/a.mp4") == "file"
    assert redact("rtsp://admin:hunter2@10.0.0.5/s") == "rtsp://admin:***@10.0.0.5/s"


def test_file_as_fast_as_possible_delivers_every_frame(video: Path) -> None:
    reader = SourceReader("cam", str(video), realtime=False)
    reader.start()
    frames = []
    while True:
        frame = reader.take(timeout=1.0)
        if frame is None and reader.finished:
            break
        if frame is not None:
            frames.append(frame)
    reader.stop()
    assert [f.index for f in frames] == list(range(40))
    assert reader.stats.frames_dropped == 0
    # Media time: 20 fps → 50 ms apart, whatever the decode speed.
    assert frames[1].timestamp - frames[0].timestamp == pytest.approx(0.05)


@pytest.mark.slow
def test_realtime_file_keeps_latest_and_counts_drops(video: Path) -> None:
    reader = SourceReader("cam", str(video), realtime=True)
    reader.start()
    taken = []
    while not reader.finished:
        time.sleep(0.3)  # a slow consumer: frames pile up and only the newest is kept
        frame = reader.take()
        if frame is not None:
            taken.append(frame.index)
    reader.stop()
    # A consumer this slow loses three frames in a row: the reader then skips undecoded to the
    # next keyframe (every 12th frame of this clip) instead of decoding frames to drop them.
    assert reader.stats.frames_shed > 0
    assert 38 <= reader.stats.frames_read + reader.stats.frames_shed <= 40
    assert reader.stats.frames_dropped >= 40 - len(taken) - 1 > 0
    assert taken == sorted(taken)


def test_missing_and_non_video_files(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such video file"):
        open_capture(str(tmp_path / "nope.mp4"))
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n" * 100)
    with pytest.raises(SourceError, match="not a readable video"):
        open_capture(str(fake))


def test_unreachable_rtsp_is_a_source_error() -> None:
    with pytest.raises(SourceError, match="cannot open rtsp source"):
        open_capture("rtsp://user:pw@127.0.0.1:9/stream")


def test_frames_not_due_are_grabbed_but_never_converted(video: Path) -> None:
    # 20 fps file paced to 10 fps: every other frame is skipped by the reader before retrieve().
    reader = SourceReader("cam", str(video), realtime=False)
    reader.pace(0.1)
    reader.start()
    frames = []
    while True:
        frame = reader.take(timeout=1.0)
        if frame is None and reader.finished:
            break
        if frame is not None:
            frames.append(frame)
    reader.stop()
    assert [f.index for f in frames] == list(range(0, 40, 2))
    assert reader.stats.frames_read == 20 and reader.stats.frames_skipped == 20
    assert reader.stats.frames_dropped == 0
    assert all(f.read_at > 0 and f.decode_s > 0 for f in frames)


def always_behind_clock() -> Callable[[], float]:
    """A clock that runs three frames (0.15 s) per reading: the reader is always behind."""
    now = [0.0]

    def clock() -> float:
        now[0] += 0.15
        return now[0]

    return clock


def test_a_realtime_file_that_falls_behind_drops_late_frames_before_converting(video: Path) -> None:
    # With no consumer taking frames, late frames are dropped without being converted, never two
    # in a row (the frame waiting to be taken stays at most a frame old), until three were lost
    # in a row: then the reader skips to the next keyframe.
    reader = SourceReader("cam", str(video), realtime=True, clock=always_behind_clock())
    reader.start()
    while not reader.finished:
        time.sleep(0.05)
    reader.stop()
    # Dropped, never two in a row, then skipped to the next keyframe after three lost in a row.
    stats = reader.stats
    assert stats.frames_shed > 0 and stats.frames_read < 20
    assert stats.frames_dropped == 40 - 1  # all but the last converted one, each counted once


def test_a_lagging_worker_makes_the_reader_skip_to_keyframes_undecoded(video: Path) -> None:
    # No consumer: after three due frames lost in a row the reader drops packets undecoded up to
    # the next keyframe (0, 12, 24, 36 in this clip), so only frames at or just after a keyframe
    # are ever decoded, and every frame is accounted for.
    reader = SourceReader("cam", str(video), realtime=True)
    decoded = []
    reader.frame_ready = None
    original = reader._publish

    def publish(frame):
        decoded.append(frame.index)
        original(frame)

    reader._publish = publish  # type: ignore[method-assign]
    reader.start()
    while not reader.finished:
        time.sleep(0.05)
    reader.stop()
    assert decoded[:4] == [0, 1, 2, 3] and 12 in decoded
    assert all(index % 12 <= 3 for index in decoded)
    stats = reader.stats
    assert stats.frames_shed >= 24 and stats.frames_read + stats.frames_shed == 40
    assert stats.frames_dropped == stats.frames_read - 1 + stats.frames_shed  # replaced untaken, and shed


def test_late_frames_with_a_consumer_are_each_taken_or_counted_as_dropped(video: Path) -> None:
    reader = SourceReader("cam", str(video), realtime=True, clock=always_behind_clock())
    reader.start()
    taken = []
    while not reader.finished:
        frame = reader.take(timeout=0.5)
        if frame is not None:
            taken.append(frame.index)
    frame = reader.take()
    if frame is not None:
        taken.append(frame.index)
    reader.stop()
    # Whether a late frame is converted depends on whether the consumer has taken the last
    # one yet (thread timing); either way no frame goes unaccounted.
    assert len(taken) + reader.stats.frames_dropped == 40
    assert taken == sorted(taken) and taken


def test_decode_threads_and_stream_size(video: Path) -> None:
    capture = open_capture(str(video), decode_threads=1)
    assert capture.get(cv2.CAP_PROP_N_THREADS) == 1
    capture.release()
    assert stream_size(str(video)) == (160, 96)
    assert stream_size("/nonexistent/clip.mp4") is None


def test_a_network_stream_is_read_packet_by_packet(tmp_path: Path) -> None:
    # An H.264 MPEG-TS stream over HTTP (the network path RTSP cameras take: PacketCapture with
    # FFmpeg's network options), served by a real HTTP server on loopback.
    import functools
    import http.server
    import threading

    import av
    import numpy as np

    clip = tmp_path / "live.ts"
    with av.open(str(clip), "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        for index in range(30):
            image = np.full((96, 160, 3), index * 8, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/live.ts"
    try:
        assert stream_size(url) == (160, 96)
        reader = SourceReader("cam", url, max_backoff_s=0.5)
        reader.open()
        reader.start()
        frame = reader.take(timeout=5.0)
        reader.stop()
    finally:
        server.shutdown()
        server.server_close()
    assert frame is not None and frame.image.shape == (96, 160, 3)
    assert reader.stats.frames_read >= 1


def test_skip_deblocking_reaches_the_h264_decoder(tmp_path: Path) -> None:
    # A low-bitrate H.264 clip of a moving smooth pattern: its decoder's deblocking filter
    # smooths the block edges coarse quantisation leaves, so the same frames decoded without it
    # differ (and are as many).
    import numpy as np

    from edge.detection.pictures import as_bgr
    from edge.device.h264 import write_h264
    from edge.runtime.sources import retrieve_image

    rows, columns = np.mgrid[0:144, 0:256]
    texture = np.dstack([(128 + 100 * np.sin(columns / 9.0) * np.cos(rows / 7.0)).astype(np.uint8)] * 3)
    frames = [np.roll(texture, 4 * index, axis=1) for index in range(10)]
    clip = write_h264(tmp_path / "texture.mp4", frames, 256, 144, 10, bit_rate=60_000, gop=10)

    def decoded(skip: bool) -> "list[np.ndarray]":
        capture = open_capture(str(clip), decode_threads=1, skip_deblocking=skip)
        images = []
        while capture.grab():
            image = retrieve_image(capture)
            assert image is not None
            images.append(as_bgr(image).astype(np.int16))
        capture.release()
        return images

    deblocked, blocky = decoded(False), decoded(True)
    assert len(deblocked) == len(blocky) == 10
    assert all(np.abs(a - b).mean() > 0.5 for a, b in zip(deblocked, blocky))

    # Deblocking smooths the 8-pixel block edges: without it they stand out more.
    def edge_step(image: np.ndarray) -> float:
        columns = np.abs(np.diff(image.mean(axis=2), axis=1))
        return float(columns[:, 7::8].mean() / columns.mean())

    assert np.mean([edge_step(b) for b in blocky]) > np.mean([edge_step(d) for d in deblocked])
