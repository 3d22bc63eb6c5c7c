"""`video-analysis bench`: the streams search, the pipeline measurement honouring frame-skip
(covered FPS measured, not computed), and the report files."""

import json
from pathlib import Path
from typing import List

import pytest

from edge.commands.bench import measure_pipeline, plot, run_benchmark, to_markdown
from edge.commands.bench_streams import StreamsResult, sustained_streams
from edge.config import parse_config
from edge.core.tiers import Tier
from edge.devkit.synthetic import Scene, Walker, Waypoint, write_scene

SSD = "ssdlite-mobilenetv2-pedestrian"


def _result(cameras: int, drops: float, fps: float = 15.0) -> StreamsResult:
    return StreamsResult(cameras, False, "t", 10.0, 15.0, fps * cameras, fps, drops, 50.0, 200.0, {})


def test_the_streams_search_finds_the_most_cameras_held_at_target() -> None:
    capacity = 5  # cameras this fake device holds with < 1 % drops
    measured: List[int] = []

    def measure(n: int) -> StreamsResult:
        measured.append(n)
        return _result(n, 0.0 if n <= capacity else 12.0, 15.0 if n <= capacity else 12.0)

    assert sustained_streams(measure, 3, 16, lambda _: None)[0] == 5
    assert measured == [3, 4, 5, 6]
    measured.clear()
    best, runs = sustained_streams(measure, 8, 16, lambda _: None)
    assert best == 5 and measured == [8, 7, 6, 5]
    assert [r.cameras for r in runs] == [5, 6, 7, 8]


def test_a_configuration_with_drops_or_under_target_is_not_sustained() -> None:
    assert _result(4, 0.0).sustained
    assert not _result(4, 1.5).sustained
    assert not _result(4, 0.0, fps=13.0).sustained
    assert sustained_streams(lambda n: _result(n, 5.0), 2, 8, lambda _: None)[0] == 0


def test_under_the_adaptive_policy_coverage_counts_frame_skip_and_a_tier_change_is_not_steady() -> None:
    # Five analysed frames a second at frame-skip 3 cover a 15 FPS camera; skipping is intended.
    held = StreamsResult(6, False, "t", 10.0, 15.0, 30.0, 5.0, 0.0, 150.0, 240.0, {}, frame_skip=3, adaptive=True)
    assert held.covered_fps_per_camera == 15.0 and held.sustained
    assert not StreamsResult(6, False, "t", 10.0, 15.0, 30.0, 5.0, 0.0, 150.0, 240.0, {}, frame_skip=2).sustained
    stepping = StreamsResult(
        6, False, "t", 10.0, 15.0, 30.0, 5.0, 0.0, 150.0, 240.0, {}, frame_skip=3, adaptive=True, tier_changes=1
    )
    assert not stepping.sustained


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scene = Scene("clip", 320, 180, 15.0, 3.0, (Walker(1, 0, 0.5, (Waypoint(0, 0.1, 0.9), Waypoint(3, 0.9, 0.9))),))
    return write_scene(scene, tmp_path_factory.mktemp("clip"))


@pytest.mark.slow
def test_measure_pipeline_applies_the_tiers_frame_skip_and_measures_coverage(clip: Path, tmp_path: Path) -> None:
    config = parse_config({"state_dir": str(tmp_path)})
    tier = Tier(0, SSD, "fp32", "onnxruntime", 224, 3)
    analysed, covered = measure_pipeline(config, tier, clip, 1.0)
    # The reader skips two frames in three before converting them: coverage is measured from
    # the frames consumed, and is about three times the analysed rate.
    assert analysed > 0
    assert 2.5 * analysed <= covered <= 3.5 * analysed


@pytest.mark.slow
def test_bench_writes_json_markdown_and_plot(clip: Path, tmp_path: Path) -> None:
    tier = {"model": SSD, "precision": "fp32", "input": 224}
    config = parse_config({"state_dir": str(tmp_path), "policy": {"tiers": {"x86-cpu": [tier]}}})
    messages: List[str] = []
    report = run_benchmark(
        config,
        0.2,
        rounds=1,
        clips={"360p": clip, "720p": clip, "1080p": clip},
        streams=False,
        progress=messages.append,
    )
    assert [b["batch"] for b in report["batches"]] == [1, 2, 4, 8]
    assert [p["precision"] for p in report["precision"]] == ["int8", "fp32"]
    assert report["versions"]["onnxruntime"] and report["tiers"][0]["covered_fps"] > 0
    assert any("round 1/1" in m for m in messages)
    markdown = to_markdown(json.loads(json.dumps(report)))
    assert "| batch |" in markdown and "## Precision" in markdown
    plot(report, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").stat().st_size > 1000


def test_phase_copies_shift_the_keyframes_and_the_streams_benchmark_hands_them_out(tmp_path: Path) -> None:
    import av

    from edge.commands.bench_streams import phase_copies, streams_config
    from edge.devkit.clips import make_clips

    clips = make_clips(tmp_path, ["360p"], phases=2, seconds=3.0)
    assert set(clips) == {"360p", "360p-phase1"}

    def keyframes(path: Path) -> List[int]:
        with av.open(str(path)) as container:
            return [i for i, packet in enumerate(container.demux(video=0)) if packet.is_keyframe]

    assert keyframes(clips["360p"]) == [0, 30]
    assert keyframes(clips["360p-phase1"]) == [0, 15]
    assert phase_copies(clips["360p"]) == [clips["360p"], clips["360p-phase1"]]
    config = streams_config(clips["360p"], 3, tmp_path / "state", tier=0)
    assert [c.source for c in config.cameras] == [str(clips["360p"]), str(clips["360p-phase1"]), str(clips["360p"])]
