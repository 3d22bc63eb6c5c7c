"""Frame sources against real files and a refused RTSP port."""

import time
from pathlib import Path

import pytest

from edge.core.errors import SourceError
from edge.devkit.synthetic import Scene, Walker, Waypoint, write_scene
from edge.runtime.sources import SourceReader, classify, open_capture, redact


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scene = Scene(
        "clip", 160, 96, 20.0, 2.0, (Walker(1, 0, 0.5, (Waypoint(0, 0.1, 0.9), Waypoint(2, 0.9, 0.9))),)
    )
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
    assert reader.stats.frames_read == 40
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
