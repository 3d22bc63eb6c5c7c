"""Calibration sets: frames collected from the device's own scenes, de-duplicated, stored as
`<calibration dir>/<name>/` (JPEG frames + manifest.json), and read back as model input batches.

A set is identified by the hash of its frames, so everything derived from it (quantised models,
TensorRT calibration tables) is rebuilt when the frames change. Every k-th frame is held out
(never used to calibrate) so the accuracy guard checks INT8 on frames it was not tuned on;
taking every k-th rather than the last k keeps both parts spread over the whole collection.
The built-in set (used when the device has no set of its own) is package data in the same form,
edge/assets/calibration/builtin/, rendered once by calibration/make_builtin_set.py.

Near-duplicates are dropped with a difference hash (dHash: a 9x8 grey thumbnail, one bit per
horizontal gradient sign) compared by Hamming distance. It is a few lines of numpy; the library
versions (opencv-contrib's img_hash, the imagehash package) would add a dependency for it.

The reader implements onnxruntime.quantization's CalibrationDataReader protocol (get_next, which
its __subclasshook__ accepts) without importing onnxruntime.quantization, which needs `onnx`.
"""

import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from edge.assets import asset_dir
from edge.core.errors import ConfigError, SourceError
from edge.core.tier_agreement import BUILTIN_FRAME_SET

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
MANIFEST = "manifest.json"
BUILTIN_SET = BUILTIN_FRAME_SET
JPEG_QUALITY = 95
Box = Tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels

