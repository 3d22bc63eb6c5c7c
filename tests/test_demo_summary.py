"""The demo's ground truth follows how much of each looped scene played, frame-skip included."""

from edge.commands.demo import SETTLE_S, expected_line_counts, played_seconds
from edge.devkit.synthetic import Crossing, Scene, SceneLine, SceneTruth


def test_played_time_counts_the_frames_skipped_before_the_newest_analysed_one() -> None:
    # Under frame-skip 3 at 15 FPS, the analysed frame with source index 44 is the 15th analysed
    # one, yet three seconds of the scene have played; the last second's crossings are settling.
    assert played_seconds(44, 15.0) == 3.0 - SETTLE_S
    assert played_seconds(None, 15.0) == 0.0


def test_expected_counts_add_whole_passes_of_the_loop() -> None:
    scene = Scene("s", 64, 48, 10.0, 4.0, (), (SceneLine("a", ((0.5, 0.0), (0.5, 1.0))),))
    truth = SceneTruth([], [Crossing(1, "a", "in", 1.0), Crossing(2, "a", "out", 3.0)], {})
    assert expected_line_counts(truth, scene, 2.0) == {"a": {"in": 1, "out": 0}}
    # Two passes and a half: each crossing twice, and the first once more.
    assert expected_line_counts(truth, scene, 10.0) == {"a": {"in": 3, "out": 2}}
