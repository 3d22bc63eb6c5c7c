"""ByteTrack multi-object tracking (pure: no I/O, time passed in on every update).

ByteTrack (Zhang et al., 2022) associates in two stages: detections scoring at least
`high_threshold` are matched first against every confirmed and lost track, then detections
between `low_threshold` and `high_threshold` are matched against the tracks still unmatched,
which keeps a person through a partial occlusion that lowers the detector's score. Matching is
class-aware (a person never takes over a car's track) and solved as a
minimum-cost assignment (edge.core.assignment: SciPy's algorithm without SciPy's import cost)
on an IoU cost.

Why this is written here and not taken from a library: the published implementations (the
authors' repo, `supervision`, `trackers`) count the lost-track buffer in frames and predict with
a fixed one-frame step. This appliance changes frame-skip and FPS while it runs, so the buffer is
in seconds and the Kalman filter predicts with the real time between processed frames.

Re-finding a lost person: on small, jittery, intermittent boxes (a 25 px wide pedestrian whose
box shifts by a third of its width between detections) plain IoU between a lost track's
prediction and the re-found person is often near zero (median 0.13 measured on PETS09 S2.L1), so
ByteTrack starts a new id. After ByteTrack's two stages, the confident detections left over are
therefore matched to the lost tracks left over on a buffered IoU (C-BIoU, Yang et al. 2023),
and tentative tracks (one detection, no velocity yet) to the rest the same way. Both boxes are
grown, per axis, by one standard deviation of where the filter expects the track's detection
(its innovation spread), so the gate follows the filter's own uncertainty: wide for a track seen
once or lost for a while, the wider the longer the time between processed frames (frame-skip),
narrow for a track followed frame by frame. Being stages of their own, after the plain-IoU ones,
they only decide what those left undecided.

The Kalman filter is ByteTrack's (state centre x, centre y, aspect w/h, height and their
velocities, constant-velocity motion, noise proportional to the box height) with two changes
measured on PETS09 S2.L1: the measurement noise follows the detection score (NSA Kalman, Du et
al. 2021: a partly occluded or merged box is a noisier measurement, so it moves the track less),
and the box height's rate of change is a person's, 40 times steadier than ByteTrack lets it be.
Because that model's transition, process and measurement noise are all per coordinate, the 8x8
covariance stays four independent 2x2 (position, velocity) blocks; the filter keeps just those
blocks for all tracks in arrays, so predicting and updating 20 tracks is a handful of vectorised
numpy operations. Velocities are per second; ByteTrack's noise densities are its per-frame
values at 30 FPS, scaled by the real time step.
"""

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from edge.core.assignment import linear_sum_assignment
from edge.core.detections import Detections

Box = Tuple[float, float, float, float]

# ByteTrack's process noise weights, relative to the box height, for one frame at its tuning rate.
_STD_POSITION = 1.0 / 20.0
_STD_VELOCITY = 1.0 / 160.0
_REFERENCE_DT = 1.0 / 30.0
# A person's box height changes slowly (walking towards or away from the camera): the rate of
# change drifts by about 0.025 box heights per second per square-root second (PETS09 S2.L1 ground
# truth), 40 times less than ByteTrack's noise allows, under which one box cut short by an
# occlusion sent a track's height falling by 80 px/s.
_STD_HEIGHT_VELOCITY = 0.025
# Measurement noise by detection score (NSA Kalman): variance proportional to 1 - score, the
# standard deviation 0.2 box heights at score 0, floored at score 0.95. Measured on PETS09 S2.L1
# (SSDLite at 576) against ground truth: confident boxes (score >= 0.9) jitter by 0.03-0.05 box
# heights (the floor), boxes under 0.3 by 0.07-0.17 (partly occluded people, merged pairs).
_STD_MEASUREMENT = 0.2
_STD_ASPECT_MEASUREMENT = 0.1
_MIN_UNCERTAINTY = 0.05
# Second-stage and tentative-track IoU distance limits, as in ByteTrack.
_LOW_STAGE_MAX_DISTANCE = 0.5
_TENTATIVE_MAX_DISTANCE = 0.7
_NO_MATCH = 1e6

_TENTATIVE, _TRACKED, _LOST = 0, 1, 2


