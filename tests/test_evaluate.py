"""`video-analysis evaluate` and its MOT helpers, on small synthetic MOT files: a generated scene
(real video, real detector) with its exact ground truth written in MOT format, and hand-made
boxes for the matching rules. The real scene (PETS09) is a benchmark, not a test."""

import json
from pathlib import Path

import numpy as np
import pytest

from edge.commands.cli import main
from edge.core.analytics import LineSpec
from edge.devkit.mot import FrameTruth, GroundTruth, match_frame, read_mot, true_crossings
from edge.devkit.synthetic import ground_truth, standard_scenes, write_scene


def write_mot(path: Path, rows) -> Path:
    path.write_text("".join(",".join(str(v) for v in row) + "\n" for row in rows))
    return path


def test_read_mot_is_one_based_and_keeps_the_ignore_flag(tmp_path):
    rows = [(1, 7, 10, 20, 30, 60, 1, -1, -1, -1), (3, 8, 0, 0, 5, 5, 0, -1, -1, -1)]
    gt = read_mot(write_mot(tmp_path / "gt.txt", rows))
    assert gt.last_frame == 2
    np.testing.assert_allclose(gt.at(0).boxes, [[10, 20, 40, 80]])
    assert gt.at(0).ids.tolist() == [7] and gt.at(0).people() == 1
    assert gt.at(2).counted.tolist() == [False] and gt.at(2).people() == 0
    assert len(gt.at(1).ids) == 0
    assert gt.identities() == 1


@pytest.mark.parametrize(
    "line, message",
    [
        ("1,2,3", "gt.txt:2: expected frame,id"),
        ("0,1,0,0,5,5,1", "gt.txt:2: frame 0"),
        ("1,1,0,0,-5,5,1", "gt.txt:2: box"),
    ],
)
def test_bad_ground_truth_exits_2_naming_file_and_line(tmp_path, capsys, line, message):
    gt = tmp_path / "gt.txt"
    gt.write_text("1,1,0,0,5,5,1\n" + line + "\n")
    video = tmp_path / "v.avi"
    video.write_bytes(b"")
    assert main(["evaluate", str(video), "--gt", str(gt)]) == 2
    assert message in capsys.readouterr().err


def test_missing_video_exits_4(tmp_path, capsys):
    gt = write_mot(tmp_path / "gt.txt", [(1, 1, 0, 0, 5, 5, 1)])
    assert main(["evaluate", str(tmp_path / "none.avi"), "--gt", str(gt)]) == 4
    assert "none.avi: no such video file" in capsys.readouterr().err


def test_bad_line_exits_2(tmp_path, capsys):
    gt = write_mot(tmp_path / "gt.txt", [(1, 1, 0, 0, 5, 5, 1)])
    assert main(["evaluate", "v.avi", "--gt", str(gt), "--line", "door:0.5,0.1,0.5"]) == 2
    assert "--line 'door:0.5,0.1,0.5'" in capsys.readouterr().err


def test_matching_is_one_to_one_and_ignored_boxes_are_neither_hit_nor_false_positive():
    truth = FrameTruth(
        ids=np.array([1, 2, 3]),
        boxes=np.array([[0, 0, 10, 20], [30, 0, 40, 20], [100, 100, 110, 120]], float),
        counted=np.array([True, True, False]),
    )
    detections = np.array([[0, 0, 10, 20], [1, 0, 11, 20], [100, 100, 110, 121], [60, 60, 70, 80]], float)
    match = match_frame(detections, truth, 0.5)
    assert match.true_positives == 1  # two detections on person 1: one matches, one is a false positive
    assert match.misses == 1  # person 2
    assert match.ignored == [2]  # on the ignored box
    assert match.false_positives == 2


def test_true_crossings_use_the_products_line_rule():
    # One person walks left to right across a vertical line, one turns back before it.
    frames = {}
    for i, x in enumerate(np.linspace(10, 90, 9)):
        back = 10 + 35 - abs(35 - 10 * i) * 1.0
        frames[i] = FrameTruth(
            ids=np.array([1, 2]),
            boxes=np.array([[x - 5, 10, x + 5, 50], [back - 5, 60, back + 5, 99]], float),
            counted=np.array([True, True]),
        )
    gt = GroundTruth(frames, 8)
    line = LineSpec("door", (0.5, 0.0), (0.5, 1.0))
    crossings = true_crossings(gt, [line], (100, 100), 0.02)
    assert (crossings["door"].count_in, crossings["door"].count_out) == (0, 1)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    scene = standard_scenes()[0]
    out = tmp_path_factory.mktemp("scene")
    video = write_scene(scene, out)
    truth = ground_truth(scene)
    rows = []
    for index, boxes in enumerate(truth.boxes):
        for box in boxes:
            x1, y1, x2, y2 = box.box
            width, height = round(x2 - x1, 2), round(y2 - y1, 2)
            rows.append((index + 1, box.person_id, round(x1, 2), round(y1, 2), width, height, 1))
    return scene, video, write_mot(out / "gt.txt", rows), truth.line_counts()


@pytest.mark.slow
def test_evaluate_on_a_synthetic_scene(synthetic, tmp_path, capsys):
    scene, video, gt, true_lines = synthetic
    line = scene.lines[0]
    (a, b) = line.points
    results = tmp_path / "result.json"
    code = main(
        [
            "evaluate",
            str(video),
            "--gt",
            str(gt),
            "--line",
            f"{line.id}:{a[0]},{a[1]},{b[0]},{b[1]}",
            "--json",
            str(results),
            "--out",
            str(tmp_path / "pictures"),
        ]
    )
    assert code == 0
    report = json.loads(results.read_text())
    printed = capsys.readouterr().out
    assert "MOTA" in printed and "crossings" in printed
    # The truth side replays the scene's own crossings through the product's line rule.
    truth_by_direction = {entry["direction"]: entry["true"] for entry in report["lines"]}
    assert truth_by_direction == true_lines[line.id]
    # The detector finds these people (tests/test_counting_accuracy.py counts them exactly).
    summary = report["summary"]
    assert summary["recall@0.3"] > 0.8 and summary["precision@0.3"] > 0.9
    assert summary["crossing_recall"] == 1.0 and summary["invented"] == 0, report
    assert summary["mota"] > 0.5
    assert report["analysed"] == scene.frame_count
    assert (tmp_path / "pictures" / "detections.png").stat().st_size > 0
    assert (tmp_path / "pictures" / "lines.png").stat().st_size > 0
