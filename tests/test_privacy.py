"""Snapshot privacy: masks filled, people pixelated, the original frame untouched."""

import cv2
import numpy as np

from edge.runtime.privacy import PrivacySpec, protect, snapshot_jpeg


def textured(height: int = 120, width: int = 160, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(30, 226, size=(height, width, 3), dtype=np.uint8)


def test_mask_polygon_is_filled_and_the_rest_is_untouched():
    image = textured()
    # left half of the image
    spec = PrivacySpec(masks=(((0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)),), blur_people=False)
    out = protect(image, spec)
    assert np.all(out[:, :79] == 0)
    assert np.array_equal(out[:, 82:], image[:, 82:])
    assert image.max() > 0 and not np.all(image[:, :79] == 0), "the input frame must not be modified"


def test_people_boxes_are_pixelated_beyond_recognition_and_nothing_else_changes():
    image = textured()
    box = np.array([[40.0, 20.0, 100.0, 100.0]])
    out = protect(image, PrivacySpec(), box)
    inner = out[24:96, 44:96].astype(np.int32)
    # Pixelated: neighbouring pixels are mostly equal (blocks), unlike the random texture.
    same = np.mean(inner[:, 1:] == inner[:, :-1])
    assert same > 0.8, same
    assert np.mean(image[24:96, 45:96] == image[24:96, 44:95]) < 0.05
    # The margin grows the box by 10 %: outside of it nothing changes.
    assert np.array_equal(out[:, :33], image[:, :33])
    assert np.array_equal(out[:, 107:], image[:, 107:])
    assert np.array_equal(out[:11], image[:11])


def test_blur_off_leaves_people_and_boxes_off_frame_are_ignored():
    image = textured()
    boxes = np.array([[40.0, 20.0, 100.0, 100.0]])
    assert np.array_equal(protect(image, PrivacySpec(blur_people=False), boxes), image)
    outside = np.array([[500.0, 500.0, 600.0, 600.0], [10.0, 10.0, 10.0, 10.0]])
    out = protect(image, PrivacySpec(), outside)
    assert out.shape == image.shape
    assert np.array_equal(out[30:], image[30:])


def test_snapshot_jpeg_encodes_the_protected_frame():
    image = textured()
    spec = PrivacySpec(masks=(((0.0, 0.0), (1.0, 0.0), (1.0, 0.5), (0.0, 0.5)),))
    jpeg = snapshot_jpeg(image, spec, np.zeros((0, 4)))
    assert jpeg is not None and jpeg[:2] == b"\xff\xd8"
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == image.shape
    assert decoded[:55].max() < 20  # the masked top half stays black after JPEG
    assert decoded[65:].mean() > 60
    assert PrivacySpec().active and not PrivacySpec(blur_people=False).active
