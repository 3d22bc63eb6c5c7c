"""Counting accuracy end to end: synthetic scenes with known crossings → real video files →
the real default detector (INT8, ONNX Runtime) → ByteTrack → analytics, through the pipeline."""

import time
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from edge.commands.demo_totals import CameraTotals, WindowTotals
from edge.config import Config, parse_config
from edge.core.tiers import Tier
from edge.detection.factory import load_tier_detector
from edge.devkit.synthetic import Scene, ground_truth, standard_scenes, write_scene
from edge.runtime.analysis import CameraAnalysis, ClosedWindow
from edge.runtime.pipeline import Pipeline
from edge.runtime.sources import SourceReader

pytestmark = pytest.mark.slow  # integration: more than a few seconds


def _camera_config(scene: Scene, video: Path, camera_id: str) -> Dict[str, object]:
    return {
        "id": camera_id,
        "source": str(video),
        "target_fps": scene.fps,
        "realtime": False,
        "lines": [{"id": line.id, "points": [list(p) for p in line.points]} for line in scene.lines],
        "zones": [{"id": zone.id, "polygon": [list(p) for p in zone.polygon]} for zone in scene.zones],
    }


def run_scenes(
    tmp_path: Path, frame_skip: int, precision: str = "int8"
) -> Tuple[Config, Dict[str, CameraTotals]]:
    scenes = standard_scenes()
    cameras = [_camera_config(s, write_scene(s, tmp_path), f"cam{i}") for i, s in enumerate(scenes)]
    config = parse_config({"cameras": cameras, "state_dir": str(tmp_path / "state")})
    tier = Tier(0, "ssdlite-mobilenetv2-pedestrian", precision, "onnxruntime", 300, frame_skip)
    detector = load_tier_detector(config, tier, max_batch=2)
    totals = WindowTotals()
    wiring = []
    for camera in config.cameras:
        analysis = CameraAnalysis(config, camera, sinks=[totals])
        wiring.append((camera, SourceReader(camera.id, camera.source, realtime=False), analysis))
    pipeline = Pipeline(wiring, detector, frame_skip=frame_skip)
    pipeline.start()
    assert pipeline.join(timeout=300), "pipeline did not finish"
    pipeline.stop()
    assert pipeline.error is None
    return config, {camera.id: totals.camera(camera.id) for camera in config.cameras}


@pytest.fixture(scope="module")
def skip1(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, CameraTotals]:
    return run_scenes(tmp_path_factory.mktemp("skip1"), frame_skip=1)[1]


@pytest.fixture(scope="module")
def skip3(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, CameraTotals]:
    return run_scenes(tmp_path_factory.mktemp("skip3"), frame_skip=3)[1]


@pytest.mark.parametrize("fixture", ["skip1", "skip3"])
def test_line_counts_exact_and_zone_entries_within_one(fixture: str, request: pytest.FixtureRequest) -> None:
    analyses = request.getfixturevalue(fixture)
    for index, scene in enumerate(standard_scenes()):
        truth = ground_truth(scene)
        totals = analyses[f"cam{index}"]
        assert totals.line_counts() == truth.line_counts(), scene.name
        for zone_id, expected in truth.zone_entries.items():
            assert abs(totals.zone_entries.get(zone_id, 0) - expected) <= 1, (scene.name, zone_id)


def test_every_frame_of_a_fast_file_is_analysed_once(skip1: Dict[str, CameraTotals]) -> None:
    for index, scene in enumerate(standard_scenes()):
        frames = skip1[f"cam{index}"].frames
        assert frames == scene.frame_count


def test_tier_switch_mid_scene_keeps_tracks_and_windows(tmp_path: Path) -> None:
    """A tier change (another detector, another frame-skip) halfway through a scene loses no
    counting window and no crossing: tracker and analytics stay with the camera."""
    scene = standard_scenes()[1]
    video = write_scene(scene, tmp_path)
    config = parse_config({"cameras": [_camera_config(scene, video, "cam")], "state_dir": str(tmp_path / "s")})
    camera = config.cameras[0]
    best = Tier(0, "ssdlite-mobilenetv2-pedestrian", "int8", "onnxruntime", 300, 1)
    lower = Tier(1, "ssdlite-mobilenetv2-pedestrian", "int8", "onnxruntime", 256, 2)
    closed: List[ClosedWindow] = []
    totals = WindowTotals()
    analysis = CameraAnalysis(config, camera, sinks=[closed.append, totals])
    reader = SourceReader(camera.id, camera.source, realtime=False)
    pipeline = Pipeline([(camera, reader, analysis)], load_tier_detector(config, best, 1), frame_skip=1)
    trackers_before = id(analysis.tracker)
    pipeline.start()
    while pipeline.stats()[0].processed < scene.frame_count // 3:
        time.sleep(0.01)
    pipeline.apply_tier(load_tier_detector(config, lower, 1), lower.frame_skip, lower.name)
    assert pipeline.join(timeout=120)
    pipeline.stop()
    assert pipeline.error is None
    assert id(analysis.tracker) == trackers_before
    assert totals.camera(camera.id).line_counts() == ground_truth(scene).line_counts()
    windows = [c.window for c in closed if c.kind == "counts"]
    assert all(a[1] == b[0] for a, b in zip(windows, windows[1:]))  # contiguous: none lost
    processed = totals.camera(camera.id).frames
    assert scene.frame_count // 2 < processed < scene.frame_count  # frame-skip 2 after the switch
