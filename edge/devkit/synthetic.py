"""Deterministic synthetic scenes: a video plus its ground truth, for the demo, tests,
calibration and benchmarks.

People are real photographs that ship inside registry packages (the public-domain
`astronaut` of scikit-image and `grace_hopper.jpg` of matplotlib), cut out with a soft mask,
pasted at pedestrian sizes onto a drawn plaza and moved along piecewise-linear paths. The
ground truth (per-frame boxes with identities, every line crossing with its direction, every
zone entry) is computed from the same paths, so counts can be checked exactly.

No randomness at render time except sensor noise seeded by the frame index: the same scene
renders the same pixels on every machine.
"""

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from edge.core.errors import ConfigError

Point = Tuple[float, float]


@dataclass(frozen=True)
class Waypoint:
    t: float  # seconds from the start of the scene
    x: float  # foot point (bottom centre), normalised 0..1
    y: float


@dataclass(frozen=True)
class Walker:
    person_id: int
    sprite: int  # index into the sprite set
    height: float  # box height as a fraction of the frame height
    path: Tuple[Waypoint, ...]  # visible from the first waypoint's time to the last's

    def foot_at(self, t: float) -> Optional[Point]:
        """Foot point at time t, or None when the walker is not in the scene."""
        if t < self.path[0].t or t > self.path[-1].t:
            return None
        for a, b in zip(self.path, self.path[1:]):
            if a.t <= t <= b.t:
                f = 0.0 if b.t == a.t else (t - a.t) / (b.t - a.t)
                return (a.x + f * (b.x - a.x), a.y + f * (b.y - a.y))
        return (self.path[-1].x, self.path[-1].y)


@dataclass(frozen=True)
class SceneLine:
    id: str
    points: Tuple[Point, Point]


@dataclass(frozen=True)
class SceneZone:
    id: str
    polygon: Tuple[Point, ...]


@dataclass(frozen=True)
class Scene:
    name: str
    width: int
    height: int
    fps: float
    duration_s: float
    walkers: Tuple[Walker, ...]
    lines: Tuple[SceneLine, ...] = ()
    zones: Tuple[SceneZone, ...] = ()
    seed: int = 0

    @property
    def frame_count(self) -> int:
        return int(round(self.duration_s * self.fps))


@dataclass(frozen=True)
class TruthBox:
    person_id: int
    box: Tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels


@dataclass(frozen=True)
class Crossing:
    person_id: int
    line_id: str
    direction: str  # "in" or "out"
    t: float


@dataclass
class SceneTruth:
    boxes: List[List[TruthBox]]  # per frame
    crossings: List[Crossing]
    zone_entries: Dict[str, int]

    def line_counts(self) -> Dict[str, Dict[str, int]]:
        counts: Dict[str, Dict[str, int]] = {}
        for crossing in self.crossings:
            per_line = counts.setdefault(crossing.line_id, {"in": 0, "out": 0})
            per_line[crossing.direction] += 1
        return counts


@dataclass(frozen=True)
class Sprite:
    rgb: np.ndarray  # H x W x 3 uint8, BGR
    alpha: np.ndarray  # H x W float32 0..1

    @property
    def aspect(self) -> float:
        return self.rgb.shape[1] / self.rgb.shape[0]


