"""Synthetic scenes: deterministic pixels, and ground truth that follows the paths."""

from pathlib import Path

import numpy as np

from edge.devkit.synthetic import (
    Scene,
    SceneLine,
    SceneZone,
    Walker,
    Waypoint,
    ground_truth,
    render,
    side_of_line,
    standard_scenes,
    write_scene,
)
from edge.runtime.sources import read_all_frames


def _scene(*walkers: Walker) -> Scene:
    return Scene(
        name="t",
        width=320,
        height=180,
        fps=10,
        duration_s=6,
        walkers=walkers,
        lines=(SceneLine("door", ((0.5, 0.0), (0.5, 1.0))),),
        zones=(SceneZone("z", ((0.6, 0.0), (1.0, 0.0), (1.0, 1.0), (0.6, 1.0))),),
    )


def test_render_is_deterministic() -> None:
    scene = standard_scenes()[0]
    assert np.array_equal(render(scene, 42), render(scene, 42))
    assert not np.array_equal(render(scene, 42), render(scene, 43))


def test_side_convention_in_image_coordinates() -> None:
    line = ((0.5, 0.0), (0.5, 1.0))  # pointing down the image: its right side is the image's left
    assert side_of_line(line, (0.2, 0.5)) > 0
    assert side_of_line(line, (0.8, 0.5)) < 0


def test_crossings_and_zone_entries_follow_the_paths() -> None:
    walks = (
        Walker(1, 0, 0.4, (Waypoint(0, 0.9, 0.8), Waypoint(4, 0.1, 0.8))),  # right→left: 'in'
        Walker(
            2, 1, 0.4, (Waypoint(0, 0.1, 0.6), Waypoint(2, 0.45, 0.6), Waypoint(4, 0.1, 0.6))
        ),  # turns back
        Walker(
            3, 2, 0.4, (Waypoint(1, 0.1, 0.9), Waypoint(3, 0.5, 0.9), Waypoint(5, 0.9, 0.9))
        ),  # stops on it
    )
    truth = ground_truth(_scene(*walks))
    assert [(c.person_id, c.direction) for c in truth.crossings] == [(1, "in"), (3, "out")]
    assert truth.zone_entries == {"z": 2}
    assert truth.line_counts() == {"door": {"in": 1, "out": 1}}


def test_truth_boxes_match_what_is_drawn(tmp_path: Path) -> None:
    scene = standard_scenes()[0]
    truth = ground_truth(scene)
    frame_index = 50
    box = truth.boxes[frame_index][0].box
    image = render(scene, frame_index)
    x1, y1, x2, y2 = (int(v) for v in box)
    inside = image[y1 + 5 : y2 - 5, x1 + 5 : x2 - 5].astype(float)
    background = render(Scene(scene.name, scene.width, scene.height, scene.fps, 1, (), seed=scene.seed), 0)
    outside = background[y1 + 5 : y2 - 5, x1 + 5 : x2 - 5].astype(float)
    assert np.abs(inside - outside).mean() > 20  # a person is pasted where the truth says


def test_written_video_reads_back(tmp_path: Path) -> None:
    scene = _scene(Walker(1, 0, 0.5, (Waypoint(0, 0.1, 0.9), Waypoint(6, 0.9, 0.9))))
    video = write_scene(scene, tmp_path)
    frames = read_all_frames(str(video))
    assert len(frames) == scene.frame_count
    assert frames[0].shape == (180, 320, 3)
    assert (tmp_path / "t.truth.json").is_file()
