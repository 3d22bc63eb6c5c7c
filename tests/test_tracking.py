"""ByteTrack: identities through occlusion, time-based buffers, the second stage, classes, and
accuracy on real pedestrian ground truth (motmetrics' TUD-Campus)."""

import importlib.util
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
import pytest

from edge.config import Config
from edge.core.detections import Detections
from edge.core.tracking import ByteTracker, Track, TrackerParams, iou_matrix

Box = Tuple[float, float, float, float]


def dets(boxes: Sequence[Box], scores: Sequence[float] = (), classes: Sequence[int] = ()) -> Detections:
    n = len(boxes)
    return Detections(
        np.array(boxes, np.float32).reshape(n, 4),
        np.array(scores or [0.9] * n, np.float32),
        np.array(classes or [0] * n, np.int32),
    )


def walker(t: float, x0: float = 100.0, speed: float = 50.0, y: float = 200.0) -> Box:
    """A 40x100 px person walking right at `speed` px/s."""
    x = x0 + speed * t
    return (x, y, x + 40.0, y + 100.0)


def confirmed(tracks: List[Track]) -> List[Track]:
    return [t for t in tracks if t.confirmed]


def test_iou_matrix_values() -> None:
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], float)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], float)
    np.testing.assert_allclose(iou_matrix(a, b)[0], [1.0, 50 / 150, 0.0])


def test_track_confirmed_after_min_hits_and_keeps_its_id() -> None:
    tracker = ByteTracker(TrackerParams(min_hits=2))
    tracker.update(Detections.empty(), 0.0)  # the very first frame confirms at once; start past it
    first = tracker.update(dets([walker(0.1)]), 0.1)
    assert [t.confirmed for t in first] == [False]
    ids = set()
    for k in range(2, 20):
        out = confirmed(tracker.update(dets([walker(k / 10)]), k / 10))
        assert len(out) == 1
        ids.add(out[0].track_id)
    assert ids == {first[0].track_id}


def test_identity_kept_through_short_occlusion() -> None:
    tracker = ByteTracker(TrackerParams(buffer_s=1.0, coast_s=0.0))
    ids = []
    for k in range(30):
        t = k / 10
        visible = not (10 <= k < 16)  # hidden for 0.6 s, keeps walking
        out = confirmed(tracker.update(dets([walker(t)] if visible else []), t))
        if visible:
            ids.append(out[0].track_id)
        else:
            assert out == []
    assert len(set(ids)) == 1


def test_lost_track_removed_after_buffer_seconds() -> None:
    tracker = ByteTracker(TrackerParams(buffer_s=1.0))
    for k in range(5):
        tracker.update(dets([walker(k / 10)]), k / 10)
    old_id = confirmed(tracker.update(dets([walker(0.5)]), 0.5))[0].track_id
    tracker.update(Detections.empty(), 1.4)  # 0.9 s without it: still kept
    assert len(tracker) == 1
    tracker.update(Detections.empty(), 1.6)  # 1.1 s: gone
    assert len(tracker) == 0
    back = tracker.update(dets([walker(1.7)]), 1.7)
    assert back[0].track_id != old_id


def test_buffer_is_in_seconds_not_frames() -> None:
    """At 30 FPS a 0.8 s gap is 24 frames; at 2 FPS it is under 2. Both survive a 1 s buffer."""
    for fps in (30.0, 2.0):
        tracker = ByteTracker(TrackerParams(buffer_s=1.0))
        times = [k / fps for k in range(int(3 * fps))]
        ids = set()
        for t in times:
            hidden = 1.0 <= t < 1.8
            out = confirmed(tracker.update(dets([] if hidden else [walker(t, speed=20.0)]), t))
            if not hidden and t > 0.6:
                ids.add(out[0].track_id)
        assert len(ids) == 1, fps


