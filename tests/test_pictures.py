"""I420 pictures: a reader hands frames over unconverted, and the detector's input made straight
from the planes matches the one made from full-size BGR."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.detection.families.ssd import preprocess_ssd
from edge.detection.pictures import I420Picture, as_bgr, resized_rgb
from edge.devkit.calibration_frames import sample_images
from edge.devkit.synthetic import standard_scenes, write_scene
from edge.runtime.sources import SourceReader


def i420_of(bgr: np.ndarray) -> I420Picture:
    return I420Picture(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420))


@pytest.fixture(scope="module")
def scene_frame() -> np.ndarray:
    # A real photograph at 720p: a flat frame would hide a plane put in the wrong place.
    photo = next(sample_images()).image
    return cv2.resize(photo, (1280, 720), interpolation=cv2.INTER_LINEAR)


def test_bgr_is_the_full_size_conversion_and_is_kept(scene_frame: np.ndarray) -> None:
    picture = i420_of(scene_frame)
    assert picture.shape == (720, 1280, 3)
    bgr = picture.bgr()
    assert bgr is picture.bgr()
    assert np.array_equal(bgr, cv2.cvtColor(picture.planes, cv2.COLOR_YUV2BGR_I420))
    assert as_bgr(picture) is bgr and as_bgr(scene_frame) is scene_frame


@pytest.mark.parametrize("size", [(533, 300), (534, 300), (398, 224), (1024, 576), (301, 301)])
def test_resized_straight_from_the_planes_matches_the_full_size_path(scene_frame: np.ndarray, size: tuple) -> None:
    picture = i420_of(scene_frame)
    direct = resized_rgb(picture, size)
    via_bgr = resized_rgb(picture.bgr(), size)
    assert direct.shape == (size[1], size[0], 3) and direct.dtype == np.uint8
    difference = np.abs(direct.astype(np.int16) - via_bgr.astype(np.int16))
    assert difference.mean() < 3.0, difference.mean()
    # Channel order: the red channel of the direct input is the BGR path's red, not its blue.
    assert np.abs(direct[..., 0].astype(np.int16) - via_bgr[..., 2].astype(np.int16)).mean() > 10


def test_the_ssd_batch_mixes_pictures_and_bgr_frames(scene_frame: np.ndarray) -> None:
    batch = preprocess_ssd([i420_of(scene_frame), scene_frame], (533, 300))
    assert batch.shape == (2, 300, 533, 3) and batch.flags["C_CONTIGUOUS"]
    assert np.abs(batch[0].astype(np.int16) - batch[1].astype(np.int16)).mean() < 2.0


def test_odd_sides_are_refused() -> None:
    with pytest.raises(ValueError):
        I420Picture(np.zeros((15, 9), np.uint8))


def test_a_reader_hands_over_h264_frames_unconverted(tmp_path: Path) -> None:
    video = write_scene(standard_scenes()[0], tmp_path)
    reader = SourceReader("cam", str(video), realtime=False)
    reader.start()
    try:
        frame = reader.take(timeout=5.0)
    finally:
        reader.stop()
    assert frame is not None and isinstance(frame.image, I420Picture)
    capture = cv2.VideoCapture(str(video))
    ok, first = capture.read()
    capture.release()
    assert ok and frame.image.shape == first.shape
    assert np.abs(frame.image.bgr().astype(np.int16) - first.astype(np.int16)).mean() < 2.0
