"""The pipeline with four cameras (four real-time file sources) on the real default detector."""

import time
from pathlib import Path

import pytest

from edge.commands.cli import main
from edge.config import parse_config
from edge.core.tiers import Tier
from edge.detection.factory import load_tier_detector
from edge.devkit.synthetic import standard_scenes, write_scene
from edge.runtime.analysis import CameraAnalysis
from edge.runtime.pipeline import Pipeline, WindowStatus
from edge.runtime.sources import SourceReader


@pytest.mark.slow
def test_four_cameras_at_target_rate_or_drops_reported(tmp_path: Path) -> None:
    scenes = standard_scenes()
    videos = [write_scene(scene, tmp_path) for scene in scenes]
    cameras = [{"id": f"cam{i}", "source": str(videos[i % 2]), "target_fps": 5.0} for i in range(4)]
    config = parse_config({"cameras": cameras})
    tier = Tier(0, "ssdlite-mobilenetv2-pedestrian", "int8", "onnxruntime", 300, 1)
    detector = load_tier_detector(config, tier, max_batch=4)
    wiring = [
        (camera, SourceReader(camera.id, camera.source, realtime=True), CameraAnalysis(config, camera, []))
        for camera in config.cameras
    ]
    pipeline = Pipeline(wiring, detector, frame_skip=1)
    pipeline.start()
    seconds = 6.0
    time.sleep(seconds)
    stats = pipeline.stats()
    pipeline.stop()
    assert pipeline.error is None
    for camera in stats:
        expected = seconds * 5.0
        kept_up = camera.processed >= 0.8 * expected
        # Every camera is analysed at its target rate (10 fps files, one frame in two), or the
        # frames it could not take are reported as drops.
        assert kept_up or camera.dropped > 0, camera
        assert camera.skipped > 0  # the 10 fps source is paced down to the 5 fps target


def test_detect_on_an_unreachable_rtsp_camera_exits_4(capsys: pytest.CaptureFixture) -> None:
    assert main(["detect", "rtsp://127.0.0.1:9/stream"]) == 4
    err = capsys.readouterr().err.strip()
    assert err == "video-analysis: error: rtsp://127.0.0.1:9/stream: cannot open rtsp source"


class _BrokenAnalyser:
    def update(self, frame, detections, seconds) -> None:
        raise ValueError("analytics bug")

    def poll(self, now: float, status: WindowStatus, final: bool = False) -> None:
        pass


@pytest.mark.slow
def test_an_analysis_failure_stops_the_pipeline_with_the_error(tmp_path: Path) -> None:
    scene = standard_scenes()[0]
    video = write_scene(scene, tmp_path)
    config = parse_config({"cameras": [{"id": "c", "source": str(video), "realtime": False}]})
    camera = config.cameras[0]
    tier = Tier(0, "ssdlite-mobilenetv2-pedestrian", "int8", "onnxruntime", 300, 1)
    reader = SourceReader(camera.id, camera.source, realtime=False)
    pipeline = Pipeline([(camera, reader, _BrokenAnalyser())], load_tier_detector(config, tier, 1))
    pipeline.start()
    assert pipeline.join(timeout=60), "the worker hung on a dead analysis thread"
    pipeline.stop()
    assert isinstance(pipeline.error, ValueError)