def test_frame_skip_three_confirms_and_keeps_a_walker() -> None:
    """10 FPS with frame-skip 3: a walker (70 px/s, 40 px wide) moves 21 px between processed
    frames. The tentative track must still pick up its second detection (buffered IoU) and keep
    one identity."""
    tracker = ByteTracker()
    tracker.update(Detections.empty(), 0.0)
    ids = set()
    for k in range(1, 20):
        t = 0.3 * k
        out = confirmed(tracker.update(dets([walker(t, speed=70.0)]), t))
        if k >= 2:
            assert len(out) == 1, k
            ids.add(out[0].track_id)
    assert len(ids) == 1


def test_kalman_prediction_uses_real_dt() -> None:
    """Irregular processing times: after a 0.5 s gap the walker has moved 50 px, more than its
    width; only a prediction over the real dt still overlaps it."""
    tracker = ByteTracker(TrackerParams(coast_s=0.0))
    times = [k / 10 for k in range(10)] + [1.4, 1.5, 2.0, 2.1]
    ids = set()
    for t in times:
        out = confirmed(tracker.update(dets([walker(t, speed=100.0)]), t))
        ids.add(out[0].track_id)
    assert len(ids) == 1


def test_low_score_second_stage_recovers_track() -> None:
    params = TrackerParams(high_threshold=0.5, low_threshold=0.1, coast_s=0.0)
    tracker = ByteTracker(params)
    for k in range(10):
        tracker.update(dets([walker(k / 10)]), k / 10)
    # Partly occluded: the detector is unsure (0.3), below the first stage.
    out = confirmed(tracker.update(dets([walker(1.0)], [0.3]), 1.0))
    assert len(out) == 1 and out[0].matched and out[0].score == pytest.approx(0.3)
    # A low-score detection never starts a track on its own.
    fresh = ByteTracker(params)
    for k in range(5):
        assert fresh.update(dets([walker(k / 10)], [0.3]), k / 10) == []


def test_class_aware_matching() -> None:
    tracker = ByteTracker(TrackerParams(coast_s=0.0))
    for k in range(5):
        tracker.update(dets([walker(k / 10)], classes=[0]), k / 10)
    person_id = confirmed(tracker.update(dets([walker(0.5)], classes=[0]), 0.5))[0].track_id
    # Same place, other class: a new (tentative) track, the person's track is not taken over.
    out = tracker.update(dets([walker(0.6)], classes=[1]), 0.6)
    assert all(t.track_id != person_id for t in out)
    assert [t.class_id for t in out] == [1]


def test_coasting_reports_prediction_then_stops() -> None:
    tracker = ByteTracker(TrackerParams(coast_s=0.2, buffer_s=1.0))
    for k in range(10):
        tracker.update(dets([walker(k / 10, speed=100.0)]), k / 10)
    out = tracker.update(Detections.empty(), 1.0)
    assert len(out) == 1 and not out[0].matched and out[0].confirmed
    assert out[0].box[0] == pytest.approx(walker(1.0, speed=100.0)[0], abs=5.0)
    assert len(tracker.update(Detections.empty(), 1.05)) == 1
    assert tracker.update(Detections.empty(), 1.25) == []


def test_params_from_config() -> None:
    params = TrackerParams.from_config(Config().tracker)
    assert params == TrackerParams()