@dataclass(frozen=True)
class TrackerParams:
    """The tracker's parameters; mirrors `edge.config.TrackerConfig` (see `from_config`)."""

    high_threshold: float = 0.5
    low_threshold: float = 0.1
    new_track_threshold: float = 0.6
    match_iou: float = 0.8  # largest IoU distance (1 - IoU, score-fused) of a first-stage match
    buffer_s: float = 2.0
    min_hits: int = 2
    coast_s: float = 0.2

    @classmethod
    def from_config(cls, config: object) -> "TrackerParams":
        """From an `edge.config.TrackerConfig` (or anything with the same attributes)."""
        return cls(**{name: getattr(config, name) for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Track:
    """A track matched in the latest update. `box` is the filtered x1, y1, x2, y2 in pixels."""

    track_id: int
    box: Box
    score: float
    class_id: int
    confirmed: bool
    matched: bool  # False while coasting on the prediction through a missed detection
    hits: int
    first_seen: float  # timestamp of the detection that started the track

    @property
    def foot_point(self) -> Tuple[float, float]:
        """Bottom centre of the box, in pixels: where the person stands."""
        return ((self.box[0] + self.box[2]) / 2.0, self.box[3])


def iou_matrix(a: np.ndarray, b: np.ndarray, margin: Optional[np.ndarray] = None) -> np.ndarray:
    """IoU of every box in `a` (N, 4) with every box in `b` (M, 4), both x1 y1 x2 y2. With
    `margin` (N, 2), both boxes of pair (i, j) are first grown on every side by margin[i, 0] of
    their own width and margin[i, 1] of their own height (the buffered IoU of C-BIoU, Yang et al.
    2023)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    m = np.zeros((len(a), 2)) if margin is None else margin
    mx, my = m[:, 0:1], m[:, 1:2]
    aw, ah = (a[:, 2] - a[:, 0])[:, None], (a[:, 3] - a[:, 1])[:, None]
    bw, bh = (b[:, 2] - b[:, 0])[None, :], (b[:, 3] - b[:, 1])[None, :]
    ax1, ay1, ax2, ay2 = a[:, 0:1] - mx * aw, a[:, 1:2] - my * ah, a[:, 2:3] + mx * aw, a[:, 3:4] + my * ah
    bx1, by1, bx2, by2 = (
        b[None, :, 0] - mx * bw,
        b[None, :, 1] - my * bh,
        b[None, :, 2] + mx * bw,
        b[None, :, 3] + my * bh,
    )
    inter = np.clip(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0, None) * np.clip(
        np.minimum(ay2, by2) - np.maximum(ay1, by1), 0, None
    )
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _assign(distance: np.ndarray, max_distance: float) -> Tuple[np.ndarray, np.ndarray]:
    """Minimum-cost matching keeping pairs with distance <= max_distance: (rows, cols)."""
    if distance.size == 0:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    cost = np.where(distance <= max_distance, distance, _NO_MATCH)
    rows, cols = linear_sum_assignment(cost)
    keep = cost[rows, cols] <= max_distance
    return rows[keep], cols[keep]


def _xyah(boxes: np.ndarray) -> np.ndarray:
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return np.stack([boxes[:, 0] + w / 2, boxes[:, 1] + h / 2, w / np.maximum(h, 1e-6), h], axis=1)


def _boxes(xyah: np.ndarray) -> np.ndarray:
    w = xyah[:, 2] * xyah[:, 3]
    h = xyah[:, 3]
    return np.stack([xyah[:, 0] - w / 2, xyah[:, 1] - h / 2, xyah[:, 0] + w / 2, xyah[:, 1] + h / 2], axis=1)


def _noise_std(height: np.ndarray, position_weight: float, aspect_std: float) -> np.ndarray:
    """Per-coordinate standard deviations (N, 4) for x, y, aspect, height."""
    s = position_weight * height
    return np.stack([s, s, np.full_like(height, aspect_std), s], axis=1)


def _measurement_variance(height: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Variance (N, 4) of detections of `scores` (N,) on tracks of box height `height` (N,)."""
    uncertainty = np.maximum(1.0 - scores, _MIN_UNCERTAINTY)[:, None]
    return _noise_std(height, _STD_MEASUREMENT, _STD_ASPECT_MEASUREMENT) ** 2 * uncertainty


class ByteTracker:
    """ByteTrack over one camera. Call `update` once per processed frame, in time order."""

    def __init__(self, params: Optional[TrackerParams] = None) -> None:
        self.params = params or TrackerParams()
        self.reset()

    def reset(self) -> None:
        """Forget every track (a new video, or the source reconnected after a long gap)."""
        self._next_id = 1
        self._last_time: Optional[float] = None
        n = 0
        # One row per live track (tentative, tracked or lost).
        self._ids = np.zeros(n, np.int64)
        self._classes = np.zeros(n, np.int64)
        self._scores = np.zeros(n)
        self._state = np.zeros(n, np.int8)
        self._hits = np.zeros(n, np.int64)
        self._last_seen = np.zeros(n)
        self._first_seen = np.zeros(n)
        self._measured = np.zeros((n, 4))
        self._pos = np.zeros((n, 4))  # x, y, aspect, height
        self._vel = np.zeros((n, 4))  # per second
        self._p_pp = np.zeros((n, 4))  # covariance blocks: position, position-velocity, velocity
        self._p_pv = np.zeros((n, 4))
        self._p_vv = np.zeros((n, 4))

    def __len__(self) -> int:
        """Live tracks, lost ones included."""
        return len(self._ids)

    # --- Kalman filter -------------------------------------------------------------------

    def _predict(self, dt: float) -> None:
        if dt <= 0 or len(self._ids) == 0:
            return
        # A lost track keeps its course but not its growth (as in ByteTrack).
        self._vel[self._state != _TRACKED, 3] = 0.0
        steps = dt / _REFERENCE_DT
        height = self._pos[:, 3]
        q_pos = _noise_std(height, _STD_POSITION, 1e-2) ** 2 * steps
        q_vel = (_noise_std(height, _STD_VELOCITY, 1e-5) / _REFERENCE_DT) ** 2 * steps
        q_vel[:, 3] = (_STD_HEIGHT_VELOCITY * height) ** 2 * dt
        self._pos += self._vel * dt
        self._p_pp += 2 * dt * self._p_pv + dt * dt * self._p_vv + q_pos
        self._p_pv += dt * self._p_vv
        self._p_vv += q_vel

    def _correct(self, rows: np.ndarray, measured: np.ndarray, scores: np.ndarray) -> None:
        r = _measurement_variance(self._pos[rows, 3], scores)
        p_pp, p_pv = self._p_pp[rows], self._p_pv[rows]
        s = p_pp + r
        k_pos, k_vel = p_pp / s, p_pv / s
        innovation = measured - self._pos[rows]
        self._pos[rows] += k_pos * innovation
        self._vel[rows] += k_vel * innovation
        self._p_vv[rows] -= k_vel * p_pv
        self._p_pp[rows] = (1 - k_pos) * p_pp
        self._p_pv[rows] = (1 - k_pos) * p_pv

    # --- association ---------------------------------------------------------------------

    def _distance(
        self,
        rows: np.ndarray,
        boxes: np.ndarray,
        classes: np.ndarray,
        scores: Optional[np.ndarray],
        buffered: bool = False,
    ) -> np.ndarray:
        assert self._last_time is not None
        margin = None
        if buffered:
            # A track seen once has no velocity yet, a lost one drifts from the person the longer
            # it is lost, and both the more the longer the step between processed frames: grow
            # the boxes by one standard deviation of where the filter expects the detection of
            # a confident box (its innovation), per axis, as a fraction of the box size.
            height = self._pos[rows, 3]
            spread = np.sqrt(self._p_pp[rows] + _measurement_variance(height, np.ones(len(rows))))
            margin = spread[:, :2] / np.stack([self._pos[rows, 2] * height, height], axis=1)
        iou = iou_matrix(_boxes(self._pos[rows]), boxes, margin)
        if scores is not None:  # ByteTrack's score fusion: confident detections match first
            iou = iou * scores[None, :]
        iou[self._classes[rows][:, None] != classes[None, :]] = 0.0
        return 1.0 - iou

    def update(self, detections: Detections, timestamp: float) -> List[Track]:
        """Advance to `timestamp` (seconds, monotonic; a step back counts as no time) and
        associate this frame's detections. Returns the tracks matched in this frame; only those
        with `confirmed` set should be counted."""
        p = self.params
        dt = 0.0 if self._last_time is None else max(0.0, timestamp - self._last_time)
        first_update = self._last_time is None
        self._last_time = timestamp if self._last_time is None else max(timestamp, self._last_time)
        self._predict(dt)

        boxes = np.asarray(detections.boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(detections.scores, np.float64).reshape(-1)
        classes = np.asarray(detections.class_ids, np.int64).reshape(-1)
        valid = np.isfinite(boxes).all(axis=1) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        high = np.flatnonzero(valid & (scores >= p.high_threshold))
        low = np.flatnonzero(valid & (scores >= p.low_threshold) & (scores < p.high_threshold))

        matched_track: List[int] = []
        matched_det: List[int] = []

        # Stage 1: confident detections against confirmed tracks, lost ones included.
        pool = np.flatnonzero(self._state != _TENTATIVE)
        r, c = _assign(self._distance(pool, boxes[high], classes[high], scores[high]), p.match_iou)
        matched_track += pool[r].tolist()
        matched_det += high[c].tolist()
        left_pool = np.setdiff1d(pool, pool[r], assume_unique=True)
        left_high = np.setdiff1d(high, high[c], assume_unique=True)

        # Stage 2: weak detections against the tracks that were being followed until now.
        followed = left_pool[self._state[left_pool] == _TRACKED]
        r, c = _assign(self._distance(followed, boxes[low], classes[low], None), _LOW_STAGE_MAX_DISTANCE)
        matched_track += followed[r].tolist()
        matched_det += low[c].tolist()

        # Stage 2b: confident detections left over against lost tracks, on a buffered IoU.
        lost = left_pool[self._state[left_pool] == _LOST]
        r, c = _assign(
            self._distance(lost, boxes[left_high], classes[left_high], scores[left_high], buffered=True), p.match_iou
        )
        matched_track += lost[r].tolist()
        matched_det += left_high[c].tolist()
        left_high = np.setdiff1d(left_high, left_high[c], assume_unique=True)

        # Stage 3: tentative tracks (one detection so far) against the remaining confident ones.
        tentative = np.flatnonzero(self._state == _TENTATIVE)
        r, c = _assign(
            self._distance(tentative, boxes[left_high], classes[left_high], scores[left_high], buffered=True),
            _TENTATIVE_MAX_DISTANCE,
        )
        matched_track += tentative[r].tolist()
        matched_det += left_high[c].tolist()
        unborn = np.setdiff1d(left_high, left_high[c], assume_unique=True)

        rows = np.asarray(matched_track, np.intp)
        dets = np.asarray(matched_det, np.intp)
        if len(rows):
            self._correct(rows, _xyah(boxes[dets]), scores[dets])
            self._scores[rows] = scores[dets]
            self._measured[rows] = boxes[dets]
            self._hits[rows] += 1
            self._last_seen[rows] = self._last_time
            confirmed = (self._state[rows] != _TENTATIVE) | (self._hits[rows] >= p.min_hits)
            self._state[rows] = np.where(confirmed, _TRACKED, _TENTATIVE)

        unmatched = np.ones(len(self._ids), bool)
        unmatched[rows] = False
        self._state[unmatched & (self._state == _TRACKED)] = _LOST
        expired = unmatched & ((self._state == _TENTATIVE) | (self._last_time - self._last_seen > p.buffer_s))
        self._keep(~expired)

        born = unborn[scores[unborn] >= p.new_track_threshold]
        self._birth(boxes[born], scores[born], classes[born], confirmed=first_update or p.min_hits <= 1)

        report = (self._last_seen == self._last_time) | (
            (self._state == _LOST) & (self._last_time - self._last_seen <= p.coast_s)
        )
        return self._tracks(np.flatnonzero(report))

    def _keep(self, mask: np.ndarray) -> None:
        for name in (
            "_ids",
            "_classes",
            "_scores",
            "_state",
            "_hits",
            "_last_seen",
            "_first_seen",
            "_measured",
            "_pos",
            "_vel",
            "_p_pp",
            "_p_pv",
            "_p_vv",
        ):
            setattr(self, name, getattr(self, name)[mask])

    def _birth(self, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, confirmed: bool) -> None:
        n = len(boxes)
        if n == 0:
            return
        assert self._last_time is not None
        pos = _xyah(boxes)
        height = pos[:, 3]
        self._ids = np.concatenate([self._ids, np.arange(self._next_id, self._next_id + n)])
        self._next_id += n
        self._classes = np.concatenate([self._classes, classes])
        self._scores = np.concatenate([self._scores, scores])
        self._state = np.concatenate(
            [self._state, np.full(n, _TRACKED if confirmed else _TENTATIVE, np.int8)]
        )
        self._hits = np.concatenate([self._hits, np.ones(n, np.int64)])
        self._last_seen = np.concatenate([self._last_seen, np.full(n, self._last_time)])
        self._first_seen = np.concatenate([self._first_seen, np.full(n, self._last_time)])
        self._measured = np.concatenate([self._measured, boxes])
        self._pos = np.concatenate([self._pos, pos])
        self._vel = np.concatenate([self._vel, np.zeros((n, 4))])
        self._p_pp = np.concatenate([self._p_pp, _noise_std(height, 2 * _STD_POSITION, 1e-2) ** 2])
        self._p_pv = np.concatenate([self._p_pv, np.zeros((n, 4))])
        self._p_vv = np.concatenate(
            [self._p_vv, (_noise_std(height, 10 * _STD_VELOCITY, 1e-5) / _REFERENCE_DT) ** 2]
        )

    def _tracks(self, rows: np.ndarray) -> List[Track]:
        # A matched track reports its detection (the filter lags a moving person by a few
        # pixels), a coasting one its prediction.
        fresh = self._last_seen[rows] == self._last_time
        boxes = np.where(fresh[:, None], self._measured[rows], _boxes(self._pos[rows])).tolist()
        return [
            Track(
                track_id=int(self._ids[i]),
                box=(b[0], b[1], b[2], b[3]),
                score=float(self._scores[i]),
                class_id=int(self._classes[i]),
                confirmed=bool(self._state[i] != _TENTATIVE),
                matched=bool(self._last_seen[i] == self._last_time),
                hits=int(self._hits[i]),
                first_seen=float(self._first_seen[i]),
            )
            for i, b in zip(rows.tolist(), boxes)
        ]
