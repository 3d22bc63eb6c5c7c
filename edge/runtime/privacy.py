"""Privacy for snapshots: what is hidden before a reference JPEG leaves the device.

Two measures, applied to a copy of the frame (the analysis keeps its own):
- **masks**: configured polygons (normalised 0..1 image coordinates, like lines and zones) are
  filled with a solid colour: windows of neighbours, a till, a screen;
- **people**: every detected person's box (grown by `BOX_MARGIN` on each side, so a slightly
  short box does not leave a face edge) is pixelated into blocks of at least `1 / BLOCKS_ACROSS` of
  the box's longer side. Coarse pixelation, not a Gaussian blur: a blur of a known kernel can be
  partly undone, averaged blocks cannot.

`snapshot_jpeg` applies both and encodes, so the caller cannot encode an unprotected frame by
mistake. OpenCV does the filling, resizing and encoding.
"""

from dataclasses import dataclass, field
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

Point = Tuple[float, float]

BOX_MARGIN = 0.1
BLOCKS_ACROSS = 6
MASK_COLOUR = (0, 0, 0)
JPEG_QUALITY = 80


@dataclass(frozen=True)
class PrivacySpec:
    """What to hide in one camera's snapshots."""

    masks: Tuple[Tuple[Point, ...], ...] = field(default_factory=tuple)
    blur_people: bool = True

    @property
    def active(self) -> bool:
        return bool(self.masks) or self.blur_people


def _fill_masks(image: np.ndarray, masks: Sequence[Sequence[Point]]) -> None:
    height, width = image.shape[:2]
    polygons = [
        np.round(np.asarray(polygon, np.float64) * (width, height)).astype(np.int32).reshape(-1, 1, 2)
        for polygon in masks
    ]
    if polygons:
        cv2.fillPoly(image, polygons, MASK_COLOUR)


def _pixelate_boxes(image: np.ndarray, boxes: np.ndarray) -> None:
    height, width = image.shape[:2]
    for x1, y1, x2, y2 in np.asarray(boxes, np.float64).reshape(-1, 4):
        dx, dy = (x2 - x1) * BOX_MARGIN, (y2 - y1) * BOX_MARGIN
        left, top = max(int(np.floor(x1 - dx)), 0), max(int(np.floor(y1 - dy)), 0)
        right, bottom = min(int(np.ceil(x2 + dx)), width), min(int(np.ceil(y2 + dy)), height)
        if right <= left or bottom <= top:
            continue
        region = image[top:bottom, left:right]
        block = max(1, int(np.ceil(max(region.shape[0], region.shape[1]) / BLOCKS_ACROSS)))
        small = cv2.resize(
            region,
            (max(1, region.shape[1] // block), max(1, region.shape[0] // block)),
            interpolation=cv2.INTER_AREA,
        )
        region[...] = cv2.resize(small, (region.shape[1], region.shape[0]), interpolation=cv2.INTER_NEAREST)


def protect(image: np.ndarray, spec: PrivacySpec, people: Optional[np.ndarray] = None) -> np.ndarray:
    """A copy of `image` (BGR) with the masks filled and, when `spec.blur_people`, the `people`
    boxes ((N, 4) x1, y1, x2, y2 in pixels) pixelated."""
    out = image.copy()
    if spec.blur_people and people is not None and len(people):
        _pixelate_boxes(out, people)
    _fill_masks(out, spec.masks)
    return out


def snapshot_jpeg(
    image: np.ndarray, spec: PrivacySpec, people: Optional[np.ndarray] = None, quality: int = JPEG_QUALITY
) -> Optional[bytes]:
    """The protected frame as JPEG bytes (None if OpenCV cannot encode it)."""
    ok, jpeg = cv2.imencode(".jpg", protect(image, spec, people), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return jpeg.tobytes() if ok else None