# Preprocess a list of BGR frames into the model's input batch, exactly as the detector does.
Preprocess = Callable[[Sequence[np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class CandidateFrame:
    """A frame offered to the collector: where it came from and, for synthetic scenes, its
    ground-truth person boxes (None when unlabelled)."""

    image: np.ndarray
    origin: str
    labels: Optional[Tuple[Box, ...]] = None


@dataclass(frozen=True)
class CalibrationFrame:
    path: Path
    origin: str
    labels: Optional[Tuple[Box, ...]] = None


@dataclass
class CalibrationSet:
    name: str
    directory: Path
    frames: List[CalibrationFrame]
    source: str = ""
    created: float = 0.0
    _hash: Optional[str] = field(default=None, repr=False, compare=False)

    def content_hash(self) -> str:
        """sha256 over the frames' bytes in order: the identity of the set."""
        if self._hash is None:
            import hashlib

            digest = hashlib.sha256()
            for frame in self.frames:
                digest.update(frame.path.read_bytes())
            self._hash = digest.hexdigest()
        return self._hash

    def split(self, holdout_fraction: float) -> Tuple[List[CalibrationFrame], List[CalibrationFrame]]:
        """(calibration frames, held-out frames): every k-th frame is held out, k = 1/fraction."""
        return split_frames(self.frames, holdout_fraction)


def _box(values: Sequence[float]) -> Box:
    x1, y1, x2, y2 = (float(v) for v in values)
    return (x1, y1, x2, y2)


def split_frames(
    frames: Sequence[CalibrationFrame], holdout_fraction: float
) -> Tuple[List[CalibrationFrame], List[CalibrationFrame]]:
    if not 0 < holdout_fraction < 1:
        raise ConfigError(f"calibration.holdout_fraction: {holdout_fraction} not between 0 and 1")
    step = max(2, int(round(1.0 / holdout_fraction)))
    held = [f for i, f in enumerate(frames) if i % step == step - 1]
    kept = [f for i, f in enumerate(frames) if i % step != step - 1]
    return kept, held


# --- de-duplication ----------------------------------------------------------------------------


def dhash(image: np.ndarray, size: int = 8) -> int:
    """Difference hash of a BGR or grey image: size*size bits."""
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    thumb = cv2.resize(grey, (size + 1, size), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (thumb[:, 1:] > thumb[:, :-1]).reshape(-1)
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


class Deduplicator:
    """Accepts a frame only when its dHash differs from every accepted one by at least
    `min_distance` bits (of 64): static scenes yield one frame, scene changes new ones."""

    def __init__(self, min_distance: int = 6) -> None:
        self.min_distance = min_distance
        self.hashes: List[int] = []

    def accept(self, image: np.ndarray) -> bool:
        value = dhash(image)
        if any(hamming(value, kept) < self.min_distance for kept in self.hashes):
            return False
        self.hashes.append(value)
        return True


def spread(items: Sequence[CandidateFrame], count: int) -> List[CandidateFrame]:
    """`count` items evenly spread over the sequence (all of them when there are fewer)."""
    if len(items) <= count:
        return list(items)
    indices = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[i] for i in indices]


# --- sources of candidate frames ---------------------------------------------------------------


def frames_from_folder(folder: Path) -> Iterator[CandidateFrame]:
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise SourceError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            log.warning("%s: not a readable image; skipped", path)
            continue
        yield CandidateFrame(image, str(path))


def frames_from_video(path: Path, wanted: int, oversample: int = 4) -> Iterator[CandidateFrame]:
    """Frames at evenly spaced positions over the whole video (oversampled so that
    de-duplication still leaves enough)."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise SourceError(f"{path}: cannot open video")
    try:
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
        if total <= 0:  # unknown length (some containers): read sequentially
            index = 0
            while True:
                ok, image = capture.read()
                if not ok:
                    return
                yield CandidateFrame(image, f"{path}#{index}")
                index += 1
        positions = sorted(
            set(np.linspace(0, total - 1, min(total, wanted * oversample)).round().astype(int))
        )
        for index in positions:
            capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
            ok, image = capture.read()
            if ok:
                stamp = f"@{index / fps:.1f}s" if fps else f"#{index}"
                yield CandidateFrame(image, f"{path}{stamp}")
    finally:
        capture.release()


def frames_from_cameras(
    sources: Dict[str, str],
    duration_s: float,
    interval_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[CandidateFrame]:
    """One frame from each camera every `interval_s`, for at most `duration_s`."""
    captures = {}
    try:
        for camera_id, source in sources.items():
            capture = cv2.VideoCapture(source)
            if not capture.isOpened():
                raise SourceError(f"camera {camera_id}: cannot open {source}")
            captures[camera_id] = capture
        start = clock()
        while clock() - start < duration_s:
            tick = clock()
            for camera_id, capture in list(captures.items()):
                ok, image = capture.read()
                if ok:
                    yield CandidateFrame(image, f"{camera_id}@{tick - start:.1f}s")
            sleep(max(0.0, interval_s - (clock() - tick)))
    finally:
        for capture in captures.values():
            capture.release()


def builtin_set() -> CalibrationSet:
    """The built-in set as shipped (package data, read-only): the synthetic scenes with their
    ground-truth boxes plus two real photographs, rendered by calibration/make_builtin_set.py."""
    return load_set(asset_dir("calibration") / BUILTIN_SET)


def builtin_frames(count: int) -> Iterator[CandidateFrame]:
    """What calibrates when no camera is configured: `count` frames spread over the built-in set."""
    frames = builtin_set().frames
    if len(frames) > count:
        frames = [frames[i] for i in np.linspace(0, len(frames) - 1, count).round().astype(int)]
    for frame, image in zip(frames, load_images(frames)):
        yield CandidateFrame(image, frame.origin, frame.labels)


# --- collection and storage --------------------------------------------------------------------


Progress = Callable[[str], None]


def stderr_progress(message: str) -> None:
    print(f"\r{message}\033[K", end="", file=sys.stderr, flush=True)


def collect(
    candidates: Iterable[CandidateFrame],
    wanted: int,
    min_distance: int = 6,
    progress: Optional[Progress] = None,
) -> List[CandidateFrame]:
    """De-duplicated candidates, then `wanted` of them spread evenly over the collection."""
    dedupe = Deduplicator(min_distance)
    kept: List[CandidateFrame] = []
    seen = 0
    for candidate in candidates:
        seen += 1
        if dedupe.accept(candidate.image):
            kept.append(candidate)
        if progress:
            progress(f"collecting: {seen} frames seen, {len(kept)} distinct")
    if progress:
        progress(f"collected: {seen} frames seen, {len(kept)} distinct, keeping {min(wanted, len(kept))}\n")
    return spread(kept, wanted)


def write_set(
    directory: Path,
    name: str,
    frames: Sequence[CandidateFrame],
    source: str,
    progress: Optional[Progress] = None,
    quality: int = JPEG_QUALITY,
) -> CalibrationSet:
    """Store frames as JPEGs plus a manifest; replaces an existing set of that name."""
    if not frames:
        raise SourceError(f"calibration set {name}: no frames collected from {source}")
    target = directory / name
    frames_dir = target / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    for old in frames_dir.glob("*.jpg"):
        old.unlink()
    stored = []
    for index, frame in enumerate(frames):
        path = frames_dir / f"{index:05d}.jpg"
        if not cv2.imwrite(str(path), frame.image, [cv2.IMWRITE_JPEG_QUALITY, quality]):
            raise SourceError(f"{path}: cannot write calibration frame")
        stored.append(CalibrationFrame(path, frame.origin, frame.labels))
        if progress:
            progress(f"writing: {index + 1}/{len(frames)}")
    if progress:
        progress(f"wrote {len(frames)} frames to {target}\n")
    created = time.time()
    manifest = {
        "name": name,
        "source": source,
        "created": created,
        "frames": [
            {
                "file": f.path.name,
                "origin": f.origin,
                "labels": [list(b) for b in f.labels] if f.labels else None,
            }
            for f in stored
        ],
    }
    (target / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return CalibrationSet(name, target, stored, source, created)


def load_set(directory: Path) -> CalibrationSet:
    manifest_path = directory / MANIFEST
    try:
        raw = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"{manifest_path}: calibration set missing (run `video-analysis calibrate`)"
        ) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{manifest_path}: corrupt ({exc.msg} at line {exc.lineno})") from None
    frames = []
    for entry in raw.get("frames", []):
        labels = tuple(_box(b) for b in entry["labels"]) if entry.get("labels") is not None else None
        frames.append(CalibrationFrame(directory / "frames" / entry["file"], entry.get("origin", ""), labels))
    missing = [f.path for f in frames if not f.path.is_file()]
    if missing:
        raise ConfigError(f"{missing[0]}: calibration frame missing ({len(missing)} missing in {directory})")
    return CalibrationSet(
        raw.get("name", directory.name), directory, frames, raw.get("source", ""), raw.get("created", 0.0)
    )


def list_sets(root: Path) -> List[Path]:
    """Set directories under `root`, newest first."""
    if not root.is_dir():
        return []
    sets = [p for p in root.iterdir() if (p / MANIFEST).is_file()]
    return sorted(sets, key=lambda p: (p / MANIFEST).stat().st_mtime, reverse=True)


def ensure_builtin_set(root: Path, progress: Optional[Progress] = None) -> CalibrationSet:
    """The built-in set under `root`, copied from the package data on first use: what is derived
    from a set (TensorRT calibration tables) is written beside its frames, and the installed
    package may be read-only. The copy has the same frame bytes, hence the same hash."""
    directory = root / BUILTIN_SET
    if not (directory / MANIFEST).is_file():
        shutil.copytree(str(asset_dir("calibration") / BUILTIN_SET), str(directory), dirs_exist_ok=True)
        if progress:
            progress(f"copied the built-in calibration set to {directory}\n")
    return load_set(directory)


def load_images(frames: Sequence[CalibrationFrame]) -> List[np.ndarray]:
    images = []
    for frame in frames:
        image = cv2.imread(str(frame.path), cv2.IMREAD_COLOR)
        if image is None:
            raise ConfigError(f"{frame.path}: calibration frame unreadable")
        images.append(image)
    return images


# --- feeding the model -------------------------------------------------------------------------


class FrameTensorReader:
    """onnxruntime.quantization CalibrationDataReader over a list of frames: one preprocessed
    single-frame batch per get_next, None at the end; rewind() starts again."""

    def __init__(self, frames: Sequence[CalibrationFrame], preprocess: Preprocess, input_name: str) -> None:
        self.frames = list(frames)
        self.preprocess = preprocess
        self.input_name = input_name
        self._position = 0

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        if self._position >= len(self.frames):
            return None
        image = load_images([self.frames[self._position]])[0]
        self._position += 1
        return {self.input_name: self.preprocess([image])}

    def rewind(self) -> None:
        self._position = 0

    def __iter__(self) -> "FrameTensorReader":
        return self

    def __next__(self) -> Dict[str, np.ndarray]:
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item

    def __len__(self) -> int:
        return len(self.frames)


def tensor_batches(
    frames: Sequence[CalibrationFrame], preprocess: Preprocess, batch_size: int
) -> Iterator[np.ndarray]:
    """Full batches of `batch_size` preprocessed frames (a last partial batch is dropped:
    TensorRT calibrators must hand over exactly the batch size they announce)."""
    for start in range(0, len(frames) - batch_size + 1, batch_size):
        yield preprocess(load_images(frames[start : start + batch_size]))