def _cutout(image_rgb: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> Sprite:
    crop = np.ascontiguousarray(image_rgb[y0:y1, x0:x1, ::-1])
    h, w = crop.shape[:2]
    # Soft rounded mask: keeps the person and fades the studio backdrop at the corners.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    nx = (xx - w / 2) / (w / 2)
    ny = np.clip((yy - h * 0.55) / (h * 0.55), -1, 0)
    distance = np.sqrt(nx**2 + ny**2)
    alpha = np.clip((1.05 - distance) / 0.15, 0, 1).astype(np.float32)
    return Sprite(crop, alpha)


@lru_cache(maxsize=1)
def load_sprites() -> Tuple[Sprite, ...]:
    """The real person images shipped with scikit-image and matplotlib, and mirror images."""
    try:
        import matplotlib.cbook
        import matplotlib.image
        from skimage import data
    except ImportError as exc:
        raise ConfigError(f"synthetic scenes need the demo extra (pip install 'video-analysis[demo]'): {exc}") from None
    astronaut = data.astronaut()
    hopper = matplotlib.image.imread(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    base = [_cutout(astronaut, 20, 10, 370, 512), _cutout(hopper, 30, 20, 500, 600)]
    mirrored = [Sprite(np.ascontiguousarray(s.rgb[:, ::-1]), np.ascontiguousarray(s.alpha[:, ::-1])) for s in base]
    return tuple(base + mirrored)


def walker_box(scene: Scene, walker: Walker, t: float) -> Optional[Tuple[float, float, float, float]]:
    foot = walker.foot_at(t)
    if foot is None:
        return None
    sprite = load_sprites()[walker.sprite]
    h = walker.height * scene.height
    w = h * sprite.aspect
    fx, fy = foot[0] * scene.width, foot[1] * scene.height
    return (fx - w / 2, fy - h, fx + w / 2, fy)


@lru_cache(maxsize=8)
def _background(width: int, height: int, seed: int) -> np.ndarray:
    """A plaza: a wall with shop windows above a tiled floor in perspective."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.uint8)
    horizon = int(height * 0.3)
    wall = np.array([120, 130, 140], np.float32) + rng.uniform(-20, 20, 3)
    image[:horizon] = wall.astype(np.uint8)
    for i in range(5):
        x0 = int(width * (0.04 + i * 0.2))
        colour = tuple(int(c) for c in rng.integers(40, 200, 3))
        cv2.rectangle(image, (x0, int(horizon * 0.25)), (x0 + int(width * 0.12), horizon - 4), colour, -1)
    rows = np.linspace(0, 1, height - horizon, dtype=np.float32)[:, None, None]
    floor = (np.array([150, 160, 165], np.float32) * (0.75 + 0.25 * rows)).astype(np.uint8)
    image[horizon:] = np.broadcast_to(floor, (height - horizon, width, 3))
    vanishing = (width / 2, horizon - height * 0.6)
    for k in range(-12, 13):
        bottom = (width / 2 + k * width / 8, height)
        cv2.line(
            image,
            (int(vanishing[0]), int(vanishing[1])),
            (int(bottom[0]), int(bottom[1])),
            (120, 128, 132),
            1,
        )
    y = float(horizon)
    step = 6.0
    while y < height:
        cv2.line(image, (0, int(y)), (width, int(y)), (120, 128, 132), 1)
        y += step
        step *= 1.25
    return image


def render(scene: Scene, frame_index: int) -> np.ndarray:
    """The BGR frame at `frame_index`; people further down the frame are drawn in front."""
    t = frame_index / scene.fps
    frame = _background(scene.width, scene.height, scene.seed).copy()
    sprites = load_sprites()
    placed = []
    for walker in scene.walkers:
        box = walker_box(scene, walker, t)
        if box is not None:
            placed.append((box[3], walker, box))
    for _, walker, box in sorted(placed, key=lambda item: item[0]):
        _paste(frame, sprites[walker.sprite], box)
    rng = np.random.default_rng(scene.seed * 100_003 + frame_index)
    noise = rng.normal(0, 3, frame.shape).astype(np.float32)
    return np.clip(frame.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def _paste(frame: np.ndarray, sprite: Sprite, box: Tuple[float, float, float, float]) -> None:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    w, h = x2 - x1, y2 - y1
    if w < 2 or h < 2:
        return
    rgb = cv2.resize(sprite.rgb, (w, h), interpolation=cv2.INTER_AREA)
    alpha = cv2.resize(sprite.alpha, (w, h), interpolation=cv2.INTER_LINEAR)[:, :, None]
    fx1, fy1 = max(x1, 0), max(y1, 0)
    fx2, fy2 = min(x2, frame.shape[1]), min(y2, frame.shape[0])
    if fx1 >= fx2 or fy1 >= fy2:
        return
    sx1, sy1 = fx1 - x1, fy1 - y1
    sx2, sy2 = sx1 + (fx2 - fx1), sy1 + (fy2 - fy1)
    region = frame[fy1:fy2, fx1:fx2].astype(np.float32)
    a = alpha[sy1:sy2, sx1:sx2]
    frame[fy1:fy2, fx1:fx2] = (a * rgb[sy1:sy2, sx1:sx2] + (1 - a) * region).astype(np.uint8)


# The ground truth's geometry is written here on purpose, apart from edge/analytics.py: the
# counting tests compare the two, so they must not share the code under test.
def side_of_line(line: Tuple[Point, Point], point: Point) -> float:
    """Signed side in image coordinates (y down): > 0 on the right looking from the first
    point to the second, < 0 on the left."""
    (ax, ay), (bx, by) = line
    return (bx - ax) * (point[1] - ay) - (by - ay) * (point[0] - ax)


def _crosses_segment(p: Point, q: Point, a: Point, b: Point) -> bool:
    """Whether the path p→q passes through the line segment a–b (endpoints inclusive)."""
    d3 = side_of_line((p, q), a)
    d4 = side_of_line((p, q), b)
    return d3 * d4 <= 0


def _inside(polygon: Sequence[Point], point: Point) -> bool:
    contour = np.array(polygon, np.float32).reshape(-1, 1, 2)
    return cv2.pointPolygonTest(contour, (float(point[0]), float(point[1])), False) > 0


def ground_truth(scene: Scene) -> SceneTruth:
    """Boxes per frame; crossings and zone entries from the continuous paths (sampled finely,
    so they do not depend on the frame rate a test processes at)."""
    boxes: List[List[TruthBox]] = []
    for index in range(scene.frame_count):
        t = index / scene.fps
        frame_boxes = []
        for walker in scene.walkers:
            box = walker_box(scene, walker, t)
            if box is not None and box[2] > 0 and box[0] < scene.width:
                frame_boxes.append(TruthBox(walker.person_id, box))
        boxes.append(frame_boxes)
    crossings: List[Crossing] = []
    entries = {zone.id: 0 for zone in scene.zones}
    for walker in scene.walkers:
        start, end = walker.path[0].t, walker.path[-1].t
        times = np.minimum(np.arange(start, end + 0.01, 0.01), end)
        feet = [walker.foot_at(float(t)) for t in times]
        for line in scene.lines:
            # Sides with zeros carried over, so a sample exactly on the line is no crossing.
            last_side = 0.0
            last_point: Optional[Point] = None
            for t, point in zip(times, feet):
                assert point is not None
                side = side_of_line(line.points, point)
                if side == 0:
                    continue
                if (
                    last_point is not None
                    and side * last_side < 0
                    and _crosses_segment(last_point, point, *line.points)
                ):
                    direction = "in" if side > 0 else "out"
                    crossings.append(Crossing(walker.person_id, line.id, direction, float(t)))
                last_side, last_point = side, point
        for zone in scene.zones:
            was_inside = False
            for p in feet:
                assert p is not None
                now_inside = _inside(zone.polygon, p)
                if now_inside and not was_inside:
                    entries[zone.id] += 1
                was_inside = now_inside
    crossings.sort(key=lambda c: c.t)
    return SceneTruth(boxes=boxes, crossings=crossings, zone_entries=entries)


DOOR = SceneLine("door", ((0.5, 0.35), (0.5, 1.0)))
QUEUE = SceneZone("queue", ((0.62, 0.45), (0.88, 0.45), (0.88, 0.99), (0.62, 0.99)))


def _walk(
    person_id: int, sprite: int, height: float, t0: float, points: Sequence[Tuple[float, float, float]]
) -> Walker:
    """A walker from (dt, x, y) legs: each leg lasts dt seconds and ends at (x, y)."""
    t = t0
    path = []
    for dt, x, y in points:
        t += dt
        path.append(Waypoint(t, x, y))
    return Walker(person_id, sprite, height, tuple(path))


LANE_FAR = (0.54, 0.30)  # (foot y, box height): two lanes whose boxes never overlap
LANE_NEAR = (0.97, 0.38)


def standard_scenes(width: int = 640, height: int = 360, fps: float = 10.0) -> List[Scene]:
    """The scene set the counting tests and the demo use. People walk in two lanes whose
    boxes do not overlap, at sizes at which the default model detects them reliably
    (recall measured in tests/test_counting_accuracy.py). The far lane uses the Grace Hopper
    sprites: the small astronaut above another person is often missed by the default model."""
    far_y, far_h = LANE_FAR
    near_y, near_h = LANE_NEAR

    def plaza(name: str, walkers: Sequence[Walker]) -> Scene:
        return Scene(name, width, height, fps, 24.0, tuple(walkers), lines=(DOOR,), zones=(QUEUE,), seed=1)

    plaza_a = plaza(
        "plaza-a",
        (
            # out through the door, passing through the queue zone
            _walk(1, 1, far_h, 0.0, [(0, 0.06, far_y), (8, 0.94, far_y)]),
            # in through the door, passing through the queue zone
            _walk(2, 0, near_h, 2.0, [(0, 0.94, near_y), (8, 0.06, near_y)]),
            # walks up to the door and turns back: no count
            _walk(3, 2, near_h, 11.0, [(0, 0.06, near_y), (3, 0.40, near_y), (3, 0.06, near_y)]),
            # out, lingers in the queue zone, leaves to the right
            _walk(4, 3, far_h, 10.0, [(0, 0.06, far_y), (5, 0.72, far_y), (5, 0.76, far_y), (2, 0.94, far_y)]),
        ),
    )
    walkers = []
    for k in range(4):
        walkers.append(_walk(10 + k, 1 + 2 * (k % 2), far_h, 4.0 * k, [(0, 0.06, far_y), (8, 0.94, far_y)]))
        walkers.append(_walk(20 + k, 2 * (k % 2), near_h, 1.0 + 4.0 * k, [(0, 0.94, near_y), (7, 0.06, near_y)]))
    return [plaza_a, plaza("plaza-b", walkers)]


def write_scene(scene: Scene, out_dir: Path) -> Path:
    """Write the scene as an MP4 (mp4v) and its ground truth as JSON; returns the video path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    video_path = out_dir / f"{scene.name}.mp4"
    writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter.fourcc(*"mp4v"), scene.fps, (scene.width, scene.height))
    if not writer.isOpened():
        raise ConfigError(f"{video_path}: cannot write video (OpenCV has no mp4v encoder)")
    try:
        for index in range(scene.frame_count):
            writer.write(render(scene, index))
    finally:
        writer.release()
    truth = ground_truth(scene)
    (out_dir / f"{scene.name}.truth.json").write_text(
        json.dumps(
            {
                "scene": scene.name,
                "fps": scene.fps,
                "lines": truth.line_counts(),
                "zone_entries": truth.zone_entries,
                "crossings": [c.__dict__ for c in truth.crossings],
            },
            indent=1,
        )
    )
    return video_path