def _tracker_eval():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "tracker_eval.py"
    spec = importlib.util.spec_from_file_location("tracker_eval", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mota_on_tud_campus_with_misses_and_jitter() -> None:
    """Real ground truth, 10 % misses and 2 px jitter. Floors are a margin under the committed
    benchmark's means (0.93 MOTA, 0.91 IDF1); perfect input must track perfectly (without
    coasting, which reports a track a little past the end of its annotation)."""
    te = _tracker_eval()
    gt = te.load_ground_truth("TUD-Campus")
    clean_input = te.corrupt(gt, te.Corruption("clean", 0.0, 0.0), 0)
    clean = te.score(gt, clean_input, te.ours(TrackerParams(coast_s=0.0)))
    assert clean.mota > 0.99 and clean.id_switches == 0
    setting = te.SETTINGS[0]
    assert (setting.miss_rate, setting.jitter_px) == (0.10, 2.0)
    scores = [te.score(gt, te.corrupt(gt, setting, seed), te.ours(TrackerParams())) for seed in range(3)]
    assert np.mean([s.mota for s in scores]) > 0.88
    assert np.mean([s.idf1 for s in scores]) > 0.85


def test_buffered_iou_margins_per_axis() -> None:
    """Both boxes grow by their own width x margin[0] and height x margin[1] on every side."""
    a = np.array([[0, 0, 10, 20]], float)
    b = np.array([[12, 0, 22, 20]], float)  # 2 px to the right of a
    assert iou_matrix(a, b)[0, 0] == 0.0
    grown = iou_matrix(a, b, np.array([[0.25, 0.0]]))  # 15 x 20 boxes overlapping by 3 px
    np.testing.assert_allclose(grown[0, 0], 3 * 20 / (2 * 15 * 20 - 3 * 20))
    assert iou_matrix(a, b, np.array([[0.0, 0.5]]))[0, 0] == 0.0  # growing only the height does not


def _coast_after(tracker: ByteTracker, box: Box, score: float) -> Box:
    """Feed `box` at `score` at t = 1.0 after a walker seen from 0 to 0.9 s, then return where
    the track is predicted at 1.1 s (coasting, no detection)."""
    for k in range(10):
        tracker.update(dets([walker(k / 10)]), k / 10)
    tracker.update(dets([box], [score]), 1.0)
    (coasting,) = tracker.update(Detections.empty(), 1.1)
    assert not coasting.matched
    return coasting.box


def test_unsure_detection_moves_the_track_less() -> None:
    """A detection the detector is unsure of (partly occluded, two people merged) is a noisier
    measurement: the filter follows it less than a confident one at the same place."""
    true_x = walker(1.1)[0]
    off = walker(1.0)
    off = (off[0] + 12.0, off[1], off[2] + 12.0, off[3])  # 12 px right of where the walker is
    params = TrackerParams(coast_s=0.5)
    confident = _coast_after(ByteTracker(params), off, 0.95)[0] - true_x
    unsure = _coast_after(ByteTracker(params), off, 0.3)[0] - true_x
    assert 0 < unsure < confident / 2


def test_one_box_cut_short_does_not_set_a_height_trend() -> None:
    """A walker's box (100 px tall) cut to its upper half for one frame by an occlusion, then
    whole again: a person's height changes slowly, so the filter does not take the jump as a
    trend and predicts the full height (ByteTrack's noise made it grow by 95 px/s here)."""
    tracker = ByteTracker(TrackerParams(coast_s=0.5))
    for k in range(10):
        tracker.update(dets([walker(k / 10)]), k / 10)
    cut = walker(1.0)
    tracker.update(dets([(cut[0], cut[1], cut[2], cut[1] + 50.0)]), 1.0)
    for t in (1.1, 1.2):
        tracker.update(dets([walker(t)]), t)
    (coasting,) = tracker.update(Detections.empty(), 1.3)
    assert coasting.box[3] - coasting.box[1] == pytest.approx(100.0, abs=5.0)


@pytest.mark.parametrize("speed", [70.0, 90.0])
def test_low_rate_walker_keeps_its_id(speed: float) -> None:
    """10 FPS with frame-skip 4 (0.4 s between processed frames): a walker 40 px wide moves 0.7
    to 0.9 of its width per step, more than plain IoU bridges for a track whose velocity is not
    known yet (seen once, on the first frame). The gates of lost and tentative tracks grow with
    the filter's own uncertainty, so it is re-found, also after two hidden frames (0.8 s)."""
    tracker = ByteTracker(TrackerParams(coast_s=0.0))
    ids = set()
    for k in range(16):
        t = 0.4 * k
        hidden = k in (8, 9)
        out = confirmed(tracker.update(dets([] if hidden else [walker(t, speed=speed)]), t))
        if k >= 2 and not hidden:
            assert len(out) == 1, k
        ids.update(track.track_id for track in out)
    assert len(ids) == 1
